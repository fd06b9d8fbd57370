// Drives headless Chromium through oxitraffic's counting flow for tests/browser.rs.
//
// Usage: node flow.mjs CONFIG_JSON (see `config` below). It visits pages of the fake tracked
// site the way people do, all scenarios at once in separate tabs of one fresh profile, and
// prints one JSON object on stdout: what each tab saw and timed, every tracker response the
// browser received, and the cookies the profile holds at the end. It checks nothing itself:
// the Rust test compares this with what the tracker stored in PostgreSQL.
//
// Chromium is the system's (/usr/bin/chromium, or OXITRAFFIC_TEST_CHROMIUM): Playwright's
// own browser downloads are not available everywhere this runs.

import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { chromium } from "playwright-core";

const config = JSON.parse(process.argv[2] ?? "null");
if (!config) {
  console.error("usage: node flow.mjs CONFIG_JSON");
  process.exit(2);
}
const {
  tracker, // tracker origin, e.g. http://127.0.0.1:PORT
  site, // tracked site origin
  elsewhere, // a page of another site, where visitors go when they leave
  referring, // a page of another site that links to `paths.landing`
  paths, // { stay, next, bounce, spa, spaNext, landing, comeBack }
  stayMs, // how long to stay on pages that must be counted
  bounceMs, // how long to stay on the page that must not be counted
} = config;
const executablePath = process.env.OXITRAFFIC_TEST_CHROMIUM || "/usr/bin/chromium";

// A hung browser must end the test with an error, not hold it until cargo's timeout.
const watchdog = setTimeout(() => {
  console.error("flow.mjs: still running after 60 s, giving up");
  process.exit(3);
}, 60_000);

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const isTracker = (url) => url.startsWith(tracker + "/");
const trackerPath = (url) => url.slice(tracker.length);

const profile = fs.mkdtempSync(path.join(os.tmpdir(), "oxitraffic-chromium-"));
const context = await chromium.launchPersistentContext(profile, {
  executablePath,
  headless: true,
  // Playwright turns the back/forward cache off; desktop Chrome has it on, and it is the one
  // way a headless page becomes hidden and visible again (scenario `comeBack`).
  ignoreDefaultArgs: ["--disable-back-forward-cache"],
  args: [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
  ],
});

const tabs = new Map();
const tabName = (page) => tabs.get(page) ?? null;

// Every tracker response the browser received, in order, with its raw headers (allHeaders),
// which is where a Set-Cookie would show up; and every tracker request reported as failed.
const exchanges = [];
const failures = [];
const responded = new WeakSet();
const pending = [];
context.on("response", (response) => {
  if (!isTracker(response.url())) return;
  const request = response.request();
  responded.add(request);
  const tab = tabName(response.frame().page());
  pending.push(
    response
      .allHeaders()
      .catch(() => null)
      .then((headers) =>
        exchanges.push({
          tab,
          method: request.method(),
          target: trackerPath(response.url()),
          status: response.status(),
          headersRead: headers != null,
          setCookie: headers?.["set-cookie"] ?? null,
          contentType: headers?.["content-type"] ?? null,
        }),
      ),
  );
});
// DevTools reports keepalive requests (fetch with keepalive, sendBeacon) as aborted once the
// page hands them over or unloads, even when they were answered or are still on their way;
// `responded` tells whether the answer had arrived.
context.on("requestfailed", (request) => {
  if (!isTracker(request.url())) return;
  let tab = null;
  try {
    tab = tabName(request.frame().page());
  } catch {
    // Requests of a document that has gone may have no frame any more.
  }
  failures.push({
    tab,
    method: request.method(),
    target: trackerPath(request.url()),
    failure: request.failure()?.errorText ?? "failed",
    responded: responded.has(request),
  });
});

const pageErrors = [];

async function newTab(name) {
  const page = await context.newPage();
  tabs.set(page, name);
  page.on("pageerror", (error) => pageErrors.push({ tab: name, error: String(error) }));
  return page;
}

