// Drives headless Chromium through oxitraffic's counting flow for tests/browser.rs.
//
// Usage: node flow.mjs CONFIG_JSON (see `config` below). It visits pages of the fake tracked
// site the way people do, in separate tabs, all at once after two short ones (the first page
// of the visitors scenario, then the bounce), and prints one JSON object on stdout: what each
// tab saw and timed, every tracker request and response the browsers made, what /api/live
// said while pages were open and after they were left, and the cookies the profiles hold at
// the end. It checks nothing itself: the Rust test compares this with what the tracker stored
// in PostgreSQL and what its API answers.
//
// Two browsers take part, each a fresh profile with its own HTTP cache, as two people would:
// the first runs every scenario; the second only visits the two pages of the visitors
// scenario, so the day has exactly two site visitors.
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
  framing, // a page of another site that embeds `paths.framed` in an invisible iframe
  // { stay, next, bounce, spa, spaNext, landing, comeBack, visitorsOne, visitorsTwo, offer,
  //   offerLong, live, gap, gapNext, framed }
  paths,
  campaignQuery, // the query `paths.offer` is opened with
  longCampaignQuery, // the query `paths.offerLong` is opened with
  delayMs, // how long count.js waits (visible) before it counts: min_delay_secs + 1
  stayMs, // how long to stay on pages that must be counted
  bounceMs, // how long to stay on the page that must not be counted
  holdMs, // how long the SPA-gap scenario holds the first post-sleep on its way
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

const tabs = new Map();
const tabName = (page) => tabs.get(page) ?? null;
// The tab a request belongs to; requests of a document that has gone may have no frame.
const tabOf = (request) => {
  try {
    return tabName(request.frame().page());
  } catch {
    return null;
  }
};

// Every tracker request the browsers sent and every response they received, in order, with
// the raw response headers (allHeaders), which is where a Set-Cookie would show up; and every
// tracker request reported as failed.
const requests = [];
const exchanges = [];
const failures = [];
const responded = new WeakSet();
const pending = [];
const pageErrors = [];

