// axe-core on a page as it is now, shared by the browser tests.
//
// axe-core's source comes from node_modules (no network). The pages' Content-Security-Policy
// refuses inline script, so it is evaluated through the DevTools protocol rather than added as
// a tag.

import { readFileSync } from "node:fs";
import { createRequire } from "node:module";

const AXE_SOURCE = readFileSync(createRequire(import.meta.url).resolve("axe-core/axe.min.js"), "utf8");

// The serious and critical violations on `page`, each as one sentence naming `where`.
export async function accessibilityViolations(page, where) {
  if (!(await page.evaluate(() => Boolean(window.axe)))) await page.evaluate(AXE_SOURCE);
  const found = await page.evaluate(async () => {
    const result = await window.axe.run(document, { resultTypes: ["violations"] });
    return result.violations.filter((v) => v.impact === "serious" || v.impact === "critical")
      .map((v) => `${v.id} (${v.impact}): ${v.help}; at ${v.nodes.slice(0, 3).map((n) => n.target.join(" ")).join(", ")}`);
  });
  return found.map((v) => `axe on ${where}: ${v}`);
}
