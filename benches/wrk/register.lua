-- The /register flood of benches/load, and the same requests to the bare hyper server that
-- it is compared with, so both sides pay the same client-side cost.
--
-- Every request names another client in X-Forwarded-For (the tracker under test trusts
-- 127.0.0.1 as a proxy): from one address, the per-client limit of pending registrations
-- would turn the flood into a benchmark of 429 answers. The requests are built once in
-- init() and cycled through, so the Lua work per request is a table lookup.
dofile(os.getenv("WRK_REPORT") or "benches/wrk/report.lua")

local pool, size, next_index = {}, 4096, 0

function init(args)
  local path = args[1] or "/register?path=%2F"
  -- 10.N.x.y: thread N's own block of addresses, 4,096 of them.
  local block = thread_number or 0
  for i = 0, size - 1 do
    local address = string.format("10.%d.%d.%d", block % 256, math.floor(i / 256), i % 256)
    pool[i + 1] = wrk.format("GET", path, { ["X-Forwarded-For"] = address })
  end
end

function request()
  next_index = next_index % size + 1
  return pool[next_index]
end