function watch(context, browser) {
  context.on("request", (request) => {
    if (!isTracker(request.url())) return;
    const target = trackerPath(request.url());
    requests.push({ browser, tab: tabOf(request), method: request.method(), target });
  });
  context.on("response", (response) => {
    if (!isTracker(response.url())) return;
    const request = response.request();
    responded.add(request);
    const tab = tabOf(request);
    pending.push(
      response
        .allHeaders()
        .catch(() => null)
        .then((headers) =>
          exchanges.push({
            browser,
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
    failures.push({
      browser,
      tab: tabOf(request),
      method: request.method(),
      target: trackerPath(request.url()),
      failure: request.failure()?.errorText ?? "failed",
      responded: responded.has(request),
    });
  });
}

const profiles = [];
async function launch(name) {
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), "oxitraffic-chromium-"));
  profiles.push(profile);
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
  watch(context, name);
  return context;
}

async function newTab(context, name) {
  const page = await context.newPage();
  tabs.set(page, name);
  page.on("pageerror", (error) => pageErrors.push({ tab: name, error: String(error) }));
  return page;
}

const targetIs = (target) => (r) => isTracker(r.url()) && trackerPath(r.url()) == target;
const targetStarts = (prefix) => (r) =>
  isTracker(r.url()) && trackerPath(r.url()).startsWith(prefix);

// Resolves with the tracker's answer to the next request whose target starts with `prefix`.
function trackerResponse(page, prefix) {
  return page.waitForResponse(targetStarts(prefix), { timeout: 15_000 }).catch((error) => {
    throw new Error(`tab ${tabName(page)}: no answer to ${prefix} came (${error.message})`);
  });
}

// The target of the next request a page sends whose target starts with `prefix` (a page-left
// beacon), or null if none comes within `timeout` ms.
function requestSent(page, prefix, timeout = 5_000) {
  return page
    .waitForRequest(targetStarts(prefix), { timeout })
    .then((r) => trackerPath(r.url()))
    .catch(() => null);
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

// Leaves at once, for pages that must be left before the delay: another site's page needs a
// new renderer process, which on a busy machine can keep the old page visible for seconds.
async function leaveAtOnce(page) {
  await page.goto("about:blank");
}

// a + same-site referrer: stay past the delay, then follow a link to another page of the
// site (pagehide on the first), stay there past the delay too, then leave the site.
async function stay(context) {
  const page = await newTab(context, "stay");
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

// b: leave long before the delay. It runs alone, before the other tabs open all at once: on a
// busy machine that rush alone can take the page past the delay before it is left.
async function bounce(context) {
  const page = await newTab(context, "bounce");
  // Waited for so that every page load's /visitor request is seen (see the Rust test).
  const visitor = trackerResponse(page, "/visitor");
  const visit = await open(page, site + paths.bounce);
  await visitor;
  const info = await inspect(page);
  await sleep(Math.max(0, visit.loaded + bounceMs - Date.now()));
  const left = Date.now();
  await leaveAtOnce(page);
  return {
    ...info,
    registerStatus: visit.registerStatus,
    stayedMs: left - visit.loaded,
    goneAfterMs: Date.now() - visit.started,
  };
}

// c: a single-page app changes its path with history.pushState, as its router would; then
// the visitor presses Back (popstate) and leaves at once.
async function spa(context) {
  const page = await newTab(context, "spa");
  const first = await open(page, site + paths.spa);
  const counted = await trackerResponse(page, "/post-sleep/");
  const firstInfo = await inspect(page);
  await sleep(Math.max(0, first.loaded + stayMs - Date.now()));
  let registered = trackerResponse(page, "/register?");
  let pageLeft = requestSent(page, "/page-left/");
  const nextCounting = trackerResponse(page, "/post-sleep/");
  const pushed = Date.now();
  await page.evaluate((next) => history.pushState({}, "", next), paths.spaNext);
  const nextRegister = await registered;
  const firstLeft = await pageLeft;
  const nextCounted = await nextCounting;
  const nextInfo = await inspect(page);
  await sleep(Math.max(0, pushed + stayMs - Date.now()));
  registered = trackerResponse(page, "/register?");
  pageLeft = requestSent(page, "/page-left/");
  const back = Date.now();
  await page.goBack();
  const backRegister = await registered;
  const nextLeft = await pageLeft;
  const backInfo = await inspect(page);
  const left = Date.now();
  await leaveAtOnce(page);
  const gone = Date.now();
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
      goneAfterMs: gone - back,
    },
  };
}

// The SPA gap: the visitor navigates with pushState while the first path's post-sleep is on
// its way (held here for `holdMs` at the network level, through the DevTools Fetch domain of
// this tab only, which leaves the HTTP cache on, unlike Playwright's routing). When the answer
// finally arrives, the old path must still report the visible time it had when the visitor
// moved on, under its own token; the new path is counted as usual.
async function spaGap(context) {
  const page = await newTab(context, "spaGap");
  const devtools = await context.newCDPSession(page);
  let first = true;
  const held = new Promise((resolve) =>
    devtools.on("Fetch.requestPaused", (event) => {
      const release = () =>
        devtools.send("Fetch.continueRequest", { requestId: event.requestId }).catch(() => {});
      if (first) {
        first = false;
        resolve({ target: trackerPath(event.request.url), at: Date.now(), release });
      } else release();
    }),
  );
  await devtools.send("Fetch.enable", { patterns: [{ urlPattern: `${tracker}/post-sleep/*` }] });
  const visit = await open(page, site + paths.gap);
  const info = await inspect(page);
  const hold = await held;
  const oldToken = hold.target.match(/^\/post-sleep\/(\d+)/)[1];
  const oldLeft = requestSent(page, `/page-left/${oldToken}/`, 15_000);
  const registered = trackerResponse(page, "/register?");
  const nextCounting = page.waitForResponse(
    (r) => targetStarts("/post-sleep/")(r) && trackerPath(r.url()) != hold.target,
    { timeout: 15_000 },
  );
  const answered = page.waitForResponse(targetIs(hold.target), { timeout: 15_000 });
  const pushed = Date.now();
  await page.evaluate((next) => history.pushState({}, "", next), paths.gapNext);
  const nextRegister = await registered;
  await sleep(Math.max(0, pushed + holdMs - Date.now()));
  const released = Date.now();
  await hold.release();
  const answer = await answered;
  const answeredAt = Date.now();
  const leftTarget = await oldLeft;
  const nextCounted = await nextCounting;
  await sleep(Math.max(0, pushed + delayMs + 500 - Date.now()));
  const left = Date.now();
  await leave(page);
  await devtools.detach().catch(() => {});
  return {
    ...info,
    registerStatus: visit.registerStatus,
    heldTarget: hold.target,
    heldAfterMs: hold.at - visit.loaded,
    stayedMs: pushed - visit.loaded,
    stayedAtMostMs: pushed - visit.started,
    releasedAfterMs: released - visit.loaded,
    answeredAfterMs: answeredAt - visit.loaded,
    postSleepStatus: answer.status(),
    pageLeftTarget: leftTarget,
    next: {
      registerStatus: nextRegister.status(),
      registerTarget: trackerPath(nextRegister.url()),
      postSleepStatus: nextCounted.status(),
      stayedMs: left - pushed,
    },
  };
}

// e: a visitor follows a link from another site whose referrer policy lets the full URL,
// query included, through to document.referrer.
async function referred(context) {
  const page = await newTab(context, "referred");
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
async function comeBack(context) {
  const page = await newTab(context, "comeBack");
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

// Campaigns: a page opened with campaign parameters (and others) is counted with them.
async function campaign(context, name, url) {
  const page = await newTab(context, name);
  const counting = trackerResponse(page, "/post-sleep/");
  const visit = await open(page, url);
  const info = await inspect(page);
  const counted = await counting;
  await leave(page);
  return {
    ...info,
    registerStatus: visit.registerStatus,
    postSleepStatus: counted.status(),
    postSleepTarget: trackerPath(counted.url()),
  };
}

// How many visitors /api/live shows on `path` right now (0 when it is not listed).
async function liveOn(path) {
  const response = await fetch(tracker + "/api/live");
  if (!response.ok) throw new Error(`/api/live answered ${response.status}`);
  const live = await response.json();
  return live.paths.find((p) => p.path == path)?.visitors ?? 0;
}

// Live: a page is listed while it is open, registered and then counted, and drops out once
// the visitor left it (its page-left beacon arrived).
async function live(context) {
  const page = await newTab(context, "live");
  const counting = trackerResponse(page, "/post-sleep/");
  const visit = await open(page, site + paths.live);
  const info = await inspect(page);
  const registered = await liveOn(paths.live);
  const counted = await counting;
  const whileCounted = await liveOn(paths.live);
  const left = Date.now();
  await leave(page);
  let afterLeaving;
  do {
    afterLeaving = await liveOn(paths.live);
    if (afterLeaving == 0) break;
    await sleep(100);
  } while (Date.now() - left < 5_000);
  return {
    ...info,
    registerStatus: visit.registerStatus,
    postSleepStatus: counted.status(),
    liveWhileRegistered: registered,
    liveWhileCounted: whileCounted,
    liveAfterLeaving: afterLeaving,
    droppedAfterMs: Date.now() - left,
  };
}

// Framing: a page of another site embeds a tracked page in an invisible iframe. The tracked
// page loads count.js and stays open past the delay, and nothing may reach the tracker.
async function framed(context) {
  const page = await newTab(context, "framing");
  const script = page.waitForResponse(targetIs("/count.js"), { timeout: 15_000 });
  await page.goto(framing, { waitUntil: "load" });
  const scriptStatus = (await script).status();
  const frame = page.frames().find((f) => f.url().startsWith(site + "/"));
  const inner = await frame.evaluate(() => ({
    path: location.pathname,
    visibility: document.visibilityState,
    framed: window.top !== window,
  }));
  await sleep(delayMs + 1_000);
  await leave(page);
  return { ...inner, scriptStatus, watchedMs: delayMs + 1_000 };
}

// Visitors, first step, before any other tab of this browser: the site's day marker comes
// with the answer to /visitor and stays in this browser's cache, so every later page of any
// tab is the same visitor.
async function firstVisit(context) {
  const page = await newTab(context, "visitors");
  const visitor = trackerResponse(page, "/visitor");
  const counting = trackerResponse(page, "/post-sleep/");
  const visit = await open(page, site + paths.visitorsOne);
  const visitorStatus = (await visitor).status();
  return { page, counting, registerStatus: visit.registerStatus, visitorStatus };
}

// Visitors, second step: the same browser stays until the first page is counted (so that
// what is counted does not depend on timing), then opens another page of the site.
async function secondPage(first) {
  const { page, counting } = first;
  const firstCounted = await counting;
  const visitor = trackerResponse(page, "/visitor");
  const nextCounting = trackerResponse(page, "/post-sleep/");
  const visit = await open(page, site + paths.visitorsTwo);
  const visitorStatus = (await visitor).status();
  const nextCounted = await nextCounting;
  await leave(page);
  return {
    registerStatus: visit.registerStatus,
    visitorStatus,
    postSleepStatuses: [firstCounted.status(), nextCounted.status()],
  };
}

// Visitors: another browser (a fresh profile) opens the same two pages, each until counted.
async function otherBrowser() {
  const context = await launch("second");
  try {
    const page = await newTab(context, "secondBrowser");
    const result = {};
    for (const [name, url] of [
      ["one", paths.visitorsOne],
      ["two", paths.visitorsTwo],
    ]) {
      const visitor = trackerResponse(page, "/visitor");
      const counting = trackerResponse(page, "/post-sleep/");
      const visit = await open(page, site + url);
      result[name] = {
        registerStatus: visit.registerStatus,
        visitorStatus: (await visitor).status(),
        postSleepStatus: (await counting).status(),
      };
    }
    await leave(page);
    await sleep(200);
    result.cookies = await context.cookies();
    return result;
  } finally {
    await context.close();
  }
}

let result, context;
try {
  context = await launch("first");
  const started = Date.now();
  const first = await firstVisit(context);
  const bounced = await bounce(context);
  const scenarios = await Promise.all([
    stay(context),
    spa(context),
    spaGap(context),
    referred(context),
    comeBack(context),
    campaign(context, "campaign", site + paths.offer + campaignQuery),
    campaign(context, "longCampaign", site + paths.offerLong + longCampaignQuery),
    live(context),
    framed(context),
    secondPage(first),
    otherBrowser(),
  ]);
  const names = [
    "stay",
    "spa",
    "spaGap",
    "referred",
    "comeBack",
    "campaign",
    "longCampaign",
    "live",
    "framed",
    "visitorsSecondPage",
    "secondBrowser",
  ];
  // Beacons sent while a page unloads arrive a moment later; give them that moment before
  // the browser (and with it any request still in flight) goes away.
  await sleep(500);
  await Promise.all(pending);
  const { page: _, counting: __, ...visitorsFirstPage } = first;
  result = {
    browser: context.browser()?.version() ?? null,
    tookMs: Date.now() - started,
    scenarios: {
      visitorsFirstPage,
      bounce: bounced,
      ...Object.fromEntries(names.map((name, i) => [name, scenarios[i]])),
    },
    requests,
    exchanges,
    failures,
    pageErrors,
    cookies: await context.cookies(),
    trackerCookies: await context.cookies([tracker]),
  };
} finally {
  await context?.close();
  for (const profile of profiles) fs.rmSync(profile, { recursive: true, force: true });
  clearTimeout(watchdog);
}
console.log(JSON.stringify(result));
