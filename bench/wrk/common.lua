-- Shared by the wrk write scripts: random keys, error counting and the machine-parsable summary.
--
-- Each wrk thread runs its own copy of the calling script; `setup` runs in the main thread, so
-- it keeps the thread handles that `done` reads the per-thread error counters from.
--
-- Summary line printed by done(), one line, all times in milliseconds:
--   WRK_RESULT requests=N duration_s=S rps=R p50_ms=A p99_ms=B non2xx=E socket_errors=F

local common = {}

common.KEY_SPACE = 100000  -- distinct keys written, chosen uniformly at random per request
common.VALUE_BYTES = 64    -- size of every value written

common.value = string.rep("v", common.VALUE_BYTES)

-- Request headers for Herald's operator API: `content_type` plus the operator credential from
-- HERALD_ADMIN_TOKEN (the node must have been started with the same token).
function common.herald_headers(content_type)
  local token = os.getenv("HERALD_ADMIN_TOKEN")
  assert(token ~= nil and token ~= "", "set HERALD_ADMIN_TOKEN to the node's admin token")
  return { ["Content-Type"] = content_type, ["Authorization"] = "Bearer " .. token }
end

local threads = {}
local next_thread_id = 1

function common.setup(thread)
  thread:set("thread_id", next_thread_id)
  next_thread_id = next_thread_id + 1
  table.insert(threads, thread)
end

function common.init()
  -- Distinct sequences per thread; the seed need not be reproducible for a benchmark.
  math.randomseed(os.time() * 1000 + (thread_id or 0))
  non2xx = 0
end

function common.key(n)
  return "bench-" .. n
end

function common.random_key()
  return common.key(math.random(0, common.KEY_SPACE - 1))
end

-- Builds every request a write script can send, one per key, with `make(key)` (a function of the
-- key that returns the formatted request); `random_request` then costs one table lookup per
-- request whatever the system's encoding, so the client spends the same work on every system
-- (keys and bodies are not encoded while the clock runs). Call from init(): each wrk thread keeps
-- its own table (KEY_SPACE entries, a few MiB).
function common.prepare_requests(make)
  prepared = {}
  for n = 0, common.KEY_SPACE - 1 do
    prepared[n + 1] = make(common.key(n))
  end
end

function common.random_request()
  return prepared[math.random(1, common.KEY_SPACE)]
end

function common.response(status)
  if status < 200 or status > 299 then
    non2xx = non2xx + 1
  end
end

local B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

-- Standard base64 (RFC 4648) with padding.
function common.base64(s)
  local out = {}
  for i = 1, #s, 3 do
    local a, b, c = s:byte(i, i + 2)
    local n = a * 65536 + (b or 0) * 256 + (c or 0)
    local c1 = math.floor(n / 262144) % 64
    local c2 = math.floor(n / 4096) % 64
    local c3 = math.floor(n / 64) % 64
    local c4 = n % 64
    out[#out + 1] = B64:sub(c1 + 1, c1 + 1) .. B64:sub(c2 + 1, c2 + 1)
    out[#out + 1] = b and B64:sub(c3 + 1, c3 + 1) or "="
    out[#out + 1] = c and B64:sub(c4 + 1, c4 + 1) or "="
  end
  return table.concat(out)
end

function common.done(summary, latency, requests)
  local non2xx_total = 0
  for _, thread in ipairs(threads) do
    non2xx_total = non2xx_total + (thread:get("non2xx") or 0)
  end
  local e = summary.errors
  local socket_errors = e.connect + e.read + e.write + e.timeout
  local duration_s = summary.duration / 1e6
  io.write(string.format(
    "WRK_RESULT requests=%d duration_s=%.3f rps=%.1f p50_ms=%.3f p99_ms=%.3f non2xx=%d socket_errors=%d\n",
    summary.requests, duration_s, summary.requests / duration_s,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, non2xx_total, socket_errors))
end

return common
