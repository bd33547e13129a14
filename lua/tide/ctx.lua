--- ctx, the second argument of process(msg, ctx) and the only argument of
--- init, window and close: a task's view of the container (README "The job
--- API"). One per task.
local error, tostring = error, tostring
local encode_headers = require("tide.headers").encode
local str_format = string.format

local _M = {}
local Ctx = {}
Ctx.__index = Ctx

--- Sends `value` with `key` to output `stream`, with `headers` ({ name
--- = string value }, e.g. msg.headers to pass them on; nil: none). The
--- send is held until process() returns, so a message that raises sends
--- nothing. The record gets the timestamp of the message being processed
--- (now, from init, window and close), as Kafka Streams does.
function Ctx:send(stream, key, value, headers)
    local out = self._outs[stream]
    if not out then
        error(str_format("ctx:send: '%s' is not an output of job '%s' "
                         .. "(outputs: %s); declare it in 'outputs'",
                         tostring(stream), self.job, self._out_list), 2)
    end
    local pend = self._pending
    local n = pend.n
    pend[n + 1] = out
    pend[n + 2] = key ~= nil and out.kenc(key) or nil
    pend[n + 3] = value ~= nil and out.venc(value) or nil
    pend[n + 4] = self._ts
    pend[n + 5] = headers ~= nil and encode_headers(headers) or nil
    pend.n = n + 5
end

--- Asks for a commit after the current batch.
function Ctx:commit()
    self._worker.commit_requested = true
end

--- Makes the ctx of task `p` of a worker.
---@param w table  the worker (job, topology, version)
---@param p integer
---@param stores table  the task's stores by name
---@return table
function _M.new(w, p, stores)
    return setmetatable({
        job = w.job.name, partition = p, config = w.job.config,
        stores = stores, memo = {}, version = w.version,
        _outs = w.outs, _out_list = w.out_list,
        _pending = { n = 0 }, _worker = w,
    }, Ctx)
end

return _M
