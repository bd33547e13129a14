--- Looking inside a running worker, for `tide repl --attach` and `tide
--- state get|scan` (docs/repl.md "Attach"): evaluation of Lua in the job's
--- environment with a task's ctx, paged reads of a task's stores, and
--- traces of the messages a task processes. Everything here runs between
--- batches, on the worker's own thread: a request is served in one turn
--- of the worker's loop and never holds a task for more than that.
local job_mod = require("tide.job")
local pretty = require("tide.repl.pretty")
local complete = require("tide.repl.complete")
local cjson = require("cjson.safe")

local type, pairs, ipairs, tostring, select = type, pairs, ipairs, tostring, select
local setmetatable, getfenv, setfenv = setmetatable, getfenv, setfenv
local pcall, loadstring, tonumber = pcall, loadstring, tonumber
local str_format, concat = string.format, table.concat

local _M = {}

-- How long one evaluation may run before it is stopped (the watchdog's
-- max_process_time stops the worker if the stop cannot reach the code).
_M.EVAL_LIMIT_MS = 5000
-- Entries (and bytes of keys and values) of one page of a store read.
local PAGE_ENTRIES = 500
local PAGE_BYTES = 256 * 1024
-- Keys counted per request of count(): a big store is counted in turns.
local COUNT_STEP = 20000
-- A scan that was not read on for this long is dropped.
local SCAN_IDLE_MS = 60000
-- Sessions kept per worker; the oldest goes first.
local MAX_SESSIONS = 32

local Inspect = {}
Inspect.__index = Inspect

--- Makes the inspector of worker `w`.
function _M.new(w)
    return setmetatable({ w = w, sessions = {}, nsessions = 0, scans = {},
                          next_scan = 0 }, Inspect)
end

-- The task `p` (a number) of the worker, or nil and an error.
local function task_of(self, p)
    local task = self.w.tasks[p]
    if not task then
        return nil, str_format("task %s is not on this worker",
                               tostring(p))
    end
    return task
end

