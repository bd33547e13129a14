--- One task: the input partitions it reads (through its chooser), its
--- stores and ctx, and the processing of a batch with per-message atomic
--- sends and the on_error policy (docs/container.md "A task").
local state_mod = require("tide.state")
local headers = require("tide.headers")
local job_mod = require("tide.job")
local ctx_mod = require("tide.ctx")
local chooser_mod = require("tide.chooser")
local timers_mod = require("tide.timers")
local tables_mod = require("tide.tables")
local serde = require("tide.serde")
local realtime = require("tide.loop").realtime
local pretty = require("tide.repl.pretty")
local metrics = require("tide.metrics")

local type, ipairs, tostring = type, ipairs, tostring
local INF, NEG_INF = math.huge, -math.huge
local setmetatable, xpcall, error, pcall = setmetatable, xpcall, error, pcall
local str_format = string.format
local traceback = debug.traceback
local observe, LATENCY_BUCKETS = metrics.observe, metrics.LATENCY_BUCKETS

local _M = {}
local Task = {}
local mt = { __index = Task }

_M.BATCH = 256

-- What job code was running, in the watch slot the supervisor reads.
_M.KIND = { process = 1, window = 2, init = 3, on_reload = 4, close = 5,
           eval = 6, on_timer = 7 }

-- The most timers one step fires: a step stays short however many are due.
_M.TIMERS_PER_STEP = 1024
local KIND_PROCESS = 1

-- A failure of the system itself (a disk error): never skipped.
local SYSTEM_ERROR = setmetatable({}, { __tostring = function()
    return "system error"
end })
_M.SYSTEM_ERROR = SYSTEM_ERROR

-- A message the supervisor said to give up on (it stopped the worker
-- twice at it: time or memory); raised instead of calling process().
local GIVE_UP = setmetatable({}, { __tostring = function()
    return "given up"
end })

--- Opens task `p` in worker `w` from its checkpoint entry (nil: from the
--- beginning): its stores (restored), its readers (at the checkpoint),
--- ctx and chooser. opts.give_up = { key, offset, error, text }: the
--- message the supervisor gave up on. Returns the task, or nil and an
--- error (nothing stays open).
---@return table|nil task, string|nil err
function _M.open(w, p, entry, opts)
    local t0 = w.now()
    local ok, err = w.state:add_task(p, entry)
    if not ok then
        return nil, err
    end
    local stores = w.state:stores(p)
    local self = setmetatable({
        w = w, partition = p, ctx = ctx_mod.new(w, p, stores), parts = {},
        probation = 0, paused = false, give_up = opts and opts.give_up,
        processed = 0,
    }, mt)
    local list = {}
    for _, spec in ipairs(w.job.store_list or {}) do
        list[#list + 1] = stores[spec.name]
    end
    self.stores = #list > 0 and list or nil
    local tst = stores[timers_mod.STORE]
    if tst then
        local ks = serde.get(w.job.key_serde or "string")
        self.timers = timers_mod.new(tst, ks.encode, ks.decode)
        self.ctx._timers = self.timers
        -- The watermark never goes back, not even through a restart:
        -- a message late before the crash stays late after it.
        local ok, wm = pcall(self.timers.saved_watermark, self.timers)
        if ok and wm then
            self.ctx.watermark = wm
            self.timers.saved_wm = wm
        end
    end
    for idx, desc in ipairs(w.topo:parts_of(p)) do
        local inp = w.topo.inputs[desc.input]
        local off = entry and entry.inputs[desc.key]
        local r, rerr = inp.stream:reader(desc.partition, off or "beginning")
        if not r then
            self:close()
            return nil, str_format("input '%s' partition %d: %s", inp.spec,
                                   desc.partition, rerr)
        end
        local part = {
            idx = idx, input = desc.input, key = desc.key, spec = inp.spec,
            name = inp.name, partition = desc.partition, reader = r,
            kdec = inp.kdec, vdec = inp.vdec, next = r:offset(),
            priority = inp.priority, stream = inp.stream,
            -- Event time (docs/time.md): the newest seen, and when data
            -- last came (an idle partition stops holding the watermark).
            tsfn = false, max_et = NEG_INF, last_data = t0,
        }
        local jin = w.job.inputs[desc.input]
        if jin.table then
            -- A table input (tide.tables): tide writes its records into
            -- the table's store, then calls on_table; process() never
            -- sees them. It does not hold the watermark back.
            local tbl = self.ctx.tables[jin.name]
            part.table = tbl
            part.tproc = function(m, ctx)
                local on_table = w.job.on_table
                local old = tables_mod.update(tbl, m, w.raw_v,
                                              ctx.event_time,
                                              on_table ~= nil)
                if on_table then
                    on_table(m, old, ctx)
                end
            end
        end
        if inp.bootstrap then
            local first, last = inp.stream:range(desc.partition)
            if not first then
                self:close()
                return nil, str_format("input '%s' partition %d: %s",
                                       inp.spec, desc.partition,
                                       tostring(last))
            end
            part.bootstrap_end = last
            part.bootstrapped = part.next >= last
        end
        self.parts[idx] = part
    end
    self.chooser = chooser_mod.new(self.parts, { now = w.now })
    self.ts_job = nil                  -- the job whose timestamp fns parts use
    if self.chooser:is_bootstrapping() then
        local started = w.now()
        self.chooser.on_bootstrapped = function()
            w.log("info", str_format("task %d: bootstrap inputs read to "
                                     .. "their ends in %.0f ms; reading "
                                     .. "every input now", p,
                                     w.now() - started))
        end
    end
    self.open_ms = w.now() - t0
    return self
end

--- Closes the task's readers and stores (commit first: what the stores
--- hold past the checkpoint is lost otherwise).
function Task:close()
    for _, part in ipairs(self.parts) do
        part.reader:close()
    end
    self.parts = {}
    self.w.state:remove_task(self.partition)
