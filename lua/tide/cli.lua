--- The commands of the tide binary that are written in Lua: `tide run`.
--- core/src/cli/main.c calls main(cmd, args) once and exits with its
--- result.
local job_mod = require("tide.job")
local runner = require("tide.runner")
local loop_mod = require("tide.loop")
local fs = require("tide.fs")

local ipairs, tostring = ipairs, tostring
local str_format, str_match, concat = string.format, string.match, table.concat
local stderr = io.stderr

local _M = {}

local RUN_USAGE = [[
usage: tide run JOB [-c KEY=VALUE]... [--drain] [--data-dir DIR]
Runs the job in file JOB: one task per input partition, until SIGINT or
SIGTERM (then it finishes the batch, makes the outputs durable, writes the
checkpoint and exits 0). A restart resumes from the checkpoint.
  -c KEY=VALUE  override a field of the job table; nested keys with dots,
                e.g. -c config.top_n=5 -c commit_interval=1s
  --drain       stop once every input is read to its end, commit, exit 0
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

local function run(args)
    local path, drain, data_dir
    local overrides = {}
    local i = 1
    while i <= #args do
        local a = args[i]
        if a == "--help" or a == "-h" then
            io.stdout:write(RUN_USAGE)
            return 0
        elseif a == "--drain" then
            drain = true
        elseif a == "-c" or a == "--data-dir" then
            local v = args[i + 1]
            if v == nil then
                return usage_error("run", "%s needs a value", a)
            end
            if a == "-c" then
                overrides[#overrides + 1] = v
            else
                data_dir = v
            end
            i = i + 1
        elseif str_match(a, "^%-c.") then
            overrides[#overrides + 1] = a:sub(3)
        elseif str_match(a, "^%-%-data%-dir=") then
            data_dir = a:sub(12)
        elseif str_match(a, "^%-") then
            return usage_error("run", "unknown option '%s'", a)
        elseif path then
            return usage_error("run", "one JOB file expected, got '%s' and "
                               .. "'%s'", path, a)
        else
            path = a
        end
        i = i + 1
    end
    if not path then
        return usage_error("run", "no JOB file given")
    end
    data_dir = data_dir or os.getenv("TIDE_DATA_DIR")
    if data_dir == nil or data_dir == "" then
        data_dir = "./tide-data"
    end

    local job, err = job_mod.load(path, overrides)
    if not job then
        return fail("run", "%s", err)
    end
    local lock, lerr = fs.lock(str_format("%s/jobs/%s/run.lock", data_dir,
                                          job.name))
    if not lock then
        return fail("run", "job '%s' cannot start: %s", job.name, lerr)
    end
    local loop = loop_mod.new()
    local r
    r, err = runner.new(job, { data_dir = data_dir, mem = {} },
                        { drain = drain, loop = loop, log = log })
    if not r then
        lock:close()
        loop:close()
        return fail("run", "job '%s' (%s): %s", job.name, path, err)
    end
    local ins = {}
    for _, inp in ipairs(job.inputs) do
        ins[#ins + 1] = inp.spec
    end
    log("info", str_format("job '%s' started: %d tasks over %s%s; data dir %s",
                           job.name, r.nparts, concat(ins, ", "),
                           drain and " (drain)" or "", data_dir))
    local ok, rerr = r:run()
    loop:close()
    lock:close()
    if not ok then
        return fail("run", "%s", tostring(rerr))
    end
    log("info", str_format("job '%s' stopped cleanly", job.name))
    return 0
end

--- Runs command `cmd` with its arguments; returns the exit code.
---@param cmd string
---@param args string[]
---@return integer
function _M.main(cmd, args)
    if cmd == "run" then
        return run(args)
    end
    return usage_error(cmd, "not a Lua command")
end

return _M
