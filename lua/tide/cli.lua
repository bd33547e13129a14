--- The commands of the tide binary that are written in Lua: `tide run`.
--- core/src/cli/main.c calls main(cmd, args) once and exits with its
--- result.
local job_mod = require("tide.job")
local supervisor = require("tide.supervisor")
local loop_mod = require("tide.loop")
local bit = require("bit")
local fs = require("tide.fs")

local function base_busy()
    return require("tide.base").EBUSY
end

local ipairs, pairs, tostring, type, select = ipairs, pairs, tostring, type, select
local str_format, str_match, concat = string.format, string.match, table.concat
local str_sub = string.sub
local stderr = io.stderr

local _M = {}

local RUN_USAGE = [[
usage: tide run JOB [-c KEY=VALUE]... [--workers N] [--drain] [--final]
                [--load-timeout T] [--data-dir DIR] [--create]
                [--http ADDR] [--log-format text|json]
                [--log-level debug|info|warn|error] [-q]
Runs the job in file JOB: one task per input partition, spread over worker
processes, until SIGINT or SIGTERM (then every worker finishes its batch,
makes the outputs durable, writes the checkpoint and exits 0). A restart
resumes from the checkpoint.
  --workers N   worker processes (default: the number of cores, at most
                the number of tasks)
  -c KEY=VALUE  override a field of the job table; nested keys with dots,
                e.g. -c config.top_n=5 -c commit_interval=1s
  --drain       stop once every input is read to its end, commit, exit 0
  --final       with --drain: before that last commit, fire every pending
                event-time timer and run window() once, as if event time
                had reached the end (no partial windows without it)
  --load-timeout T  how long the job file's top-level code (and the modules
                it requires) may run, at the start and on each reload,
                e.g. 500ms, 30s (default 10s); past it the load fails
  --data-dir DIR  the data dir (default $TIDE_DATA_DIR, else ./tide-data);
                it must exist, as for every command
  --create      make the data dir first when it does not exist (a job
                whose inputs are all on Kafka may start from nothing)
  --http ADDR   serve /metrics (Prometheus) and /health on ADDR: PORT
                (binds 127.0.0.1) or HOST:PORT (docs/operate.md)
  --log-format F  text (default: time, level, what happened, key=value
                fields) or json (one JSON object per line)
  --log-level L   the lowest level logged: debug, info (default), warn or
                error; debug adds Lua tracebacks and per-store restores
  -q            the same as --log-level warn
]]

local function fail(cmd, fmt, ...)
    stderr:write("tide ", cmd, ": ", str_format(fmt, ...), "\n")
    return 1
end

local function usage_error(cmd, fmt, ...)
    stderr:write("tide ", cmd, ": ", str_format(fmt, ...),
                 " (see 'tide ", cmd, " --help')\n")
    return 2
end

