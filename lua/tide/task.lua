--- One task: the input partitions it reads (through its chooser), its
--- stores and ctx, and the processing of a batch with per-message atomic
--- sends and the on_error policy (docs/container.md "A task").
local state_mod = require("tide.state")
local headers = require("tide.headers")
local job_mod = require("tide.job")
local ctx_mod = require("tide.ctx")
local chooser_mod = require("tide.chooser")
local pretty = require("tide.repl.pretty")

local type, ipairs, tostring = type, ipairs, tostring
local setmetatable, xpcall, error, pcall = setmetatable, xpcall, error, pcall
local str_format = string.format
local traceback = debug.traceback

local _M = {}
local Task = {}
local mt = { __index = Task }

_M.BATCH = 256

-- What job code was running, in the watch slot the supervisor reads.
_M.KIND = { process = 1, window = 2, init = 3, on_reload = 4, close = 5,
           eval = 6 }
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
        }
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
    self.chooser = chooser_mod.new(self.parts)
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

local function push_pending(w, pend)
    for j = 1, pend.n, 5 do
        local out = pend[j]
        local ok, err = out.stream:push(pend[j + 1], pend[j + 2], nil,
                                        pend[j + 3], pend[j + 4])
        if not ok then
            pend.n = 0
            w.sys_err = str_format("sending to '%s': %s", out.spec, err)
            error(SYSTEM_ERROR)
        end
        out.dirty = true
        pend[j], pend[j + 1], pend[j + 2], pend[j + 3], pend[j + 4] =
            nil, nil, nil, nil, nil
    end
    pend.n = 0
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
    for j = 1, pend.n, 5 do
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

-- Processes msgs[from..n] of one input partition of the task. Runs under
-- xpcall; w.cur says which message was being processed when it raised.
local function batch_body(w, self, part, msgs, from, n)
    local process, ctx = w.job.process, self.ctx
    local pend = ctx._pending
    local kdec, vdec = part.kdec, part.vdec
    local stores = self.stores                 -- nil without state
    local wt = w.watch
    local give_up = self.give_up
    if give_up and give_up.key ~= part.key then
        give_up = nil
    end
    local p, idx = self.partition, part.idx
    local stop_at, last = w.stop_at, n
    for i = from, n do
        if stop_at ~= nil and w.now() >= stop_at then
            -- A run bounded by time (the REPL's run()): the rest of the
            -- batch is read again by the next run, from the checkpoint.
            last = i - 1
            for j = i, n do
                msgs[j] = nil
            end
            break
        end
        local m = msgs[i]
        local rk, rv = m.key, m.value
        w.cur, w.raw_k, w.raw_v, w.raw_h = i, rk, rv, m.headers
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
        if rv ~= nil then
            m.value = vdec(rv)
        end
        if rk ~= nil then
            m.key = kdec(rk)
        end
        if m.headers ~= nil then
            m.headers = headers.decode(m.headers)
        end
        process(m, ctx)
        w.in_code = false
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

-- True when `msg` is LuaJIT's out-of-memory error.
local function is_oom(msg)
    return msg == "not enough memory"
end

--- Runs a batch of msgs[1..n] read from input partition `part`, applying
--- on_error to each message that raises. Returns true, or nil and the
--- line to stop the job with.
function Task:process_batch(part, msgs, n)
    local w = self.w
    local from = 1
    while from <= n do
        w.in_code = false
        local ok, e = xpcall(batch_body, on_error, w, self, part, msgs,
                             from, n)
        if w.watch ~= nil then
            w.watch.in_call = 0
        end
        if ok then
            return true
        end
        e = caught(e)
        local i = w.cur
        local m = msgs[i]
        self.ctx._pending.n = 0          -- the message leaves no trace
        if self.stores then
            for j = 1, #self.stores do
                state_mod.discard(self.stores[j])
            end
        end
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
            return nil, str_format("job '%s' failed on %s: %s\n%s",
                                   w.job.name, where, text,
                                   e == GIVE_UP and "(no traceback: the "
                                   .. "call was stopped)" or e.tb)
        elseif policy == "skip" then
            w.skipped = w.skipped + 1
            w.log("warn", str_format("skipped %s: %s", where, text))
        else
            local dok, derr = dead_letter(w, self, part, m,
                                          kind and kind or text)
            if not dok then
                return nil, derr
            end
            w.dead = w.dead + 1
            w.log("warn", str_format("dead-lettered %s to %s: %s", where,
                                     w.dlq_name, text))
        end
        if policy ~= "retry" then
            part.next = m.offset + 1
            from = i + 1
        end
    end
    return true
end

--- Reads one batch through the chooser and processes it. Returns the
--- number of messages read (0: none now), or nil and the line to stop
--- the job with.
function Task:step(msgs)
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
    local part, n, err, failed = self.chooser:poll(msgs, max)
    if err then
        return nil, str_format("reading '%s' partition %d: %s", failed.spec,
                               failed.partition, err)
    end
    if not part then
        return 0
    end
    local ok, perr = self:process_batch(part, msgs, n)
    if not ok then
        return nil, perr
    end
    if budget ~= nil then
        w.budget = w.budget - n
    end
    return n
end

-- Calls init, window, close or on_reload of the task; its sends go out
-- as usual.
local function hook_body(w, self, fn, arg)
    self.ctx._ts = nil
    fn(self.ctx, arg)
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
    self.ctx._pending.n = 0
    if self.stores then
        for j = 1, #self.stores do
            state_mod.discard(self.stores[j])
        end
    end
    if e == SYSTEM_ERROR then
        return nil, w.sys_err, w.sys_err
    end
    return nil, str_format("job '%s' failed in %s() of task %d: %s\n%s",
                           w.job.name, name, self.partition, e.msg, e.tb),
           e.msg
end

return _M
