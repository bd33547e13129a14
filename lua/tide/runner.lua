--- The container in one process: a worker (tide.worker) that owns every
--- task of a job and its checkpoint. The test kit (tide.testing) and the
--- benchmarks run jobs this way; `tide run` runs a supervisor and worker
--- processes instead (tide.supervisor).
local worker = require("tide.worker")

local _M = {}

--- Opens the job's streams, checkpoint and stores and assigns every task.
---@param job table   a job from tide.job.load/validate
---@param env table   { data_dir = ..., mem = ... }
---@param opts table  { drain = bool, loop = tide.loop object or nil, log = fn,
---                   collect_stores = bool, final_window = bool }
---@return table|nil worker, string|nil err
function _M.new(job, env, opts)
    opts = opts or {}
    local w, err = worker.new(job, env, {
        drain = opts.drain, loop = opts.loop, log = opts.log,
        collect_stores = opts.collect_stores,
        final_window = opts.final_window, tasks = {},
    })
    if not w then
        return nil, err
    end
    for p = 0, w.nparts - 1 do
        local ok, aerr = w:assign(p, w.saved[p])
        if not ok then
            w:close_streams()
            return nil, aerr
        end
    end
    return w
end

return _M
