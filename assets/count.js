// oxitraffic count.js: counts a visit once the page has been visible for a while.
// Nothing is stored in the browser; the tracker learns the page's path, the site the visitor
// came from (without query or fragment), and how long the page was visible.
// The tracker serves this file with full-line comments and indentation removed.
const base = "__OXITRAFFIC_BASE_URL__";
const delay = __OXITRAFFIC_DELAY_MS__;
let path, token, counted, visibleMs, shownAt, timer, round = 0;
let referrer = document.referrer.split(/[?#]/)[0];

const now = () => performance.now();
const visible = () => visibleMs + (shownAt == null ? 0 : now() - shownAt);
// Retries wait 1, 2, 4 … 60 seconds, eight times at most.
const retry = (attempt, again) => attempt < 8 && setTimeout(again, Math.min(60000, 1000 * 2 ** attempt), attempt + 1);

function start() {
  path = location.pathname;
  token = null;
  counted = false;
  visibleMs = 0;
  shownAt = document.visibilityState == "visible" ? now() : null;
  register(++round, 0);
}

function register(r, attempt) {
  const again = (a) => r == round && register(r, a);
  fetch(base + "/register?path=" + encodeURIComponent(path), { credentials: "omit" }).then(
    async (response) => {
      if (response.ok) {
        const value = await response.json();
        if (r == round) {
          token = value;
          wait();
        }
      } else if (response.status == 503) retry(attempt, again);
    },
    () => retry(attempt, again),
  );
}

// Arranges the post-sleep call for when the page has been visible long enough.
function wait() {
  clearTimeout(timer);
  if (token != null && !counted && shownAt != null) timer = setTimeout(postSleep, delay - visible(), round, 0);
}

function postSleep(r, attempt) {
  if (r != round || counted) return;
  if (visible() < delay) return wait();
  const again = (a) => postSleep(r, a);
  const query = referrer ? "?referrer=" + encodeURIComponent(referrer) : "";
  fetch(base + "/post-sleep/" + token + query, { method: "POST", credentials: "omit", keepalive: true }).then(
    (response) => {
      if (response.ok) {
        if (r == round) counted = true;
      } else if (response.status == 503 || response.status == 425) retry(attempt, again);
    },
    () => retry(attempt, again),
  );
}

function hide() {
  if (shownAt != null) visibleMs += now() - shownAt;
  shownAt = null;
  clearTimeout(timer);
}

// Reports the visible time so far; sent again later if the visitor comes back.
function leave() {
  if (counted) navigator.sendBeacon(base + "/page-left/" + token + "/" + Math.round(visible() / 1000));
}

document.addEventListener("visibilitychange", () => {
  if (document.visibilityState == "hidden") {
    hide();
    leave();
  } else if (shownAt == null) {
    shownAt = now();
    wait();
  }
});
addEventListener("pagehide", () => {
  hide();
  leave();
});

// Single-page apps: a new path is a new visit; the old one reports its time.
function navigated() {
  if (location.pathname == path) return;
  hide();
  leave();
  referrer = "";
  start();
}
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
