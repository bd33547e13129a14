--- What `tide run --http` serves: /metrics (Prometheus text format
--- 0.0.4) and /health (JSON), built in the supervisor from what it knows
--- and from the stats each worker sends every second; and the
--- Burrow-style lag status of a task (docs/operate.md "Metrics and
--- health").
local cjson = require("cjson.safe")

local pairs, ipairs, tostring, type = pairs, ipairs, tostring, type
local setmetatable = setmetatable
local str_format, concat, sort = string.format, table.concat, table.sort
local huge = math.huge

local _M = {}

--- Lag samples kept per task for its lag status.
_M.WINDOW = 10

--- Returns the lag status of samples { committed, lag } (oldest first),
--- by Burrow's rules, with no threshold: OK while the window is not full
--- or the lag was zero at some point of it; STALL when the committed
--- offset did not move across the window while the lag stayed above
--- zero; WARN when the lag grew across the whole window (never went
--- down, and ended above where it started); else OK.
---@param samples table
---@return string
function _M.lag_status(samples)
    local n = #samples
    if n < _M.WINDOW then
        return "OK"
    end
    local first = samples[n - _M.WINDOW + 1]
    local moved, rising = false, true
    for i = n - _M.WINDOW + 1, n do
        local s = samples[i]
        if s.lag <= 0 then
            return "OK"
        end
        if s.committed ~= first.committed then
            moved = true
        end
        if i > n - _M.WINDOW + 1 and s.lag < samples[i - 1].lag then
            rising = false
        end
    end
    if not moved then
        return "STALL"
    end
    if rising and samples[n].lag > first.lag then
        return "WARN"
    end
    return "OK"
end

-- ---- the Prometheus text format -------------------------------------------------

local function esc(v)
    return (tostring(v):gsub("[\\\n\"]", { ["\\"] = "\\\\", ["\n"] = "\\n",
                                           ['"'] = '\\"' }))
end

local function num(v)
    if v ~= v then
        return "NaN"
    elseif v == huge then
        return "+Inf"
    elseif v == -huge then
        return "-Inf"
    elseif v % 1 == 0 and v > -2^53 and v < 2^53 then
        return str_format("%.0f", v)
    end
    return str_format("%.15g", v)
end

-- A set of families, each written once with its HELP and TYPE.
local Out = {}
Out.__index = Out

local function new_out()
    return setmetatable({ fams = {}, order = {} }, Out)
end

function Out:family(name, typ, help)
    local f = self.fams[name]
    if not f then
        f = { name = name, typ = typ, help = help, lines = {} }
        self.fams[name] = f
        self.order[#self.order + 1] = f
    end
    return f
end

local function labels(l, extra)
    local keys = {}
    for k in pairs(l) do
        keys[#keys + 1] = k
    end
    sort(keys)
    local parts = {}
    for _, k in ipairs(keys) do
        parts[#parts + 1] = str_format('%s="%s"', k, esc(l[k]))
    end
    if extra then
        parts[#parts + 1] = extra
    end
    return "{" .. concat(parts, ",") .. "}"
end

function Out:add(name, typ, help, l, v)
    local f = self:family(name, typ, help)
    f.lines[#f.lines + 1] = name .. labels(l) .. " " .. num(v)
end

function Out:hist(name, help, l, buckets, counts, sum, count)
    local f = self:family(name, "histogram", help)
    local acc = 0
    for i, le in ipairs(buckets) do
        acc = acc + (counts[i] or 0)
        f.lines[#f.lines + 1] = name .. "_bucket"
                                .. labels(l, str_format('le="%s"', num(le)))
                                .. " " .. num(acc)
    end
    f.lines[#f.lines + 1] = name .. "_bucket" .. labels(l, 'le="+Inf"') .. " "
                            .. num(count)
    f.lines[#f.lines + 1] = name .. "_sum" .. labels(l) .. " " .. num(sum)
    f.lines[#f.lines + 1] = name .. "_count" .. labels(l) .. " " .. num(count)
end

function Out:text()
    local out = {}
    for _, f in ipairs(self.order) do
        out[#out + 1] = str_format("# HELP %s %s", f.name, f.help)
        out[#out + 1] = str_format("# TYPE %s %s", f.name, f.typ)
        for _, line in ipairs(f.lines) do
            out[#out + 1] = line
        end
    end
    return concat(out, "\n") .. "\n"
end

local STATES = { "RESTORING", "RUNNING", "PAUSED", "FAILED" }
local LAG_STATES = { "OK", "WARN", "STALL" }

--- Returns the /metrics text of `view` (tide.supervisor's metrics_view).
---@param view table
---@return string
function _M.prometheus(view)
    local o = new_out()
    local job = view.job
    local jl = { job = job }
    o:add("tide_info", "gauge", "The job's running code version (always 1).",
          { job = job, version = view.version }, 1)
    o:add("tide_up_seconds", "gauge", "Seconds since the supervisor started.",
          jl, view.uptime)
    o:add("tide_tasks", "gauge", "Tasks of the job.", jl, view.ntasks)
    o:add("tide_commits_total", "counter",
          "Checkpoints written (commits of every worker).", jl, view.commits)
    for _, r in ipairs({ { "ok", view.reloads }, { "refused", view.refused },
                         { "rolled_back", view.rolled_back } }) do
        o:add("tide_reloads_total", "counter",
              "Code reloads by result: ok (swapped in), refused (did not "
              .. "load or changed what needs a restart), rolled_back (raised "
              .. "or was stopped on probation).", { job = job, result = r[1] },
              r[2])
    end
    o:add("tide_worker_restarts_total", "counter",
          "Workers started again after they died or were stopped.", jl,
          view.restarts)
    for _, w in ipairs(view.workers) do
        o:add("tide_worker_up", "gauge", "1 while the worker process runs.",
              { job = job, worker = w.id }, w.up and 1 or 0)
        if w.rss then
            o:add("tide_worker_resident_memory_bytes", "gauge",
                  "Resident memory of the worker process.",
                  { job = job, worker = w.id }, w.rss)
        end
    end
    for _, t in ipairs(view.tasks) do
        local tl = { job = job, task = t.task }
        for _, st in ipairs(STATES) do
            o:add("tide_task_state", "gauge",
                  "1 for the task's state (RESTORING, RUNNING, PAUSED, "
                  .. "FAILED), 0 for the others.",
                  { job = job, task = t.task, state = st },
                  t.state == st and 1 or 0)
        end
        for _, st in ipairs(LAG_STATES) do
            o:add("tide_task_lag_status", "gauge",
                  "1 for the task's Burrow-style lag status (OK, WARN, "
                  .. "STALL), 0 for the others.",
                  { job = job, task = t.task, status = st },
                  t.lag_status == st and 1 or 0)
        end
        local s = t.stats
        if s then
            o:add("tide_task_messages_in_total", "counter",
                  "Messages processed by the task on its current worker.", tl,
                  s.processed or 0)
            o:add("tide_task_messages_out_total", "counter",
                  "Messages the task sent to its outputs on its current "
                  .. "worker.", tl, s.sent or 0)
            o:add("tide_task_errors_total", "counter",
                  "Messages whose processing failed, by what on_error did "
                  .. "(skip, dead_letter).",
                  { job = job, task = t.task, action = "skip" },
                  s.skipped or 0)
            o:add("tide_task_errors_total", "counter",
                  "Messages whose processing failed, by what on_error did "
                  .. "(skip, dead_letter).",
                  { job = job, task = t.task, action = "dead_letter" },
                  s.dead or 0)
            if s.hist then
                o:hist("tide_task_batch_process_seconds",
                       "CPU time of the worker per batch the task processed.",
                       tl, view.buckets, s.hist, s.hsum or 0, s.hcount or 0)
            end
            if s.watermark then
                o:add("tide_task_watermark_seconds", "gauge",
                      "The task's event-time watermark, as a Unix time.", tl,
                      s.watermark / 1000)
            end
            if s.commit_ms then
                o:add("tide_task_last_commit_duration_seconds", "gauge",
                      "How long the last commit of the task's worker took "
                      .. "(it commits all its tasks at once).", tl,
                      s.commit_ms / 1000)
            end
            for _, part in ipairs(s.parts or {}) do
                local pl = { job = job, task = t.task, stream = part.stream,
                             partition = part.partition }
                if type(part["end"]) == "number" then
                    local lag = part["end"] - part.next
                    o:add("tide_task_input_lag_messages", "gauge",
                          "Messages of the input partition not yet "
                          .. "processed by the task.", pl,
                          lag > 0 and lag or 0)
                    o:add("tide_task_input_end_offset", "gauge",
                          "The offset the input partition's next message "
                          .. "will get.", pl, part["end"])
                end
                o:add("tide_task_input_offset", "gauge",
                      "The offset of the next message the task reads from "
                      .. "the input partition.", pl, part.next)
                local c = t.committed and t.committed[part.key]
                if c then
                    o:add("tide_task_input_committed_offset", "gauge",
                          "The input partition's offset in the last "
                          .. "checkpoint.", pl, c)
                end
            end
        end
        if t.restore and t.restore.total and t.restore.total > 0 then
            o:add("tide_task_restore_progress_ratio", "gauge",
                  "While the task restores a store: records replayed over "
                  .. "records to replay.",
                  { job = job, task = t.task, store = t.restore.store },
                  t.restore.records / t.restore.total)
        end
    end
    return o:text()
end

--- Returns the /health status code and JSON body of `view`.
---@param view table
---@return integer status, string body
function _M.health(view)
    local all = #view.tasks > 0
    local tasks = {}
    for i, t in ipairs(view.tasks) do
        local e = { task = t.task, state = t.state,
                    lag_status = t.lag_status,
                    worker = t.worker or cjson.null,
                    lag = t.stats and t.stats.lag or cjson.null }
        if t.state == "RESTORING" then
            local r = t.restore
            e.restore = {
                store = r and r.store or cjson.null,
                records = r and r.records or cjson.null,
                total = r and r.total or cjson.null,
                progress = r and r.total and r.total > 0
                           and r.records / r.total or cjson.null,
                bootstrap = t.bootstrap or nil,
            }
        end
        tasks[i] = e
        if t.state ~= "RUNNING" then
            all = false
        end
    end
    local body = cjson.encode({ status = all and "UP" or "DOWN",
                                job = view.job, version = view.version,
                                tasks = tasks })
    return all and 200 or 503, body .. "\n"
end

return _M
