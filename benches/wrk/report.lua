-- Shared by every phase of benches/load: one machine-readable line per run.
-- Threads count what they saw; done() adds it up.
local threads = {}

function setup(thread)
  table.insert(threads, thread)
  -- Scripts that need a distinct client address (or random stream) per thread read it in
  -- init(): globals set here are visible in the thread's own Lua state.
  thread:set("thread_number", #threads)
end

function report(summary, latency, extra)
  local errors = summary.errors.connect + summary.errors.read + summary.errors.write
    + summary.errors.timeout + summary.errors.status
  local seconds = summary.duration / 1e6
  io.write(string.format("RESULT requests=%d seconds=%.3f rps=%.1f p50_us=%d p99_us=%d errors=%d"
    .. " connect=%d read=%d write=%d timeout=%d non2xx=%d%s\n",
    summary.requests, seconds, summary.requests / seconds,
    latency:percentile(50), latency:percentile(99), errors,
    summary.errors.connect, summary.errors.read, summary.errors.write,
    summary.errors.timeout, summary.errors.status, extra or ""))
end

function thread_sum(name)
  local total = 0
  for _, thread in ipairs(threads) do
    total = total + (thread:get(name) or 0)
  end
  return total
end

-- Adds up a per-thread table of counts (e.g. statuses["post-sleep 404"]) into one line of
-- "key=count" pairs, sorted, or "none".
function thread_tally(name)
  local totals, keys = {}, {}
  for _, thread in ipairs(threads) do
    for key, count in pairs(thread:get(name) or {}) do
      if totals[key] == nil then
        table.insert(keys, key)
        totals[key] = 0
      end
      totals[key] = totals[key] + count
    end
  end
  if #keys == 0 then
    return "none"
  end
  table.sort(keys)
  local parts = {}
  for _, key in ipairs(keys) do
    table.insert(parts, key .. "=" .. totals[key])
  end
  return table.concat(parts, ",")
end

function done(summary, latency, requests)
  report(summary, latency)
end
