// A student's whole visit, through the web app, in headless Chromium with a WAV file as the
// microphone: sign in, accept the first-visit notice, start a voice call with the Health counselor
// (refused the first time, as a server at capacity would: the page says so plainly and Start
// again opens the call), hear the
// greeting, say something (the WAV), see it transcribed and answered, end the call, rate it in the
// dialog that follows, and find the session with its transcript and rating in the history; all of
// it within the server's Content-Security-Policy, which keeps an inline script injected into the
// page from running. Sign-in, the notice, the call and the rating are done with the keyboard alone,
// each control reached with Tab and showing a focus ring; axe-core checks every page and state on
// the way (no serious or critical violation), none of them moves by itself on the way there
// (a layout shift of at most 0.1 with no input just before), and the orb is seen to move with the counselor's
// voice. Mid-call the transcript socket is dropped (as a network blip would): the page says so,
// reconnects, and shows every line once, with none missing; the session page names the call's
// connection quality; a crisis alert puts the crisis
// resources up, with focus, until the student closes them. Then the same student on a
// phone-sized screen (390×844, in a second browser context that asks for reduced motion), with
// the keyboard alone again (sign-in, a video call, its end, the rating dialog, the history): every
// page fits the width, a video call keeps the avatar still, puts mute and end at the bottom of
// the screen and leaves the transcript readable.
//
//   node e2e/student-call.mjs <base-url> <username> <password> <microphone.wav>
//
// With SCREENSHOTS=<folder> (relative to the working directory) it also saves each page and state
// at both sizes there as PNG files (desktop-*.png, phone-*.png): the README's screenshots.
//
// Prints what it saw as one JSON line; exits non-zero, saying why, on failure.

import { existsSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { chromium } from "playwright-core";
import { accessibilityViolations } from "./accessibility.mjs";

const [baseUrl, username, password, microphoneWav] = process.argv.slice(2);
if (!baseUrl || !username || !password || !microphoneWav) {
  console.error("usage: node student-call.mjs <base-url> <username> <password> <microphone.wav>");
  process.exit(2);
}
const executablePath = process.env.CHROMIUM_PATH || "/usr/bin/chromium";
if (!existsSync(executablePath)) {
  console.error(`Chromium not found at ${executablePath}: install the chromium package or set CHROMIUM_PATH`);
  process.exit(3);
}
const CALL_TIMEOUT_MS = Number(process.env.CALL_TIMEOUT_MS || 90_000);
const RATING_COMMENT = "It helped me plan my evenings.";
const problems = [];
const SCREENSHOTS = process.env.SCREENSHOTS || "";
if (SCREENSHOTS) mkdirSync(SCREENSHOTS, { recursive: true });

// Saves what the screen shows now, when screenshots were asked for.
async function screenshot(page, name) {
  if (SCREENSHOTS) await page.screenshot({ path: join(SCREENSHOTS, `${name}.png`) });
}

// The most a page may move under the student's eyes between two checks, with no key pressed or
// click made just before: the "good" bound of the cumulative layout shift score.
const MOST_LAYOUT_SHIFT = 0.1;

// Sums the page's layout shifts that no input caused, from its first paint (run before the
// page's scripts, like the socket recorder).
function watchLayoutShifts() {
  window.__layoutShift = { score: 0, moved: [] };
  new PerformanceObserver((entries) => {
    for (const entry of entries.getEntries()) {
      if (entry.hadRecentInput) continue;
      window.__layoutShift.score += entry.value;
      for (const source of entry.sources || []) {
        const node = source.node;
        if (node && node.nodeType === 1) window.__layoutShift.moved.push(`${node.tagName.toLowerCase()}.${[...node.classList].join(".")}`);
      }
    }
  }).observe({ type: "layout-shift", buffered: true });
}

// How far the page moved by itself since the last check (or since it loaded), as a problem when
// more than MOST_LAYOUT_SHIFT; then starts counting again.
async function checkLayoutShift(page, where) {
  const shift = await page.evaluate(() => {
    const seen = window.__layoutShift || { score: 0, moved: [] };
    window.__layoutShift = { score: 0, moved: [] };
    return seen;
  });
  seen.layoutShift = Math.max(seen.layoutShift || 0, Math.round(shift.score * 1000) / 1000);
  if (shift.score > MOST_LAYOUT_SHIFT) {
    problems.push(`${where} moved by itself (layout shift ${shift.score.toFixed(3)}: ${[...new Set(shift.moved)].join(", ")})`);
  }
}

// Runs axe-core on the page as it is now; serious and critical violations become problems. Each
// page and state checked is also checked for moving by itself on the way there.
async function checkAccessibility(page, where) {
  await checkLayoutShift(page, where);
  const violations = await accessibilityViolations(page, where);
  problems.push(...violations);
  return violations.length;
}

// The page does not scroll sideways.
async function checkFits(page, where) {
  const [scrollWidth, innerWidth] = await page.evaluate(() => [document.documentElement.scrollWidth, window.innerWidth]);
  if (scrollWidth > innerWidth) problems.push(`${where} is ${scrollWidth}px wide on a ${innerWidth}px screen`);
}

// Presses Tab until the element has focus, as a keyboard user would reach it, and checks that
// it shows a focus ring.
async function tabTo(page, locator, what) {
  const target = await locator.elementHandle({ timeout: 15_000 });
  for (let presses = 0; presses <= 60; presses++) {
    // Already there (the page moved focus to it) counts as reached.
    if (presses > 0) await page.keyboard.press("Tab");
    if (await target.evaluate((node) => node === document.activeElement)) {
      const ring = await target.evaluate((node) => {
        const style = getComputedStyle(node);
        return style.outlineStyle !== "none" && parseFloat(style.outlineWidth) >= 2;
      });
      if (!ring) problems.push(`${what} shows no focus ring`);
      return;
    }
  }
  throw new Error(`${what} cannot be reached with the Tab key`);
}

const browser = await chromium.launch({
  executablePath,
  headless: true,
  args: [
    "--no-sandbox",
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
    `--use-file-for-fake-audio-capture=${microphoneWav}`,
    "--autoplay-policy=no-user-gesture-required",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
  ],
});

const seen = {};
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 860 } });
  page.on("pageerror", (error) => console.error(`[page error] ${error}`));
  // The whole visit must work under the server's Content-Security-Policy: Chromium reports on
  // the console everything the policy made it refuse (a script, a socket, a fetch).
  const refused = [];
  page.on("console", (message) => {
    if (/Content Security Policy/i.test(message.text())) refused.push(message.text());
  });
  await page.addInitScript(watchLayoutShifts);
  // Records each WebSocket the page opens and the final lines it delivers, so the test can drop
  // one and see what the next one resends. (Run through the DevTools protocol, before the page's
  // scripts, like axe-core.)
  await page.addInitScript(() => {
    const Native = window.WebSocket;
    window.__sockets = [];
    window.WebSocket = class extends Native {
      constructor(...args) {
        super(...args);
        const record = { url: String(args[0]), finals: [], socket: this };
        window.__sockets.push(record);
        this.addEventListener("message", (event) => {
          const message = JSON.parse(event.data);
          if (message.type === "transcript" && message.is_final) record.finals.push(message.sequence);
        });
      }
    };
  });
  await page.goto(baseUrl);
  await page.waitForSelector("input[name=username]");
  await screenshot(page, "desktop-sign-in");
  await checkAccessibility(page, "the sign-in page");

  // Keyboard only from here to the end of the call: the sign-in form has focus on arrival.
  await page.keyboard.type(username);
  await page.keyboard.press("Tab");
  await page.keyboard.type(password);
  await page.keyboard.press("Enter");
  await page.waitForSelector(".counselor", { timeout: 15_000 });
  seen.counselors = await page.locator(".counselor h2").allTextContents();
  // Each counselor's icon is an inline SVG drawing, decorative beside the name, drawn at size.
  seen.icons = await page.locator(".counselor").evaluateAll((cards) => cards.map((card) => {
    const icon = card.querySelector("svg.icon");
    return icon && icon.getAttribute("aria-hidden") === "true" && icon.getBoundingClientRect().width >= 24 ? icon.getAttribute("data-icon") : null;
  }));

  // The first-visit notice, accepted once for the account; the checkbox sits beside its label.
  seen.notice = await page.locator(".notice-card h3").allTextContents();
  const checkbox = await page.locator("#notice-understood").boundingBox();
  const label = await page.locator("label.check span").boundingBox();
  seen.checkboxBesideLabel = Math.abs(checkbox.y + checkbox.height / 2 - (label.y + label.height / 2)) < 8 && checkbox.x < label.x;
  await screenshot(page, "desktop-notice");
  await checkAccessibility(page, "the dashboard with the first-visit notice");
  await tabTo(page, page.getByLabel("I understand"), "the notice's checkbox");
  await page.keyboard.press("Space");
  await tabTo(page, page.getByRole("button", { name: "Continue" }), "the notice's Continue button");
  await page.keyboard.press("Enter");
  await page.waitForSelector(".notice-card", { state: "detached", timeout: 15_000 });
  await screenshot(page, "desktop-dashboard");
  await checkAccessibility(page, "the dashboard");
  // The counselor cannot be reached the first time (the server answers as it does at capacity):
  // the page says so plainly, with no internal detail, and Start again, once the server
  // answers, opens the call.
  const createRoom = "**/api/v1/voice/create-room";
  await page.route(createRoom, (request) => request.fulfill({ status: 503, contentType: "application/json", headers: { "Retry-After": "1" },
    body: JSON.stringify({ detail: "This server is at its call capacity", code: "CAPACITY_001" }) }));
  await tabTo(page, page.locator(".counselor", { hasText: "Health" }).getByRole("button", { name: "Voice call" }), "Health's Voice call button");
  await page.keyboard.press("Enter");

  const startAgain = page.getByRole("button", { name: "Start again" });
  await startAgain.waitFor({ timeout: 15_000 });
  seen.unreachable = {
    says: (await page.locator(".call-problem [role=alert]").textContent()).trim(),
    status: (await page.locator(".stage [role=status]").first().textContent()).trim(),
  };
  await screenshot(page, "desktop-unreachable");
  await checkAccessibility(page, "the call page when the counselor cannot be reached");
  await page.unroute(createRoom);
  await tabTo(page, startAgain, "the Start again button");
  await page.keyboard.press("Enter");
  await startAgain.waitFor({ state: "hidden", timeout: 15_000 });

  // The orb swells with the counselor's voice (and, in the phone-sized context below, which
  // asks for reduced motion, keeps still).
  await page.waitForSelector(".orb", { timeout: 15_000 });
  await page.evaluate(() => {
    window.__moves = 0;
    new MutationObserver(() => { window.__moves += 1; }).observe(document.querySelector(".orb"), { attributes: true, attributeFilter: ["style"] });
  });

  // The greeting, then the student's words transcribed, then the counselor's answer.
  await page.waitForSelector(".line.counselor", { timeout: CALL_TIMEOUT_MS });
  seen.greeting = await page.locator(".line.counselor .text").first().textContent();
  await page.waitForSelector(".line.student:not(.interim)", { timeout: CALL_TIMEOUT_MS });
  seen.student = await page.locator(".line.student:not(.interim) .text").first().textContent();

  // A network blip while the counselor is answering: the transcript socket drops; the page says
  // it is reconnecting, and comes back.
  await page.evaluate(() => window.__sockets.at(-1).socket.close());
  await page.waitForSelector('.link-state[data-connection="reconnecting"]', { timeout: 5_000 });
  seen.reconnectingSays = (await page.locator(".link-state").textContent()).trim();
  await page.waitForSelector('.link-state[data-connection="live"]', { timeout: 15_000 });
  await page.waitForFunction(() => document.querySelectorAll(".line.counselor:not(.interim)").length >= 2, null, { timeout: CALL_TIMEOUT_MS });
  seen.reply = await page.locator(".line.counselor .text").nth(1).textContent();
  seen.orbMoves = await page.evaluate(() => window.__moves);
  seen.sockets = await page.evaluate(() => window.__sockets.map(({ url, finals }) => ({ after: new URL(url).searchParams.get("after"), finals })));
  seen.shownLines = await page.locator(".transcript .line:not(.interim)").evaluateAll((lines) => lines.map((l) => Number(l.dataset.sequence)));
  await screenshot(page, "desktop-voice-call");
  await checkAccessibility(page, "the voice call");

  // Captions first: the transcript becomes larger than the call visual, and back.
  await tabTo(page, page.getByRole("button", { name: "Captions first" }), "the Captions first switch");
  await page.keyboard.press("Enter");
  seen.captionsFirst = await page.evaluate(() => {
    const transcript = document.querySelector(".captions").getBoundingClientRect();
    const stage = document.querySelector(".stage").getBoundingClientRect();
    const line = parseFloat(getComputedStyle(document.querySelector(".transcript .line")).fontSize);
    return { pressed: document.querySelector(".captions-toggle").getAttribute("aria-pressed"), larger: transcript.width > 1.5 * stage.width, first: transcript.left < stage.left, lineFontPx: line };
  });
  await screenshot(page, "desktop-captions-first");
  await checkAccessibility(page, "the voice call, captions first");
  await page.keyboard.press("Enter");

  // The crisis panel, as the server's crisis_alert shows it (delivered here through the page's
  // own socket; the server's side of a crisis is crisis_in_a_call.rs's): it takes focus and
  // stays, across pages, until the student closes it.
  await page.evaluate(() => window.__sockets.at(-1).socket.dispatchEvent(new MessageEvent("message", {
    data: JSON.stringify({ type: "crisis_alert", level: "crisis", resources: { lifeline: "988 Suicide & Crisis Lifeline", call_or_text: "988", chat: "https://988lifeline.org", emergency: "911" } }),
  })));
  seen.crisisFocused = await page.evaluate(() => {
    const panel = document.getElementById("crisis");
    return !panel.hidden && panel.contains(document.activeElement);
  });
  await screenshot(page, "desktop-crisis");
  await checkAccessibility(page, "the crisis panel");

  await tabTo(page, page.getByRole("button", { name: "End session" }), "the End session button");
  await page.keyboard.press("Enter");
  await page.waitForSelector(".detail-head", { timeout: 15_000 });
  seen.title = await page.locator(".detail-head h1").textContent();
  seen.history = await page.locator(".transcript .line").allTextContents();

  // The rating asked after the call: 4 of 5 with a comment, then shown on the page and in the list.
  // With the keyboard: focus starts on the first score, the arrow keys move it to 4.
  const dialog = page.locator("dialog.rating-dialog[open]");
  await dialog.waitFor({ timeout: 15_000 });
  await screenshot(page, "desktop-rating");
  await checkAccessibility(page, "the rating dialog");
  for (let i = 0; i < 3; i++) await page.keyboard.press("ArrowRight");
  await tabTo(page, dialog.locator("textarea[name=comment]"), "the rating's comment");
  await page.keyboard.type(RATING_COMMENT);
  await tabTo(page, dialog.getByRole("button", { name: "Submit rating" }), "the Submit rating button");
  await page.keyboard.press("Enter");
  await dialog.waitFor({ state: "detached", timeout: 15_000 });
  seen.rating = (await page.locator(".rating-summary").textContent()).trim();
  seen.crisisStayed = await page.locator("#crisis").isVisible();
  await tabTo(page, page.getByRole("button", { name: "Close crisis resources" }), "the crisis panel's Close button");
  await page.keyboard.press("Enter");
  seen.crisisClosed = await page.locator("#crisis").isHidden();
  await screenshot(page, "desktop-session");
  await checkAccessibility(page, "the session page");
  // What was stored, to compare with what the call page showed.
  seen.storedLines = await page.evaluate(async () => {
    const id = location.hash.match(/sessions\/([^?]+)/)[1];
    const detail = await (await fetch(`/api/v1/sessions/${id}`)).json();
    return detail.messages.map((m) => m.sequence);
  });
  // The session page names the call's connection quality in words, when the server graded it.
  seen.storedQuality = await page.evaluate(async () => {
    const id = location.hash.match(/sessions\/([^?]+)/)[1];
    return (await (await fetch(`/api/v1/sessions/${id}`)).json()).connection_quality;
  });
  await page.reload();
  await page.waitForSelector(".detail-head p.muted", { timeout: 15_000 });
  seen.sessionLine = (await page.locator(".detail-head p.muted").first().textContent()).trim();
  await tabTo(page, page.getByRole("link", { name: "My sessions" }), "the My sessions link");
  await page.keyboard.press("Enter");
  await page.waitForSelector("tr.row td.rating", { timeout: 15_000 });
  seen.historyRating = (await page.locator("tr.row td.rating").first().textContent()).trim();
  await screenshot(page, "desktop-history");
  await checkAccessibility(page, "the history");

  // The acceptance is the server's, not the browser's: a fresh page with no stored state is not
  // asked again.
  await page.evaluate(() => localStorage.clear());
  await page.goto(baseUrl);
  await page.waitForSelector(".counselor button:not([disabled])", { timeout: 15_000 });
  seen.acceptedOnce = (await page.locator(".notice-card").count()) === 0;

  // On a phone-sized screen, with reduced motion asked for.
  const phone = await browser.newContext({ viewport: { width: 390, height: 844 }, reducedMotion: "reduce" });
  const small = await phone.newPage();
  await small.addInitScript(watchLayoutShifts);
  small.on("pageerror", (error) => console.error(`[page error, phone] ${error}`));
  small.on("console", (message) => {
    if (/Content Security Policy/i.test(message.text())) refused.push(message.text());
  });
  const onPhone = async (where, name) => {
    await screenshot(small, `phone-${name}`);
    await checkFits(small, `${where} on a phone`);
    await checkAccessibility(small, `${where} on a phone`);
  };
  await small.goto(baseUrl);
  await small.waitForSelector("input[name=username]");
  await onPhone("the sign-in page", "sign-in");
  // With the keyboard alone on the phone too, each control reached with Tab, ring showing.
  await tabTo(small, small.locator("input[name=username]"), "the username field on a phone");
  await small.keyboard.type(username);
  await tabTo(small, small.locator("input[name=password]"), "the password field on a phone");
  await small.keyboard.type(password);
  await tabTo(small, small.locator("button[type=submit]"), "the sign-in button on a phone");
  await small.keyboard.press("Enter");
  await small.waitForSelector(".counselor button:not([disabled])", { timeout: 15_000 });
  await onPhone("the dashboard", "dashboard");
  const videoCall = small.locator(".counselor", { hasText: "Health" }).getByRole("button", { name: "Video call" });
  await tabTo(small, videoCall, "the Health counselor's Video call button on a phone");
  await small.keyboard.press("Enter");
  // The avatar keeps still (no mouth, no blink) while the counselor greets; a ring shows speech.
  await small.waitForSelector("svg.avatar", { timeout: 15_000 });
  await small.evaluate(() => {
    window.__moves = 0;
    window.__spoke = false;
    const face = document.querySelector("svg.avatar");
    new MutationObserver((changes) => {
      for (const change of changes) {
        if (change.attributeName === "class") window.__spoke ||= face.classList.contains("speaking");
        else window.__moves += 1;
      }
    }).observe(face, { attributes: true, subtree: true, attributeFilter: ["ry", "rx", "cx", "cy", "transform", "class"] });
  });
  await small.waitForSelector(".line.counselor:not(.interim)", { timeout: CALL_TIMEOUT_MS });
  seen.phoneCall = await small.evaluate(() => {
    const box = (node) => node.getBoundingClientRect();
    const button = (name) => box([...document.querySelectorAll(".call-controls button")].find((b) => b.textContent === name));
    const transcript = box(document.querySelector(".transcript"));
    return {
      avatarMoves: window.__moves, spoke: window.__spoke, height: innerHeight,
      muteTop: Math.round(button("Mute").top), endTop: Math.round(button("End session").top), endBottom: Math.round(button("End session").bottom),
      controlsTop: Math.round(box(document.querySelector(".call-controls")).top),
      transcript: { width: Math.round(transcript.width), height: Math.round(transcript.height), bottom: Math.round(transcript.bottom) },
      lineFontPx: parseFloat(getComputedStyle(document.querySelector(".transcript .line")).fontSize),
    };
  });
  await onPhone("the video call", "video-call");
  await tabTo(small, small.getByRole("button", { name: "End session" }), "End session on a phone");
  await small.keyboard.press("Enter");
  const phoneDialog = small.locator("dialog.rating-dialog[open]");
  await phoneDialog.waitFor({ timeout: 15_000 });
  await onPhone("the rating dialog", "rating");
  await tabTo(small, phoneDialog.getByRole("button", { name: "Skip" }), "the rating dialog's Skip on a phone");
  await small.keyboard.press("Enter");
  await phoneDialog.waitFor({ state: "detached", timeout: 15_000 });
  await onPhone("the session page", "session");
  await tabTo(small, small.getByRole("link", { name: "My sessions" }), "the My sessions link on a phone");
  await small.keyboard.press("Enter");
  await small.waitForSelector("tr.row", { timeout: 15_000 });
  await onPhone("the history", "history");
  await phone.close();
  seen.refusedByPolicy = [...refused];
  // And the policy does its job: script injected into the page as markup does not run.
  seen.injectedScriptRan = await page.evaluate(() => {
    const script = document.createElement("script");
    script.textContent = "window.__injectedScriptRan = true";
    document.body.append(script);
    return window.__injectedScriptRan === true;
  });
  console.log(JSON.stringify(seen));

  if (seen.refusedByPolicy.length) problems.push(`the page broke the Content-Security-Policy:\n${seen.refusedByPolicy.join("\n")}`);
  if (seen.injectedScriptRan) problems.push("an inline script injected into the page ran: the policy allows inline scripts");
  if (!seen.greeting || !/counselor|wellness/i.test(seen.greeting)) problems.push(`unexpected greeting: ${seen.greeting}`);
  if (!seen.student || seen.student.trim().length < 3) problems.push("the student's speech was not transcribed");
  if (!seen.reply || seen.reply.trim().length < 3) problems.push("the counselor did not answer");
  if (seen.notice.length < 5) problems.push(`the first-visit notice has ${JSON.stringify(seen.notice)}`);
  if (!seen.checkboxBesideLabel) problems.push("the notice's checkbox is not beside its label");
  if (!seen.acceptedOnce) problems.push("the notice was asked again after it was accepted");
  if (seen.icons.length !== 6 || new Set(seen.icons).size !== 6 || seen.icons.some((i) => !i || i === "chat")) problems.push(`the counselors' icons are ${JSON.stringify(seen.icons)}`);
  const u = seen.unreachable;
  if (!/cannot be reached/.test(u.says) || /capacity|CAPACITY|503/.test(u.says + u.status)) problems.push(`when the counselor cannot be reached the page says ${JSON.stringify(u)}`);
  if (seen.storedQuality && !seen.sessionLine.includes(`${seen.storedQuality} connection`)) problems.push(`the session page says ${JSON.stringify(seen.sessionLine)}; the connection was ${seen.storedQuality}`);
  if (seen.title !== "Health · voice") problems.push(`the saved session is titled ${JSON.stringify(seen.title)}`);
  if (seen.history.length < 3) problems.push(`the saved transcript has ${seen.history.length} lines`);
  if (!seen.rating.includes("4/5") || !seen.rating.includes(RATING_COMMENT)) problems.push(`the session page shows the rating as ${JSON.stringify(seen.rating)}`);
  if (!(seen.orbMoves > 0)) problems.push("the orb did not move with the counselor's voice");
  const c = seen.captionsFirst;
  if (c.pressed !== "true" || !c.larger || !c.first || !(c.lineFontPx >= 20)) problems.push(`captions first did not put a larger transcript first: ${JSON.stringify(c)}`);
  // After the blip: the new socket resumed after the last line the old one delivered, resent
  // none of them, and the page showed every stored line up to its last one, once each.
  const [before, after] = seen.sockets;
  if (seen.sockets.length !== 2 || after.after !== String(before.finals.at(-1))) problems.push(`the transcript socket did not resume after its last line: ${JSON.stringify(seen.sockets)}`);
  else if (after.finals.some((n) => before.finals.includes(n))) problems.push(`the reconnected socket resent lines: ${JSON.stringify(seen.sockets)}`);
  if (!/reconnecting/i.test(seen.reconnectingSays)) problems.push(`while reconnecting the page says ${JSON.stringify(seen.reconnectingSays)}`);
  const upToLastShown = seen.storedLines.filter((n) => n <= Math.max(...seen.shownLines));
  if (new Set(seen.shownLines).size !== seen.shownLines.length) problems.push(`a line was shown twice: ${JSON.stringify(seen.shownLines)}`);
  if (JSON.stringify([...seen.shownLines].sort((a, b) => a - b)) !== JSON.stringify(upToLastShown)) problems.push(`the call page showed lines ${JSON.stringify(seen.shownLines)}, the session has ${JSON.stringify(seen.storedLines)}`);
  if (!seen.crisisFocused) problems.push("the crisis panel did not take focus when it appeared");
  if (!seen.crisisStayed || !seen.crisisClosed) problems.push(`the crisis panel did not stay until closed (stayed: ${seen.crisisStayed}, closed: ${seen.crisisClosed})`);
  const p = seen.phoneCall;
  if (p.avatarMoves !== 0 || !p.spoke) problems.push(`with reduced motion the avatar moved ${p.avatarMoves} times (spoke: ${p.spoke})`);
  if (p.muteTop < 0.8 * p.height || p.endTop < 0.8 * p.height || p.endBottom > p.height) problems.push(`on a phone, mute and end are not at the bottom of the screen: ${JSON.stringify(p)}`);
  if (p.transcript.width < 300 || p.transcript.height < 200 || p.transcript.bottom > p.controlsTop || p.lineFontPx < 16) problems.push(`on a phone, the transcript is not readable: ${JSON.stringify(p)}`);
  if (seen.historyRating !== "4/5") problems.push(`the history shows the rating as ${JSON.stringify(seen.historyRating)}`);
  if (problems.length) {
    console.error(problems.join("\n"));
    process.exit(1);
  }
} catch (error) {
  console.log(JSON.stringify(seen));
  console.error(`the visit failed: ${error.message}`);
  if (problems.length) console.error(problems.join("\n"));
  process.exit(1);
} finally {
  await browser.close();
}
