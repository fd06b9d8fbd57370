-- A realistic mix, as count.js does it: register a visit on one of PATHS pages (default 50,
-- served as /p/N.html by the fake site), count it (post-sleep, with a referrer), report the
-- time on page (page-left), then start over. Run with min_delay_secs = 0 so a visit can
-- count at once, and with one connection per wrk thread: each thread's Lua state then sees
-- its requests and responses strictly in turn, so the token of a response belongs to this
-- visitor.
--
-- Each thread is one visitor behind a trusted proxy (X-Forwarded-For 10.1.x.y; the tracker
-- trusts 127.0.0.1, and HAProxy appends its own entry after ours), so the per-client limit
-- sees 64 clients with one pending visit each, as it would in the field, not one client.
dofile(os.getenv("WRK_REPORT") or "benches/wrk/report.lua")

local step, token, path = "register", nil, nil
local paths = tonumber(os.getenv("PATHS") or "50")
local headers = {}
counted, failed = 0, 0
-- Non-200 answers by step and status ("post-sleep:404"), for the report.
statuses = {}

function init(args)
  local n = thread_number or 0
  headers["X-Forwarded-For"] = string.format("10.1.%d.%d", math.floor(n / 256) % 256, n % 256)
  math.randomseed(n * 7919 + os.time())
end

request = function()
  if step == "post-sleep" then
    return wrk.format("POST", "/post-sleep/" .. token .. "?referrer=https%3A%2F%2Fnews.example%2F", headers)
  elseif step == "page-left" then
    return wrk.format("POST", "/page-left/" .. token .. "/42", headers)
  end
  path = math.random(paths)
  return wrk.format("GET", "/register?path=%2Fp%2F" .. path .. ".html", headers)
end

response = function(status, _, body)
  if status ~= 200 then
    failed = failed + 1
    local key = step .. ":" .. status
    statuses[key] = (statuses[key] or 0) + 1
    step = "register"
  elseif step == "register" then
    token, step = body, "post-sleep"
  elseif step == "post-sleep" then
    counted, step = counted + 1, "page-left"
  else
    step = "register"
  end
end

done = function(summary, latency, requests)
  local seconds = summary.duration / 1e6
  local counted_total = thread_sum("counted")
  report(summary, latency, string.format(" counted=%d visits_per_s=%.1f failed=%d",
    counted_total, counted_total / seconds, thread_sum("failed")))
  io.write("STATUSES " .. thread_tally("statuses") .. "\n")
end