-- The globals evaluated code sees: what the job file defined (its chunk's
-- environment), then the session's own, then ctx, stores, job, config and
-- task. Assignments go to the session, never into the job.
local function session_env(self, sid, task)
    local s = self.sessions[sid]
    if not s then
        if self.nsessions >= MAX_SESSIONS then
            local oldest, at
            for id, x in pairs(self.sessions) do
                if not at or x.used < at then
                    oldest, at = id, x.used
                end
            end
            self.sessions[oldest] = nil
            self.nsessions = self.nsessions - 1
        end
        s = { vars = {} }
        self.sessions[sid] = s
        self.nsessions = self.nsessions + 1
    end
    s.used = self.w.now()
    local job = self.w.job
    local base = type(job.process) == "function" and getfenv(job.process)
                 or _G
    local extra = {
        ctx = task.ctx, stores = task.ctx.stores, job = job,
        config = job.config, task = task.partition,
        print = function(...)
            local parts = {}
            for i = 1, select("#", ...) do
                parts[i] = tostring((select(i, ...)))
            end
            s.out[#s.out + 1] = concat(parts, "\t")
        end,
    }
    setmetatable(s.vars, { __index = function(_, k)
        local v = extra[k]
        if v ~= nil then
            return v
        end
        return base[k]
    end })
    s.out = {}
    return s
end

local function pack(...)
    return { n = select("#", ...), ... }
end

-- Compiles `code` as an expression first (so that `x` prints x), then as
-- a chunk.
local function compile(code, env)
    local fn = loadstring("return " .. code, "=eval")
    if not fn then
        local err
        fn, err = loadstring(code, "=eval")
        if not fn then
            return nil, err
        end
    end
    return setfenv(fn, env)
end

--- Evaluates msg.code in session msg.session with the ctx of task
--- msg.task, for at most EVAL_LIMIT_MS. Returns the reply: { text =
--- printed output and the results, pretty-printed } or { error = line }.
function Inspect:eval(msg)
    local task, err = task_of(self, msg.task)
    if not task then
        return { error = err }
    end
    local s = session_env(self, tostring(msg.session or ""), task)
    local fn
    fn, err = compile(tostring(msg.code or ""), s.vars)
    if not fn then
        return { error = err }
    end
    local limit = _M.EVAL_LIMIT_MS
    local max = self.w.job.max_process_time_ms
    if max and max / 2 < limit then
        limit = max / 2
    end
    local res
    -- As a hook of the task: the watch slot shows an evaluation, and its
    -- sends and state writes go out as init's or window's do.
    local ok, herr, hmsg = task:call_hook("eval", function()
        res = { job_mod.guarded(limit, function()
            return pack(fn())
        end) }
    end)
    if not ok then
        return { error = hmsg or herr }
    end
    local gok, val, where = res[1], res[2], res[3]
    if where then
        return { error = str_format("evaluation stopped after %g s at %s; "
                                    .. "the job goes on", limit / 1000,
                                    where), text = concat(s.out, "\n") }
    end
    if not gok then
        -- error() in a bare expression is a tail call: its place is lost
        -- and would name this file.
        local e = job_mod.errtext(val):gsub("^[^\n]-inspect%.lua:%d+: ", "")
        return { error = e, text = concat(s.out, "\n") }
    end
    local out = s.out
    for i = 1, val.n do
        out[#out + 1] = pretty.show(val[i])
    end
    return { text = concat(out, "\n") }
end

--- Completions of msg.text in session msg.session of task msg.task:
--- { list = { ... } }.
function Inspect:complete(msg)
    local task, err = task_of(self, msg.task)
    if not task then
        return { error = err }
    end
    local s = session_env(self, tostring(msg.session or ""), task)
    return { list = complete.candidates(tostring(msg.text or ""), s.vars) }
end

-- The store `name` of task `p`, or nil and an error.
local function store_of(self, p, name)
    local task, err = task_of(self, p)
    if not task then
        return nil, err
    end
    local st = rawget(task.ctx.stores, name)
    if not st then
        local names = {}
        for n in pairs(task.ctx.stores) do
            names[#names + 1] = n
        end
        table.sort(names)
        return nil, str_format("job '%s' has no store '%s' (stores: %s)",
                               self.w.job.name, tostring(name),
                               #names > 0 and concat(names, ", ") or "none")
    end
    return st, nil, task
end

-- A value of a store as it crosses to the client: { j = its JSON } when
-- it has one, else { t = its pretty text }.
local function portable(v)
    local j = cjson.encode(v)
    if j then
        return { j = j }
    end
    return { t = pretty.format(v, { width = 1e9 }) }
end
_M.portable = portable

-- What a reply says of a task: its partition and input offsets.
local function where_of(task)
    return { task = task.partition, offsets = task:offsets() }
end

-- Drops scans not read on for SCAN_IDLE_MS.
local function expire_scans(self, now)
    for id, sc in pairs(self.scans) do
        if now - sc.used > SCAN_IDLE_MS then
            self.scans[id] = nil
        end
    end
end

--- A read of a store: msg = { task, store, read = "get" | "scan" |
--- "count", key, from, to, limit, scan }. "get" answers { found, value,
--- task, offsets }. "scan" and "count" go a page at a time: the first
--- request opens a view of the store as it is then (later writes are not
--- seen) and answers { entries = { {k, v}, ... }, scan = id } while
--- there is more, or { entries, done = true }; the next page is asked for
--- with the scan id.
function Inspect:store(msg)
    local st, err, task = store_of(self, msg.task, msg.store)
    if not st then
        return { error = err }
    end
    local now = self.w.now()
    expire_scans(self, now)
    if msg.read == "get" then
        local ok, v = pcall(st.get, st, msg.key)
        if not ok then
            return { error = tostring(v) }
        end
        local r = where_of(task)
        r.found = v ~= nil
        r.value = v ~= nil and portable(v) or nil
        return r
    end
    local sc
    if msg.scan then
        sc = self.scans[msg.scan]
        if sc and sc.task ~= task then
            self.scans[msg.scan] = nil
            sc = nil
        end
        if not sc then
            return { error = "this scan ended (not read on for 60 s, or the "
                             .. "task moved); start it again" }
        end
    else
        local ok, kfrom, kto = pcall(function()
            return msg.from ~= nil and st.kenc(msg.from) or nil,
                   msg.to ~= nil and st.kenc(msg.to) or nil
        end)
        if not ok then
            return { error = tostring(kfrom) }
        end
        -- Writes still in the task's write cache are drained into RocksDB
        -- first, so that the view holds every write made so far.
        local it, ierr = st.s:iter(kfrom, kto)
        if not it then
            return { error = ierr }
        end
        self.next_scan = self.next_scan + 1
        sc = { it = it, st = st, left = msg.limit, count = 0, task = task }
        self.scans[self.next_scan] = sc
        msg.scan = self.next_scan
    end
    sc.used = now
    local entries, bytes, n = {}, 0, 0
    local step = msg.read == "count" and COUNT_STEP or PAGE_ENTRIES
    local done = false
    while n < step and bytes < PAGE_BYTES do
        if sc.left and sc.left <= 0 then
            done = true
            break
        end
        local k, v = sc.it()
        if k == nil then
            done = true
            break
        end
        n = n + 1
        if sc.left then
            sc.left = sc.left - 1
        end
        if msg.read ~= "count" then
            entries[#entries + 1] = { k = portable(sc.st.kdec(k)),
                                      v = portable(sc.st.vdec(v)) }
            bytes = bytes + #k + #v
        end
    end
    sc.count = sc.count + n
    local r = where_of(task)
    if msg.read == "count" then
        r.count = sc.count
    else
        r.entries = entries
    end
    if done then
        self.scans[msg.scan] = nil
        r.done = true
    else
        r.scan = msg.scan
    end
    return r
end

--- Starts a trace of task msg.task: the next msg.n messages it processes
--- (those for which the Lua expression msg.filter over `msg` is true),
--- each with its sends and state writes. Answers {} or { error }.
function Inspect:trace(msg)
    local task, err = task_of(self, msg.task)
    if not task then
        return { error = err }
    end
    local filter
    if msg.filter and msg.filter ~= "" then
        local base = type(self.w.job.process) == "function"
                     and getfenv(self.w.job.process) or _G
        local env = setmetatable({}, { __index = base })
        local fn, ferr = loadstring("local msg = ...; return "
                                    .. tostring(msg.filter), "=filter")
        if not fn then
            return { error = "bad filter: " .. ferr }
        end
        filter = setfenv(fn, env)
    end
    task.trace = { left = tonumber(msg.n) or 10, filter = filter,
                   got = {}, task = task }
    return {}
end

--- Returns what the trace of task msg.task caught since the last poll:
--- { entries, done } (done: the trace saw its n messages; it is over).
function Inspect:trace_poll(msg)
    local task, err = task_of(self, msg.task)
    if not task then
        return { error = err }
    end
    local tr = task.trace
    if not tr then
        return { entries = {}, done = true }
    end
    local got = tr.got
    tr.got = {}
    if msg.stop or tr.left <= 0 then
        task.trace = nil
        return { entries = got, done = true }
    end
    return { entries = got }
end

return _M
