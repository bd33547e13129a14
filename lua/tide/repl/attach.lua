--- `tide repl --attach JOB` (docs/repl.md "Attach"): the helpers that
--- drive a running job through its control socket (tasks, store, pause,
--- resume, reload, trace, describe), tap() on its outputs, and the
--- evaluation of every other line inside the job, in the worker of the
--- current task.
local loop_mod = require("tide.loop")
local wire = require("tide.wire")
local system = require("tide.system")
local pretty = require("tide.repl.pretty")
local fs = require("tide.fs")
local cjson = require("cjson.safe")

local type, pairs, ipairs, tostring, tonumber = type, pairs, ipairs, tostring, tonumber
local setmetatable, error = setmetatable, error
local str_format, str_match, concat = string.format, string.match, table.concat
local now_ms = loop_mod.now

local _M = {}

-- How long the REPL waits for the job's answer: an evaluation is stopped
-- inside the job after 5 s, a stuck worker after max_process_time.
local REPLY_MS = 45000
local TRACE_POLL_MS = 100
local TRACE_WAIT_MS = 30000

-- Helpers that run in the REPL itself when a line calls them.
local LOCAL = { "tasks", "task", "store", "pause", "resume", "reload", "tap",
                "trace", "describe", "help" }

--- The value of a portable value from tide.inspect.
local function value_of(pv)
    if type(pv) ~= "table" then
        return nil
    end
    if pv.j then
        local v = cjson.decode(pv.j)
        if v == cjson.null then
            return nil
        end
        return v
    end
    return pv.t
end
_M.value_of = value_of

--- Connects to job `target` (a job file or a name) in `data_dir`; returns
--- a client { name, sock, call(line) -> reply text | nil, err }.
function _M.client(data_dir, target)
    local name = target
    if str_match(target, "%.lua$") or str_match(target, "/") then
        local job, err = require("tide.job").load(target)
        if not job then
            return nil, err
        end
        name = job.name
    end
    local sock = str_format("%s/jobs/%s/control.sock", data_dir, name)
    if not fs.exists(sock) then
        return nil, str_format("job '%s' is not running in data dir '%s' "
                               .. "(no %s); start it with tide run", name,
                               data_dir, sock)
    end
    local c = { name = name, sock = sock, data_dir = data_dir }
    function c.call(line, timeout)
        local reply, err = loop_mod.send(sock, line, timeout or REPLY_MS)
        if not reply then
            return nil, err
        end
        reply = reply:gsub("\n$", "")
        if reply:sub(1, 4) == "ok: " then
            return reply:sub(5)
        elseif reply == "ok" then
            return ""
        end
        return nil, (reply:gsub("^error: ", ""))
    end
    --- Sends inspection `op` with table `args`; returns the decoded
    --- answer, or nil and an error.
    function c.inspect(op, args)
        local text, err = c.call(op .. " " .. wire.encode(args))
        if not text then
            return nil, err
        end
        local r
        r, err = wire.decode(text)
        if not r then
            return nil, err
        end
        if r.error then
            return nil, r.error, r
        end
        return r
    end
    return c
end

--- A session id no other REPL shares: 16 random bytes, in hex.
function _M.session_id()
    local f = io.open("/dev/urandom", "rb")
    local bytes = f and f:read(16) or tostring(os.time()) .. tostring({})
    if f then
        f:close()
    end
    return (bytes:gsub(".", function(ch)
        return str_format("%02x", ch:byte())
    end))
end

-- Whether chunk `text` calls one of the REPL's own helpers.
local function calls_local(text)
    return require("tide.repl.proto").calls_any(text, LOCAL)
end
_M.calls_local = calls_local

