-- wrk script: durable workflow transitions by signal. Each request is
-- POST /v1/workflows/<prefix><n>/signals/ping (empty body) to one of K pre-started "demo.inbox"
-- workflows <prefix>0 .. <prefix>(K-1), n uniform at random; each signal the node acknowledges is
-- one applied transition (record + history event + visibility entry in one batch).
-- Script arguments: K and the id prefix.
-- Usage: wrk -t T -c C -d D -s bench/wrk/herald-wf-signal.lua http://127.0.0.1:PORT -- K PREFIX
-- Prints the WRK_RESULT summary line of common.lua.
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local common = dofile(dir .. "common.lua")

local headers = common.herald_headers("application/octet-stream")

setup = common.setup
response = common.response
done = common.done

local k = 1
local prefix = "inbox-"

function init(args)
  common.init()
  k = tonumber(args[1]) or error("pass K (the number of pre-started workflows) as the first argument")
  prefix = args[2] or prefix
end

function request()
  return wrk.format("POST", "/v1/workflows/" .. prefix .. math.random(0, k - 1) .. "/signals/ping",
    headers, "")
end
