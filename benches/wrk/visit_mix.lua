-- A realistic mix, as count.js does it: register a visit, count it (post-sleep), report the
-- time on page (page-left), then start over. Run with min_delay_secs = 0 so a visit can count
-- at once, and with one connection per wrk thread: each thread's Lua state then sees its
-- requests and responses strictly in turn, so the token of a response belongs to this
-- visitor.
dofile(os.getenv("WRK_REPORT") or "benches/wrk/report.lua")

local step, token = "register", nil
counted, failed = 0, 0

request = function()
  if step == "post-sleep" then
    return wrk.format("POST", "/post-sleep/" .. token .. "?referrer=https%3A%2F%2Fnews.example%2F")
  elseif step == "page-left" then
    return wrk.format("POST", "/page-left/" .. token .. "/42")
  end
  return wrk.format("GET", "/register?path=%2F")
end

response = function(status, headers, body)
  if status ~= 200 then
    failed = failed + 1
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
end
