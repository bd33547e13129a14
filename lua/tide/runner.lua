--- The container: runs one task per input partition of a job, in batches,
--- with per-message atomic sends, the on_error policy, commits, windows,
--- stop and drain (docs/design.md sections 3 and 4, docs/runtime.md).
local system = require("tide.system")
local checkpoint = require("tide.checkpoint")
local state_mod = require("tide.state")
local headers = require("tide.headers")
local loop_mod = require("tide.loop")
local reload_mod = require("tide.reload")
local job_mod = require("tide.job")

local type, pairs, ipairs, tostring, select = type, pairs, ipairs, tostring, select
local setmetatable, xpcall, error = setmetatable, xpcall, error
local str_format, concat = string.format, table.concat
local traceback = debug.traceback
local bit_band = require("bit").band
local now_ms = loop_mod.now

local _M = {}
local mt = { __index = _M }

local BATCH = 256
local SETTLE_MS = 50            -- quiet time after a file change
local PROBATION = 1000          -- default reload_probation
local IDLE_WAIT_MS = 50
-- The GC's step multiplier while a job runs. Messages make short-lived
-- tables and strings at a high rate; bigger incremental steps (each still
-- bounded, so pauses stay short) cut the GC's share of a pass-through job
-- by about a fifth (bench/bench_job.lua). Lua's default is 200.
local GC_STEPMUL = 1000
local PROGRESS_EVERY_MS = 10000

-- ---- ctx -------------------------------------------------------------------

local Ctx = {}
Ctx.__index = Ctx

--- Sends `value` with `key` to output `stream`. The send is held until
--- process() returns, so a message that raises sends nothing. The record
--- gets the timestamp of the message being processed (now, from init,
--- window and close), as Kafka Streams does.
function Ctx:send(stream, key, value)
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
    pend.n = n + 4
end

--- Asks for a commit after the current batch.
function Ctx:commit()
    self._runner.commit_requested = true
end

-- ---- logging ---------------------------------------------------------------

local function default_log(level, line)
    io.stderr:write(os.date("!%Y-%m-%dT%H:%M:%SZ "), level, " ", line, "\n")
end

-- ---- construction ------------------------------------------------------------

local function fail_open(self, err)
    self:close_streams()
    return nil, err
end