end

--- Returns { [key] = next offset } of every input partition.
function Task:offsets()
    local offs = {}
    for _, part in ipairs(self.parts) do
        offs[part.key] = part.next
    end
    return offs
end

--- Returns the messages not yet read, summed over the task's input
--- partitions (nil when a partition cannot tell).
function Task:lag()
    local lag = 0
    for _, part in ipairs(self.parts) do
        local first, last = part.stream:range(part.partition)
        if not first then
            return nil
        end
        if last > part.next then
            lag = lag + (last - part.next)
        end
    end
    return lag
end

-- ---- sends, errors -----------------------------------------------------------

-- How to get past message `offset` of `part` that stopped job `job` under
-- on_error = "fail": the command that moves its task past it.
local function skip_hint(job, part, offset)
    local spec = part.spec
    if spec:sub(1, 6) == "kafka:" then
        return str_format("to skip it, with every process of the job "
                          .. "stopped: kafka-consumer-groups --group %s "
                          .. "--reset-offsets --topic %s:%d --to-offset "
                          .. "%.0f --execute", job, spec:sub(7),
                          part.partition, offset + 1)
    end
    return str_format("to skip it: tide offsets reset %s --input %s "
                      .. "--partition %d --to %.0f --keep-state", job, spec,
                      part.partition, offset + 1)
end

-- Counts a message that failed or was set aside, for /metrics (only
-- under tide run --http: w.tstats): `kind` decode, process, timeout,
-- memory, late or job; `action` skip, dead_letter or drop.
local function count_error(w, p, kind, action)
    if w.tstats == nil then
        return
    end
    local errs = w:task_stats(p).errors
    local k = errs[kind]
    if k == nil then
        k = {}
        errs[kind] = k
    end
    k[action] = (k[action] or 0) + 1
end

-- What failed with error `e` on message i of `part` (w.raw_* its bytes):
-- "timeout" or "memory" (the supervisor gave the message up), "decode"
-- (its key, value or headers do not decode: decoding again tells, as
-- the decoders are pure), else "process".
local function error_kind(w, part, i, e)
    if e == GIVE_UP then
        local kind = w.give_up_text and w.give_up_text:match("^(%a+)")
        return kind == "memory" and "memory" or "timeout"
    end
    if i > part.dec then
        if (w.raw_v ~= nil and not pcall(part.vdec, w.raw_v))
            or (w.raw_k ~= nil and not pcall(part.kdec, w.raw_k))
            or (w.raw_h ~= nil and not pcall(headers.decode, w.raw_h)) then
            return "decode"
        end
    end
    return "process"