function _M.install(S, o)
    local c, err = _M.client(o.data_dir, o.target)
    if not c then
        return nil, err
    end
    local desc
    local text
    text, err = c.call("describe", 10000)
    if not text then
        return nil, str_format("job '%s': %s", c.name, err)
    end
    desc = wire.decode(text)
    S.attached = c
    local H = S.helpers
    local current = 0
    local session = _M.session_id()
    local last_sample                  -- for rates: { at, processed[p] }

    local function check(v, e)
        if v == nil then
            error(e, 3)
        end
        return v
    end

    local function task_arg(t)
        t = tonumber(t)
        if not t or t % 1 ~= 0 or t < 0 or t >= desc.tasks then
            error(str_format("bad task '%s': the job has tasks 0 to %d",
                             tostring(t), desc.tasks - 1), 3)
        end
        return t
    end

    local function sample()
        local lines = check(c.call("tasks", 15000))
        local rows = {}
        for line in lines:gmatch("[^\n]+") do
            local p, state, rest = line:match("^task (%d+) (%S+)%s*(.*)$")
            if p then
                local row = { task = tonumber(p), state = state }
                for k, v in rest:gmatch("(%w+)=(%S+)") do
                    row[k] = tonumber(v) or v
                end
                rows[#rows + 1] = row
            end
        end
        return rows, now_ms()
    end

    --- The job's tasks: state, worker, version, processed, lag, offsets,
    --- and the rate since the previous call (or over half a second).
    function H.tasks()
        local prev = last_sample
        if not prev or now_ms() - prev.at > 60000 then
            local rows, at = sample()
            prev = { at = at, rows = rows }
            fs.sleep_ms(500)
        end
        local rows, at = sample()
        local before = {}
        for _, r in ipairs(prev.rows) do
            before[r.task] = r.processed
        end
        local secs = (at - prev.at) / 1000
        for _, r in ipairs(rows) do
            if before[r.task] and r.processed and secs > 0 then
                r.rate = math.floor((r.processed - before[r.task]) / secs
                                    + 0.5)
            end
        end
        last_sample = { at = at, rows = rows }
        return rows
    end

    --- Evaluates from now on in task `t`.
    function H.task(t)
        current = task_arg(t)
        S.prompt = str_format("%s@%d> ", c.name, current)
    end

    local function say(text)
        S.out:write(text, "\n")
        S.out:flush()
    end

    function H.pause(t)
        say(check(c.call("pause " .. task_arg(t))))
    end

    function H.resume(t)
        say(check(c.call("resume " .. task_arg(t))))
    end

    function H.reload()
        say(check(c.call("reload", 130000)))
    end

    function H.remote_describe()
        local d = wire.decode(check(c.call("describe", 10000)))
        for _, k in ipairs({ "inputs", "outputs", "stores", "owners" }) do
            d[k] = wire.list(d[k])
        end
        return d
    end

    -- A task's store, read through the job.
    local Store = {}
    Store.__index = Store
    Store.__pretty = function(self)
        return str_format("store '%s' of task %d of job '%s' (:get(k), "
                          .. ":range(from, to, limit), :count())", self.name,
                          self.task, c.name)
    end
    function Store:get(key)
        local r = check(c.inspect("store", { task = self.task,
                                             store = self.name, read = "get",
                                             key = key }))
        return value_of(r.value)
    end
    -- Pages through a scan; each page is one turn of the task's worker.
    local function scan(self, op, from, to, limit)
        local args = { task = self.task, store = self.name, read = op,
                       from = from, to = to, limit = limit }
        local out, count = {}, 0
        while true do
            local r = check(c.inspect("store", args))
            for _, e in ipairs(wire.list(r.entries or {})) do
                out[#out + 1] = { key = value_of(e.k), value = value_of(e.v) }
            end
            count = r.count or count
            if r.done then
                break
            end
            args = { task = self.task, store = self.name, read = op,
                     scan = r.scan }
        end
        return out, count
    end
    function Store:range(from, to, limit)
        return (scan(self, "scan", from, to, limit))
    end
    function Store:count()
        local _, n = scan(self, "count")
        return n
    end

    function H.store(t, name)
        t = task_arg(t)
        if type(name) ~= "string" then
            local names = {}
            for _, s in ipairs(wire.list(desc.stores)) do
                names[#names + 1] = s.name
            end
            error(str_format("store(task, name): name one of the job's stores"
                             .. " (%s)", #names > 0 and concat(names, ", ")
                             or "it has none"), 2)
        end
        return setmetatable({ task = t, name = name }, Store)
    end

    --- Prints the next `n` messages sent to output `stream` (default 10),
    --- waiting up to `timeout` (default 30 s).
    function H.tap(stream, n, timeout)
        n = n or 10
        local spec = stream
        for _, out in ipairs(wire.list(desc.outputs)) do
            if out.name == stream or out.spec == stream then
                spec = out.spec
            end
        end
        local s
        s, err = system.open({ data_dir = c.data_dir, mem = {} }, spec,
                             { create = false })
        if not s then
            error(err, 2)
        end
        local readers = {}
        for p = 0, s:count() - 1 do
            readers[#readers + 1] = { p = p, r = check(s:reader(p, "end")) }
        end
        local deadline = now_ms() + (timeout or 30) * 1000
        local shown, buf = 0, {}
        while shown < n and now_ms() < deadline do
            local got = 0
            for _, rd in ipairs(readers) do
                local k = rd.r:poll(64, buf) or 0
                for i = 1, k do
                    local m = buf[i]
                    got = got + 1
                    if shown < n then
                        shown = shown + 1
                        local v = m.value and cjson.decode(m.value) or m.value
                        S.out:write(str_format("%s %d@%.0f  %s  %s\n", spec,
                            rd.p, m.offset,
                            pretty.format(m.key, { width = 1e9 }),
                            pretty.format(v == nil and m.value or v,
                                          { width = 1e9 })))
                        S.out:flush()
                    end
                end
            end
            if got == 0 then
                if S:interrupted() then
                    break
                end
                fs.sleep_ms(20)
            end
        end
        for _, rd in ipairs(readers) do
            rd.r:close()
        end
        s:close()
        return shown
    end

    --- Prints the next `n` messages task `t` processes (those for which
    --- the Lua expression `filter` over msg is true), each with its sends
    --- and state writes.
    function H.trace(t, n, filter, timeout)
        t = task_arg(t)
        n = n or 10
        if type(n) ~= "number" or n < 1 or n % 1 ~= 0 then
            error("trace(task, n, filter, timeout): n must be a whole number "
                  .. "from 1", 2)
        end
        if filter ~= nil and type(filter) ~= "string" then
            error("trace(task, n, filter, timeout): filter must be a Lua "
                  .. "expression over msg, as a string, e.g. "
                  .. "\"msg.key == 'u1'\"", 2)
        end
        check(c.inspect("trace", { task = t, n = n, filter = filter }))
        local wait = timeout and tonumber(timeout) * 1000 or TRACE_WAIT_MS
        local deadline = now_ms() + wait
        local shown = 0
        while true do
            local stop = now_ms() >= deadline or S:interrupted()
            local r = check(c.inspect("trace_poll", { task = t,
                                                      stop = stop or nil }))
            for _, e in ipairs(wire.list(r.entries or {})) do
                shown = shown + 1
                S.out:write(str_format("task %d %s %d@%.0f  key=%s  value=%s\n",
                                       t, e.input, e.partition, e.offset,
                                       e.key, e.value))
                for _, x in ipairs(wire.list(e.sends or {})) do
                    S.out:write(str_format("  -> %s  key=%s  value=%s\n",
                                           x.stream, x.key, x.value))
                end
                for _, x in ipairs(wire.list(e.writes or {})) do
                    S.out:write(str_format("  state %s[%s] = %s\n", x.store,
                                           x.key, x.value))
                end
            end
            S.out:flush()
            if r.done then
                break
            end
            if stop then
                S.err:write(str_format("trace: %d of %d messages seen in %g s;"
                                       .. " stopped (trace(task, n, filter, "
                                       .. "seconds) waits longer)\n", shown,
                                       n, wait / 1000))
                break
            end
            fs.sleep_ms(TRACE_POLL_MS)
        end
        return shown
    end

    -- A line runs here when it calls a helper above or names a global
    -- that a line run here set (s = store(1, "counts"); s:get("k")).
    local function runs_here(chunk)
        if calls_local(chunk) then
            return true
        end
        for at, name in chunk:gmatch("()%f[%w_]([%a_][%w_]*)") do
            local prev = chunk:sub(at - 1, at - 1)
            if prev ~= "." and prev ~= ":" and S.vars[name] ~= nil then
                return true
            end
        end
        return false
    end

    -- Every other line runs in the job.
    function S.route(self, chunk)
        if runs_here(chunk) then
            return false
        end
        local r, rerr, full = c.inspect("eval", { task = current,
                                                  code = chunk,
                                                  session = session })
        if not r then
            if full and full.text and full.text ~= "" then
                self.out:write(full.text, "\n")
            end
            self:error(rerr)
            return true
        end
        if r.text and r.text ~= "" then
            self.out:write(r.text, "\n")
            self.out:flush()
        end
        return true
    end

    S.calls_local = runs_here
    function S.complete_remote(text)
        local r = c.inspect("complete", { task = current, text = text,
                                          session = session })
        return r and wire.list(r.list or {}) or nil
    end

    S.prompt = str_format("%s@%d> ", c.name, current)
    S.banner = str_format("tide repl: attached to job '%s' (%d tasks, %d "
                          .. "workers, version %s). Lines run inside the "
                          .. "job, in task %d's worker, with ctx; help() "
                          .. "lists the helpers\n", c.name, desc.tasks,
                          desc.workers, tostring(desc.version), current)
    return true
end

return _M
