-- wrk script: etcd v3 writes through the gRPC gateway, POST /v3/kv/put with a JSON body holding
-- a base64 key (random over common.KEY_SPACE keys) and a base64 64-byte value. Every request is
-- built before the run (common.prepare_requests), as herald-put.lua's are.
-- Usage: wrk -s bench/wrk/etcd-put.lua http://127.0.0.1:PORT
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local common = dofile(dir .. "common.lua")

local headers = { ["Content-Type"] = "application/json" }
local value_b64 = common.base64(common.value)

setup = common.setup
response = common.response
done = common.done

function init(args)
  common.init()
  common.prepare_requests(function(key)
    local body = '{"key":"' .. common.base64(key) .. '","value":"' .. value_b64 .. '"}'
    return wrk.format("POST", "/v3/kv/put", headers, body)
  end)
end

request = common.random_request