// Resolves with the tracker's answer to the next request whose target starts with `prefix`.
function trackerResponse(page, prefix) {
  const matches = (r) => isTracker(r.url()) && trackerPath(r.url()).startsWith(prefix);
  return page.waitForResponse(matches, { timeout: 15_000 });
}

// What a page of the tracked site keeps in the browser, and where the visitor came from.
const inspect = (page) =>
  page.evaluate(() => ({
    path: location.pathname,
    referrer: document.referrer,
    visibility: document.visibilityState,
    cookie: document.cookie,
    localStorage: localStorage.length,
    sessionStorage: sessionStorage.length,
  }));

// Opens `url` and waits until count.js has registered the page; returns when the page loaded.
async function open(page, url) {
  const registered = trackerResponse(page, "/register?");
  const started = Date.now();
  await page.goto(url, { waitUntil: "load" });
  const loaded = Date.now();
  const register = await registered;
  return { started, loaded, registerStatus: register.status() };
}

// Follows a link (or any action that navigates) and waits for the next page to load.
async function navigate(page, action, url) {
  await Promise.all([page.waitForURL(url, { waitUntil: "load" }), action()]);
}

async function leave(page) {
  await page.goto(elsewhere, { waitUntil: "load" });
}

// a + same-site referrer: stay past the delay, then follow a link to another page of the
// site (pagehide on the first), stay there past the delay too, then leave the site.
async function stay() {
  const page = await newTab("stay");
  const first = await open(page, site + paths.stay);
  const counted = await trackerResponse(page, "/post-sleep/");
  const firstInfo = await inspect(page);
  await sleep(Math.max(0, first.loaded + stayMs - Date.now()));
  const left = Date.now();
  const registered = trackerResponse(page, "/register?");
  await navigate(page, () => page.click("#home"), site + paths.next);
  const arrived = Date.now();
  const nextRegister = await registered;
  const nextCounted = await trackerResponse(page, "/post-sleep/");
  const nextInfo = await inspect(page);
  await sleep(Math.max(0, arrived + stayMs - Date.now()));
  const nextLeft = Date.now();
  await leave(page);
  const gone = Date.now();
  return {
    first: {
      ...firstInfo,
      registerStatus: first.registerStatus,
      postSleepStatus: counted.status(),
      stayedMs: left - first.loaded,
      stayedAtMostMs: arrived - first.started,
    },
    next: {
      ...nextInfo,
      registerStatus: nextRegister.status(),
      postSleepStatus: nextCounted.status(),
      stayedMs: nextLeft - arrived,
      stayedAtMostMs: gone - left,
    },
  };
}

// b: leave long before the delay.
async function bounce() {
  const page = await newTab("bounce");
  const visit = await open(page, site + paths.bounce);
  const info = await inspect(page);
  await sleep(Math.max(0, visit.loaded + bounceMs - Date.now()));
  const left = Date.now();
  await leave(page);
  return { ...info, registerStatus: visit.registerStatus, stayedMs: left - visit.loaded };
}

// The target of the next page-left beacon a page sends, or null if none comes soon.
function pageLeftSent(page) {
  const matches = (r) => isTracker(r.url()) && trackerPath(r.url()).startsWith("/page-left/");
  return page
    .waitForRequest(matches, { timeout: 5_000 })
    .then((r) => trackerPath(r.url()))
    .catch(() => null);
}