--- Opens the job's streams and checkpoint and makes its tasks.
---@param job table   a job from tide.job.load/validate
---@param env table   { data_dir = ..., mem = ... }
---@param opts table  { drain = bool, loop = tide.loop object or nil, log = fn,
---                   overrides = -c list, load_limit_ms = reload time limit }
---@return table|nil runner, string|nil err
function _M.new(job, env, opts)
    opts = opts or {}
    local self = setmetatable({
        job = job, env = env, drain = opts.drain, loop = opts.loop,
        log = opts.log or default_log, streams = {}, tasks = {},
        collect_stores = opts.collect_stores,
        overrides = opts.overrides, load_limit_ms = opts.load_limit_ms,
        bad = {}, reloads = 0, refused = 0,
        rolled_back = 0,
        final_window = opts.final_window,
        processed = 0, skipped = 0, dead = 0, commit_requested = false,
    }, mt)

    local nparts, first
    self.inputs = {}
    -- An input that is also an output (a job that re-keys its own input,
    -- as pageview_counts does) is created like outputs are, once the other
    -- inputs have told the partition count.
    local is_output = {}
    for _, o in ipairs(job.outputs) do
        is_output[o.system .. ":" .. o.name] = true
    end
    local order = {}
    for pass = 1, 2 do
        for i, inp in ipairs(job.inputs) do
            local own = is_output[inp.system .. ":" .. inp.name] == true
            if own == (pass == 2) then
                order[#order + 1] = i
            end
        end
    end
    for _, i in ipairs(order) do
        local inp = job.inputs[i]
        local own = is_output[inp.system .. ":" .. inp.name]
        local s, err = system.open(env, inp.spec, {
            create = own and nparts ~= nil, partitions = nparts })
        if not s then
            if own and not nparts then
                err = err .. "; it is also an output, but no other input "
                      .. "exists to take its partition count from"
            end
            return fail_open(self, str_format("input '%s': %s", inp.spec, err))
        end
        self.streams[#self.streams + 1] = s
        local n = s:count()
        if nparts and n ~= nparts then
            return fail_open(self, str_format(
                "inputs must have equal partition counts (one task per "
                .. "partition): '%s' has %d, '%s' has %d", first, nparts,
                inp.spec, n))
        end
        nparts, first = n, first or inp.spec
        self.inputs[i] = {
            spec = inp.spec, name = inp.name, stream = s,
            key = inp.system .. ":" .. inp.name,
            kdec = inp.key_serde.decode, vdec = inp.serde.decode,
        }
    end
    self.nparts = nparts

    self.outs = {}
    local names = {}
    for _, o in ipairs(job.outputs) do
        local s, err = system.open(env, o.spec, { create = true,
                                                  partitions = nparts })
        if not s then
            return fail_open(self, str_format("output '%s': %s", o.spec, err))
        end
        self.streams[#self.streams + 1] = s
        local out = { spec = o.spec, stream = s, kenc = o.key_serde.encode,
                      venc = o.serde.encode }
        self.outs[o.spec] = out
        if self.outs[o.name] == nil then
            self.outs[o.name] = out
        end
        names[#names + 1] = o.spec
    end
    self.out_list = #names > 0 and concat(names, ", ") or "none"

    if job.on_error == "dead_letter" then
        local spec = job.inputs[1].system .. ":" .. job.name .. "-dead-letters"
        local s, err = system.open(env, spec, { create = true,
                                                partitions = nparts })
        if not s then
            return fail_open(self, str_format("dead-letter stream '%s': %s",
                                              spec, err))
        end
        self.streams[#self.streams + 1] = s
        self.dlq = s
        self.dlq_name = spec
    end

    self.version = job.path and reload_mod.version(job.path, job.modules)
                   or "none"
    self.ckpt = checkpoint.new(env, job.name)
    local saved, err = self.ckpt:load()
    if not saved then
        return fail_open(self, err)
    end
    local ckpt_path = self.ckpt.path or "checkpoint"
    local keys = {}
    for i, inp in ipairs(self.inputs) do
        keys[i] = inp.key
    end
    local ok
    ok, err = checkpoint.check(saved, ckpt_path, job.name, nparts, keys)
    if not ok then
        return fail_open(self, err)
    end
    -- An offset past the end of its partition: the stream was deleted and
    -- made again, and new records below that offset would be skipped.
    for p = 0, nparts - 1 do
        for _, inp in ipairs(self.inputs) do
            local off = saved[p] and saved[p].inputs[inp.key]
            if off then
                local first, last = inp.stream:range(p)
                if not first then
                    return fail_open(self, str_format(
                        "input '%s' partition %d: %s", inp.spec, p,
                        tostring(last)))
                end
                if off > last then
                    return fail_open(self, str_format(
                        "%s: task %d resumes input '%s' at offset %.0f, but "
                        .. "its partition %d ends at offset %.0f: the stream "
                        .. "was deleted and made again, or its files lost; "
                        .. "delete the job's checkpoint.json and stores/ to "
                        .. "reprocess it from the beginning, or restore the "
                        .. "stream", ckpt_path, p, inp.key, off, p, last))
                end
            end
        end
    end
    local st
    st, err = state_mod.open(job, env, nparts, saved, self.log)
    if not st then
        return fail_open(self, err)
    end
    self.state = st
    for _, cl in ipairs(st:changelogs()) do
        self.streams[#self.streams + 1] = cl
    end

    for p = 0, nparts - 1 do
        local stores = st:stores(p)
        local ctx = setmetatable({
            job = job.name, partition = p, config = job.config,
            stores = stores, memo = {}, version = self.version,
            _outs = self.outs, _out_list = self.out_list,
            _pending = { n = 0 }, _runner = self,
        }, Ctx)
        local task = { partition = p, ctx = ctx, inputs = {}, probation = 0 }
        local list = {}
        for _, spec in ipairs(job.store_list or {}) do
            list[#list + 1] = stores[spec.name]
        end
        task.stores = #list > 0 and list or nil
        for i, inp in ipairs(self.inputs) do
            local off = saved[p] and saved[p].inputs[inp.key]
            local r, rerr = inp.stream:reader(p, off or "beginning")
            if not r then
                return fail_open(self, str_format("input '%s' partition %d: %s",
                                                  inp.spec, p, rerr))
            end
            task.inputs[i] = {
                spec = inp.spec, name = inp.name, key = inp.key, reader = r,
                kdec = inp.kdec, vdec = inp.vdec, next = r:offset(),
            }
        end
        self.tasks[p + 1] = task
    end
    return self
end

function _M:close_streams()
    for _, t in ipairs(self.tasks) do
        for _, inp in ipairs(t.inputs) do
            inp.reader:close()
        end
    end
    if self.state then
        self.state:close()       -- the stores; their changelogs are below
        self.state = nil
    end
    for _, s in ipairs(self.streams) do
        s:close()
    end
    self.streams = {}
    self.tasks = {}
end

-- ---- sends, errors -----------------------------------------------------------

-- A failure of the system itself (a disk error): never skipped.
local SYSTEM_ERROR = setmetatable({}, { __tostring = function()
    return "system error"
end })

local function push_pending(self, pend)
    for j = 1, pend.n, 4 do
        local out = pend[j]
        local ok, err = out.stream:push(pend[j + 1], pend[j + 2], nil,
                                        pend[j + 3])
        if not ok then
            pend.n = 0
            self.sys_err = str_format("sending to '%s': %s", out.spec, err)
            error(SYSTEM_ERROR)
        end
        pend[j], pend[j + 1], pend[j + 2], pend[j + 3] = nil, nil, nil, nil
    end
    pend.n = 0
end

local function on_error(e)
    if e == SYSTEM_ERROR then
        return e
    end
    local msg = job_mod.errtext(e)
    return { msg = msg, tb = traceback(msg, 2) }
end

-- What an xpcall with on_error failed with. Running out of memory skips
-- the handler (LuaJIT raises it as is), and so may an error inside it:
-- then the value is the bare message.
local function caught(e)
    if type(e) == "table" and (e == SYSTEM_ERROR or e.msg ~= nil) then
        return e
    end
    local msg = job_mod.errtext(e)
    return { msg = msg, tb = msg .. "\n(no traceback)" }
end

-- Processes msgs[from..n] of one input of one task. Runs under xpcall;
-- self.cur says which message was being processed when it raised.
local function batch_body(self, task, inp, msgs, from, n)
    local process, ctx = self.job.process, task.ctx
    local pend = ctx._pending
    local kdec, vdec = inp.kdec, inp.vdec
    local stores = task.stores                 -- nil without state
    for i = from, n do
        local m = msgs[i]
        local rk, rv = m.key, m.value
        self.cur, self.raw_k, self.raw_v, self.raw_h = i, rk, rv, m.headers
        ctx._ts = m.timestamp
        if rv ~= nil then
            m.value = vdec(rv)
        end
        if rk ~= nil then
            m.key = kdec(rk)
        end
        if m.headers ~= nil then
            m.headers = headers.decode(m.headers)
        end
        self.in_code = true
        process(m, ctx)
        self.in_code = false
        if stores then
            for j = 1, #stores do
                if stores[j].pkeys[1] ~= nil then
                    state_mod.apply(stores[j])
                end
            end
        end
        if pend.n > 0 then
            push_pending(self, pend)
        end
        inp.next = m.offset + 1
        msgs[i] = nil
        local prob = task.probation
        if prob > 0 then
            task.probation = prob - 1
        end
    end
    self.processed = self.processed + (n - from + 1)
end

local function dead_letter(self, task, inp, m, err)
    local hdrs = headers.encode({
        ["tide.error"] = err, ["tide.stream"] = inp.spec,
        ["tide.partition"] = tostring(task.partition),
        ["tide.offset"] = str_format("%.0f", m.offset),
        ["tide.job"] = self.job.name,
    })
    local ok, perr = self.dlq:push(self.raw_k, self.raw_v, task.partition,
                                   m.timestamp, hdrs)
    if not ok then
        return nil, str_format("writing to %s: %s", self.dlq_name, perr)
    end
    return true
end

-- Runs a batch, applying on_error to each message that raises. Returns
-- true, or nil and the line to stop the job with.
function _M:process_batch(task, inp, msgs, n)
    local from = 1
    while from <= n do
        local ok, e = xpcall(batch_body, on_error, self, task, inp, msgs,
                             from, n)
        if ok then
            return true
        end
        e = caught(e)
        local i = self.cur
        local m = msgs[i]
        task.ctx._pending.n = 0          -- the message leaves no trace
        if task.stores then
            for j = 1, #task.stores do
                state_mod.discard(task.stores[j])
            end
        end
        self.processed = self.processed + (i - from)
        if e == SYSTEM_ERROR then
            return nil, self.sys_err
        end
        local where = str_format("stream '%s' partition %d offset %.0f",
                                 inp.spec, task.partition, m.offset)
        local policy = self.job.on_error
        if self.in_code and task.probation > 0 and self.prev_job then
            -- New code failed on probation: back to the old code, which
            -- processes this very message again.
            self:rollback(str_format("process() raised on %s: %s", where,
                                     e.msg))
            policy = "retry"
        end
        self.in_code = false
        if policy == "retry" then
            m.key, m.value, m.headers = self.raw_k, self.raw_v, self.raw_h
            from = i
        elseif policy == "fail" then
            return nil, str_format("job '%s' failed on %s: %s\n%s",
                                   self.job.name, where, e.msg, e.tb)
        elseif policy == "skip" then
            self.skipped = self.skipped + 1
            self.log("warn", str_format("skipped %s: %s", where, e.msg))
        else
            local dok, derr = dead_letter(self, task, inp, m, e.msg)
            if not dok then
                return nil, derr
            end
            self.dead = self.dead + 1
            self.log("warn", str_format("dead-lettered %s to %s: %s", where,
                                        self.dlq_name, e.msg))
        end
        if policy ~= "retry" then
            inp.next = m.offset + 1
            from = i + 1
        end
    end
    return true
end

-- ---- hot reload ---------------------------------------------------------------

local function on_reload_body(fn, ctx, old)
    fn(ctx, old)
end

--- Goes back to the code that ran before the last reload and marks the
--- failed version bad: it is not tried again until its files change.
function _M:rollback(why)
    local bad, job = self.version, self.prev_job
    self.bad[bad] = true
    self.job, self.version = job, self.prev_version
    self.prev_job, self.prev_version = nil, nil
    for _, task in ipairs(self.tasks) do
        task.ctx.config = job.config
        task.ctx.version = self.version
        task.probation = 0
    end
    self.rolled_back = self.rolled_back + 1
    -- What the failed version holds goes now: it may have failed for want
    -- of memory, and LuaJIT does not collect before reporting that.
    collectgarbage()
    self.log("warn", str_format("reload: version %s rolled back to %s: %s; "
                                .. "it is not tried again until its files "
                                .. "change", bad, self.version, why))
end

--- Loads the job's files again and, if they are a new valid version that
--- keeps inputs, outputs and stores, swaps it in for every task (between
--- batches; nothing else changes). Returns true and a line, or nil and
--- the reason; `quiet` leaves an unchanged version out of the log.
function _M:reload(trigger, quiet)
    local t0 = now_ms()
    local job = self.job
    local id = reload_mod.version(job.path, job.modules)
    if id == nil then
        local msg = str_format("cannot read %s", job.path)
        self.log("warn", str_format("reload (%s): %s; still running "
                                    .. "version %s", trigger, msg,
                                    self.version))
        return nil, msg
    end
    if id == self.version then
        if not quiet then
            self.log("info", str_format("reload (%s): version %s is already "
                                        .. "running", trigger, id))
        end
        return true, "version " .. id .. " is already running"
    end
    if self.bad[id] then
        local msg = str_format("version %s failed before; it is not tried "
                               .. "again until its files change", id)
        if not quiet then
            self.log("warn", str_format("reload (%s): %s", trigger, msg))
        end
        return nil, msg
    end
    local new, why = reload_mod.prepare(job, self.overrides,
                                        self.load_limit_ms)
    if not new then
        self.bad[id] = true
        self.refused = self.refused + 1
        local msg = str_format("version %s refused: %s", id, why)
        self.log("warn", str_format("reload (%s) of %s: %s; still running "
                                    .. "version %s", trigger, job.path, msg,
                                    self.version))
        return nil, msg
    end
    local new_id = reload_mod.version(new.path, new.modules) or id
    local old_id = self.version
    self.prev_job, self.prev_version = job, old_id
    self.job, self.version = new, new_id
    local probation = new.reload_probation or PROBATION
    for _, task in ipairs(self.tasks) do
        task.ctx.config = new.config
        task.ctx.version = new_id
        task.probation = probation
    end
    if new.on_reload then
        for _, task in ipairs(self.tasks) do
            local ok, e = xpcall(on_reload_body, on_error, new.on_reload,
                                 task.ctx, old_id)
            if ok then
                local pend = task.ctx._pending
                if pend.n > 0 then
                    ok, e = xpcall(push_pending, on_error, self, pend)
                end
            end
            if not ok then
                e = caught(e)
                task.ctx._pending.n = 0
                local msg = e == SYSTEM_ERROR and self.sys_err or e.msg
                self:rollback(str_format("on_reload() of task %d raised: %s",
                                         task.partition, msg))
                return nil, str_format("version %s rolled back: on_reload() "
                                       .. "raised: %s", new_id, msg)
            end
        end
    end
    self.reloads = self.reloads + 1
    local msg = str_format("version %s -> %s, swapped in %.1f ms; on "
                           .. "probation for %d messages per task", old_id,
                           new_id, now_ms() - t0, probation)
    self.log("info", str_format("reloaded %s (%s): %s", job.path, trigger,
                                msg))
    return true, msg
end

-- Calls init, window or close of one task; its sends go out as usual.
local function hook_body(self, task, fn)
    task.ctx._ts = nil
    fn(task.ctx)
    if task.stores then
        for j = 1, #task.stores do
            state_mod.apply(task.stores[j])
        end
    end
    local pend = task.ctx._pending
    if pend.n > 0 then
        push_pending(self, pend)
    end
end

function _M:call_hook(task, name)
    local fn = self.job[name]
    if not fn then
        return true
    end
    local ok, e = xpcall(hook_body, on_error, self, task, fn)
    if ok then
        return true
    end
    e = caught(e)
    task.ctx._pending.n = 0
    if task.stores then
        for j = 1, #task.stores do
            state_mod.discard(task.stores[j])
        end
    end
    if e == SYSTEM_ERROR then
        return nil, self.sys_err
    end
    if name == "window" and task.probation > 0 and self.prev_job then
        -- New code failed on probation, as in process_batch: back to the
        -- old code, which runs this task's window instead.
        self:rollback(str_format("window() of task %d raised: %s",
                                 task.partition, e.msg))
        return self:call_hook(task, name)
    end
    return nil, str_format("job '%s' failed in %s() of task %d: %s\n%s",
                           self.job.name, name, task.partition, e.msg, e.tb)
end

-- ---- commit --------------------------------------------------------------------

--- Commits, in the order of docs/design.md section 4: drains the store caches into
--- RocksDB and the changelogs, makes every output and changelog record
--- durable, snapshots the stores with their changelog offsets, then
--- replaces the checkpoint (input and changelog offsets) atomically.
---@return boolean|nil ok, string|nil err
function _M:commit()
    local st = self.state
    if st then
        local ok, err = st:drain()
        if not ok then
            return nil, "commit: " .. err
        end
    end
    for _, s in ipairs(self.streams) do
        local ok, err = s:flush()
        if not ok then
            return nil, "commit: flushing outputs failed, checkpoint not "
                        .. "written: " .. tostring(err)
        end
    end
    local cls = {}
    if st then
        local err
        cls, err = st:snapshot()
        if not cls then
            return nil, "commit: " .. err
        end
    end
    local tasks = {}
    for _, task in ipairs(self.tasks) do
        local offs = {}
        for _, inp in ipairs(task.inputs) do
            offs[inp.key] = inp.next
        end
        tasks[task.partition] = { inputs = offs,
                                  changelogs = cls[task.partition] }
    end
    local ok, err = self.ckpt:save(tasks)
    if not ok then
        return nil, "commit: " .. err
    end
    if st then
        st:committed(cls)
    end
    self.commit_requested = false
    return true
end

-- ---- the loop --------------------------------------------------------------

function _M:progress(force)
    local now = now_ms()
    if not force and now - (self.last_progress or 0) < PROGRESS_EVERY_MS then
        return
    end
    local secs = (now - self.started) / 1000
    self.log("info", str_format(
        "job '%s': %d messages processed (%.0f/s), %d skipped, %d "
        .. "dead-lettered", self.job.name, self.processed,
        secs > 0 and self.processed / secs or 0, self.skipped, self.dead))
    self.last_progress = now
end

-- Stops: close hooks, then the last commit. Returns what run() returns.
function _M:finish(err)
    if not err and self.final_window and self.job.window then
        for _, task in ipairs(self.tasks) do
            local ok, herr = self:call_hook(task, "window")
            if not ok then
                err = herr
                break
            end
        end
    end
    if not err then
        for _, task in ipairs(self.tasks) do
            local ok, herr = self:call_hook(task, "close")
            if not ok then
                err = herr
                break
            end
        end
    end
    local ok, cerr = self:commit()
    if not ok then
        err = err and (err .. "\n" .. cerr) or cerr
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

--- Runs until stopped (SIGINT/SIGTERM through opts.loop), or with drain
--- until every input is read to its end; commits and closes on the way
--- out. Returns true, or nil and the error that stopped the job.
---@return boolean|nil ok, string|nil err
function _M:run()
    local job, tasks, loop = self.job, self.tasks, self.loop
    local msgs = {}
    self.gc_stepmul = collectgarbage("setstepmul", GC_STEPMUL)
    self.started = now_ms()
    self.last_progress = self.started

    for _, task in ipairs(tasks) do
        local ok, err = self:call_hook(task, "init")
        if not ok then
            return self:finish(err)
        end
    end

    local commit_every = job.commit_interval_ms
    local window_every = job.window_interval_ms
    local next_commit = self.started + commit_every
    local next_window = window_every and self.started + window_every
    local stop, dirty, reload_at = false, false, nil

    while true do
        local got = 0
        for t = 1, #tasks do
            local task = tasks[t]
            local inputs = task.inputs
            for i = 1, #inputs do
                local inp = inputs[i]
                local n, err = inp.reader:poll(BATCH, msgs)
                if not n then
                    return self:finish(str_format("reading '%s' partition "
                                                  .. "%d: %s", inp.spec,
                                                  task.partition, err))
                end
                if n > 0 then
                    got = got + n
                    local ok, perr = self:process_batch(task, inp, msgs, n)
                    if not ok then
                        return self:finish(perr)
                    end
                end
            end
        end

        local now = now_ms()
        if loop then
            local wait = 0
            if got == 0 and not self.drain then
                wait = IDLE_WAIT_MS
                if next_commit - now < wait then
                    wait = next_commit - now
                end
                if next_window and next_window - now < wait then
                    wait = next_window - now
                end
                if reload_at and reload_at - now < wait then
                    wait = reload_at - now
                end
                wait = wait > 0 and wait or 0
            end
            local ev = loop:poll(wait)
            if bit_band(ev, loop_mod.STOP) ~= 0 then
                stop = true
                self.log("info", "stopping: finishing the batch, then a "
                         .. "last commit")
            end
            if bit_band(ev, loop_mod.RELOAD) ~= 0 then
                self:reload("SIGHUP")
            end
            if bit_band(ev, loop_mod.CHANGE) ~= 0 then
                reload_at = now_ms() + SETTLE_MS    -- let the writes settle
            end
            if bit_band(ev, loop_mod.COMMAND) ~= 0 then
                while true do
                    local cmd = loop:pop_command()
                    if not cmd then
                        break
                    end
                    local line
                    if cmd == "reload" then
                        local ok, msg = self:reload("tide reload")
                        line = (ok and "ok: " or "error: ") .. msg
                    else
                        line = "error: unknown command '" .. cmd
                               .. "' (known: reload)"
                    end
                    loop:reply(line .. "\n")
                end
            end
            now = now_ms()
            if reload_at and now >= reload_at then
                reload_at = nil
                self:reload("file change", true)
            end
        end

        if next_window and now >= next_window then
            for _, task in ipairs(tasks) do
                local ok, err = self:call_hook(task, "window")
                if not ok then
                    return self:finish(err)
                end
            end
            next_window = now + window_every
        end
        if got > 0 then
            dirty = true
        end
        -- Draining: an idle round after a commit means every input is read
        -- to its end; before that, sends still buffered may feed an input
        -- of this very job, so commit (which flushes them) and look again.
        local drained = self.drain and got == 0
        if drained and dirty then
            self.commit_requested = true
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
        if stop or drained then
            break
        end
    end
    return self:finish(nil)
end

--- Returns counters: processed, skipped, dead-lettered messages.
function _M:stats()
    return { processed = self.processed, skipped = self.skipped,
             dead_lettered = self.dead, tasks = self.nparts,
             reloads = self.reloads, reloads_refused = self.refused,
             rolled_back = self.rolled_back, version = self.version }
end

return _M
