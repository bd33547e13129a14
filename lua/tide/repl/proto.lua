--- The prototyping helpers of `tide repl` (docs/repl.md): streams to make,
--- send to and tail; jobs typed at the prompt or loaded from a file; runs
--- bounded by a count or a time over a scratch data dir, continuing from
--- where the last run stopped; describe(); save() of what was typed into
--- a job file that `tide run` takes.
local job_mod = require("tide.job")
local system = require("tide.system")
local serde_mod = require("tide.serde")
local headers = require("tide.headers")
local runner = require("tide.runner")
local pretty = require("tide.repl.pretty")
local loop_mod = require("tide.loop")
local fs = require("tide.fs")

local type, pairs, ipairs, tostring, tonumber = type, pairs, ipairs, tostring, tonumber
local setmetatable, pcall, error, select = setmetatable, pcall, error, select
local str_format, str_match, concat = string.format, string.match, table.concat
local now_ms = loop_mod.now

local _M = {}

-- Helpers that only make sense at the prompt: a chunk that calls one is
-- left out of a saved job file.
_M.PROMPT_ONLY = { "stream", "send", "tail", "run", "describe", "save",
                   "help", "reset", "tasks", "store", "pause", "resume",
                   "reload", "tap", "trace", "task", "print" }

--- Whether chunk `text` calls a global function named in `names`
--- (`name(`, `name "`, `name {`; not `x.name(` or `x:name(`).
function _M.calls_any(text, names)
    for _, name in ipairs(names) do
        for at in text:gmatch("()%f[%w_]" .. name .. "%s*[%(\"'{]") do
            local prev = text:sub(at - 1, at - 1)
            if prev ~= "." and prev ~= ":" then
                return true
            end
        end
    end
    return false
end

local HELP = [[
Prototyping (streams live in the data dir; run() works in a scratch dir):
  stream(name, {partitions = 1, serde = "json"})  make a stream ("mem:x" for
                                  one in memory); returns it
  send(stream, key, value)        send one message (send(stream, value):
                                  no key); tables go through the serde
  tail(stream, {from = "beginning"|"end"|N, limit = 20, every = 1,
                follow = false, timeout = "10s"})   print messages
  j = job { name = ..., inputs = {...}, outputs = {...}, stores = {...},
            process = function(msg, ctx) ... end }  a job from a table
  j = job("jobs/x.lua")           load a job file
  r = run(j, {count = N, time = "5s", reset = false})  run it over its
                                  inputs; r.outputs, r.dead_letters,
                                  r.stores, r.processed; the next run goes
                                  on from where this one stopped
  describe(j)                     inputs, outputs, stores, serdes, tasks
  save(j, "file.lua")             write the job as typed into a file that
                                  'tide run' takes
  reset(j)                        forget j's runs: checkpoint, stores,
                                  outputs in the scratch dir
Values print pretty: tables nested and sorted, lists of records as tables.
=expr or a bare expression prints its value; a chunk may span lines.]]

local HELP_ATTACH = [[
Attached to a running job (lines that call these run here; any other
line runs inside the job, in the worker of the current task, with ctx,
stores, job and config):
  tasks()                         status, offsets, lag, rate, version
  task(N)                         evaluate in task N from now on
  store(t, name)                  a task's store: :get(k), :range(from,
                                  to, limit), :count()
  pause(t), resume(t), reload()   as tide pause / resume / reload
  tap(stream, n)                  print the next n messages sent to an
                                  output
  trace(t, n, filter)             print the next n messages task t
                                  processes, with their sends and writes;
                                  filter: a Lua expression over msg
  describe()                      the job: streams, stores, tasks, workers]]

-- Jobs made at the prompt: job table -> { chunk = index of the chunk that
-- made it, path = file it came from, source = table as typed }.
local JOBS = setmetatable({}, { __mode = "k" })

