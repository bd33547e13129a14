--- A worker: the tasks one LuaJIT state runs, in rounds of one batch per
--- task; commits, windows, code swaps with probation and rollback, and
--- the task lifecycle (assign, revoke, pause, resume). In `tide run` each
--- worker is a process of its own driven by the supervisor
--- (tide.worker_proc); the test kit runs one in-process with every task
--- (tide.runner). docs/container.md tells the whole.
local checkpoint = require("tide.checkpoint")
local state_mod = require("tide.state")
local loop_mod = require("tide.loop")
local topology = require("tide.topology")
local task_mod = require("tide.task")
local metrics = require("tide.metrics")

local type, pairs, ipairs, tostring = type, pairs, ipairs, tostring
local setmetatable = setmetatable
local str_format, sort, concat = string.format, table.sort, table.concat
local bit_band = require("bit").band
local now_ms = loop_mod.now
local realtime = loop_mod.realtime
local os_clock = os.clock
local observe, histogram = metrics.observe, metrics.histogram
local COMMIT_BUCKETS = metrics.COMMIT_BUCKETS

local _M = {}
local Worker = {}
local mt = { __index = Worker }

local PROBATION = 1000          -- default reload_probation
-- Without a file-system notification an idle worker looks again this
-- often; with one it sleeps until data lands or a timer is due.
local IDLE_POLL_MS = 50
local IDLE_NOTIFIED_MS = 1000
-- The GC's step multiplier while a job runs. Messages make short-lived
-- tables and strings at a high rate; bigger incremental steps (each still
-- bounded, so pauses stay short) cut the GC's share of a pass-through job
-- by about a fifth (bench/bench_job.lua). Lua's default is 200.
local GC_STEPMUL = 1000
local PROGRESS_EVERY_MS = 10000
local PUBLISH_MS = 1            -- longest a busy worker holds its outputs

local default_log = require("tide.logging").logger()