// c: a single-page app changes its path with history.pushState, as its router would; then
// the visitor presses Back (popstate) and leaves at once.
async function spa() {
  const page = await newTab("spa");
  const first = await open(page, site + paths.spa);
  const counted = await trackerResponse(page, "/post-sleep/");
  const firstInfo = await inspect(page);
  await sleep(Math.max(0, first.loaded + stayMs - Date.now()));
  let registered = trackerResponse(page, "/register?");
  let pageLeft = pageLeftSent(page);
  const nextCounting = trackerResponse(page, "/post-sleep/");
  const pushed = Date.now();
  await page.evaluate((next) => history.pushState({}, "", next), paths.spaNext);
  const nextRegister = await registered;
  const firstLeft = await pageLeft;
  const nextCounted = await nextCounting;
  const nextInfo = await inspect(page);
  await sleep(Math.max(0, pushed + stayMs - Date.now()));
  registered = trackerResponse(page, "/register?");
  pageLeft = pageLeftSent(page);
  const back = Date.now();
  await page.goBack();
  const backRegister = await registered;
  const nextLeft = await pageLeft;
  const backInfo = await inspect(page);
  const left = Date.now();
  await leave(page);
  return {
    first: {
      ...firstInfo,
      registerStatus: first.registerStatus,
      postSleepStatus: counted.status(),
      stayedMs: pushed - first.loaded,
      pageLeftTarget: firstLeft,
    },
    next: {
      ...nextInfo,
      registerStatus: nextRegister.status(),
      postSleepStatus: nextCounted.status(),
      stayedMs: back - pushed,
      pageLeftTarget: nextLeft,
    },
    back: {
      ...backInfo,
      registerStatus: backRegister.status(),
      registerTarget: trackerPath(backRegister.url()),
      stayedMs: left - back,
    },
  };
}

// e: a visitor follows a link from another site whose referrer policy lets the full URL,
// query included, through to document.referrer.
async function referred() {
  const page = await newTab("referred");
  await page.goto(referring, { waitUntil: "load" });
  const registered = trackerResponse(page, "/register?");
  await navigate(page, () => page.click("#link"), site + paths.landing);
  const arrived = Date.now();
  const register = await registered;
  const counted = await trackerResponse(page, "/post-sleep/");
  const info = await inspect(page);
  const left = Date.now();
  await leave(page);
  return {
    ...info,
    registerStatus: register.status(),
    postSleepStatus: counted.status(),
    postSleepTarget: trackerPath(counted.url()),
    stayedMs: left - arrived,
  };
}

// Hidden time is not counted: stay past the delay, leave for another site (the page goes to
// the back/forward cache: pagehide, then hidden), come back with Back (visible again, the
// same document, no new visit), stay a little more and leave again.
async function comeBack() {
  const page = await newTab("comeBack");
  const visit = await open(page, site + paths.comeBack);
  const counted = await trackerResponse(page, "/post-sleep/");
  const info = await inspect(page);
  await page.evaluate(() => (window.sameDocument = true));
  await sleep(Math.max(0, visit.loaded + stayMs * 0.75 - Date.now()));
  const left = Date.now();
  await leave(page);
  await sleep(Math.max(0, left + stayMs * 0.75 - Date.now()));
  const back = Date.now();
  // A page restored from the cache fires no load event.
  await page.goBack({ waitUntil: "commit" });
  const restored = await page.evaluate(() => window.sameDocument === true);
  await sleep(Math.max(0, back + stayMs / 2 - Date.now()));
  const leftAgain = Date.now();
  await leave(page);
  return {
    ...info,
    registerStatus: visit.registerStatus,
    postSleepStatus: counted.status(),
    restored,
    visibleMs: left - visit.loaded + (leftAgain - back),
    hiddenMs: back - left,
  };
}

let result;
try {
  const [stayResult, bounceResult, spaResult, referredResult, comeBackResult] = await Promise.all([
    stay(),
    bounce(),
    spa(),
    referred(),
    comeBack(),
  ]);
  // Beacons sent while a page unloads arrive a moment later; give them that moment before
  // the browser (and with it any request still in flight) goes away.
  await sleep(500);
  await Promise.all(pending);
  result = {
    browser: context.browser()?.version() ?? null,
    scenarios: {
      stay: stayResult,
      bounce: bounceResult,
      spa: spaResult,
      referred: referredResult,
      comeBack: comeBackResult,
    },
    exchanges,
    failures,
    pageErrors,
    cookies: await context.cookies(),
    trackerCookies: await context.cookies([tracker]),
  };
} finally {
  await context.close();
  fs.rmSync(profile, { recursive: true, force: true });
  clearTimeout(watchdog);
}
console.log(JSON.stringify(result));