-- The option of `known` nearest to the unknown `word`, or nil: the rule
-- of cli_suggest in core/src/cli/suggest.c (Damerau-Levenshtein, optimal
-- string alignment; leading '-'s and '=VALUE' not counted; at most 0, 1
-- or 2 edits for words of up to 2, 5 or more letters; single-letter
-- options never suggested). Keep the two alike.
local function suggest(word, known)
    local function bare(s)
        return (s:gsub("^%-+", ""):gsub("=.*$", ""))
    end
    local a = bare(word)
    local best, best_d = nil, (#a <= 2 and 0 or #a <= 5 and 1 or 2) + 1
    for _, k in ipairs(known) do
        local b = bare(k)
        if #b > 1 and #a <= 64 and #b <= 64 then
            local d = {}
            for i = 0, #a do
                d[i] = { [0] = i }
            end
            for j = 1, #b do
                d[0][j] = j
            end
            for i = 1, #a do
                for j = 1, #b do
                    local cost = a:byte(i) == b:byte(j) and 0 or 1
                    local v = math.min(d[i - 1][j] + 1, d[i][j - 1] + 1,
                                       d[i - 1][j - 1] + cost)
                    if i > 1 and j > 1 and a:byte(i) == b:byte(j - 1)
                        and a:byte(i - 1) == b:byte(j) then
                        v = math.min(v, d[i - 2][j - 2] + 1)
                    end
                    d[i][j] = v
                end
            end
            if d[#a][#b] < best_d then
                best, best_d = k, d[#a][#b]
            end
        end
    end
    return best
end

local log = require("tide.logging").logger()

-- Parses the arguments every Lua command shares: --help, --data-dir DIR
-- (or =DIR), -c KEY=VALUE (repeatable; where `with_c`), --drain and
-- --load-timeout T (where `with_drain`), and positional words. `extra`
-- maps options that take a value to their field, `flags` options that
-- take none ({ ["--dry-run"] = "dry_run" }). Returns the options, or nil
-- and the exit code after printing help or a usage error.
local function parse_args(cmd, args, usage, with_c, with_drain, extra, flags)
    local o = { pos = {}, overrides = {} }
    local i = 1
    while i <= #args do
        local a = args[i]
        local opt = extra and (extra[a] or extra[a:match("^(%-%-[%w-]+)=")
                                                  or ""])
        if opt then
            local v = a:match("^[^=]*=(.*)$")
            if v == nil then
                v = args[i + 1]
                i = i + 1
            end
            if v == nil then
                return nil, usage_error(cmd, "%s needs a value", a)
            end
            o[opt] = v
        elseif a == "--help" or a == "-h" then
            io.stdout:write(usage)
            return nil, 0
        elseif flags and flags[a] then
            o[flags[a]] = true
        elseif a == "--drain" and with_drain then
            o.drain = true
        elseif a == "--final" and with_drain then
            o.final = true
        elseif (a == "--workers" or str_match(a, "^%-%-workers=")) and with_drain
            then
            local v = a:match("^[^=]*=(.*)$") or args[i + 1]
            if not a:find("=", 1, true) then
                i = i + 1
            end
            local n = tonumber(v)
            if not n or n < 1 or n > 256 or n % 1 ~= 0 then
                return nil, usage_error(cmd, "--workers: a whole number from "
                                        .. "1 to 256 expected, got '%s'",
                                        tostring(v))
            end
            o.workers = n
        elseif (a == "--load-timeout" or str_match(a, "^%-%-load%-timeout="))
            and with_drain then
            local v = a:match("^[^=]*=(.*)$") or args[i + 1]
            if v == nil then
                return nil, usage_error(cmd, "%s needs a value", a)
            end
            if not a:find("=", 1, true) then
                i = i + 1
            end
            local ms = job_mod.duration_ms(v)
            if not ms then
                return nil, usage_error(cmd, "--load-timeout: %s",
                                        select(2, job_mod.duration_ms(v)))
            end
            o.limit_ms = ms
        elseif a == "--data-dir" or (a == "-c" and with_c) then
            local v = args[i + 1]
            if v == nil then
                return nil, usage_error(cmd, "%s needs a value", a)
            end
            if a == "-c" then
                o.overrides[#o.overrides + 1] = v
            else
                o.data_dir = v
            end
            i = i + 1
        elseif with_c and str_match(a, "^%-c.") then
            o.overrides[#o.overrides + 1] = a:sub(3)
        elseif str_match(a, "^%-%-data%-dir=") then
            o.data_dir = a:sub(12)
        elseif str_match(a, "^%-") then
            local known = { "--help", "--data-dir" }
            for _, t in ipairs({ extra or {}, flags or {} }) do
                for k in pairs(t) do
                    known[#known + 1] = k
                end
            end
            if with_drain then
                known[#known + 1] = "--drain"
                known[#known + 1] = "--workers"
                known[#known + 1] = "--load-timeout"
            end
            table.sort(known)
            local near = suggest(a, known)
            if near then
                return nil, usage_error(cmd, "unknown option '%s'; did you "
                                        .. "mean '%s'?", a, near)
            end
            return nil, usage_error(cmd, "unknown option '%s'", a)
        else
            o.pos[#o.pos + 1] = a
        end
        i = i + 1
    end
    o.data_dir = o.data_dir or os.getenv("TIDE_DATA_DIR")
    if o.data_dir == nil or o.data_dir == "" then
        o.data_dir = "./tide-data"
    end
    return o
end

-- Takes the run lock of job `name`. Workers hold it too: after a
-- supervisor was killed, its workers still hold it for the moment they
-- take to die (the kernel kills them with their parent), so a lock held
-- while the pid written in it has gone is waited for, a few seconds.
local function take_lock(data_dir, name)
    local path = str_format("%s/jobs/%s/run.lock", data_dir, name)
    local deadline = loop_mod.now() + 5000
    while true do
        local lock, err, code = fs.lock(path)
        if lock or code ~= base_busy() then
            return lock, err
        end
        local f = io.open(path, "r")
        local pid = f and tonumber((f:read("*a") or ""):match("%d+"))
        if f then
            f:close()
        end
        local st = pid and io.open("/proc/" .. pid .. "/stat", "r")
        local state = st and (st:read("*a") or ""):match("^%d+ %b() (%a)")
        if st then
            st:close()
        end
        local holder_alive = state ~= nil and state ~= "Z" and state ~= "X"
        if holder_alive or loop_mod.now() >= deadline then
            return nil, err
        end
        os.execute("sleep 0.05")
    end
end

-- Where `tide run` records the job file and -c overrides a job ran with:
-- commands given the job's name (state dump ...) load the same job.
local function job_record_path(data_dir, name)
    return str_format("%s/jobs/%s/job.json", data_dir, name)
end

-- Writes that record: the job file's absolute path and the overrides.
local function record_job_file(data_dir, name, path, overrides)
    if str_sub(path, 1, 1) ~= "/" then
        local cwd = os.getenv("PWD")
        if not cwd or cwd == "" then
            local p = io.popen("pwd")
            cwd = p and p:read("*l")
            if p then p:close() end
        end
        if not cwd then
            return nil, "the current folder is not known"
        end
        path = cwd .. "/" .. path
    end
    local cjson = require("cjson")
    return fs.write_atomic(job_record_path(data_dir, name), cjson.encode({
        file = path, overrides = overrides }) .. "\n")
end

-- The job file and overrides recorded for job `name`, or nil and why not.
local function recorded_job(data_dir, name)
    local f = io.open(job_record_path(data_dir, name), "r")
    if not f then
        return nil, str_format("job '%s' has not run in data dir '%s' (no "
                               .. "record of its job file); give its job "
                               .. "file instead of its name", name, data_dir)
    end
    local text = f:read("*a")
    f:close()
    local ok, rec = pcall(require("cjson").decode, text)
    if not ok or type(rec) ~= "table" or type(rec.file) ~= "string" then
        return nil, str_format("'%s' is damaged; give the job file instead "
                               .. "of its name", job_record_path(data_dir,
                                                                 name))
    end
    return rec.file, type(rec.overrides) == "table" and rec.overrides or {}
end

-- Checks that data dir `dir` is there for `tide run`, as the other
-- commands do; with `create`, makes it (and its parents) when missing.
-- Returns true, or nil and the error.
local function data_dir_ready(dir, create)
    if fs.exists(dir .. "/.") then
        return true
    end
    if fs.exists(dir) then
        return nil, str_format("data dir '%s' is not a folder; check "
                               .. "--data-dir or $TIDE_DATA_DIR", dir)
    end
    if not create then
        return nil, str_format("data dir '%s' does not exist; check "
                               .. "--data-dir or $TIDE_DATA_DIR, or add "
                               .. "--create to make it", dir)
    end
    return fs.mkdir_p(dir, 493)                      -- 0755, as the log does
end

-- The directories of tide's own Lua runtime, whose frames a job's
-- traceback leaves out.
local function runtime_dirs()
    local dirs = {}
    for _, m in ipairs({ "tide.task", "tide.loop" }) do
        local f = package.searchpath(m, package.path)
        if f then
            dirs[#dirs + 1] = f:match("^(.*/)tide/[^/]*$") or f
        end
    end
    return dirs
end

-- A failed run: one line (the error's first), then, at --log-level
-- debug, the Lua traceback through the job's own code only.
local function run_failed(text)
    local first, rest = text:match("^([^\n]*)\n(.*)$")
    if not first then
        return fail("run", "%s", text)
    end
    local code = fail("run", "%s", first)
    local logging = require("tide.logging")
    if logging.enabled("debug") then
        local dirs, keep = runtime_dirs(), {}
        for line in rest:gmatch("[^\n]+") do
            local own = line:find("[C]:", 1, true) ~= nil
            for _, d in ipairs(dirs) do
                own = own or line:find(d, 1, true) ~= nil
            end
            if not own and not line:find("^%s*%(tail call%)") then
                keep[#keep + 1] = line
            end
        end
        log("debug", "the job's Lua traceback:\n" .. concat(keep, "\n"))
    end
    return code
end

local function run(args)
    local o, code = parse_args("run", args, RUN_USAGE, true, true,
                               { ["--http"] = "http",
                                 ["--log-format"] = "log_format",
                                 ["--log-level"] = "log_level" },
                               { ["--create"] = "create", ["-q"] = "quiet" })
    if not o then
        return code
    end
    if o.quiet and o.log_level then
        return usage_error("run", "-q and --log-level both set the level; "
                           .. "use one")
    end
    local lok, lerr = require("tide.logging").configure(
        o.log_format, o.log_level or (o.quiet and "warn") or nil)
    if not lok then
        return usage_error("run", "%s", lerr)
    end
    if #o.pos > 1 then
        return usage_error("run", "one JOB file expected, got '%s' and '%s'",
                           o.pos[1], o.pos[2])
    end
    local path, drain, data_dir = o.pos[1], o.drain, o.data_dir
    local overrides = o.overrides
    if not path then
        return usage_error("run", "no JOB file given")
    end
    local ready, derr = data_dir_ready(data_dir, o.create)
    if not ready then
        return fail("run", "%s", derr)
    end
    if o.final and not drain then
        return usage_error("run", "--final goes with --drain (it fires what "
                           .. "is pending once the input ends)")
    end

    -- Job code never ends the process: os.exit raises from here on (in
    -- process() it is an error like any other, handled by on_error).
    os.exit = job_mod.no_exit
    local job, err = job_mod.load(path, overrides, { limit_ms = o.limit_ms })
    if not job then
        return fail("run", "%s", err)
    end
    local lock, lerr = take_lock(data_dir, job.name)
    if not lock then
        return fail("run", "job '%s' cannot start: %s", job.name, lerr)
    end
    -- --http: listen before anything starts, so that a bad address or a
    -- port in use stops here with one line.
    local http
    if o.http then
        local herr
        http, herr = require("tide.http").new(o.http)
        if not http then
            lock:close()
            return fail("run", "--http %s: %s", o.http, herr)
        end
        log("info", str_format("serving /metrics and /health on http://%s/",
                               o.http:match("^%d+$") and "127.0.0.1:"
                               .. http:port() or o.http))
    end
    local loop = loop_mod.new()
    local ok, werr = loop:watch(job.dir)
    if not ok then
        log("warn", str_format("not watching %s for changes: %s (SIGHUP and "
                               .. "tide reload still work)", job.dir, werr))
    end
    local sock = str_format("%s/jobs/%s/control.sock", data_dir, job.name)
    ok, werr = loop:control(sock)
    if not ok then
        lock:close()
        loop:close()
        return fail("run", "job '%s': control socket: %s", job.name, werr)
    end
    -- A Kafka cluster that is down at start is waited for.
    for _, list in ipairs({ job.inputs, job.outputs }) do
        local kin
        for _, st in ipairs(list) do
            kin = kin or (st.system == "kafka" and st)
        end
        if kin then
            local env = require("tide.system").env(job, data_dir)
            ok, err = require("tide.system.kafka").wait_ready(env, kin.name,
                log, function(ms)
                    return bit.band(loop:poll(ms), loop_mod.STOP) ~= 0
                end)
            if env.kafka.client then
                env.kafka.client:close()
            end
            if not ok then
                lock:close()
                loop:close()
                return fail("run", "job '%s': %s", job.name, err)
            end
            break
        end
    end
    local sup
    sup, err = supervisor.new(job, { data_dir = data_dir, drain = drain,
                                     final = o.final,
                                     loop = loop, log = log,
                                     overrides = overrides,
                                     load_limit_ms = o.limit_ms,
                                     workers = o.workers,
                                     lock_fd = lock:fd(), http = http,
                                     on_started = function(sp)
        local ins = {}
        for _, inp in ipairs(job.inputs) do
            ins[#ins + 1] = inp.spec
        end
        log("info", str_format("job '%s' started: %d tasks over %s on %d "
                               .. "worker%s%s; version %s; data dir %s",
                               job.name, sp.nparts, concat(ins, ", "),
                               sp.nworkers, sp.nworkers == 1 and "" or "s",
                               drain and " (drain)" or "", sp.version,
                               data_dir))
        -- Recorded once the job runs: a start that fails touches nothing.
        local rok, rerr = record_job_file(data_dir, job.name, path,
                                          overrides)
        if not rok then
            log("warn", str_format("job '%s': its file is not recorded in "
                                   .. "the data dir (%s); 'tide state dump "
                                   .. "%s' will need the job file", job.name,
                                   rerr, job.name))
        end
    end })
    if not sup then
        lock:close()
        loop:close()
        return fail("run", "job '%s' (%s): %s", job.name, path, err)
    end
    local rerr
    ok, rerr = sup:run()
    loop:close()
    lock:close()
    if not ok then
        return run_failed(tostring(rerr))
    end
    log("info", str_format("job '%s' stopped cleanly", job.name))
    return 0
end

local STATE_USAGE = [[
usage: tide state dump JOB STORE [-c KEY=VALUE]... [--data-dir DIR]
       tide state get JOB STORE KEY [--data-dir DIR]
       tide state scan JOB STORE [--from K] [--to K] [--limit N]
Reads store STORE of job JOB: its file, or its name (the file and the -c
overrides its last `tide run` in this data dir used).
  dump  key<TAB>value of every key, over every task, as of the job's last
        checkpoint. The job must be stopped.
  get   the value of KEY. While the job runs, the task that holds the key
        answers (stderr says which task, at which input offsets); when it
        is stopped, the last checkpoint does. Exit 1 when the key is not
        there.
  scan  key<TAB>value of the keys in [--from, --to), in key order over
        every task, at most --limit (default 1000); live or from the
        checkpoint, as get.
Values that are tables print as JSON. With a job file, give the same -c
overrides as the job ran with (e.g. -c inputs.1=other-stream): the
checkpoint is checked against the job as they make it.
]]

local function show(v)
    if type(v) == "table" then
        return require("cjson").encode(v)
    end
    return tostring(v)
end

-- Opens store `store_name` of stopped job `job` in `data_dir` as of its
-- last checkpoint. Returns the state, the task count and a close
-- function, or nil and an error.
local function open_committed(job, data_dir, store_name)
    local spec
    for _, s in ipairs(job.store_list) do
        if s.name == store_name then
            spec = s
        end
    end
    if not spec then
        local names = {}
        for _, s in ipairs(job.store_list) do
            names[#names + 1] = s.name
        end
        return nil, str_format("job '%s' has no store '%s' (stores: %s)",
                               job.name, store_name, #names > 0
                               and concat(names, ", ") or "none")
    end
    local lock, lerr = take_lock(data_dir, job.name)
    if not lock then
        return nil, str_format("job '%s' is running (%s); stop it first: "
                               .. "state dump reads a stopped job's "
                               .. "committed state", job.name, lerr)
    end
    local ckpt_mod = require("tide.checkpoint")
    local ckpt = ckpt_mod.new({ data_dir = data_dir }, job.name)
    local tasks, err = ckpt:load()
    if not tasks then
        lock:close()
        return nil, err
    end
    local nparts = 0
    for p in pairs(tasks) do
        nparts = p + 1 > nparts and p + 1 or nparts
    end
    if nparts == 0 then
        lock:close()
        return nil, str_format("job '%s' has no checkpoint in data dir '%s': "
                               .. "it never committed", job.name, data_dir)
    end
    -- The checkpoint must fit the job, as for tide run: its task count is
    -- that of the first input that is not broadcast, when that stream is
    -- there; a broadcast input has an offset per partition.
    local system = require("tide.system")
    local keys, count = {}, nil
    for _, inp in ipairs(job.inputs) do
        local key = inp.system .. ":" .. inp.name
        local s = system.open({ data_dir = data_dir }, inp.spec)
        if inp.broadcast then
            for q = 0, (s and s:count() or 1) - 1 do
                keys[#keys + 1] = str_format("%s#%d", key, q)
            end
        else
            keys[#keys + 1] = key
            count = count or (s and s:count())
        end
        if s then
            s:close()
        end
    end
    local ok
    ok, err = ckpt_mod.check(tasks, ckpt.path, job.name, count or nparts,
                             keys)
    if not ok then
        lock:close()
        return nil, err
    end
    job.store_list = { spec }
    local st
    st, err = require("tide.state").open(job, { data_dir = data_dir },
                                         nparts, tasks, function() end, true)
    if not st then
        lock:close()
        return nil, err
    end
    return st, nparts, function()
        st:close()
        for _, cl in ipairs(st:changelogs()) do
            cl:close()
        end
        lock:close()
    end, tasks
end

-- Orders scan entries { k, v } by key as the stores do (byte order of
-- strings; numbers before strings), across tasks, and keeps `limit`.
local function key_before(a, b)
    local ta, tb = type(a), type(b)
    if ta == tb and (ta == "string" or ta == "number") then
        return a < b
    end
    if ta ~= tb then
        return ta < tb
    end
    return tostring(a) < tostring(b)
end

local function print_scan(entries, limit)
    table.sort(entries, function(x, y) return key_before(x[1], y[1]) end)
    for i = 1, math.min(#entries, limit) do
        io.stdout:write(show(entries[i][1]), "\t", show(entries[i][2]), "\n")
    end
end

-- tide state get|scan on a running job: asks its tasks through the
-- control socket. Returns the exit code.
local function state_live(c, o, verb, store, key)
    local attach = require("tide.repl.attach")
    local desc = require("tide.wire").decode(assert(c.call("describe")))
    local owners = require("tide.wire").list(desc.owners or {})
    if verb == "get" then
        for p = 0, desc.tasks - 1 do
            -- In a Kafka group, tasks of other processes are skipped.
            if desc.group and (owners[p + 1] or 0) == 0 then
                goto next_task
            end
            local r, err = c.inspect("store", { task = p, store = store,
                                                read = "get", key = key })
            if not r then
                return fail("state", "%s", err)
            end
            if r.found then
                local offs = {}
                for k, v in pairs(r.offsets or {}) do
                    offs[#offs + 1] = str_format("%s=%.0f", k, v)
                end
                table.sort(offs)
                io.stdout:write(show(attach.value_of(r.value)), "\n")
                stderr:write(str_format("task %d of running job '%s', "
                                        .. "input offsets %s\n", p, c.name,
                                        concat(offs, ",")))
                return 0
            end
            ::next_task::
        end
        if desc.group then
            -- The key's task, when the store is keyed as the input is.
            local p = require("tide.partition").get(key, desc.tasks)
            if (owners[p + 1] or 0) == 0 then
                local who, werr = c.call("group_owner " .. p, 15000)
                return fail("state", "key '%s' is not in this process's tasks "
                            .. "of job '%s'; its partition %d (murmur2 of "
                            .. "the key) is held by another process of Kafka "
                            .. "group '%s': %s; ask it (tide state get with "
                            .. "that process's --data-dir)", key, c.name, p,
                            desc.group, who or werr)
            end
        end
        return fail("state", "key '%s' is not in store '%s' of running job "
                    .. "'%s' (asked its %d tasks)", key, store, c.name,
                    desc.tasks)
    end
    -- Each task's first `limit` keys of the range, merged in key order.
    local limit = tonumber(o.limit) or 1000
    local entries = {}
    for p = 0, desc.tasks - 1 do
        local args = { task = p, store = store, read = "scan", from = o.from,
                       to = o.to, limit = limit }
        if desc.group and (owners[p + 1] or 0) == 0 then
            args = nil                   -- another process's task
        end
        while args do
            local r, err = c.inspect("store", args)
            if not r then
                return fail("state", "%s", err)
            end
            for _, e in ipairs(require("tide.wire").list(r.entries or {})) do
                entries[#entries + 1] = { attach.value_of(e.k),
                                          attach.value_of(e.v) }
            end
            if r.done then
                break
            end
            args = { task = p, store = store, read = "scan", scan = r.scan }
        end
    end
    print_scan(entries, limit)
    return 0
end

local function state_cmd(args)
    local o, code = parse_args("state", args, STATE_USAGE, true, false,
                               { ["--from"] = "from", ["--to"] = "to",
                                 ["--limit"] = "limit" })
    if not o then
        return code
    end
    local pos, data_dir = o.pos, o.data_dir
    local verb = pos[1]
    local want = { dump = 3, get = 4, scan = 3 }
    if not want[verb] or #pos ~= want[verb] then
        return usage_error("state", "expected: state dump JOB STORE, state "
                           .. "get JOB STORE KEY or state scan JOB STORE")
    end
    if o.limit and (not tonumber(o.limit) or tonumber(o.limit) < 1
                    or tonumber(o.limit) % 1 ~= 0) then
        return usage_error("state", "--limit: a whole number from 1 "
                           .. "expected, got '%s'", o.limit)
    end
    if verb ~= "dump" then
        -- A running job answers itself.
        local c = require("tide.repl.attach").client(data_dir, pos[2])
        if c then
            local text, cerr = c.call("describe", 5000)
            if text then
                return state_live(c, o, verb, pos[3], pos[4])
            end
            if str_match(cerr or "", "^permission denied") then
                return fail("state", "job '%s': %s", c.name, cerr)
            end
        end
    end
    -- A job's name: the file and overrides its last `tide run` used
    -- (explicit -c overrides replace those).
    local file, overrides = pos[2], o.overrides
    if not str_match(file, "%.lua$") and not str_match(file, "/") then
        local rec_file, rec_over = recorded_job(data_dir, file)
        if not rec_file then
            return fail("state", "%s", rec_over)
        end
        file = rec_file
        if #overrides == 0 then
            overrides = rec_over
        end
    end
    local job, err = job_mod.load(file, overrides)
    if not job then
        return fail("state", "%s", err)
    end
    local st, nparts, close = open_committed(job, data_dir, pos[3])
    if not st then
        return fail("state", "%s", nparts)
    end
    local out = io.stdout
    local found = false
    local limit = tonumber(o.limit) or 1000
    local entries = {}
    for p = 0, nparts - 1 do
        local store = st:stores(p)[pos[3]]
        if verb == "get" then
            local v = store:get(pos[4])
            if v ~= nil then
                out:write(show(v), "\n")
                stderr:write(str_format("task %d, as of the last checkpoint "
                                        .. "(job '%s' is stopped)\n", p,
                                        job.name))
                found = true
                break
            end
        elseif verb == "dump" then
            for k, v in store:range(nil, nil) do
                out:write(show(k), "\t", show(v), "\n")
            end
        else
            local n = 0
            for k, v in store:range(o.from, o.to) do
                if n >= limit then
                    break
                end
                entries[#entries + 1] = { k, v }
                n = n + 1
            end
        end
    end
    close()
    if verb == "scan" then
        print_scan(entries, limit)
    end
    if verb == "get" and not found then
        return fail("state", "key '%s' is not in store '%s' of job '%s' as of "
                    .. "its last checkpoint", pos[4], pos[3], job.name)
    end
    return 0
end

-- The job name of `target`: a job file (loaded to read its name) or a
-- name.
local function job_name(target)
    if str_match(target, "%.lua$") or str_match(target, "/") then
        local job, err = job_mod.load(target)
        if not job then
            return nil, err
        end
        return job.name
    end
    return target
end

-- Sends `line` to the control socket of running job `name`; prints the
-- reply. Returns the exit code: 0 when the job answered "ok".
local function control(name, data_dir, cmd, line)
    local sock = str_format("%s/jobs/%s/control.sock", data_dir, name)
    local reply, err = loop_mod.send(sock, line, 130000)
    if not reply then
        return fail(cmd, "job '%s': %s", name, err)
    end
    reply = reply:gsub("\n$", "")
    local ok = str_match(reply, "^ok") ~= nil
    if cmd == "reload" then
        -- As it always printed: "ok: ..." or "error: ..." on stdout.
        io.stdout:write(reply, "\n")
        return ok and 0 or 1
    end
    if ok then
        reply = reply:gsub("^ok: ", "")
        io.stdout:write(reply, "\n")
        return 0
    end
    stderr:write("tide ", cmd, ": job '", name, "': ",
                 (reply:gsub("^error: ", "")), "\n")
    return 1
end

local RELOAD_USAGE = [[
usage: tide reload JOB [--data-dir DIR]
Asks the running job to load its code again (JOB: the job file, or the
job's name). Prints the outcome: the new version, or why it was refused
(the old code keeps running then). Exit 0 when the new version is live.
]]

local function reload_cmd(args)
    local o, code = parse_args("reload", args, RELOAD_USAGE)
    if not o then
        return code
    end
    if #o.pos > 1 then
        return usage_error("reload", "one JOB expected")
    end
    local target, data_dir = o.pos[1], o.data_dir
    if not target then
        return usage_error("reload", "no JOB given")
    end
    local name, err = job_name(target)
    if not name then
        return fail("reload", "%s", err)
    end
    return control(name, data_dir, "reload", "reload")
end

local CTL_USAGE = {
    tasks = [[
usage: tide tasks JOB [--data-dir DIR]
Shows each task of the running job JOB (a name or its file): its state
(RUNNING, PAUSED, BOOTSTRAPPING), worker, code version, messages
processed, lag (messages not read yet) and input offsets.
]],
    workers = [[
usage: tide workers JOB [--data-dir DIR]
Shows each worker process of the running job JOB: pid, memory, tasks.
]],
    pause = [[
usage: tide pause JOB TASK [--data-dir DIR]
Stops reading the inputs of task TASK of the running job JOB; its offsets
and state stay; the other tasks go on. 'tide resume' undoes it.
]],
    resume = [[
usage: tide resume JOB TASK [--data-dir DIR]
Resumes a task paused with 'tide pause'.
]],
    move = [[
usage: tide move JOB TASK WORKER [--data-dir DIR]
Moves task TASK of the running job JOB to worker WORKER (1 to N): the task
is revoked (batch finished, committed, stores closed) and assigned to the
other worker (stores opened from their snapshot, inputs at the checkpoint).
]],
}
local CTL_ARGS = { tasks = 0, workers = 0, pause = 1, resume = 1, move = 2 }

local function ctl_cmd(cmd, args)
    local o, code = parse_args(cmd, args, CTL_USAGE[cmd])
    if not o then
        return code
    end
    local want = CTL_ARGS[cmd] + 1
    if #o.pos ~= want then
        return usage_error(cmd, "expected %s", CTL_USAGE[cmd]:match(
            "usage: tide (.-) %[") or cmd)
    end
    local name, err = job_name(o.pos[1])
    if not name then
        return fail(cmd, "%s", err)
    end
    local line = cmd
    for i = 2, want do
        line = line .. " " .. o.pos[i]
    end
    return control(name, o.data_dir, cmd, line)
end

-- For the operator commands (tide.ops).
_M.parse_args = parse_args
_M.fail = fail
_M.usage_error = usage_error
_M.take_lock = take_lock
_M.job_name = job_name

--- Runs command `cmd` with its arguments; returns the exit code.
---@param cmd string
---@param args string[]
---@return integer
function _M.main(cmd, args)
    if cmd == "run" then
        return run(args)
    elseif cmd == "state" then
        return state_cmd(args)
    elseif cmd == "reload" then
        return reload_cmd(args)
    elseif CTL_ARGS[cmd] then
        return ctl_cmd(cmd, args)
    elseif cmd == "repl" then
        local o, code = parse_args("repl", args, require("tide.repl").USAGE,
                                   true, false,
                                   { ["--attach"] = "attach",
                                     ["--history"] = "history" })
        if not o then
            return code
        end
        return require("tide.repl").main(args, o)
    elseif cmd == "worker" then
        return require("tide.worker_proc").main()
    elseif cmd == "jobs" or cmd == "offsets"
        or (cmd == "streams" and args[1] == "delete") then
        return require("tide.ops").main(cmd, args)
    end
    return usage_error(cmd, "not a Lua command")
end

return _M
