-- Shared by every phase of benches/load: one machine-readable line per run.
-- Threads count what they saw; done() adds it up.
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function report(summary, latency, extra)
  local errors = summary.errors.connect + summary.errors.read + summary.errors.write
    + summary.errors.timeout + summary.errors.status
  local seconds = summary.duration / 1e6
  io.write(string.format("RESULT requests=%d seconds=%.3f rps=%.1f p50_us=%d p99_us=%d errors=%d%s\n",
    summary.requests, seconds, summary.requests / seconds,
    latency:percentile(50), latency:percentile(99), errors, extra or ""))
end

function thread_sum(name)
  local total = 0
  for _, thread in ipairs(threads) do
    total = total + (thread:get(name) or 0)
  end
  return total
end

function done(summary, latency, requests)
  report(summary, latency)
end