local function duration(v, what)
    if v == nil then
        return nil
    end
    if type(v) == "number" then
        return v * 1000
    end
    local ms = job_mod.duration_ms(v)
    if not ms then
        error(str_format("bad %s '%s': a duration expected, e.g. 5s or "
                         .. "500ms", what, tostring(v)), 3)
    end
    return ms
end

-- Checks the options table `opts` of helper `fn` against `known` (name
-- -> "number" | "string" | "boolean" | "duration" | "from" | "count");
-- raises one line naming the bad option and what it takes.
local function check_opts(fn, opts, known)
    if opts == nil then
        return {}
    end
    if type(opts) ~= "table" then
        error(str_format("%s: options must be a table, got %s", fn,
                         type(opts)), 3)
    end
    local names = {}
    for k in pairs(known) do
        names[#names + 1] = k
    end
    table.sort(names)
    for k, v in pairs(opts) do
        local want = known[k]
        if not want then
            error(str_format("%s: unknown option '%s' (known: %s)", fn,
                             tostring(k), concat(names, ", ")), 3)
        end
        local ok = true
        if want == "count" then
            ok = type(v) == "number" and v >= 0 and v % 1 == 0
            want = "a whole number from 0"
        elseif want == "positive" then
            ok = type(v) == "number" and v >= 1 and v % 1 == 0
            want = "a whole number from 1"
        elseif want == "duration" then
            ok = (type(v) == "number" and v >= 0)
                 or (type(v) == "string" and job_mod.duration_ms(v) ~= nil)
            want = "a duration such as \"5s\" or \"500ms\" (or seconds)"
        elseif want == "from" then
            ok = v == "beginning" or v == "end"
                 or (type(v) == "number" and v % 1 == 0)
            want = "\"beginning\", \"end\" or an offset (negative: back "
                   .. "from the end)"
        elseif want == "serde" then
            ok = type(v) == "string" and serde_mod.get(v) ~= nil
            want = "a serde: json, string or bytes"
        else
            ok = type(v) == want
            want = "a " .. want
        end
        if not ok then
            error(str_format("%s: option %s = %s: %s expected", fn, tostring(k),
                             pretty.format(v, { width = 60 }), want), 3)
        end
    end
    return opts
end

local function mkdtemp()
    local base = os.getenv("TMPDIR") or "/tmp"
    local name = os.tmpname()          -- a fresh file: its name is unique
    os.remove(name)
    local dir = base .. "/tide-repl-" .. name:match("([^/]+)$")
    local ok, err = fs.mkdir_p(dir, 448)
    if not ok then
        return nil, err
    end
    return dir
end

local function shell_quote(s)
    return "'" .. s:gsub("'", "'\\''") .. "'"
end

function _M.install(S, o)
    local H = S.helpers
    local data_dir = o.data_dir
    local mem = {}
    local opened = {}                  -- spec -> stream
    local serdes = {}                  -- spec -> { key, value } serdes
    local scratch
    S.data_dir = data_dir

    local function scratch_dir()
        if not scratch then
            local err
            scratch, err = mkdtemp()
            if not scratch then
                error("cannot make a scratch dir: " .. tostring(err), 3)
            end
        end
        return scratch
    end

    function S.close()
        for _, s in pairs(opened) do
            pcall(s.close, s)
        end
        if scratch then
            os.execute("rm -rf " .. shell_quote(scratch))
        end
    end

    local function spec_of(stream)
        if type(stream) == "table" and stream.spec then
            return stream.spec
        end
        if type(stream) ~= "string" then
            error("bad stream: a name or a stream from stream() expected, "
                  .. "got " .. type(stream), 3)
        end
        return stream
    end

    local function env_of(spec)
        return { data_dir = data_dir, mem = mem }
    end

    local function open(spec, create, partitions)
        local s = opened[spec]
        if s then
            return s
        end
        local err
        s, err = system.open(env_of(spec), spec, { create = create,
                                                   partitions = partitions })
        if not s then
            error(err, 3)
        end
        opened[spec] = s
        return s
    end

    local Stream = {}
    Stream.__index = Stream
    Stream.__pretty = function(self)
        return str_format("stream %s (%d partitions, %s values)", self.spec,
                          self.partitions, self.serde)
    end
    function Stream:send(key, value)
        return H.send(self, key, value)
    end
    function Stream:tail(opts)
        return H.tail(self, opts)
    end

    function H.stream(name, opts)
        opts = check_opts("stream", opts, { partitions = "positive",
                                            serde = "serde",
                                            key_serde = "serde" })
        local spec = spec_of(name)
        local parts = opts.partitions or 1
        local s = open(spec, true, parts)
        local vs = opts.serde or "json"
        local ks = opts.key_serde or "string"
        serdes[spec] = { key = ks, value = vs }
        if s:count() ~= parts then
            S.err:write(str_format("note: stream '%s' exists with %d "
                                   .. "partitions; kept\n", spec, s:count()))
        end
        return setmetatable({ spec = spec, partitions = s:count(),
                              serde = vs, key_serde = ks }, Stream)
    end

    -- The serdes of a stream: as made by stream(), else json values when
    -- `value` is a table.
    local function serdes_of(spec, value)
        local sd = serdes[spec]
        if sd then
            return serde_mod.get(sd.key), serde_mod.get(sd.value)
        end
        return serde_mod.get("string"), serde_mod.get(
            type(value) == "table" and "json" or "string")
    end

    function H.send(stream, key, value, opts)
        local spec = spec_of(stream)
        if value == nil and type(key) ~= "string" and key ~= nil then
            key, value = nil, key
        end
        local s = open(spec, true, 1)
        local ks, vs = serdes_of(spec, value)
        local kraw = key ~= nil and (type(key) == "string" and key
                                     or ks.encode(key)) or nil
        local vraw = value ~= nil and vs.encode(value) or nil
        local p, err = s:push(kraw, vraw, opts and opts.partition, nil,
                              opts and opts.headers
                              and headers.encode(opts.headers) or nil)
        if not p then
            error(str_format("send to '%s': %s", spec, err), 2)
        end
        local ok, ferr = s:flush()
        if not ok then
            error(str_format("send to '%s': %s", spec, ferr), 2)
        end
    end

    -- Decodes a raw value for printing: as the stream's serde, or JSON
    -- when it parses, else the bytes.
    local function decode(spec, raw, which)
        if raw == nil then
            return nil
        end
        local sd = serdes[spec]
        local name = sd and sd[which]
        if name and name ~= "string" then
            local ok, v = pcall(serde_mod.get(name).decode, raw)
            if ok then
                return v
            end
        end
        return raw
    end
    S.decode_record = decode

    --- Prints messages of `stream` as tail(stream, opts) says: one line
    --- each, "partition@offset key value". Returns how many it printed.
    function H.tail(stream, opts)
        opts = check_opts("tail", opts, { from = "from", limit = "count",
                                          every = "positive",
                                          follow = "boolean",
                                          timeout = "duration" })
        local spec = spec_of(stream)
        local s = open(spec, false)
        local from = opts.from or "beginning"
        local limit = opts.limit or (opts.follow and math.huge or 20)
        local every = opts.every or 1
        local deadline = opts.follow and (now_ms() + (duration(
            opts.timeout, "timeout") or 10000)) or nil
        local readers = {}
        for p = 0, s:count() - 1 do
            local f = from
            if type(from) == "number" then
                local first, last = s:range(p)
                f = from >= 0 and from or math.max(first, last + from)
            end
            local r, err = s:reader(p, f)
            if not r then
                error(err, 2)
            end
            readers[#readers + 1] = { r = r, p = p }
        end
        local shown, seen, buf = 0, 0, {}
        local out = S.out
        while shown < limit do
            local got = 0
            for _, rd in ipairs(readers) do
                local n = rd.r:poll(64, buf)
                for i = 1, n or 0 do
                    local m = buf[i]
                    got = got + 1
                    seen = seen + 1
                    if (seen - 1) % every == 0 and shown < limit then
                        shown = shown + 1
                        out:write(str_format("%d@%.0f  %s  %s\n", rd.p,
                            m.offset, pretty.format(decode(spec, m.key, "key"),
                                                    { width = 1e9 }),
                            pretty.format(decode(spec, m.value, "value"),
                                          { width = 1e9 })))
                    end
                end
            end
            if got == 0 then
                if not deadline or now_ms() >= deadline
                    or S:interrupted() then
                    break
                end
                fs.sleep_ms(20)
            end
        end
        out:flush()
        for _, rd in ipairs(readers) do
            rd.r:close()
        end
        return shown
    end

    --- A job: from a table typed at the prompt, or a job file.
    function H.job(t)
        local j, err
        if type(t) == "string" then
            j, err = job_mod.load(t, o.overrides)
            if not j then
                error(err, 2)
            end
            JOBS[j] = { path = t }
            return j
        end
        if type(t) ~= "table" then
            error("job: a table or a job file's path expected, got "
                  .. type(t), 2)
        end
        local copy = {}
        for k, v in pairs(t) do
            copy[k] = v
        end
        j, err = job_mod.validate(copy, t.name and ("job '" .. tostring(
            t.name) .. "'") or "job")
        if not j then
            error(err, 2)
        end
        JOBS[j] = { chunk = S.current, source = t }
        return j
    end

    local function info_of(j)
        local info = JOBS[j]
        if not info then
            error("not a job: make one with job { ... } or job(\"file.lua\")",
                  3)
        end
        return info
    end

    local function rm_rf(path)
        os.execute("rm -rf " .. shell_quote(path))
    end

    --- Forgets the runs of job `j` in the scratch dir.
    function H.reset(j)
        info_of(j)
        local dir = scratch_dir()
        rm_rf(dir .. "/jobs/" .. j.name)
        for _, out in ipairs(j.outputs) do
            if out.system == "local" then
                rm_rf(dir .. "/streams/" .. out.name)
            end
        end
        rm_rf(dir .. "/streams/" .. j.name .. "-dead-letters")
    end

    -- Makes the scratch dir show the job's local inputs: a link to each
    -- stream of the data dir that is read and not written.
    local function link_inputs(j, dir)
        local outs = {}
        for _, out in ipairs(j.outputs) do
            outs[out.spec] = true
        end
        fs.mkdir_p(dir .. "/streams", 448)
        for _, inp in ipairs(j.inputs) do
            if inp.system == "local" and not outs[inp.spec] then
                local link = dir .. "/streams/" .. inp.name
                local target = data_dir .. "/streams/" .. inp.name
                if not fs.exists(link) then
                    if not fs.exists(target) then
                        error(str_format("input '%s' is not in data dir '%s':"
                                         .. " make it with stream(\"%s\") and "
                                         .. "send() to it", inp.spec,
                                         data_dir, inp.name), 3)
                    end
                    local abs = target
                    if abs:sub(1, 1) ~= "/" then
                        abs = (os.getenv("PWD") or ".") .. "/" .. abs
                    end
                    local ok, lerr = fs.symlink(abs, link)
                    if not ok then
                        error(lerr, 3)
                    end
                end
            end
        end
    end

    -- The records of stream `spec` in env from offsets `from` ([p] =
    -- offset) on, decoded by serdes kdec/vdec.
    local function records(env, spec, from, kdec, vdec)
        local s = system.open(env, spec, { create = false })
        if not s then
            return {}
        end
        local list, buf = {}, {}
        for p = 0, s:count() - 1 do
            local r = s:reader(p, from and from[p] or "beginning")
            while r do
                local n = r:poll(256, buf)
                if not n or n == 0 then
                    break
                end
                for i = 1, n do
                    local m = buf[i]
                    local okk, k = pcall(kdec, m.key)
                    local okv, v = pcall(vdec, m.value)
                    list[#list + 1] = {
                        key = m.key ~= nil and (okk and k or m.key) or nil,
                        value = m.value ~= nil and (okv and v or m.value)
                                or nil,
                        partition = p, offset = m.offset,
                        headers = m.headers and headers.decode(m.headers)
                                  or nil,
                    }
                end
            end
            if r then
                r:close()
            end
        end
        s:close()
        return list
    end

    local function ends(env, spec)
        local s = system.open(env, spec, { create = false })
        local e = {}
        if s then
            for p = 0, s:count() - 1 do
                local _, last = s:range(p)
                e[p] = last
            end
            s:close()
        end
        return e
    end

    --- Runs job `j` over its inputs until they are read to their end, or
    --- opts.count messages, or opts.time; returns what it sent, its dead
    --- letters, its stores and counts.
    function H.run(j, opts)
        opts = check_opts("run", opts, { count = "count", time = "duration",
                                         reset = "boolean" })
        info_of(j)
        if opts.reset then
            H.reset(j)
        end
        local dir = scratch_dir()
        link_inputs(j, dir)
        local env = { data_dir = dir, mem = mem }
        local before = {}
        for _, out in ipairs(j.outputs) do
            before[out.spec] = ends(env, out.spec)
        end
        local logs = {}
        local w, err = runner.new(j, env, {
            drain = true, collect_stores = true,
            log = function(level, line)
                logs[#logs + 1] = level .. " " .. line
                if level == "warn" or level == "error" then
                    S.err:write(level, " ", line, "\n")
                end
            end,
        })
        if not w then
            error(err, 2)
        end
        local dlq = w.dlq_name
        local dlq_before = dlq and ends(env, dlq)
        w.budget = opts.count
        -- A time bound is checked before each message (tide.task).
        w.stop_at = opts.time and now_ms() + duration(opts.time, "time")
        local ok, rerr = w:run()
        local result = { outputs = {}, dead_letters = {}, logs = logs,
                         processed = w.processed, stores = w.final_stores or {},
                         skipped = w.skipped, dead = w.dead }
        for _, out in ipairs(j.outputs) do
            result.outputs[out.name] = records(env, out.spec,
                                               before[out.spec],
                                               out.key_serde.decode,
                                               out.serde.decode)
        end
        for _, d in ipairs(dlq and records(env, dlq, dlq_before, tostring,
                                           tostring) or {}) do
            local h = d.headers or {}
            result.dead_letters[#result.dead_letters + 1] = {
                key = d.key, value = d.value, error = h["tide.error"],
                stream = h["tide.stream"], offset = tonumber(h["tide.offset"]),
            }
        end
        if not ok then
            error(rerr, 2)
        end
        return result
    end

    --- Describes job `j`: its streams, serdes, stores and tasks.
    function H.describe(j)
        if j == nil and H.remote_describe then
            return H.remote_describe()
        end
        info_of(j)
        local function streams(list)
            local out = {}
            for _, s in ipairs(list) do
                local count
                local st = system.open(env_of(s.spec), s.spec,
                                       { create = false })
                if st then
                    count = st:count()
                    st:close()
                end
                out[#out + 1] = {
                    name = s.spec, serde = s.serde.name,
                    key_serde = s.key_serde.name, partitions = count or "-",
                    options = concat({
                        s.bootstrap and "bootstrap" or nil,
                        s.broadcast and "broadcast" or nil,
                        (s.priority or 0) ~= 0 and ("priority="
                                                    .. s.priority) or nil,
                    }, " "),
                }
            end
            return out
        end
        local stores = {}
        for _, s in ipairs(j.store_list or {}) do
            stores[#stores + 1] = { name = s.name, engine = s.engine,
                                    serde = s.serde.name,
                                    key_serde = s.key_serde.name,
                                    changelog = s.changelog }
        end
        local ins = streams(j.inputs)
        local tasks
        for _, s in ipairs(ins) do
            if not s.options:find("broadcast") and tonumber(s.partitions) then
                tasks = tasks or s.partitions
            end
        end
        return {
            name = j.name, tasks = tasks or "-", inputs = ins,
            outputs = streams(j.outputs), stores = stores,
            on_error = j.on_error, commit_interval_ms = j.commit_interval_ms,
            window_interval_ms = j.window_interval_ms,
        }
    end

    local function prompt_only(text)
        return _M.calls_any(text, _M.PROMPT_ONLY)
    end

    --- Writes job `j` to `path` as a job file: the chunks typed at the
    --- prompt that defined globals (the last definition of each), then the
    --- chunk that made the job, returning it.
    function H.save(j, path)
        local info = info_of(j)
        if type(path) ~= "string" then
            error("save: a file name expected", 2)
        end
        local text
        if info.path then
            local f = assert(io.open(info.path, "rb"))
            text = f:read("*a")
            f:close()
        else
            local idx = info.chunk
            if not idx then
                error("save: this job was not made at the prompt", 2)
            end
            local lines = {
                "-- " .. j.name .. ": written by tide repl's save() on "
                .. os.date("!%Y-%m-%d %H:%M:%SZ"),
                "local function job(t) return t end",
            }
            -- Job files may not set globals: what the prompt's chunks set
            -- becomes a local of the file, declared before them. Each
            -- global's last definition is kept, wherever it came.
            local keep, names = {}, {}
            for k, i in pairs(S.assigned) do
                local c = S.chunks[i]
                if not c.failed and not prompt_only(c.text)
                    and type(k) == "string" and k:match("^[%a_][%w_]*$") then
                    keep[i] = true
                    names[#names + 1] = k
                end
            end
            table.sort(names)
            if #names > 0 then
                lines[#lines + 1] = "local " .. concat(names, ", ")
            end
            for i = 1, #S.chunks do
                if keep[i] then
                    lines[#lines + 1] = S.chunks[i].text
                end
            end
            -- The file returns the global that holds the job now, else
            -- the expression that made it.
            local name
            for _, k in ipairs(names) do
                if S.vars[k] == j then
                    name = k
                end
            end
            if name then
                lines[#lines + 1] = "return " .. name
            else
                lines[#lines + 1] = "return " .. (S.chunks[idx].text:gsub(
                    "^%s*=", ""))
            end
            text = concat(lines, "\n") .. "\n"
        end
        local ok, err = fs.write_atomic(path, text)
        if not ok then
            error(str_format("save: %s", err), 2)
        end
        local back
        back, err = job_mod.load(path)
        if not back then
            error(str_format("save: %s was written but does not load: %s",
                             path, err), 2)
        end
        S.out:write(str_format("saved job '%s' to %s (%d lines)\n", j.name,
                               path, select(2, text:gsub("\n", ""))))
    end

    -- The printer itself, for a value whose output was cut:
    -- pretty.format(v, { max_lines = 0 }).
    H.pretty = pretty

    function H.help()
        S.out:write(HELP, "\n")
        if S.attached then
            S.out:write("\n", HELP_ATTACH, "\n")
        end
        S.out:flush()
    end

    if o.job then
        local j, err = job_mod.load(o.job, o.overrides)
        if not j then
            return nil, err
        end
        JOBS[j] = { path = o.job }
        S.helpers.J = j
        S.banner = str_format("tide repl: job '%s' loaded as J; run(J) runs "
                              .. "it over its inputs in a scratch dir, "
                              .. "describe(J) shows it; help() lists the "
                              .. "helpers\n", j.name)
    end
    return true
end

return _M
