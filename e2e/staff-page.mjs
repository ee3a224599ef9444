// A counselor on duty in headless Chromium: sign in as staff, open the crisis review page, wait
// until its live feed is connected, then (when the test says it flagged something) see the new
// event appear and mark it reviewed from the page.
//
//   node e2e/staff-page.mjs <base-url> <username> <password>
//
// Talks to the test over stdio: prints `READY` once the page is live, reads one line with the
// words it should expect, prints `SEEN` the moment they are on the page, then one JSON line with
// what it saw. Exits non-zero, saying why, on failure.

import { existsSync } from "node:fs";
import { createInterface } from "node:readline";
import { chromium } from "playwright-core";
import { accessibilityViolations } from "./accessibility.mjs";

const [baseUrl, username, password] = process.argv.slice(2);
if (!baseUrl || !username || !password) {
  console.error("usage: node staff-page.mjs <base-url> <username> <password>");
  process.exit(2);
}
const executablePath = process.env.CHROMIUM_PATH || "/usr/bin/chromium";
if (!existsSync(executablePath)) {
  console.error(`Chromium not found at ${executablePath}: install the chromium package or set CHROMIUM_PATH`);
  process.exit(3);
}

const input = createInterface({ input: process.stdin });
const lines = input[Symbol.asyncIterator]();
const browser = await chromium.launch({
  executablePath,
  headless: true,
  args: ["--no-sandbox", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"],
});

const seen = {};
try {
  const page = await browser.newPage();
  page.on("pageerror", (error) => console.error(`[page error] ${error}`));
  // The page and its live feed must work under the server's Content-Security-Policy.
  const refused = [];
  page.on("console", (message) => {
    if (/Content Security Policy/i.test(message.text())) refused.push(message.text());
  });
  await page.goto(baseUrl);
  await page.fill("input[name=username]", username);
  await page.fill("input[name=password]", password);
  await page.click("button[type=submit]");
  // Staff land on the review page; its feed says when it is live.
  await page.waitForSelector("#live-status[data-live=connected]", { timeout: 15_000 });
  seen.staffLink = await page.locator("#staff-link").isVisible();
  seen.before = await page.locator(".crisis-event").count();
  console.log("READY");

  const { value: expected } = await lines.next();
  // Nothing more comes from the test; an open stdin would keep node running.
  input.close();
  const card = page.locator(".crisis-event.fresh", { hasText: expected.trim() });
  await card.waitFor({ timeout: 5_000 });
  console.log("SEEN");
  const violations = await accessibilityViolations(page, "the review page with a new event");
  seen.student = await card.locator(".student").textContent();
  seen.level = await card.locator(".level").textContent();

  await card.locator("select[name=outcome]").selectOption("contacted_student");
  await card.locator("textarea[name=note]").fill("Called the student; they are safe tonight.");
  await card.getByRole("button", { name: "Mark reviewed" }).click();
  await card.waitFor({ state: "detached", timeout: 5_000 });
  await page.selectOption("select[name=status]", "reviewed");
  const reviewed = page.locator(".crisis-event.reviewed", { hasText: expected.trim() });
  await reviewed.waitFor({ timeout: 5_000 });
  seen.review = await reviewed.locator(".review-result").textContent();
  violations.push(...(await accessibilityViolations(page, "the reviewed events")));
  if (violations.length) throw new Error(`it is not accessible:\n${violations.join("\n")}`);
  if (refused.length) throw new Error(`it broke the Content-Security-Policy:\n${refused.join("\n")}`);
  console.log(JSON.stringify(seen));
} catch (error) {
  console.log(JSON.stringify(seen));
  console.error(`the staff page failed: ${error.message}`);
  process.exit(1);
} finally {
  await browser.close();
}
