// Drives e2e/webrtc-call.html in headless Chromium with a WAV file as the microphone and checks
// that the bot's audio came back.
//
//   node e2e/webrtc-call.mjs <page-url> <microphone.wav> <expected-bot-tone-hz>
//
// Prints the page's measurements as one JSON line; exits non-zero, saying why, on failure.
// CHROMIUM_PATH overrides the browser (default /usr/bin/chromium).

import { existsSync } from "node:fs";
import { chromium } from "playwright-core";

const [pageUrl, microphoneWav, toneHzArg] = process.argv.slice(2);
if (!pageUrl || !microphoneWav || !toneHzArg) {
  console.error("usage: node webrtc-call.mjs <page-url> <microphone.wav> <expected-bot-tone-hz>");
  process.exit(2);
}
const expectedToneHz = Number(toneHzArg);
const executablePath = process.env.CHROMIUM_PATH || "/usr/bin/chromium";
if (!existsSync(executablePath)) {
  console.error(`Chromium not found at ${executablePath}: install the chromium package or set CHROMIUM_PATH`);
  process.exit(3);
}

// The bot must be audible for at least this long, and at its tone's pitch. The browser's own
// analyser resolves about 12 Hz per bin.
const MIN_AUDIBLE_MS = 500;
const TONE_TOLERANCE_HZ = 30;
const PAGE_TIMEOUT_MS = 45_000;

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

const problems = [];
try {
  const page = await browser.newPage();
  page.on("console", (message) => console.error(`[page ${message.type()}] ${message.text()}`));
  page.on("pageerror", (error) => console.error(`[page error] ${error}`));
  await page.goto(pageUrl);
  const handle = await page.waitForFunction(() => window.callResult, null, { timeout: PAGE_TIMEOUT_MS });
  const result = await handle.jsonValue();
  console.log(JSON.stringify(result));

  if (result.error) {
    problems.push(`the call failed in the page: ${result.error}`);
  } else {
    if (result.audibleMs < MIN_AUDIBLE_MS) {
      problems.push(`bot audio was audible for ${result.audibleMs} ms (max RMS ${result.maxRms}), expected at least ${MIN_AUDIBLE_MS} ms`);
    }
    if (result.dominantHz === null || Math.abs(result.dominantHz - expectedToneHz) > TONE_TOLERANCE_HZ) {
      problems.push(`bot audio peaked at ${result.dominantHz} Hz, expected ${expectedToneHz} Hz`);
    }
  }
} catch (error) {
  problems.push(`driving the page failed: ${error}`);
} finally {
  await browser.close();
}

if (problems.length > 0) {
  for (const problem of problems) console.error(`FAIL: ${problem}`);
  process.exit(1);
}
