// Opens dashboard pages in headless Chromium, in light and dark mode, on a desktop and a
// phone viewport, saves full-page screenshots and prints what a visitor's browser noticed.
//
// Usage: node dashboard.mjs CONFIG_JSON, with CONFIG_JSON = {tracker, pages: [{name, target}],
// outDir}. Prints one JSON array on stdout; tests/browser.rs checks it.

import fs from "node:fs";
import path from "node:path";
import { chromium } from "playwright-core";

const { tracker, pages, outDir } = JSON.parse(process.argv[2]);
const watchdog = setTimeout(() => {
  console.error("dashboard.mjs: still running after 60 s, giving up");
  process.exit(3);
}, 60_000);

fs.mkdirSync(outDir, { recursive: true });
const browser = await chromium.launch({
  executablePath: process.env.OXITRAFFIC_TEST_CHROMIUM || "/usr/bin/chromium",
  headless: true,
  args: [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
  ],
  // launch() gives the browser a fresh, temporary profile of its own.
});

const viewports = { desktop: { width: 1200, height: 900 }, phone: { width: 390, height: 844 } };
const results = [];
for (const { name, target } of pages) {
  for (const scheme of ["light", "dark"]) {
    for (const [device, viewport] of Object.entries(viewports)) {
      const context = await browser.newContext({ viewport, colorScheme: scheme, javaScriptEnabled: false });
      const page = await context.newPage();
      const consoleErrors = [];
      page.on("console", (message) => message.type() === "error" && consoleErrors.push(message.text()));
      const failedRequests = [];
      page.on("requestfailed", (request) => failedRequests.push(request.url()));
      const response = await page.goto(tracker + target, { waitUntil: "load" });
      const facts = await page.evaluate(() => ({
        title: document.title,
        background: getComputedStyle(document.body).backgroundColor,
        text: getComputedStyle(document.body).color,
        barFill: (() => {
          const bar = document.querySelector("svg.chart .bar");
          return bar ? getComputedStyle(bar).fill : null;
        })(),
        charts: document.querySelectorAll("svg.chart").length,
        // The page fits the viewport: nothing scrolls sideways on a phone.
        overflowX: document.documentElement.scrollWidth - window.innerWidth,
        stylesheetLoaded: [...document.styleSheets].some((sheet) => sheet.cssRules.length > 0),
      }));
      const file = path.join(outDir, `${name}-${scheme}-${device}.png`);
      await page.screenshot({ path: file, fullPage: true });
      results.push({ name, scheme, device, status: response.status(), file, consoleErrors, failedRequests, ...facts });
      await context.close();
    }
  }
}
await browser.close();
clearTimeout(watchdog);
console.log(JSON.stringify(results));