end

-- Drops what failed job code held (it leaves no trace).
local function drop_held(self)
    self.ctx._pending.n = 0
    self.ctx._late = nil
    if self.stores then
        for j = 1, #self.stores do
            state_mod.discard(self.stores[j])
        end
    end
    if self.timers then
        self.timers:forget()
    end
end

-- pend holds 6 slots per send: output, key, value, timestamp, header
-- block, partition (tide.ctx). pend.nb, when set (tide run --http),
-- counts the key and value bytes sent.
local function push_pending(w, pend)
    local nb = pend.nb
    for j = 1, pend.n, 6 do
        local out = pend[j]
        local k, v = pend[j + 1], pend[j + 2]
        local ok, err = out.stream:push(k, v, pend[j + 5], pend[j + 3],
                                        pend[j + 4])
        if nb ~= nil then
            nb = nb + (k and #k or 0) + (v and #v or 0)
        end
        if not ok then
            pend.n = 0
            w.sys_err = str_format("sending to '%s': %s", out.spec, err)
            error(SYSTEM_ERROR)
        end
        out.dirty = true
        pend[j], pend[j + 1], pend[j + 2], pend[j + 3], pend[j + 4],
            pend[j + 5] = nil, nil, nil, nil, nil, nil
    end
    pend.n = 0
    if nb ~= nil then
        pend.nb = nb
    end
end
_M.push_pending = push_pending

local function on_error(e)
    if e == SYSTEM_ERROR or e == GIVE_UP then
        return e
    end
    local msg = job_mod.errtext(e)
    return { msg = msg, tb = traceback(msg, 2) }
end
_M.on_error = on_error

-- What an xpcall with on_error failed with. Running out of memory skips
-- the handler (LuaJIT raises it as is), and so may an error inside it:
-- then the value is the bare message.
local function caught(e)
    if type(e) == "table" and (e == SYSTEM_ERROR or e == GIVE_UP
                               or e.msg ~= nil) then
        return e
    end
    local msg = job_mod.errtext(e)
    return { msg = msg, tb = msg .. "\n(no traceback)" }
end
_M.caught = caught

-- One line of a value, for a trace.
local function one_line(v)
    return pretty.format(v, { width = 1e9, max_lines = 1 })
end

-- Records message m of a trace (tide.inspect): the message, what it
-- sent and the state writes it made, before they are applied.
local function trace_record(self, part, m, pend, stores)
    local tr = self.trace
    if tr.left <= 0 then
        return
    end
    if tr.filter then
        local ok, keep = pcall(tr.filter, m)
        if not ok or not keep then
            return
        end
    end
    tr.left = tr.left - 1
    local e = { input = part.spec, partition = part.partition,
                offset = m.offset, key = one_line(m.key),
                value = one_line(m.value), sends = {}, writes = {} }
    for j = 1, pend.n, 6 do
        e.sends[#e.sends + 1] = { stream = pend[j].spec,
                                  key = one_line(pend[j + 1]),
                                  value = one_line(pend[j + 2]) }
    end
    for _, st in ipairs(stores or {}) do
        for _, k in ipairs(st.pkeys) do
            local v = st.pending[k]
            e.writes[#e.writes + 1] = {
                store = st.name, key = one_line(st.kdec(k)),
                value = v and one_line(st.vdec(v)) or "(deleted)" }
        end
    end
    tr.got[#tr.got + 1] = e
end

-- Works out the task's watermark (docs/time.md): the oldest of the
-- newest event times of its input partitions that are not idle, less
-- max_out_of_orderness; it never goes back. A partition is idle when it
-- has nothing buffered and no data came for idle_timeout. Tables do not
-- count: they are state, not events still to come. Also notes
-- which partition holds the watermark, so that a message elsewhere does
-- not have to look again.
local function update_watermark(self, now)
    local lo, holder = INF, nil
    local timeout = self.idle_timeout
    local parts = self.parts
    for j = 1, #parts do
        local part = parts[j]
        if not part.table and (part.head <= part.n
                               or now - part.last_data < timeout) then
            if part.max_et < lo or holder == nil then
                lo, holder = part.max_et, part
            end
        end
    end
    self.wm_holder = holder
    if holder ~= nil then
        local wm = lo - self.ooo
        local ctx = self.ctx
        if wm > ctx.watermark then
            ctx.watermark = wm
        end
    end
end
_M.update_watermark = update_watermark

-- Raises the error of a timestamp function that gave no event time.
local function bad_event_time(part, v)
    error(str_format("the timestamp function of input '%s' returned %s, "
                     .. "not a number of milliseconds", part.spec,
                     type(v) == "number" and tostring(v) or "a " .. type(v)),
          0)
end

local function dead_letter(w, self, part, m, err)
    local hdrs = headers.encode({
        ["tide.error"] = err, ["tide.stream"] = part.spec,
        ["tide.partition"] = tostring(part.partition),
        ["tide.offset"] = str_format("%.0f", m.offset),
        ["tide.job"] = w.job.name,
    })
    local ok, perr = w.dlq:push(w.raw_k, w.raw_v, self.partition,
                                m.timestamp, hdrs)
    if not ok then
        return nil, str_format("writing to %s: %s", w.dlq_name, perr)
    end
    w.dlq_dirty = true
    return true
end

-- After process() returned: the dead letter it asked for
-- (ctx:dead_letter), and the count of a record tide.windows found late.
local function set_aside(w, self, part, m)
    local ctx = self.ctx
    local reason, late = ctx._dead, ctx._late
    ctx._dead, ctx._late = nil, nil
    if reason ~= nil then
        local ok, derr = dead_letter(w, self, part, m, reason)
        if not ok then
            w.sys_err = derr
            error(SYSTEM_ERROR)
        end
        w.dead = w.dead + 1
    end
    if late then
        count_error(w, self.partition, "late",
                    reason == "late" and "dead_letter" or "drop")
    end
    if reason ~= nil and not (late and reason == "late") then
        count_error(w, self.partition, "job", "dead_letter")
    end
end

-- Processes part.buf[from..n] of one input partition of the task. Runs
-- under xpcall; w.cur says which message was being processed when it
-- raised.
local function batch_body(w, self, part, from, n)
    -- A table's records go into its store instead (part.tproc).
    local process, ctx = part.tproc or w.job.process, self.ctx
    local pend = ctx._pending
    local msgs = part.buf
    local kdec, vdec = part.kdec, part.vdec
    local tsfn = part.tsfn
    local stores = self.stores                 -- nil without state
    local wt = w.watch
    local give_up = self.give_up
    if give_up and give_up.key ~= part.key then
        give_up = nil
    end
    local p, idx = self.partition, part.idx
    local stop_at, last = w.stop_at, n
    local now = self.step_now
    -- What the chooser did to these messages already (tide.chooser).
    local dec, etn, ets = part.dec, part.etn, part.ets
    for i = from, n do
        if stop_at ~= nil and w.now() >= stop_at then
            -- A run bounded by time (the REPL's run()): the rest of the
            -- batch stays buffered for the next run.
            last = i - 1
            part.head = i
            break
        end
        local m = msgs[i]
        local decoded = i <= dec               -- by the chooser
        local rk, rv, rh
        if decoded then
            rk, rv, rh = part.rawk[i], part.rawv[i], part.rawh[i]
        else
            rk, rv, rh = m.key, m.value, m.headers
        end
        w.cur, w.raw_k, w.raw_v, w.raw_h = i, rk, rv, rh
        ctx._ts = m.timestamp
        if wt ~= nil then
            -- +16: on reload probation (a timeout then rolls back).
            wt.task, wt.input, wt.offset = p, idx, m.offset
            wt.kind = self.probation > 0 and KIND_PROCESS + 16 or KIND_PROCESS
            wt.seq = wt.seq + 1
            wt.in_call = 1
        end
        if give_up and m.offset == give_up.offset then
            self.give_up = nil
            w.give_up_text = give_up.text
            error(GIVE_UP)
        end
        w.in_code = true
        if not decoded then
            if rv ~= nil then
                m.value = vdec(rv)
            end
            if rk ~= nil then
                m.key = kdec(rk)
            end
            if rh ~= nil then
                m.headers = headers.decode(rh)
            end
        end
        local et
        if i <= etn and ets[i] ~= NEG_INF then
            et = ets[i]
        elseif tsfn then
            et = tsfn(m)
            if type(et) ~= "number" or not (et > NEG_INF and et < INF) then
                bad_event_time(part, et)
            end
        else
            et = m.timestamp
        end
        ctx.event_time = et
        if et > part.max_et then
            part.max_et = et
            if self.wm_holder == part then
                update_watermark(self, now)
            end
        end
        process(m, ctx)
        w.in_code = false
        if ctx._dead ~= nil or ctx._late ~= nil then
            -- ctx:dead_letter(reason) in process(), a late record.
            set_aside(w, self, part, m)
        end
        if wt ~= nil then
            wt.in_call = 0
        end
        if self.trace ~= nil then
            trace_record(self, part, m, pend, stores)
        end
        if stores then
            for j = 1, #stores do
                if stores[j].pkeys[1] ~= nil then
                    state_mod.apply(stores[j])
                end
            end
        end
        if pend.n > 0 then
            push_pending(w, pend)
        end
        part.next = m.offset + 1
        msgs[i] = nil
        local prob = self.probation
        if prob > 0 then
            self.probation = prob - 1
        end
    end
    local done = last - from + 1
    self.processed = self.processed + done
    w.processed = w.processed + done
end

-- True when `msg` is LuaJIT's out-of-memory error.
local function is_oom(msg)
    return msg == "not enough memory"
end

-- Runs the messages part.buf[from..n] of input partition `part`,
-- applying on_error to each message that raises. Returns true, or nil
-- and the line to stop the job with.
local function run_batch(self, part, from, n)
    local w = self.w
    local msgs = part.buf
    while from <= n do
        w.in_code = false
        local ok, e = xpcall(batch_body, on_error, w, self, part, from, n)
        if w.watch ~= nil then
            w.watch.in_call = 0
        end
        if ok then
            return true
        end
        e = caught(e)
        local i = w.cur
        local m = msgs[i]
        drop_held(self)                  -- the message leaves no trace
        self.ctx._dead = nil
        local done = i - from
        self.processed = self.processed + done
        w.processed = w.processed + done
        if e == SYSTEM_ERROR then
            return nil, w.sys_err
        end
        local where = str_format("stream '%s' partition %d offset %.0f",
                                 part.spec, part.partition, m.offset)
        local policy = w.job.on_error
        local text, kind
        if e == GIVE_UP then
            text = w.give_up_text
            kind = text:match("^(%a+)") or "timeout"
        else
            text = e.msg
            if w.in_code and is_oom(text) and w.on_memory then
                -- The worker is past max_memory: the supervisor restarts
                -- it, and retries the message once before giving up.
                w.on_memory(self, part, m)
            end
        end
        if e ~= GIVE_UP and w.in_code and self.probation > 0
            and w.prev_job then
            -- New code failed on probation: back to the old code, which
            -- processes this very message again.
            w:rollback(str_format("process() raised on %s: %s", where, text))
            policy = "retry"
        elseif policy == "fail" then
            return nil, str_format("job '%s' failed on %s: %s (%s)\n%s",
                                   w.job.name, where, text,
                                   skip_hint(w.job.name, part, m.offset),
                                   e == GIVE_UP and "(no traceback: the "
                                   .. "call was stopped)" or e.tb)
        elseif policy == "skip" then
            w.skipped = w.skipped + 1
            count_error(w, self.partition, error_kind(w, part, i, e), "skip")
            w.log("warn", str_format("skipped %s: %s", where, text))
        else
            local dok, derr = dead_letter(w, self, part, m,
                                          kind and kind or text)
            if not dok then
                return nil, derr
            end
            w.dead = w.dead + 1
            count_error(w, self.partition, error_kind(w, part, i, e),
                        "dead_letter")
            w.log("warn", str_format("dead-lettered %s to %s: %s", where,
                                     w.dlq_name, text))
        end
        if policy ~= "retry" then
            part.next = m.offset + 1
            msgs[i] = nil
            from = i + 1
        end
    end
    return true
end

--- Runs the messages part.buf[from..n] of input partition `part`,
--- applying on_error to each message that raises. Returns true, or nil
--- and the line to stop the job with. Notes the timestamp of the last
--- message processed (part.last_ts, for the lag in seconds) and, under
--- tide run --http, each message's end-to-end latency: from its
--- timestamp to the end of the batch (one clock read per batch).
function Task:process_batch(part, from, n)
    local w = self.w
    local msgs = part.buf
    local last = msgs[n]
    local tss
    if w.tstats ~= nil and not part.table then
        tss = self.tss
        if tss == nil then
            tss = {}
            self.tss = tss
        end
        for i = from, n do
            tss[i - from + 1] = msgs[i].timestamp
        end
        local pend = self.ctx._pending
        if pend.nb == nil then
            pend.nb = 0
        end
    end
    local ok, err = run_batch(self, part, from, n)
    if not ok or part.head <= n then
        -- Failed, or a run bounded by time left some buffered (the REPL).
        return ok, err
    end
    part.last_ts = last.timestamp
    if tss ~= nil then
        local now = realtime()
        local lat = w:task_stats(self.partition).latency
        for j = 1, n - from + 1 do
            local ts = tss[j]
            if ts ~= nil and ts > 0 then
                local secs = (now - ts) / 1000
                observe(lat, LATENCY_BUCKETS, secs > 0 and secs or 0)
            end
        end
    end
    return true
end

--- Takes one batch through the chooser and processes it. Returns the
--- number of messages taken (0: none now), or nil and the line to stop
--- the job with. While the task waits for an empty input (max_idle),
--- self.wait_until says until when (w.now() time).
function Task:step()
    local w = self.w
    local max, budget = _M.BATCH, w.budget
    if budget ~= nil then
        -- A bounded run (the REPL's run(job, { count = N })): no more
        -- than N messages in all.
        if budget <= 0 then
            return 0
        end
        if budget < max then
            max = budget
        end
    end
    if w.stop_at ~= nil and w.now() >= w.stop_at then
        return 0
    end
    local job, chooser = w.job, self.chooser
    if job ~= self.ts_job then
        -- At open and after a code swap: the event-time settings of the
        -- job now running.
        self.ts_job = job
        for _, part in ipairs(self.parts) do
            part.tsfn = job.inputs[part.input].timestamp or job.timestamp
                        or false
        end
        self.ooo = job.max_out_of_orderness_ms or 0
        self.idle_timeout = job.idle_timeout_ms or 30000
    end
    -- Draining reads every input to its end: waiting for more is moot.
    chooser.max_idle = not w.drain and job.max_idle_ms or 0
    local now = w.now()
    self.step_now = now
    local part, from, to, failed = chooser:poll(max)
    self.wait_until = chooser.wait_until
    if not part then
        update_watermark(self, now)
        if to then
            return nil, str_format("reading '%s' partition %d: %s",
                                   failed.spec, failed.partition, to)
        end
        if self.timers then
            return self:fire_timers()
        end
        return 0
    end
    update_watermark(self, now)
    local n = to - from + 1
    local ok, perr = self:process_batch(part, from, to)
    if not ok then
        return nil, perr
    end
    if budget ~= nil then
        w.budget = w.budget - n
    end
    if self.timers then
        local fired, ferr = self:fire_timers()
        if not fired then
            return nil, ferr
        end
        n = n + fired
    end
    return n
end

--- When the task next needs a step although no input comes (w.now()
--- time; nil: never): the end of a max_idle wait, or its next processing
--- timer.
function Task:wake_at(now)
    local at = self.wait_until
    local tm = self.timers
    if tm then
        local nxt = tm:next_processing()
        if nxt < math.huge then
            local t = now + (nxt - realtime())
            if at == nil or t < at then
                at = t
            end
        end
    end
    return at
end

-- Applies what a call of job code outside process() wrote and sent.
local function hook_done(w, self)
    if self.ctx._dead ~= nil then
        self.ctx._dead = nil
        error("ctx:dead_letter: only in process(), for the message being "
              .. "processed", 0)
    end
    if self.stores then
        for j = 1, #self.stores do
            if self.stores[j].pkeys[1] ~= nil then
                w.changed = true
            end
            state_mod.apply(self.stores[j])
        end
    end
    local pend = self.ctx._pending
    if pend.n > 0 then
        w.changed = true
        push_pending(w, pend)
    end
end

-- Calls init, window, close or on_reload of the task; its sends go out
-- as usual.
local function hook_body(w, self, fn, arg)
    self.ctx._ts = nil
    fn(self.ctx, arg)
    hook_done(w, self)
end

-- Fires one timer: removes it, then calls on_timer(key, at, ctx, kind),
-- all as one unit of writes and sends. Sends of an event timer carry
-- its time as their timestamp (now for a processing timer).
local function timer_body(w, self, fn, kind, at, key, raw)
    self.timers:remove(raw)
    self.ctx._ts = (kind == "event" and at > 0) and at or nil
    fn(key, at, self.ctx, kind)
    w.changed = true
    hook_done(w, self)
end

-- Marks the watch slot: job code `kind` of this task is running.
local function watch_call(self, kind)
    local wt = self.w.watch
    if wt ~= nil then
        wt.task, wt.input, wt.offset = self.partition, 0, -1
        wt.kind = kind + (self.probation > 0 and 16 or 0)
        wt.seq = wt.seq + 1
        wt.in_call = 1
    end
end

--- Fires the timers that are due (docs/time.md "Timers"), at most
--- TIMERS_PER_STEP of them. `upto` (a `--drain --final`): fire event
--- timers as if the watermark were there. Returns the number fired, or nil and the line to
--- stop the job with. A failing on_timer follows on_error: `fail` stops
--- the job; `skip` and `dead_letter` log it and drop the timer (there is
--- no message to dead-letter). On probation the new code is rolled back
--- and the old one fires the timer.
function Task:fire_timers(upto)
    local w, tm = self.w, self.timers
    local wm = self.ctx.watermark
    if upto and upto > wm then
        wm = upto
    end
    local fired = 0
    while fired < _M.TIMERS_PER_STEP do
        local kind, at, key, raw = tm:due(wm, realtime())
        if not kind then
            break
        end
        local fn = w.job.on_timer
        if not fn then
            break          -- only after a reload refused; nothing to call
        end
        watch_call(self, _M.KIND.on_timer)
        local ok, e = xpcall(timer_body, on_error, w, self, fn, kind, at,
                             key, raw)
        if w.watch ~= nil then
            w.watch.in_call = 0
        end
        if not ok then
            e = caught(e)
            drop_held(self)
            if e == SYSTEM_ERROR then
                return nil, w.sys_err
            end
            local what = str_format("on_timer() of task %d (%s timer of "
                                    .. "key %s at %.0f)", self.partition,
                                    kind, one_line(key), at)
            if self.probation > 0 and w.prev_job then
                w:rollback(str_format("%s raised: %s", what, e.msg))
            elseif w.job.on_error == "fail" then
                return nil, str_format("job '%s' failed in %s: %s\n%s",
                                       w.job.name, what, e.msg, e.tb)
            else
                w.skipped = w.skipped + 1
                count_error(w, self.partition, "process", "skip")
                w.log("warn", str_format("skipped %s: %s; the timer is "
                                         .. "dropped", what, e.msg))
                tm:remove(raw)
                state_mod.apply(tm.st)
                w.changed = true
            end
        end
        fired = fired + 1
    end
    if fired > 0 then
        self.fired = (self.fired or 0) + fired
    end
    return fired
end

--- Calls hook `name` of the job (init, window, close, on_reload) for this
--- task, with `arg` as its second argument. Returns true, or nil, the
--- error line and the bare error message.
function Task:call_hook(name, fn, arg)
    local w = self.w
    fn = fn or w.job[name]
    if not fn then
        return true
    end
    local wt = w.watch
    if wt ~= nil then
        wt.task, wt.input, wt.offset = self.partition, 0, -1
        wt.kind = (_M.KIND[name] or 0)
                  + ((self.probation > 0 or name == "on_reload") and 16 or 0)
        wt.seq = wt.seq + 1
        wt.in_call = 1
    end
    local ok, e = xpcall(hook_body, on_error, w, self, fn, arg)
    if wt ~= nil then
        wt.in_call = 0
    end
    if ok then
        return true
    end
    e = caught(e)
    drop_held(self)
    if e == SYSTEM_ERROR then
        return nil, w.sys_err, w.sys_err
    end
    return nil, str_format("job '%s' failed in %s() of task %d: %s\n%s",
                           w.job.name, name, self.partition, e.msg, e.tb),
           e.msg
end

return _M
