-- wrk script: Herald writes, PUT /v1/kv/bench-<n> (n random over common.KEY_SPACE keys) with a
-- 64-byte raw value as the body. Every request is built before the run
-- (common.prepare_requests), as etcd-put.lua's are.
-- Usage: wrk -s bench/wrk/herald-put.lua http://127.0.0.1:PORT
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local common = dofile(dir .. "common.lua")

local headers = common.herald_headers("application/octet-stream")

setup = common.setup
response = common.response
done = common.done

function init(args)
  common.init()
  common.prepare_requests(function(key)
    return wrk.format("PUT", "/v1/kv/" .. key, headers, common.value)
  end)
end

request = common.random_request
