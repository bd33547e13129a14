--- The commands of the tide binary that are written in Lua: `tide run`.
--- core/src/cli/main.c calls main(cmd, args) once and exits with its
--- result.
local job_mod = require("tide.job")
local supervisor = require("tide.supervisor")
local loop_mod = require("tide.loop")
local fs = require("tide.fs")

local function base_busy()
    return require("tide.base").EBUSY
end

local ipairs, pairs, tostring, type, select = ipairs, pairs, tostring, type, select
local str_format, str_match, concat = string.format, string.match, table.concat
local stderr = io.stderr

local _M = {}

local RUN_USAGE = [[
usage: tide run JOB [-c KEY=VALUE]... [--workers N] [--drain]
                [--load-timeout T] [--data-dir DIR]
Runs the job in file JOB: one task per input partition, spread over worker
processes, until SIGINT or SIGTERM (then every worker finishes its batch,
makes the outputs durable, writes the checkpoint and exits 0). A restart
resumes from the checkpoint.
  --workers N   worker processes (default: the number of cores, at most
                the number of tasks)
  -c KEY=VALUE  override a field of the job table; nested keys with dots,
                e.g. -c config.top_n=5 -c commit_interval=1s
  --drain       stop once every input is read to its end, commit, exit 0
  --load-timeout T  how long the job file's top-level code (and the modules
                it requires) may run, at the start and on each reload,
                e.g. 500ms, 30s (default 10s); past it the load fails
  --data-dir DIR  the data dir (default $TIDE_DATA_DIR, else ./tide-data)
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

local function log(level, line)
    stderr:write(os.date("!%Y-%m-%dT%H:%M:%SZ "), level, " ", line, "\n")
end

-- Parses the arguments every Lua command shares: --help, --data-dir DIR
-- (or =DIR), -c KEY=VALUE (repeatable; where `with_c`), --drain and
-- --load-timeout T (where `with_drain`), and positional words. Returns the options, or nil and
-- the exit code after printing help or a usage error.
local function parse_args(cmd, args, usage, with_c, with_drain)
    local o = { pos = {}, overrides = {} }
    local i = 1
    while i <= #args do
        local a = args[i]
        if a == "--help" or a == "-h" then
            io.stdout:write(usage)
            return nil, 0
        elseif a == "--drain" and with_drain then
            o.drain = true
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

local function run(args)
    local o, code = parse_args("run", args, RUN_USAGE, true, true)
    if not o then
        return code
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
    local sup
    sup, err = supervisor.new(job, { data_dir = data_dir, drain = drain,
                                     loop = loop, log = log,
                                     overrides = overrides,
                                     load_limit_ms = o.limit_ms,
                                     workers = o.workers,
                                     lock_fd = lock:fd(),
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
        return fail("run", "%s", tostring(rerr))
    end
    log("info", str_format("job '%s' stopped cleanly", job.name))
    return 0
end

local STATE_USAGE = [[
usage: tide state dump JOB STORE [-c KEY=VALUE]... [--data-dir DIR]
Prints key<TAB>value for every key of store STORE of the job in file JOB,
over every task, as of the job's last checkpoint. The job must be stopped.
Values that are tables print as JSON. Give the same -c overrides as the
job ran with (e.g. -c inputs.1=other-stream): the checkpoint is checked
against the job as they make it.
]]

local function show(v)
    if type(v) == "table" then
        return require("cjson").encode(v)
    end
    return tostring(v)
end

local function state_cmd(args)
    local o, code = parse_args("state", args, STATE_USAGE, true)
    if not o then
        return code
    end
    local pos, data_dir = o.pos, o.data_dir
    if pos[1] ~= "dump" or #pos ~= 3 then
        return usage_error("state", "expected: state dump JOB STORE")
    end
    local job, err = job_mod.load(pos[2], o.overrides)
    if not job then
        return fail("state", "%s", err)
    end
    local spec
    for _, s in ipairs(job.store_list) do
        if s.name == pos[3] then
            spec = s
        end
    end
    if not spec then
        local names = {}
        for _, s in ipairs(job.store_list) do
            names[#names + 1] = s.name
        end
        return fail("state", "job '%s' has no store '%s' (stores: %s)",
                    job.name, pos[3], #names > 0 and concat(names, ", ")
                    or "none")
    end
    local lock, lerr = take_lock(data_dir, job.name)
    if not lock then
        return fail("state", "job '%s' is running (%s); stop it first: "
                    .. "state dump reads a stopped job's committed state",
                    job.name, lerr)
    end
    local ckpt_mod = require("tide.checkpoint")
    local ckpt = ckpt_mod.new({ data_dir = data_dir }, job.name)
    local tasks
    tasks, err = ckpt:load()
    if not tasks then
        lock:close()
        return fail("state", "%s", err)
    end
    local nparts = 0
    for p in pairs(tasks) do
        nparts = p + 1 > nparts and p + 1 or nparts
    end
    if nparts == 0 then
        lock:close()
        return fail("state", "job '%s' has no checkpoint in data dir '%s': "
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
        return fail("state", "%s", err)
    end
    job.store_list = { spec }
    local st
    st, err = require("tide.state").open(job, { data_dir = data_dir },
                                         nparts, tasks, function() end, true)
    if not st then
        lock:close()
        return fail("state", "%s", err)
    end
    local out = io.stdout
    for p = 0, nparts - 1 do
        for k, v in st:stores(p)[spec.name]:all() do
            out:write(show(k), "\t", show(v), "\n")
        end
    end
    st:close()
    for _, cl in ipairs(st:changelogs()) do
        cl:close()
    end
    lock:close()
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
    elseif cmd == "worker" then
        return require("tide.worker_proc").main()
    end
    return usage_error(cmd, "not a Lua command")
end

return _M
