-- A realistic mix, as count.js does it: register a visit, count it (post-sleep), report the
-- time on page (page-left). Run with min_delay_secs = 0 so the visit can count at once.
-- wrk gives each thread one Lua state shared by its connections and does not say which
-- request a response answers, so tokens travel through queues: a registered token is
-- counted by the next request the thread sends, a counted one is reported next.
dofile(os.getenv("WRK_REPORT") or "benches/wrk/report.lua")

local registered, counting = {}, {}
counted, failed = 0, 0

request = function()
  if #counting > 0 then
    return wrk.format("POST", "/page-left/" .. table.remove(counting, 1) .. "/42")
  elseif #registered > 0 then
    local token = table.remove(registered, 1)
    table.insert(counting, token)
    return wrk.format("POST", "/post-sleep/" .. token .. "?referrer=https%3A%2F%2Fnews.example%2F")
  else
    return wrk.format("GET", "/register?path=%2F")
  end
end

response = function(status, headers, body)
  if status ~= 200 then
    failed = failed + 1
  elseif body:match("^%d+$") then
    table.insert(registered, body)
  elseif body == "counted\n" then
    counted = counted + 1
  end
end

done = function(summary, latency, requests)
  local seconds = summary.duration / 1e6
  local counted_total = thread_sum("counted")
  report(summary, latency, string.format(" counted=%d visits_per_s=%.1f failed=%d",
    counted_total, counted_total / seconds, thread_sum("failed")))
end
