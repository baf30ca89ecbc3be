-- wrk script: durable workflow transitions by start. Each request starts a new workflow,
-- POST /v1/workflows {"type": TYPE, "id": "<prefix><n>", "input": INPUT}, with ids distinct
-- across threads: thread t of T (t from 1) uses n = t-1, t-1+T, t-1+2T, ...
-- With QUOTA > 0 a thread stops after it has sent QUOTA starts (so T threads start T x QUOTA
-- workflows, ids 0 .. T x QUOTA - 1); QUOTA = 0 means no limit (the run ends with wrk's duration).
-- Script arguments: T (must equal wrk -t), TYPE, INPUT, PREFIX, QUOTA.
-- Usage: wrk -t T -c C -d D -s bench/wrk/herald-wf-start.lua http://127.0.0.1:PORT \
--          -- T demo.inbox "" wf- 0
-- Prints the WRK_RESULT summary line of common.lua.
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local common = dofile(dir .. "common.lua")

local headers = common.herald_headers("application/json")

setup = common.setup
done = common.done

local stride = 1
local next_n = 0
local sent = 0
local answered = 0
local quota = 0
local type_name, input, prefix

-- JSON string literal for the characters the benchmark uses (no control characters).
local function quote(s)
  return '"' .. s:gsub('[\\"]', "\\%0") .. '"'
end

function init(args)
  common.init()
  stride = tonumber(args[1]) or error("pass the wrk thread count as the first script argument")
  type_name = args[2] or "demo.inbox"
  input = args[3] or ""
  prefix = args[4] or "wf-"
  quota = tonumber(args[5] or "0")
  next_n = (thread_id or 1) - 1
end

function request()
  local n = next_n
  if quota > 0 and sent >= quota then
    -- Over the quota (connections still asking): re-send this thread's first id, which the
    -- node deduplicates (existed = true, no new workflow).
    n = (thread_id or 1) - 1
  else
    next_n = next_n + stride
    sent = sent + 1
  end
  return wrk.format("POST", "/v1/workflows", headers,
    "{\"type\":" .. quote(type_name) .. ",\"id\":" .. quote(prefix .. n) .. ",\"input\":" ..
    quote(input) .. "}")
end

function response(status, headers, body)
  common.response(status)
  answered = answered + 1
  if quota > 0 and answered >= quota then
    wrk.thread:stop()
  end
end
