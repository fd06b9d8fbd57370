// Opens dashboard pages in headless Chromium (JavaScript off, as for a reader who disabled
// it), in light and dark mode, on a desktop and a phone viewport, saves full-page screenshots
// and prints what the browser noticed.
//
// Usage: node dashboard.mjs CONFIG_JSON, with CONFIG_JSON = {tracker, pages: [{name, target}],
// outDir}. Prints one JSON array on stdout; tests/screenshots.rs checks it.

import fs from "node:fs";
import path from "node:path";
import { chromium } from "playwright-core";

const { tracker, pages, outDir } = JSON.parse(process.argv[2]);
const watchdog = setTimeout(() => {
  console.error("dashboard.mjs: still running after 100 s, giving up");
  process.exit(3);
}, 100_000);

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

const viewports = {
  desktop: { viewport: { width: 1200, height: 900 } },
  phone: { viewport: { width: 390, height: 844 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true },
};
const results = [];
for (const { name, target } of pages) {
  for (const scheme of ["light", "dark"]) {
    for (const [device, options] of Object.entries(viewports)) {
      const context = await browser.newContext({ ...options, colorScheme: scheme, javaScriptEnabled: false });
      const page = await context.newPage();
      const consoleErrors = [];
      page.on("console", (message) => message.type() === "error" && consoleErrors.push(message.text()));
      const failedRequests = [];
      page.on("requestfailed", (request) => failedRequests.push(request.url()));
      page.on("response", (response) => response.status() >= 400 && failedRequests.push(`${response.status()} ${response.url()}`));
      const response = await page.goto(tracker + target, { waitUntil: "load" });
      // Evaluated by the test harness over DevTools: the page itself runs no script.
      const facts = await page.evaluate(() => {
        const style = (selector, property) => {
          const element = document.querySelector(selector);
          return element ? getComputedStyle(element)[property] : null;
        };
        const scroller = document.querySelector("#daily .scroller");
        const plot = scroller && scroller.querySelector("svg.plot");
        let daily = null;
        if (plot) {
          const view = scroller.getBoundingClientRect();
          const drawn = plot.getBoundingClientRect();
          const labels = [...plot.querySelectorAll("text.axis")];
          const last = labels.length ? labels[labels.length - 1].getBoundingClientRect() : null;
          const within = (x) => x >= view.left - 1 && x <= view.right + 1;
          daily = {
            scrollable: scroller.scrollWidth > scroller.clientWidth,
            scrollLeft: scroller.scrollLeft,
            plotWidth: Math.round(drawn.width),
            viewWidth: Math.round(view.width),
            // Columns fill the plot from edge to edge: its right edge is the last column's.
            lastColumnVisible: within(drawn.right - 2),
            firstColumnVisible: within(drawn.left + 2),
            lastLabel: labels.length ? labels[labels.length - 1].textContent : null,
            lastLabelVisible: last !== null && within(last.left) && within(last.right),
          };
        }
        return {
          title: document.title,
          background: getComputedStyle(document.body).backgroundColor,
          text: getComputedStyle(document.body).color,
          barFill: style(".chart .visits", "fill"),
          charts: document.querySelectorAll("svg.plot").length,
          tableRows: document.querySelectorAll("table.pages tbody tr").length,
          daily,
          // The page fits the viewport: nothing scrolls sideways on a phone.
          overflowX: document.documentElement.scrollWidth - window.innerWidth,
          stylesheetLoaded: [...document.styleSheets].some((sheet) => sheet.cssRules.length > 0),
        };
      });
      // Show one referrer expanded, as a reader would open it (<details>: no script involved).
      const summary = await page.$("#referrers summary");
      if (summary) await summary.click();
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
