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

--- Upper bounds (seconds) of the end-to-end latency histogram: 1 ms to
--- 5 min (record timestamps have millisecond resolution).
_M.LATENCY_BUCKETS = { 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                       0.5, 1, 2.5, 5, 10, 30, 60, 300 }
--- Upper bounds (seconds) of the commit duration histogram: 1 ms to 60 s.
_M.COMMIT_BUCKETS = { 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                      0.5, 1, 2.5, 5, 10, 30, 60 }

--- Returns a histogram to observe into: { counts = per bucket of
--- `bounds` (the last value past them all is not kept: count has it),
--- sum, count }. It travels in a worker's stats as is.
---@param bounds table
---@return table
function _M.histogram(bounds)
    local counts = {}
    for i = 1, #bounds do
        counts[i] = 0
    end
    return { counts = counts, sum = 0, count = 0 }
end

--- Adds observation `v` to histogram `h` (made by histogram(bounds)).
---@param h table
---@param bounds table
---@param v number
function _M.observe(h, bounds, v)
    h.sum = h.sum + v
    h.count = h.count + 1
    local counts = h.counts
    for i = 1, #bounds do
        if v <= bounds[i] then
            counts[i] = counts[i] + 1
            return
        end
    end
end

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

-- The i-th item of a list that crossed the wire (tide.wire writes a
-- list as an object keyed "1", "2", ...) or not.
local function item(list, i)
    local v = list[i]
    if v == nil then
        v = list[tostring(i)]
    end
    return v
end

function Out:hist(name, help, l, buckets, counts, sum, count)
    local f = self:family(name, "histogram", help)
    local acc = 0
    for i, le in ipairs(buckets) do
        acc = acc + (item(counts, i) or 0)
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

-- Errors by kind and action: the series always shown (others show
-- once counted).
local ERROR_SERIES = {
    { "decode", "skip" }, { "decode", "dead_letter" },
    { "process", "skip" }, { "process", "dead_letter" },
    { "timeout", "skip" }, { "timeout", "dead_letter" },
    { "memory", "skip" }, { "memory", "dead_letter" },
    { "late", "dead_letter" }, { "late", "drop" },
    { "job", "dead_letter" },
}
local ERRORS_HELP = "Messages that failed or were set aside, by kind "
    .. "(decode, process: process(), on_timer() or a timestamp function "
    .. "raised, timeout, memory, late: a window's late record, job: "
    .. "dead-lettered by the job's own ctx:dead_letter) and by what "
    .. "happened to them (skip, dead_letter, drop)."

-- tide_task_errors_total of a task's stats `s`: s.errors = { [kind] =
-- { [action] = n } } (absent until the task took its first batch).
local function add_errors(o, job, task, s)
    local errs = s.errors or {}
    local shown = {}
    for _, ka in ipairs(ERROR_SERIES) do
        local k, a = ka[1], ka[2]
        shown[k .. "\0" .. a] = true
        o:add("tide_task_errors_total", "counter", ERRORS_HELP,
              { job = job, task = task, kind = k, action = a },
              errs[k] and errs[k][a] or 0)
    end
    local extra = {}
    for k, acts in pairs(errs) do
        for a, n in pairs(acts) do
            if not shown[k .. "\0" .. a] then
                extra[#extra + 1] = { k, a, n }
            end
        end
    end
    sort(extra, function(x, y)
        return x[1] < y[1] or (x[1] == y[1] and x[2] < y[2])
    end)
    for _, e in ipairs(extra) do
        o:add("tide_task_errors_total", "counter", ERRORS_HELP,
              { job = job, task = task, kind = e[1], action = e[2] }, e[3])
    end
end

-- The families of a task's stats `s` beyond the first ones: latency,
-- time, commits, stores.
local function add_task_extras(o, job, task, s)
    local tl = { job = job, task = task }
    local h = s.latency
    if h then
        o:hist("tide_task_end_to_end_latency_seconds",
               "From an input message's timestamp to the end of the batch "
               .. "that processed it (its sends handed to the outputs).",
               tl, _M.LATENCY_BUCKETS, h.counts, h.sum, h.count)
    end
    for _, x in ipairs({
        { "busy", "Time the task spent in its steps that took messages or "
                  .. "fired timers (reading, process(), sends)." },
        { "idle", "Time the task's worker waited for input, and the "
                  .. "task's steps that found nothing to do." },
        { "backpressure", "Time the task's worker spent handing its "
                          .. "sends to the output streams (publishing "
                          .. "them to readers)." } }) do
        local ms = s[x[1] .. "_ms"]
        if ms then
            o:add("tide_task_" .. x[1] .. "_seconds_total", "counter", x[2],
                  tl, ms / 1000)
        end
    end
    if s.commits then
        o:add("tide_task_commits_total", "counter",
              "Commits of the task's worker while it ran the task.", tl,
              s.commits)
        o:add("tide_task_commit_bytes_total", "counter",
              "Bytes (keys and values) the task wrote to its outputs and "
              .. "store changelogs, counted at each commit.", tl,
              s.commit_bytes or 0)
    end
    h = s.commit
    if h then
        o:hist("tide_task_commit_duration_seconds",
               "How long the commits of the task's worker took (it commits "
               .. "all its tasks at once).", tl, _M.COMMIT_BUCKETS,
               h.counts, h.sum, h.count)
    end
    local names = {}
    for name in pairs(s.stores or {}) do
        names[#names + 1] = name
    end
    sort(names)
    for _, name in ipairs(names) do
        local st = s.stores[name]
        local sl = { job = job, task = task, store = name }
        if st.keys then
            o:add("tide_store_entries", "gauge",
                  "Keys in the store, as RocksDB estimates them (a key "
                  .. "written again since the last compaction may count "
                  .. "twice).", sl, st.keys)
        end
        if st.bytes then
            o:add("tide_store_bytes", "gauge",
                  "Bytes of the store's RocksDB: SST files and memtables.",
                  sl, st.bytes)
        end
        o:add("tide_store_cache_hits_total", "counter",
              "Store reads answered by the write cache (writes not yet "
              .. "committed, and keys read lately) without RocksDB.", sl,
              st.hits or 0)
        o:add("tide_store_cache_misses_total", "counter",
              "Store reads that went to RocksDB.", sl, st.misses or 0)
    end
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
            add_errors(o, job, t.task, s)
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
            add_task_extras(o, job, t.task, s)
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
                if type(part.lag_seconds) == "number" then
                    o:add("tide_task_input_lag_seconds", "gauge",
                          "Age of the input partition's oldest unprocessed "
                          .. "message: now minus the timestamp of the last "
                          .. "message processed, while the lag in messages "
                          .. "is above 0; else 0.", pl, part.lag_seconds)
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
