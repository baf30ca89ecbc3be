-- wrk script: Herald writes to distinct keys, PUT /v1/kv/r-<n> with a 64-byte raw value.
-- Thread t of T (t from 1) writes r-(t-1), r-(t-1+T), r-(t-1+2T), ... so no key is written twice;
-- the run ends when wrk's duration passes or wrk is interrupted (SIGINT), and the caller decides
-- when enough writes were applied. Script arguments: the thread count T (must equal wrk -t).
-- Usage: wrk -t T -c C -d D -s bench/wrk/herald-seq-put.lua http://127.0.0.1:PORT -- T
-- Prints the same WRK_RESULT summary line as the other scripts (see common.lua).
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local common = dofile(dir .. "common.lua")

local headers = common.herald_headers("application/octet-stream")

setup = common.setup
response = common.response
done = common.done

local stride = 1
local next_n = 0

function init(args)
  common.init()
  stride = tonumber(args[1]) or error("pass the wrk thread count as the script argument")
  next_n = (thread_id or 1) - 1
end

function request()
  local n = next_n
  next_n = next_n + stride
  return wrk.format("PUT", "/v1/kv/r-" .. n, headers, common.value)
end