--- Opens a worker for `job` in `env` ({ data_dir, mem }).
---@param opts table  { loop, log, drain, collect_stores, final_window,
---   saved = checkpoint tasks table, tasks = partitions to assign now,
---   commit = function(entries) -> ok, err (nil: write the checkpoint
---   here), watch = watch-slot cdata, notify = wake-up object, version }
---@return table|nil worker, string|nil err
function _M.new(job, env, opts)
    opts = opts or {}
    local self = setmetatable({
        job = job, env = env, drain = opts.drain, loop = opts.loop,
        log = opts.log or default_log, now = now_ms,
        collect_stores = opts.collect_stores,
        final_window = opts.final_window, watch = opts.watch,
        notify = opts.notify, commit_fn = opts.commit,
        tasks = {}, order = {}, bad = {}, reloads = 0, rolled_back = 0,
        processed = 0, skipped = 0, dead = 0, commit_requested = false,
        saved = opts.saved or {},
    }, mt)
    local topo, err = topology.open(job, env)
    if not topo then
        return nil, err
    end
    self.topo, self.nparts = topo, topo.nparts
    self.outs, self.out_list = topo.outs, topo.out_list
    self.dlq, self.dlq_name = topo.dlq, topo.dlq_name
    self.version = opts.version or require("tide.reload").version_of(job)
    self.eos = job.processing == "exactly_once"
    if self.eos and not self.commit_fn then
        topo:close()
        return nil, "processing = \"exactly_once\" runs under tide run only "
                    .. "(its commits go through the job's Kafka group)"
    end
    if not self.commit_fn then
        -- In-process: this worker owns the checkpoint itself.
        self.ckpt = checkpoint.for_job(env, job)
        local saved
        saved, err = self.ckpt:load()
        if not saved then
            topo:close()
            return nil, err
        end
        local ok
        ok, err = topo:check(saved, self.ckpt.path or "checkpoint")
        if not ok then
            topo:close()
            return nil, err
        end
        self.saved = saved
    end
    local st
    st, err = state_mod.open(job, env, topo.nparts, self.saved, self.log,
                             false, {})
    if not st then
        topo:close()
        return nil, err
    end
    self.state = st
    self.streams = {}
    for _, s in ipairs(topo.streams) do
        self.streams[#self.streams + 1] = s
    end
    for _, cl in ipairs(st:changelogs()) do
        self.streams[#self.streams + 1] = cl
    end
    -- Outputs to publish after a batch: each once, whatever its names.
    self.out_streams = {}
    local seen = {}
    for _, out in pairs(self.outs) do
        if not seen[out] then
            seen[out] = true
            self.out_streams[#self.out_streams + 1] = out
        end
    end
    sort(self.out_streams, function(a, b) return a.spec < b.spec end)
    for _, p in ipairs(opts.tasks or {}) do
        local ok, aerr = self:assign(p, self.saved[p])
        if not ok then
            self:close_streams()
            return nil, aerr
        end
    end
    return self
end

-- ---- the task lifecycle -------------------------------------------------------

local function sort_order(self)
    local order = {}
    for _, t in pairs(self.tasks) do
        order[#order + 1] = t
    end
    sort(order, function(a, b) return a.partition < b.partition end)
    self.order = order
end

--- Assigns task `p`: opens and restores its stores, seeks its inputs to
--- `entry` (its checkpoint entry; nil: the beginning) and calls init.
--- `give_up`: a message to hand to on_error instead of process() (see
--- tide.task). Returns true and the milliseconds it took, or nil and an
--- error (the task is not open then).
---@return boolean|nil ok, number|string ms_or_err
function Worker:assign(p, entry, give_up)
    if self.tasks[p] then
        return nil, str_format("task %d is assigned here already", p)
    end
    if type(p) ~= "number" or p < 0 or p >= self.nparts or p % 1 ~= 0 then
        return nil, str_format("no task %s: the job has tasks 0 to %d",
                               tostring(p), self.nparts - 1)
    end
    local t0 = now_ms()
    if self.standby then
        self.standby:off(p)        -- its snapshot is where restore starts
    end
    if self.eos and self.changed then
        -- Exactly-once: the open transaction is committed before a
        -- restore that may outlast its timeout.
        local ok, err = self:commit()
        if not ok then
            return nil, err
        end
    end
    local task, err = task_mod.open(self, p, entry, { give_up = give_up })
    if not task then
        return nil, str_format("task %d: %s", p, err)
    end
    self.saved[p] = entry
    self.tasks[p] = task
    sort_order(self)
    if self.notify then
        for _, part in ipairs(task.parts) do
            part.watch_id = self.notify:add(part.stream, part.partition)
        end
    end
    -- A commit now would write the checkpoint as it was; init's writes
    -- and sends, if any, mark the worker changed.
    local ok, herr = task:call_hook("init")
    if not ok then
        self:drop(task)
        return nil, herr
    end
    return true, now_ms() - t0
end

-- Closes a task without committing.
function Worker:drop(task)
    if self.notify then
        for _, part in ipairs(task.parts) do
            if part.watch_id then
                self.notify:remove(part.watch_id)
            end
        end
    end
    task:close()
    self.tasks[task.partition] = nil
    sort_order(self)
end

--- Revokes task `p`: the current batch is done already (this runs between
--- batches); calls close, commits, closes its stores and readers. Returns
--- true and the milliseconds it took, or nil and an error.
---@return boolean|nil ok, number|string ms_or_err
function Worker:revoke(p)
    local task = self.tasks[p]
    if not task then
        return nil, str_format("task %s is not assigned here", tostring(p))
    end
    local t0 = now_ms()
    self.changed = true
    local ok, err = task:call_hook("close")
    if not ok then
        return nil, err
    end
    ok, err = self:commit()
    if not ok then
        return nil, err
    end
    -- A commit that was rewound reopened the task at its checkpoint.
    task = self.tasks[p]
    self:drop(task)
    return true, now_ms() - t0
end

local function set_paused(self, p, on)
    local task = self.tasks[p]
    if not task then
        return nil, str_format("task %s is not assigned here", tostring(p))
    end
    task.paused = on
    return true
end

--- Pauses task `p`: its inputs are not read until resume; its offsets and
--- stores stay. Returns true, or nil and an error.
function Worker:pause(p)
    return set_paused(self, p, true)
end

--- Resumes task `p`. Returns true, or nil and an error.
function Worker:resume(p)
    return set_paused(self, p, false)
end

-- The lag in seconds of input partition `part` whose end is `last`, at
-- wall-clock time `rt` (ms): the age of its oldest unprocessed message,
-- taken as now minus the timestamp of the last message processed while
-- the lag in messages is above 0 (before the first one: of the next
-- message, when read ahead); 0 without lag; nil when unknown.
local function lag_seconds(part, last, rt)
    if type(last) ~= "number" then
        return nil
    end
    if last <= part.next then
        return 0
    end
    local ts = part.last_ts
    if ts == nil and part.head and part.head <= part.n then
        ts = part.buf[part.head].timestamp
    end
    if type(ts) ~= "number" or ts <= 0 then
        return nil
    end
    local secs = (rt - ts) / 1000
    return secs > 0 and secs or 0
end

--- Returns the status of every task here: { [p] = { state, offsets,
--- lag, processed, version } }.
--- With `full` it adds what /metrics shows (tide.metrics): per input
--- partition its stream, partition, next offset, end and lag_seconds;
--- messages sent, skipped and dead-lettered; the batch time histogram;
--- the watermark; the worker's last commit time. Under tide run --http
--- (self.tstats) also: errors = { [kind] = { [action] = n } }; latency
--- and commit (histograms { counts, sum, count }: metrics.histogram);
--- busy_ms, idle_ms, backpressure_ms; commits, commit_bytes; stores =
--- { [name] = { keys, bytes, hits, misses } }.
function Worker:status(full)
    local out = {}
    for p, task in pairs(self.tasks) do
        local s = {
            state = task.paused and "PAUSED"
                    or (task.chooser:is_bootstrapping() and "BOOTSTRAPPING"
                        or "RUNNING"),
            offsets = task:offsets(), lag = task:lag(),
            processed = task.processed, version = self.version,
        }
        if full then
            local parts = {}
            local rt = realtime()
            for i, part in ipairs(task.parts) do
                local _, last = part.stream:range(part.partition)
                parts[i] = { key = part.key, stream = part.name,
                             partition = part.partition, next = part.next,
                             ["end"] = last,
                             lag_seconds = lag_seconds(part, last, rt) }
            end
            s.parts = parts
            local ts = self.tstats and self.tstats[p]
            if ts then
                s.sent, s.skipped, s.dead = ts.sent, ts.skipped, ts.dead
                s.hist, s.hsum, s.hcount = ts.hist, ts.hsum, ts.hcount
                s.errors, s.latency, s.commit = ts.errors, ts.latency,
                                                ts.commit
                s.busy_ms, s.idle_ms = ts.busy_ms, ts.idle_ms
                s.backpressure_ms = ts.backpressure_ms
                s.commits, s.commit_bytes = ts.commits, ts.commit_bytes
            end
            if self.tstats then
                s.stores = self.state:counts(p)
            end
            local wm = task.ctx.watermark
            if type(wm) == "number" and wm > -math.huge and wm < math.huge
            then
                s.watermark = wm
            end
            s.commit_ms = self.last_commit_ms
        end
        out[p] = s
    end
    return out
end

--- Upper bounds (seconds) of the batch time histogram (tide.metrics).
_M.BATCH_BUCKETS = { 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
                     0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10 }
local BUCKETS = _M.BATCH_BUCKETS

--- Returns the /metrics counts of task `p` here (under tide run --http,
--- self.tstats), made on first use: they live as long as the worker, so
--- a task revoked and assigned again here counts on.
---@param p integer
---@return table
function Worker:task_stats(p)
    local ts = self.tstats[p]
    if not ts then
        ts = { sent = 0, skipped = 0, dead = 0, hist = {}, hsum = 0,
               hcount = 0, errors = {},
               latency = histogram(metrics.LATENCY_BUCKETS),
               commit = histogram(COMMIT_BUCKETS), commits = 0,
               commit_bytes = 0, busy_ms = 0, idle_ms = 0,
               backpressure_ms = 0 }
        for i = 1, #BUCKETS do
            ts.hist[i] = 0
        end
        self.tstats[p] = ts
    end
    return ts
end

-- Adds `ms` of `what` (idle_ms, backpressure_ms) to every running task.
local function add_time(self, what, ms)
    local order = self.order
    for t = 1, #order do
        local task = order[t]
        if not task.paused then
            local ts = self:task_stats(task.partition)
            ts[what] = ts[what] + ms
        end
    end
end

-- Counts one step of a task that took `n` messages in `secs` CPU seconds
-- and sent, skipped and dead-lettered what the worker's counters grew by.
local function count_step(self, p, secs, sent, skipped, dead)
    local ts = self:task_stats(p)
    ts.sent = ts.sent + sent
    ts.skipped = ts.skipped + skipped
    ts.dead = ts.dead + dead
    ts.hsum = ts.hsum + secs
    ts.hcount = ts.hcount + 1
    for i = 1, #BUCKETS do
        if secs <= BUCKETS[i] then
            ts.hist[i] = ts.hist[i] + 1
            break
        end
    end
end

-- ---- code swaps ---------------------------------------------------------------

--- Goes back to the code that ran before the last swap and marks the
--- failed version bad. Returns the bad version, or nil when there is no
--- previous code.
function Worker:rollback(why)
    local bad, job = self.version, self.prev_job
    if not job then
        return nil
    end
    self.bad[bad] = true
    self.job, self.version = job, self.prev_version
    self.prev_job, self.prev_version = nil, nil
    for _, task in pairs(self.tasks) do
        task.ctx.config = job.config
        task.ctx.version = self.version
        task.probation = 0
    end
    self.rolled_back = self.rolled_back + 1
    -- What the failed version holds goes now: it may have failed for want
    -- of memory, and LuaJIT does not collect before reporting that.
    collectgarbage()
    if self.on_rollback then
        -- Under a supervisor, which logs the rollback of every worker.
        self.log("info", str_format("reload: back on version %s here (%s "
                                    .. "failed: %s)", self.version, bad, why))
        self.on_rollback(bad, why)
    else
        self.log("warn", str_format("reload: version %s rolled back to %s: "
                                    .. "%s; it is not tried again until its "
                                    .. "files change", bad, self.version,
                                    why))
    end
    return bad
end

--- Swaps in `new` (a loaded and checked job) as version `new_id` for
--- every task, between batches; each task then runs `reload_probation`
--- messages on probation. Calls on_reload of each task. Returns true, or
--- nil and the reason (the old code runs again then).
function Worker:swap(new, new_id)
    local old_id = self.version
    self.prev_job, self.prev_version = self.job, old_id
    self.job, self.version = new, new_id
    local probation = new.reload_probation or PROBATION
    for _, task in pairs(self.tasks) do
        task.ctx.config = new.config
        task.ctx.version = new_id
        task.probation = probation
    end
    if new.on_reload then
        for _, task in ipairs(self.order) do
            local ok, _, msg = task:call_hook("on_reload", new.on_reload,
                                              old_id)
            if not ok then
                self:rollback(str_format("on_reload() of task %d raised: %s",
                                         task.partition, msg))
                return nil, str_format("version %s rolled back: on_reload() "
                                       .. "raised: %s", new_id, msg)
            end
        end
    end
    self.reloads = self.reloads + 1
    self.changed = true
    return true
end

-- ---- commit --------------------------------------------------------------------

--- Commits every task here, in the order of docs/design.md section 4:
--- drains the store caches into RocksDB and the changelogs, makes every
--- output and changelog record durable, snapshots the stores with their
--- changelog offsets, then has the checkpoint (input and changelog
--- offsets) replaced atomically: here, or by the supervisor.
---@return boolean|nil ok, string|nil err
function Worker:commit(force)
    if not self.changed and not force then
        return true           -- nothing to commit: the checkpoint stands
    end
    local t0 = now_ms()
    local ok, err = self:commit_now()
    if ok then
        self.last_commit_ms = now_ms() - t0
        if self.tstats then
            self:count_commit(self.last_commit_ms)
        end
    end
    return ok, err
end

--- Counts a commit that took `ms` for every task here (tide run --http):
--- its duration, and the bytes each task sent to its outputs and its
--- stores pushed to their changelogs since the previous one.
function Worker:count_commit(ms)
    for p, task in pairs(self.tasks) do
        local ts = self:task_stats(p)
        ts.commits = ts.commits + 1
        observe(ts.commit, COMMIT_BUCKETS, ms / 1000)
        local nb = task.ctx._pending.nb or 0
        local cl = self.state:log_bytes(p)
        ts.commit_bytes = ts.commit_bytes + (nb - (task.nb_seen or 0))
                          + (cl - (task.cl_seen or 0))
        task.nb_seen, task.cl_seen = nb, cl
    end
end

function Worker:commit_now()
    local st = self.state
    for _, task in pairs(self.tasks) do
        if task.timers then
            -- Kept with the state it goes with (tide.timers).
            local ok, err = task.timers:save_watermark(task.ctx.watermark)
            if not ok then
                return nil, str_format("commit: task %d: saving its "
                                       .. "watermark: %s", task.partition,
                                       tostring(err))
            end
        end
    end
    local ok, err = st:drain()
    if not ok then
        return nil, "commit: " .. err
    end
    for _, s in ipairs(self.streams) do
        ok, err = s:flush()
        if not ok then
            return nil, "commit: flushing outputs failed, checkpoint not "
                        .. "written: " .. tostring(err)
        end
    end
    local cls
    cls, err = st:snapshot()
    if not cls then
        return nil, "commit: " .. err
    end
    local entries = {}
    for p, task in pairs(self.tasks) do
        entries[p] = { inputs = task:offsets(), changelogs = cls[p] or {} }
    end
    local rewind
    if self.commit_fn then
        ok, err, rewind = self.commit_fn(entries)
    else
        for p, e in pairs(entries) do
            self.saved[p] = e
        end
        ok, err = self.ckpt:save(self.saved)
    end
    if not ok and rewind then
        return self:rewind(err)
    end
    if not ok then
        return nil, "commit: " .. tostring(err)
    end
    for p, e in pairs(entries) do
        self.saved[p] = e
    end
    st:committed(cls)
    self.commit_requested = false
    -- A deferred commit (tide.group) is made again at the next interval.
    self.changed = err == "deferred"
    return true
end

--- Exactly-once, after a transaction was aborted (its outputs and
--- changelog records are never seen): every task goes back to its last
--- commit, stores and input offsets, and carries on from there. Returns
--- true, or nil and an error when a task cannot be opened again.
function Worker:rewind(why)
    local t0 = now_ms()
    local list = {}
    for p, task in pairs(self.tasks) do
        list[#list + 1] = { p = p, paused = task.paused }
    end
    sort(list, function(a, b) return a.p < b.p end)
    for _, t in ipairs(list) do
        self:drop(self.tasks[t.p])
    end
    self.changed = false
    local names = {}
    for _, t in ipairs(list) do
        local ok, err = self:assign(t.p, self.saved[t.p])
        if not ok then
            return nil, str_format("commit: %s; then going back to the last "
                                   .. "commit failed: %s", tostring(why),
                                   tostring(err))
        end
        if t.paused then
            self:pause(t.p)
        end
        names[#names + 1] = tostring(t.p)
    end
    self.log("warn", str_format("commit failed (%s); tasks %s went back to "
                                .. "their last commit in %.0f ms",
                                tostring(why), concat(names, ","),
                                now_ms() - t0))
    self.rewinds = (self.rewinds or 0) + 1
    return true
end

-- ---- the loop --------------------------------------------------------------

--- Makes what the last batches sent readable by consumers at once
--- (durable only at the commit). Returns true, or nil and an error.
function Worker:publish()
    for _, out in ipairs(self.out_streams) do
        if out.dirty then
            out.dirty = false
            local ok, err = out.stream:publish()
            if not ok then
                return nil, str_format("sending to '%s': %s", out.spec, err)
            end
        end
    end
    if self.dlq_dirty then
        self.dlq_dirty = false
        local ok, err = self.dlq:publish()
        if not ok then
            return nil, str_format("writing to %s: %s", self.dlq_name, err)
        end
    end
    return true
end

function Worker:progress(force)
    local now = now_ms()
    if not force and now - (self.last_progress or 0) < PROGRESS_EVERY_MS then
        return
    end
    local secs = (now - self.started) / 1000
    local rate = secs > 0 and self.processed / secs or 0
    self.log("info", str_format(
        "%s%d messages processed (%.0f/s), %d skipped, %d dead-lettered",
        self.label or str_format("job '%s': ", self.job.name),
        self.processed, rate, self.skipped, self.dead),
        { processed = self.processed, rate = math.floor(rate + 0.5),
          skipped = self.skipped, dead = self.dead })
    self.last_progress = now
end

--- Closes every task (without committing) and stream.
function Worker:close_streams()
    for _, task in ipairs(self.order) do
        task:close()
    end
    self.tasks, self.order = {}, {}
    if self.state then
        self.state:close()       -- the stores; their changelogs are below
        self.state = nil
    end
    for _, s in ipairs(self.streams or {}) do
        s:close()
    end
    self.streams = {}
end

-- Stops: close hooks, then the last commit. Returns what run() returns.
function Worker:finish(err)
    if self.no_final_commit then
        err = err or false         -- no hooks: nothing may be sent
    end
    if not err and self.final_window and self.job.on_timer then
        -- --drain --final: every event timer fires, as if the watermark
        -- had passed the latest one.
        for _, task in ipairs(self.order) do
            local last = task.timers and task.timers:last_event()
            while last do
                local n, terr = task:fire_timers(last + 1)
                if not n then
                    err = terr
                    break
                end
                if n == 0 then
                    break
                end
            end
            if err then
                break
            end
        end
    end
    if not err and self.final_window and self.job.window then
        for _, task in ipairs(self.order) do
            local ok, herr = task:call_hook("window")
            if not ok then
                err = herr
                break
            end
        end
    end
    if not err then
        self.changed = true
        for _, task in ipairs(self.order) do
            local ok, herr = task:call_hook("close")
            if not ok then
                err = herr
                break
            end
        end
    end
    if not self.no_final_commit then
        local ok, cerr = self:commit()
        if not ok then
            err = err and (err .. "\n" .. cerr) or cerr
        end
    end
    if self.collect_stores and self.state then
        self.final_stores = self.state:dump()
    end
    self:progress(true)
    self:close_streams()
    if self.gc_stepmul then
        collectgarbage("setstepmul", self.gc_stepmul)
        self.gc_stepmul = nil
    end
    if err then
        return nil, err
    end
    return true
end

-- Runs window() of every task; a new version failing on probation is
-- rolled back and the old code runs the window instead.
function Worker:windows()
    for _, task in ipairs(self.order) do
        if task.paused then
            goto continue
        end
        local ok, err, msg = task:call_hook("window")
        if not ok and task.probation > 0 and self.prev_job then
            self:rollback(str_format("window() of task %d raised: %s",
                                     task.partition, msg))
            ok, err = task:call_hook("window")
        end
        if not ok then
            return nil, err
        end
        ::continue::
    end
    return true
end

-- Window ticks fall on wall-clock multiples of the interval, so that
-- every worker of a job (and every job with the same interval) ticks at
-- the same instants, as cron would. A tick missed while a batch ran is
-- not made up: the next one is the next multiple after now. Returns the
-- wall-clock time (ms) of the tick after rt.
local function next_tick(rt, every)
    return rt - rt % every + every
end

--- Runs until stopped (STOP from the loop, or self.stopping set by the
--- driver), or with drain until every input is read to its end; commits
--- and closes on the way out. Returns true, or nil and the error that
--- stopped the job.
---@return boolean|nil ok, string|nil err
function Worker:run()
    local job, loop = self.job, self.loop
    local msgs = {}
    self.gc_stepmul = collectgarbage("setstepmul", GC_STEPMUL)
    self.started = now_ms()
    self.last_progress = self.started

    local commit_every = job.commit_interval_ms
    if self.eos and job.source and job.source.commit_interval == nil then
        -- Exactly-once outputs are seen at commits: commit each second
        -- unless told otherwise.
        commit_every = 1000
    end
    local window_every = job.window_interval_ms
    local next_commit = self.started + commit_every
    local next_window = window_every and next_tick(realtime(), window_every)
    local stop, dirty = false, false
    local idle_ms = self.notify and IDLE_NOTIFIED_MS or IDLE_POLL_MS
    local unpublished, last_publish = false, 0

    while true do
        local got = 0
        local order = self.order
        -- What a round reads when every running task has a full batch.
        local full = 0
        for t = 1, #order do
            if not order[t].paused then
                full = full + task_mod.BATCH
            end
        end
        -- Per-task counts for /metrics, only under --http (tstats): CPU
        -- time, sends, errors of each step; wall time busy (steps that
        -- took messages), idle (steps that found none, waits for input)
        -- and backpressured (publishing), with one clock read per step.
        local tstats = self.tstats
        local tb = tstats and now_ms()
        for t = 1, #order do
            local task = order[t]
            if not task.paused then
                local c0, s0, k0, d0
                if tstats then
                    c0, s0, k0, d0 = os_clock(), self.sent, self.skipped,
                                     self.dead
                end
                local n, err = task:step(msgs)
                if not n then
                    return self:finish(err)
                end
                if tstats then
                    local t1 = now_ms()
                    local ts = self:task_stats(task.partition)
                    if n > 0 then
                        count_step(self, task.partition, os_clock() - c0,
                                   self.sent - s0, self.skipped - k0,
                                   self.dead - d0)
                        ts.busy_ms = ts.busy_ms + (t1 - tb)
                    else
                        ts.idle_ms = ts.idle_ms + (t1 - tb)
                    end
                    tb = t1
                end
                got = got + n
            end
        end
        if got > 0 then
            dirty = true
            self.changed = true
            unpublished = true
        end
        -- Outputs are published when the worker has caught up (a round
        -- with a short batch: the next one may wait) and at least every
        -- PUBLISH_MS while it is busy: each publish is a write per output
        -- partition, and doing it after every full round cost a
        -- pass-through job a fifth of its speed.
        if unpublished then
            local now = now_ms()
            if got < full or now - last_publish >= PUBLISH_MS then
                local ok, err = self:publish()
                if not ok then
                    return self:finish(err)
                end
                if tstats then
                    add_time(self, "backpressure_ms", now_ms() - now)
                end
                unpublished, last_publish = false, now
            end
        end

        local now = now_ms()
        if loop then
            local wait = 0
            if got == 0 and (not self.drain or self.idle) then
                wait = idle_ms
                if next_commit - now < wait then
                    wait = next_commit - now
                end
                if next_window and next_window - realtime() < wait then
                    wait = next_window - realtime()
                end
                local due = self.standby and self.standby:due()
                if due and due - now < wait then
                    wait = due - now
                end
                for t = 1, #order do
                    -- A max_idle wait that ends, a processing timer.
                    local at = not order[t].paused and order[t]:wake_at(now)
                    if at and at - now < wait then
                        wait = at - now
                    end
                end
                wait = wait > 0 and wait or 0
            end
            local ev = loop:poll(wait)
            if tstats and wait > 0 then
                local t1 = now_ms()
                add_time(self, "idle_ms", t1 - now)
                now = t1
            end
            if bit_band(ev, loop_mod.STOP) ~= 0 and not self.ignore_stop then
                stop = true
                self.log("info", "stopping: finishing the batch, then a "
                         .. "last commit")
            end
            if self.on_events then
                local ok, err = self.on_events(self, ev)
                if not ok then
                    return self:finish(err)
                end
            end
            now = now_ms()
        end

        local rt = next_window and realtime()
        if rt and next_window - rt > window_every then
            next_window = next_tick(rt, window_every)   -- clock set back
        elseif rt and rt >= next_window then
            local ok, err = self:windows()
            self.changed = true
            if not ok then
                return self:finish(err)
            end
            next_window = next_tick(rt, window_every)
            -- commit_interval may not change by reload; window_interval
            -- neither (refused), so the timers stay.
        end
        -- Draining: an idle round after a commit means every input is read
        -- to its end; before that, sends still buffered may feed an input
        -- of this very job, so commit (which flushes them) and look again.
        local drained = self.drain and got == 0
        if drained and dirty then
            self.commit_requested = true
            drained = false
        end
        if self.hold_drain then
            -- Under a supervisor, one worker's end of input is not the
            -- job's: another worker may still send to this one's inputs.
            -- Report being idle and wait to be told to stop.
            self.idle = drained
            drained = false
        end
        if self.commit_requested or now >= next_commit then
            local ok, err = self:commit()
            if not ok then
                return self:finish(err)
            end
            next_commit = now + commit_every
            dirty = false
            self:progress(false)
        end
        if self.standby then
            self.standby:step(now)
        end
        if self.on_round_end then
            self.on_round_end(self)
        end
        if stop or drained or self.stopping then
            break
        end
    end
    return self:finish(nil)
end

--- Returns counters: processed, skipped, dead-lettered messages.
function Worker:stats()
    return { processed = self.processed, skipped = self.skipped,
             dead_lettered = self.dead, tasks = self.nparts,
             reloads = self.reloads, rolled_back = self.rolled_back,
             version = self.version }
end

return _M
