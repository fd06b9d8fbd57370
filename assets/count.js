// oxitraffic count.js: counts a visit once the page has been visible for a while.
// Nothing is stored in the browser; the tracker learns the page's path, the site the visitor
// came from (without query or fragment), the page's utm_source/utm_medium/utm_campaign, and
// how long the page was visible. Visitors are counted by the browser's own HTTP cache: the
// tracker sends every browser the same day marker (Last-Modified: start of today), and a
// revalidation (cache: "no-cache") sends it back, telling only "seen today" or not.
// The tracker serves this file with full-line comments and indentation removed.
const base = "__OXITRAFFIC_BASE_URL__";
const delay = __OXITRAFFIC_DELAY_MS__;
// The page view being counted: the latest path. Every view keeps its own state in one object
// (path, campaign query, token, visible time, timer, whether it was sent and counted), so an
// answer that arrives after the visitor moved on still finishes the view it belongs to.
let view, siteAsked;
let referrer = document.referrer.split(/[?#]/)[0];

const now = () => performance.now();
const visible = (v) => v.ms + (v.shown == null ? 0 : now() - v.shown);

// Calls `done` with the tracker's successful answer. Network errors, 425, 429 and 503 are
// tried again, after Retry-After when the browser lets us read it, else after 1, 2, 4 … 60
// seconds, eight times at most, while `wanted()` holds. Other failures are final: 404 (gone),
// 421 (another instance's token).
function send(url, init, done, wanted, attempt = 0) {
  const again = (after) =>
    attempt < 8 &&
    setTimeout(
      () => wanted() && send(url, init, done, wanted, attempt + 1),
      after * 1000 || Math.min(60000, 1000 * 2 ** attempt),
    );
  fetch(base + url, { credentials: "omit", ...init }).then(
    (response) =>
      response.ok
        ? done(response)
        : [425, 429, 503].includes(response.status) && again(response.headers.get("retry-after")),
    () => again(),
  );
}

function start() {
  const shown = document.visibilityState == "visible" ? now() : null;
  const v = (view = { path: location.pathname, ms: 0, shown });
  // What the post-sleep carries: the referrer, and the page's own campaign parameters (only
  // these three, none that the tracker would drop as longer than 100 characters).
  const search = new URLSearchParams(location.search);
  const query = referrer ? ["referrer=" + encodeURIComponent(referrer)] : [];
  for (const name of ["utm_source", "utm_medium", "utm_campaign"]) {
    const value = search.get(name)?.trim();
    if (value && [...value].length <= 100) query.push(name + "=" + encodeURIComponent(value));
  }
  v.query = query.length ? "?" + query.join("&") : "";
  // The answer carries this page's day marker: a browser without today's is a new page visitor.
  send("/register?path=" + encodeURIComponent(v.path), { cache: "no-cache" }, async (response) => {
    v.token = await response.json();
    wait(v);
    // The site's day marker, once per page load: one URL for every page of the site.
    if (!siteAsked) {
      siteAsked = 1;
      send("/visitor", { cache: "no-cache" }, () => {}, () => 1);
    }
  }, () => view == v);
}

// Arranges the post-sleep call for when the view has been visible long enough.
function wait(v) {
  clearTimeout(v.timer);
  if (v.token != null && !v.sent && v.shown != null) v.timer = setTimeout(postSleep, delay - visible(v), v);
}

function postSleep(v) {
  if (visible(v) < delay) return wait(v);
  v.sent = 1;
  send("/post-sleep/" + v.token + v.query, { method: "POST", keepalive: true }, () => {
    v.counted = 1;
    // Hidden, or left for another path, while the answer was on its way: the time report
    // skipped then is sent now, with the visible time the view had when it ended.
    if (v.shown == null) leave(v);
  }, () => 1);
}

function hide(v) {
  if (v.shown != null) v.ms += now() - v.shown;
  v.shown = null;
  clearTimeout(v.timer);
}

// Reports the visible time so far; sent again later if the visitor comes back.
function leave(v) {
  if (v.counted) navigator.sendBeacon(base + "/page-left/" + v.token + "/" + Math.round(visible(v) / 1000));
}

// Ends the current view's visible time (hidden, unloading, or another path): one report.
function away() {
  if (view.shown != null) {
    hide(view);
    leave(view);
  }
}

// Single-page apps: a new path is a new view; the old one keeps its time and reports it.
function navigated() {
  if (location.pathname != view.path) {
    away();
    referrer = "";
    start();
  }
}

// Inside a frame (perhaps another site's invisible iframe) nothing is counted, not even a
// registration: the visitor is not looking at this page.
let framed = 1;
try {
  framed = top != self;
} catch {}
if (!framed) {
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState == "hidden") away();
    else if (view.shown == null) {
      view.shown = now();
      wait(view);
    }
  });
  addEventListener("pagehide", away);
  for (const name of ["pushState", "replaceState"]) {
    const original = history[name];
    history[name] = function () {
      const result = original.apply(this, arguments);
      navigated();
      return result;
    };
  }
  addEventListener("popstate", navigated);
  start();
}
