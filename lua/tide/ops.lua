--- Operator commands over a data dir: `tide jobs list|describe`, `tide
--- offsets reset` and `tide streams delete` (docs/operate.md). They read
--- what a job leaves in <data-dir>/jobs/<job>/ (checkpoint.json, stores/,
--- run.lock, control.sock) and ask a running job through its control
--- socket, read-only.
local fs = require("tide.fs")
local loop_mod = require("tide.loop")
local ckpt_mod = require("tide.checkpoint")
local system = require("tide.system")
local wire = require("tide.wire")

local ipairs, pairs, tostring, tonumber, next = ipairs, pairs, tostring,
                                                tonumber, next
local str_format, str_match, concat, sort = string.format, string.match,
                                            table.concat, table.sort
local stderr, stdout = io.stderr, io.stdout

local _M = {}

-- ---- argument parsing ---------------------------------------------------------

local cli = require("tide.cli")
local fail, usage_error = cli.fail, cli.usage_error

-- Parses `args` of command `cmd` (tide.cli's parser): --help, --data-dir
-- DIR, -c KEY=VALUE, the options in `valued` ({ ["--to"] = "to" }) and
-- the flags in `flags` ({ ["--dry-run"] = "dry_run" }).
local function parse(cmd, args, usage, valued, flags)
    return cli.parse_args(cmd, args, usage, true, false, valued, flags)
end

-- ---- files -----------------------------------------------------------------------

-- Quotes one word for sh.
local function q(s)
    return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

local function sh(cmd)
    local p = io.popen(cmd, "r")
    if not p then
        return ""
    end
    local out = p:read("*a") or ""
    p:close()
    return out
end

-- Names in folder `dir` (no dot files), sorted; {} when it is missing.
local function list_dir(dir)
    local names = {}
    for n in sh("ls -1 " .. q(dir) .. " 2>/dev/null"):gmatch("[^\n]+") do
        names[#names + 1] = n
    end
    sort(names)
    return names
end

-- Bytes on disk under `path` (hard links counted once: snapshots share
-- their files with the live store), or nil when it is missing.
local function disk_bytes(path)
    local n = sh("du -sb " .. q(path) .. " 2>/dev/null"):match("^(%d+)")
    return tonumber(n)
end

-- Seconds since the epoch when `path` was last changed, or nil.
local function mtime(path)
    return tonumber(sh("stat -c %Y " .. q(path) .. " 2>/dev/null")
                    :match("^(%d+)"))
end

local function is_dir(path)
    return sh("test -d " .. q(path) .. " && echo y") == "y\n"
end

--- Returns `n` bytes as text: "512 B", "1.5 KiB", "12.3 MiB".
---@param n number
---@return string
function _M.size_text(n)
    if n < 1024 then
        return str_format("%d B", n)
    end
    local units = { "KiB", "MiB", "GiB", "TiB" }
    local i = 0
    repeat
        n = n / 1024
        i = i + 1
    until n < 1024 or i == #units
    return str_format("%.1f %s", n, units[i])
end

local function when_text(t)
    if not t then
        return "never"
    end
    local ago = os.time() - t
    local rel
    if ago < 120 then
        rel = str_format("%d s", ago)
    elseif ago < 7200 then
        rel = str_format("%d min", math.floor(ago / 60))
    else
        rel = str_format("%.1f h", ago / 3600)
    end
    return str_format("%s (%s ago)", os.date("!%Y-%m-%dT%H:%M:%SZ", t), rel)
end

-- ---- a job in the data dir ---------------------------------------------------------

local function job_dir(data_dir, name)
    return str_format("%s/jobs/%s", data_dir, name)
end

-- Whether process `pid` runs now (a zombie does not).
local function alive(pid)
    local f = pid and io.open("/proc/" .. pid .. "/stat", "r")
    if not f then
        return false
    end
    local state = (f:read("*a") or ""):match("^%d+ %b() (%a)")
    f:close()
    return state ~= nil and state ~= "Z" and state ~= "X"
end

--- Returns how job `name` is found in `data_dir`: { running = bool, pid,
--- desc (its control socket's describe, decoded), tasks (its task lines)
--- }. A job answers on its control socket while it runs; a run.lock whose
--- pid runs a tide but does not answer is a job starting or stopping.
---@param data_dir string
---@param name string
---@return table
function _M.probe(data_dir, name)
    local dir = job_dir(data_dir, name)
    local st = { running = false }
    local f = io.open(dir .. "/run.lock", "r")
    local pid = f and tonumber((f:read("*a") or ""):match("%d+"))
    if f then
        f:close()
    end
    local sock = dir .. "/control.sock"
    if fs.exists(sock) then
        local reply = loop_mod.send(sock, "describe", 3000)
        if reply and str_match(reply, "^ok: ") then
            st.running = true
            st.desc = wire.decode((reply:gsub("^ok: ", ""):gsub("\n$", "")))
            local lines = loop_mod.send(sock, "tasks", 15000)
            st.tasks = lines and str_match(lines, "^ok: ")
                       and lines:gsub("^ok: ", "") or nil
        elseif reply and str_match(reply, "^error: ") then
            st.running = true
        end
    end
    if not st.running and pid and alive(pid) then
        -- Starting (no socket yet) or stopping, or the socket is stale.
        local cl = io.open("/proc/" .. pid .. "/cmdline", "r")
        local cmd = cl and cl:read("*a") or ""
        if cl then
            cl:close()
        end
        st.running = str_match(cmd, "tide") ~= nil
    end
    st.pid = st.running and pid or nil
    return st
end

-- Parses the control socket's task lines into { [p] = { state, worker,
-- lag, offsets = { [key] = offset } } }.
local function parse_tasks(text)
    local t = {}
    for line in (text or ""):gmatch("[^\n]+") do
        local p, state, rest = str_match(line, "^task (%d+) (%S+)%s*(.*)$")
        if p then
            local e = { state = state, offsets = {},
                        worker = tonumber(str_match(rest, "worker=(%d+)")),
                        lag = tonumber(str_match(rest, "lag=(%d+)")),
                        processed = tonumber(str_match(rest,
                                                       "processed=(%d+)")) }
            for key, off in (str_match(rest, "offsets=(%S*)") or "")
                :gmatch("([^,=]+)=(%d+)") do
                e.offsets[key] = tonumber(off)
            end
            t[tonumber(p)] = e
        end
    end
    return t
end

-- The checkpoint key of input partition: "system:name" or
-- "system:name#q" (broadcast) -> spec, partition (nil: the task's own).
local function split_key(key)
    local spec, q2 = str_match(key, "^(.*)#(%d+)$")
    if spec then
        return spec, tonumber(q2)
    end
    return key, nil
end

-- Opens the streams named in `specs` (a set) read-only; returns
-- { [spec] = stream or false }, and a close function.
local function open_streams(data_dir, specs)
    local open = {}
    for spec in pairs(specs) do
        local sys = system.parse(spec)
        local s = sys == "local" and system.open({ data_dir = data_dir },
                                                 spec) or nil
        open[spec] = s or false
    end
    return open, function()
        for _, s in pairs(open) do
            if s then
                s:close()
            end
        end
    end
end

--- Returns what the data dir holds of job `name`, stopped or running:
--- { name, dir, ckpt (tasks or nil), ckpt_err, commit (mtime), nparts,
--- keys (sorted input keys), stores = { { name, bytes, changelog } },
--- status = probe() }.
---@param data_dir string
---@param name string
---@return table
function _M.inspect(data_dir, name)
    local dir = job_dir(data_dir, name)
    local info = { name = name, dir = dir, stores = {} }
    info.status = _M.probe(data_dir, name)
    local path = dir .. "/checkpoint.json"
    local tasks, err = ckpt_mod.new({ data_dir = data_dir }, name):load()
    info.ckpt, info.ckpt_err = tasks, err
    info.commit = mtime(path)
    local keys, nparts = {}, 0
    for p, t in pairs(tasks or {}) do
        nparts = p + 1 > nparts and p + 1 or nparts
        for k in pairs(t.inputs) do
            keys[k] = true
        end
    end
    local desc = info.status.desc
    if desc then
        nparts = desc.tasks or nparts
        for _, inp in ipairs(wire.list(desc.inputs or {})) do
            local key = (system.parse(inp.spec)) .. ":" .. inp.name
            if inp.broadcast then
                local s = system.open({ data_dir = data_dir }, inp.spec)
                for q2 = 0, (s and s:count() or 1) - 1 do
                    keys[str_format("%s#%d", key, q2)] = true
                end
                if s then
                    s:close()
                end
            else
                keys[key] = true
            end
        end
    end
    info.nparts = nparts
    info.keys = {}
    for k in pairs(keys) do
        info.keys[#info.keys + 1] = k
    end
    sort(info.keys)
    local names = {}
    for _, s in ipairs(list_dir(dir .. "/stores")) do
        names[s] = true
    end
    for _, t in pairs(tasks or {}) do
        for s in pairs(t.changelogs) do
            names[s] = true
        end
    end
    for s in pairs(names) do
        local cl = str_format("%s-%s-changelog", name, s)
        info.stores[#info.stores + 1] = {
            name = s, bytes = disk_bytes(dir .. "/stores/" .. s) or 0,
            changelog = is_dir(str_format("%s/streams/%s", data_dir, cl))
                        and cl or nil,
        }
    end
    sort(info.stores, function(a, b) return a.name < b.name end)
    return info
end

-- Names of the jobs in the data dir (folders under jobs/).
local function job_names(data_dir)
    local names = {}
    for _, n in ipairs(list_dir(data_dir .. "/jobs")) do
        if is_dir(job_dir(data_dir, n)) then
            names[#names + 1] = n
        end
    end
    return names
end

-- Per input partition of `info`: { task, key, spec, partition, committed,
-- position (running), first, last, lag } in task order.
local function partitions(info, data_dir)
    local specs = {}
    for _, k in ipairs(info.keys) do
        specs[(split_key(k))] = true
    end
    local streams, close = open_streams(data_dir, specs)
    local live = info.status.tasks and parse_tasks(info.status.tasks) or {}
    local rows = {}
    for p = 0, info.nparts - 1 do
        for _, key in ipairs(info.keys) do
            local spec, q2 = split_key(key)
            local part = q2 or p
            local s = streams[spec]
            local first, last
            if s then
                first, last = s:range(part)
                if not first then
                    last = nil
                end
            end
            local t = info.ckpt and info.ckpt[p]
            local committed = t and (t.inputs[key] or first or 0) or nil
            local pos = live[p] and live[p].offsets[key]
            local at = pos or committed
            rows[#rows + 1] = {
                task = p, key = key, spec = spec, partition = part,
                committed = committed, position = pos, first = first,
                last = last, lag = (last and at) and last - at or nil,
                state = live[p] and live[p].state,
                worker = live[p] and live[p].worker,
            }
        end
    end
    close()
    return rows
end

-- ---- tide jobs ----------------------------------------------------------------------

local JOBS_USAGE = [[
usage: tide jobs list [--data-dir DIR]
       tide jobs describe JOB [--data-dir DIR]
What the data dir holds of its jobs, running or stopped.
  list      one line per job: status (running, with the pid, or stopped),
            tasks, lag (input messages not processed yet), stores' size on
            disk, and the time of the last commit
  describe  one job (JOB: its name, or its job file): status, inputs,
            outputs and stores; per task and input partition the
            committed offset, the position (while it runs), the end of
            the partition and the lag; per task and store the size on
            disk and the changelog offset; the last commit
A running job is asked through its control socket; a stopped one is read
from its checkpoint.json and stores/.
]]

local function lag_sum(rows)
    local total, known = 0, true
    for _, r in ipairs(rows) do
        if r.lag then
            total = total + r.lag
        else
            known = false
        end
    end
    return total, known
end

local function status_text(st)
    if st.running then
        return st.pid and str_format("running (pid %d)", st.pid) or "running"
    end
    return "stopped"
end

local function jobs_list(o)
    local names = job_names(o.data_dir)
    if not is_dir(o.data_dir) then
        return fail("jobs", "data dir '%s' does not exist; check --data-dir "
                    .. "or $TIDE_DATA_DIR", o.data_dir)
    end
    local rows = { { "JOB", "STATUS", "TASKS", "LAG", "STORES", "LAST COMMIT" } }
    for _, name in ipairs(names) do
        local info = _M.inspect(o.data_dir, name)
        local lag, known = lag_sum(partitions(info, o.data_dir))
        local bytes = 0
        for _, s in ipairs(info.stores) do
            bytes = bytes + s.bytes
        end
        rows[#rows + 1] = {
            name, status_text(info.status), tostring(info.nparts),
            info.ckpt_err and "?" or (known and str_format("%.0f", lag)
                                      or str_format("%.0f+", lag)),
            #info.stores > 0 and _M.size_text(bytes) or "-",
            info.ckpt_err and "unreadable checkpoint"
                or (next(info.ckpt or {}) and when_text(info.commit)
                    or "never"),
        }
    end
    local width = {}
    for _, r in ipairs(rows) do
        for i, c in ipairs(r) do
            width[i] = math.max(width[i] or 0, #c)
        end
    end
    for _, r in ipairs(rows) do
        local cells = {}
        for i, c in ipairs(r) do
            cells[i] = i < #r and c .. (" "):rep(width[i] - #c) or c
        end
        stdout:write(concat(cells, "  "), "\n")
    end
    return 0
end

local function num(v)
    return v and str_format("%.0f", v) or "-"
end

local function jobs_describe(o, name)
    if not is_dir(job_dir(o.data_dir, name)) then
        local names = job_names(o.data_dir)
        return fail("jobs", "no job '%s' in data dir '%s' (jobs: %s); check "
                    .. "the name or --data-dir", name, o.data_dir,
                    #names > 0 and concat(names, ", ") or "none")
    end
    local info = _M.inspect(o.data_dir, name)
    local st, desc = info.status, info.status.desc
    local out = {}
    local function add(fmt, ...)
        out[#out + 1] = str_format(fmt, ...)
    end
    add("job %s: %s", name, status_text(st))
    if desc then
        add("  file        %s", tostring(desc.path))
        add("  version     %s, %s worker%s", tostring(desc.version),
            tostring(desc.workers), desc.workers == 1 and "" or "s")
        local function specs(list)
            local t = {}
            for _, s in ipairs(wire.list(list or {})) do
                t[#t + 1] = s.spec .. (s.broadcast and " (broadcast)" or "")
            end
            return #t > 0 and concat(t, ", ") or "none"
        end
        add("  inputs      %s", specs(desc.inputs))
        add("  outputs     %s", specs(desc.outputs))
    end
    add("  folder      %s", info.dir)
    add("  last commit %s", info.ckpt_err and "?" or
        (next(info.ckpt or {}) and when_text(info.commit) or "never"))
    if info.ckpt_err then
        add("  checkpoint  %s", info.ckpt_err)
    end
    add("  tasks       %d", info.nparts)
    if #info.stores > 0 then
        for _, s in ipairs(info.stores) do
            add("  store       %s: %s on disk%s", s.name,
                _M.size_text(s.bytes), s.changelog and ", changelog "
                .. s.changelog or ", no changelog")
        end
    end
    local rows = partitions(info, o.data_dir)
    local by_task = {}
    for _, r in ipairs(rows) do
        by_task[r.task] = by_task[r.task] or {}
        local t = by_task[r.task]
        t[#t + 1] = r
    end
    for p = 0, info.nparts - 1 do
        local list = by_task[p] or {}
        local lag, known = lag_sum(list)
        local r1 = list[1] or {}
        add("task %d%s%s: lag %s", p, r1.state and " " .. r1.state or "",
            r1.worker and str_format(" (worker %d)", r1.worker) or "",
            known and num(lag) or "?")
        for _, r in ipairs(list) do
            add("  input %s partition %d: committed %s%s, end %s, lag %s",
                r.spec, r.partition, num(r.committed),
                st.running and ", position " .. num(r.position) or "",
                num(r.last), num(r.lag))
        end
        for _, s in ipairs(info.stores) do
            local t = info.ckpt and info.ckpt[p]
            local off = t and t.changelogs[s.name]
            add("  store %s: %s on disk%s", s.name,
                _M.size_text(disk_bytes(str_format("%s/stores/%s/%d",
                                                   info.dir, s.name, p))
                             or 0),
                s.changelog and ", changelog offset " .. num(off) or "")
        end
    end
    stdout:write(concat(out, "\n"), "\n")
    return 0
end

local function jobs_cmd(args)
    local o, code = parse("jobs", args, JOBS_USAGE, {}, {})
    if not o then
        return code
    end
    local verb = o.pos[1]
    if verb == "list" and #o.pos == 1 then
        return jobs_list(o)
    elseif verb == "describe" and #o.pos == 2 then
        local name, err = cli.job_name(o.pos[2])
        if not name then
            return fail("jobs", "%s", err)
        end
        return jobs_describe(o, name)
    end
    return usage_error("jobs", "expected 'jobs list' or 'jobs describe JOB'%s",
                       verb and str_format(", got '%s'", concat(o.pos, " "))
                       or "")
end

-- ---- tide offsets reset -----------------------------------------------------------

local OFFSETS_USAGE = [[
usage: tide offsets reset JOB --to earliest|latest|OFFSET|@TIME
                [--input S] [--partition P] [--reset-state | --keep-state]
                [--dry-run] [-c KEY=VALUE]... [--data-dir DIR]
Moves where the stopped job JOB (its name, or its job file) resumes its
inputs: the offsets in its checkpoint.json. Prints the plan, old -> new
offset per task and input partition; --dry-run prints it and changes
nothing.
  --to earliest   the first record each partition still holds
  --to latest     the end: only records written from now on are read
  --to OFFSET     that offset (in every chosen partition: use --partition)
  --to @TIME      the first record stamped at or after TIME: milliseconds
                  since 1970, or UTC as 2026-12-03T21:00:00Z
  --input S       only input S (default: every input)
  --partition P   only partition P of the inputs (default: all)
A job's stores hold the state made by the input up to the old offsets, so
a job with stores needs one of:
  --reset-state   the tasks whose offsets move start with empty stores:
                  their local stores and snapshots are deleted, and their
                  changelog offsets dropped from the checkpoint, so that
                  at its next start the job restores nothing and writes a
                  tombstone for every key of those changelog partitions
  --keep-state    the stores stay as they are: skipped messages never
                  count, and messages read again count twice (the way past
                  a poison message that stopped a job with on_error =
                  "fail")
The job must be stopped. Inputs on Kafka keep their offsets in the Kafka
group: use kafka-consumer-groups --reset-offsets there.
]]

local MAX_OFFSET = 9007199254740992

-- Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's
-- days_from_civil).
local function days_from_civil(y, m, d)
    y = m <= 2 and y - 1 or y
    local era = math.floor(y / 400)
    local yoe = y - era * 400
    local mp = (m + 9) % 12
    local doy = math.floor((153 * mp + 2) / 5) + d - 1
    local doe = yoe * 365 + math.floor(yoe / 4) - math.floor(yoe / 100) + doy
    return era * 146097 + doe - 719468
end

--- Parses a --to value: "earliest", "latest", an offset, or "@TIME"
--- (milliseconds since the epoch, or UTC "YYYY-MM-DDTHH:MM:SS[.mmm]Z").
--- Returns { kind = "earliest"|"latest"|"offset"|"time", value }, or nil
--- and what is wrong.
---@param s string
---@return table|nil to, string|nil err
function _M.parse_to(s)
    if s == "earliest" or s == "latest" then
        return { kind = s }
    end
    if str_match(s, "^%d+$") then
        local n = tonumber(s)
        if #s > 16 or n > MAX_OFFSET then
            return nil, str_format("offset '%s' is past 2^53", s)
        end
        return { kind = "offset", value = n }
    end
    local t = str_match(s, "^@(.*)$")
    if t then
        if str_match(t, "^%d+$") and #t <= 16 then
            return { kind = "time", value = tonumber(t) }
        end
        local y, mo, d, h, mi, se, frac = str_match(t,
            "^(%d%d%d%d)%-(%d%d)%-(%d%d)T(%d%d):(%d%d):(%d%d)%.?(%d*)Z$")
        if y then
            y, mo, d, h, mi, se = tonumber(y), tonumber(mo), tonumber(d),
                                  tonumber(h), tonumber(mi), tonumber(se)
            if mo >= 1 and mo <= 12 and d >= 1 and d <= 31 and h <= 23
               and mi <= 59 and se <= 60 then
                local ms = ((days_from_civil(y, mo, d) * 24 + h) * 60 + mi)
                           * 60000 + se * 1000
                if frac ~= "" then
                    ms = ms + math.floor(tonumber("0." .. frac) * 1000)
                end
                return { kind = "time", value = ms }
            end
        end
        return nil, str_format("bad time '%s': milliseconds since 1970 or "
                               .. "UTC as 2026-12-03T21:00:00Z expected", t)
    end
    return nil, str_format("bad --to '%s': earliest, latest, an offset or "
                           .. "@TIME expected", s)
end

-- The first offset in [first, last) of partition `p` of stream `s` whose
-- record's timestamp is at or after `ms` (a scan: timestamps need not
-- grow with offsets); `last` when there is none. Or nil and an error.
local function offset_at(s, p, first, last, ms)
    local r, err = s:reader(p, first)
    if not r then
        return nil, err
    end
    local buf = {}
    while true do
        local n, perr = r:poll(4096, buf)
        if not n then
            r:close()
            return nil, perr
        end
        if n == 0 then
            break
        end
        for i = 1, n do
            local m = buf[i]
            if m.offset >= last then
                r:close()
                return last
            end
            if m.timestamp >= ms then
                r:close()
                return m.offset
            end
        end
        if buf[n].offset >= last - 1 then
            break
        end
    end
    r:close()
    return last
end

-- The job to reset: its name, its inputs ({ key, spec, broadcast }), its
-- stores ({ name, changelog }) and task count; from the job file when
-- JOB is one, else from the data dir (checkpoint, stores/). Returns it,
-- or nil and the error.
local function reset_target(o, target)
    local data_dir = o.data_dir
    local t = { inputs = {}, stores = {} }
    if str_match(target, "%.lua$") or str_match(target, "/") then
        local job, err = require("tide.job").load(target, o.overrides)
        if not job then
            return nil, err
        end
        t.name, t.job = job.name, job
        local ck = require("tide.checkpoint_kafka")
        local kin = ck.lead_input(job)
        if kin then
            return nil, str_format("job '%s' keeps its offsets in Kafka "
                                   .. "group '%s' (input '%s'): stop every "
                                   .. "process of the group and use "
                                   .. "kafka-consumer-groups --reset-offsets "
                                   .. "--group %s", job.name, job.name,
                                   kin.spec, job.name)
        end
        for _, inp in ipairs(job.inputs) do
            t.inputs[#t.inputs + 1] = { key = inp.system .. ":" .. inp.name,
                                        spec = inp.spec,
                                        broadcast = inp.broadcast }
        end
        for _, s in ipairs(job.store_list or {}) do
            t.stores[#t.stores + 1] = { name = s.name,
                                        changelog = s.changelog }
        end
    else
        t.name = target
        if not is_dir(job_dir(data_dir, target)) then
            local names = job_names(data_dir)
            return nil, str_format("no job '%s' in data dir '%s' (jobs: %s); "
                                   .. "check the name or --data-dir, or give "
                                   .. "the job file", target, data_dir,
                                   #names > 0 and concat(names, ", ")
                                   or "none")
        end
    end
    t.ckpt = ckpt_mod.new({ data_dir = data_dir }, t.name)
    return t
end

local function reset_plan(o, t, tasks, to)
    -- Input keys the checkpoint or the job names, and the task count.
    local keys, nparts, seen = {}, 0, {}
    local function add_key(key, spec, bcast)
        if not seen[key] then
            seen[key] = true
            keys[#keys + 1] = { key = key, spec = spec, broadcast = bcast }
        end
    end
    for p, e in pairs(tasks) do
        nparts = math.max(nparts, p + 1)
        for key in pairs(e.inputs) do
            local spec, q2 = split_key(key)
            add_key(spec, spec, q2 ~= nil)
        end
    end
    for _, inp in ipairs(t.inputs) do
        add_key(inp.key, inp.spec, inp.broadcast)
    end
    sort(keys, function(a, b) return a.key < b.key end)
    if #keys == 0 then
        return nil, str_format("job '%s' has no checkpoint in data dir '%s' "
                               .. "to reset: give its job file to make one",
                               t.name, o.data_dir)
    end
    for _, k in ipairs(keys) do
        if system.parse(k.spec) ~= "local" then
            return nil, str_format("input '%s' of job '%s' is not a local "
                                   .. "stream: its offsets are kept by its "
                                   .. "own system (Kafka: the consumer "
                                   .. "group); reset them there", k.spec,
                                   t.name)
        end
    end
    -- --input: one of them.
    if o.input then
        local want = o.input:find(":", 1, true) and o.input
                     or "local:" .. o.input
        local found
        for _, k in ipairs(keys) do
            if k.key == want then
                found = k
            end
        end
        if not found then
            local names = {}
            for _, k in ipairs(keys) do
                names[#names + 1] = k.key
            end
            return nil, str_format("--input '%s': job '%s' has no such input "
                                   .. "(inputs: %s)", o.input, t.name,
                                   concat(names, ", ")), 2
        end
        keys = { found }
    end
    local streams = {}
    for _, k in ipairs(keys) do
        local s, err = system.open({ data_dir = o.data_dir }, k.spec)
        if not s then
            for _, s2 in pairs(streams) do
                s2:close()
            end
            return nil, str_format("input '%s' of job '%s': %s", k.spec,
                                   t.name, err)
        end
        streams[k.key] = s
        k.count = s:count()
        if not k.broadcast then
            nparts = math.max(nparts, k.count)
        end
    end
    local function close()
        for _, s in pairs(streams) do
            s:close()
        end
    end
    local part = o.partition and tonumber(o.partition)
    if o.partition then
        local maxp = 0
        for _, k in ipairs(keys) do
            maxp = math.max(maxp, k.count)
        end
        if not part or part % 1 ~= 0 or part < 0 or part >= maxp then
            close()
            return nil, str_format("--partition '%s': the input%s "
                                   .. "partitions 0 to %d", o.partition,
                                   #keys == 1 and " has" or "s have",
                                   maxp - 1), 2
        end
    end
    -- One row per task and input partition that moves or not.
    local rows = {}
    local done = {}          -- [key#q] = new offset, shared by broadcast
    for p = 0, nparts - 1 do
        for _, k in ipairs(keys) do
            local list = {}
            if k.broadcast then
                for q2 = 0, k.count - 1 do
                    list[#list + 1] = { ckey = str_format("%s#%d", k.key, q2),
                                        q = q2 }
                end
            else
                list[1] = { ckey = k.key, q = p }
            end
            for _, it in ipairs(list) do
                if (part == nil or it.q == part) and it.q < k.count then
                    local s = streams[k.key]
                    local first, last = s:range(it.q)
                    if not first then
                        close()
                        return nil, str_format("input '%s' partition %d: %s",
                                               k.spec, it.q, tostring(last))
                    end
                    local e = tasks[p]
                    local old = e and e.inputs[it.ckey]
                    local dk = k.key .. "#" .. it.q
                    local new = done[dk]
                    if new == nil then
                        if to.kind == "earliest" then
                            new = first
                        elseif to.kind == "latest" then
                            new = last
                        elseif to.kind == "offset" then
                            new = to.value
                            if new < first or new > last then
                                close()
                                return nil, str_format(
                                    "--to %.0f: input '%s' partition %d "
                                    .. "holds offsets %.0f to %.0f (its end); "
                                    .. "pick one in that range%s", new,
                                    k.key, it.q, first, last,
                                    part and "" or ", or one partition "
                                    .. "with --partition"), 2
                            end
                        else
                            local err
                            new, err = offset_at(s, it.q, first, last,
                                                 to.value)
                            if not new then
                                close()
                                return nil, str_format("input '%s' partition "
                                                       .. "%d: %s", k.spec,
                                                       it.q, tostring(err))
                            end
                        end
                        done[dk] = new
                    end
                    rows[#rows + 1] = { task = p, ckey = it.ckey,
                                        spec = k.key, q = it.q,
                                        old = old, shown_old = old or first,
                                        new = new, first = first,
                                        last = last }
                end
            end
        end
    end
    close()
    return rows, nparts
end

-- The stores of job `t` (from the job, else stores/ and the checkpoint):
-- { name, changelog (bool) }.
local function job_stores(o, t, tasks)
    if t.job then
        return t.stores
    end
    local names, list = {}, {}
    for _, s in ipairs(list_dir(job_dir(o.data_dir, t.name) .. "/stores")) do
        names[s] = false
    end
    for _, e in pairs(tasks) do
        for s in pairs(e.changelogs) do
            names[s] = true
        end
    end
    for s, cl in pairs(names) do
        list[#list + 1] = {
            name = s, changelog = cl or is_dir(str_format(
                "%s/streams/%s-%s-changelog", o.data_dir, t.name, s)) }
    end
    sort(list, function(a, b) return a.name < b.name end)
    return list
end

local function offsets_cmd(args)
    local o, code = parse("offsets", args, OFFSETS_USAGE,
                          { ["--to"] = "to", ["--input"] = "input",
                            ["--partition"] = "partition" },
                          { ["--dry-run"] = "dry_run",
                            ["--reset-state"] = "reset_state",
                            ["--keep-state"] = "keep_state" })
    if not o then
        return code
    end
    if o.pos[1] ~= "reset" or #o.pos ~= 2 then
        return usage_error("offsets", "expected 'offsets reset JOB --to "
                           .. "WHERE'%s", #o.pos > 0 and str_format(
                           ", got '%s'", concat(o.pos, " ")) or "")
    end
    if not o.to then
        return usage_error("offsets", "--to is missing: earliest, latest, an "
                           .. "offset or @TIME")
    end
    local to, terr = _M.parse_to(o.to)
    if not to then
        return usage_error("offsets", "%s", terr)
    end
    if o.reset_state and o.keep_state then
        return usage_error("offsets", "--reset-state and --keep-state "
                           .. "contradict each other; give one")
    end
    local t, err = reset_target(o, o.pos[2])
    if not t then
        return fail("offsets", "%s", err)
    end
    -- Held to the end: a tide run of the job cannot start meanwhile.
    local lock, lerr = cli.take_lock(o.data_dir, t.name)
    if not lock then
        return fail("offsets", "job '%s' is running (%s): stop it first "
                    .. "(SIGTERM or Ctrl-C; it commits as it stops), then "
                    .. "reset its offsets", t.name, lerr)
    end
    local tasks
    tasks, err = t.ckpt:load()
    if not tasks then
        lock:close()
        return fail("offsets", "%s", err)
    end
    local rows, nparts, ecode = reset_plan(o, t, tasks, to)
    if not rows then
        lock:close()
        if ecode == 2 then
            return usage_error("offsets", "%s", nparts)
        end
        return fail("offsets", "%s", nparts)
    end
    -- What moves, and which tasks' state it affects.
    local moved, lines = {}, {}
    local nmoved = 0
    for _, r in ipairs(rows) do
        local delta = r.new - r.shown_old
        local what
        if delta == 0 then
            what = "unchanged"
        elseif delta > 0 then
            what = str_format("skips %.0f message%s", delta,
                              delta == 1 and "" or "s")
        else
            what = str_format("reads %.0f message%s again", -delta,
                              delta == -1 and "" or "s")
        end
        if r.old ~= r.new and delta ~= 0 or (r.old == nil and delta ~= 0) then
            moved[r.task] = true
        end
        if delta ~= 0 then
            nmoved = nmoved + 1
        end
        lines[#lines + 1] = str_format("task %d  %s partition %d: %s -> %.0f "
                                       .. "(%s)", r.task, r.spec, r.q,
                                       r.old and str_format("%.0f", r.old)
                                       or str_format("%.0f (none saved: the "
                                                     .. "start)", r.first),
                                       r.new, what)
    end
    local stores = job_stores(o, t, tasks)
    local affected = {}
    for p = 0, nparts - 1 do
        if moved[p] then
            affected[#affected + 1] = p
        end
    end
    local task_list = concat(affected, ",")
    if #stores > 0 and #affected > 0 and not o.reset_state
       and not o.keep_state then
        local names = {}
        for _, s in ipairs(stores) do
            names[#names + 1] = s.name
        end
        lock:close()
        return usage_error("offsets", "job '%s' has stores (%s) whose state "
                           .. "matches the old offsets of task%s %s: add "
                           .. "--reset-state to start %s with empty stores, "
                           .. "or --keep-state to keep them as they are "
                           .. "(e.g. to skip a poison message)", t.name,
                           concat(names, ", "), #affected == 1 and "" or "s",
                           task_list, #affected == 1 and "it" or "them")
    end
    local out = stdout
    out:write(str_format("job '%s': %s\n", t.name,
                         o.dry_run and "plan (dry run: nothing is changed)"
                         or "offsets reset"))
    for _, l in ipairs(lines) do
        out:write("  ", l, "\n")
    end
    if #stores > 0 and #affected > 0 then
        for _, s in ipairs(stores) do
            if o.keep_state then
                out:write(str_format("  store %s, tasks %s: kept as it is\n",
                                     s.name, task_list))
            else
                out:write(str_format(
                    "  store %s, tasks %s: emptied (local store and snapshots "
                    .. "deleted%s)\n", s.name, task_list, s.changelog
                    and "; changelog offset dropped: at the next start "
                    .. "nothing is restored and every key of those changelog "
                    .. "partitions gets a tombstone" or ""))
            end
        end
    end
    if o.dry_run or nmoved == 0 then
        lock:close()
        if nmoved == 0 and not o.dry_run then
            out:write("  nothing to change\n")
        end
        return 0
    end
    -- The new checkpoint: every task of the job, with the moved offsets;
    -- with --reset-state the affected tasks lose their changelog offsets.
    local new = {}
    for p = 0, nparts - 1 do
        local e = tasks[p] or { inputs = {}, changelogs = {} }
        local copy = { inputs = {}, changelogs = {} }
        for k, v in pairs(e.inputs) do
            copy.inputs[k] = v
        end
        for k, v in pairs(e.changelogs) do
            copy.changelogs[k] = v
        end
        new[p] = copy
    end
    for _, r in ipairs(rows) do
        new[r.task].inputs[r.ckey] = r.new
    end
    if o.reset_state then
        for _, p in ipairs(affected) do
            new[p].changelogs = {}
        end
    end
    local ok
    ok, err = t.ckpt:save(new)
    if not ok then
        lock:close()
        return fail("offsets", "%s; nothing was changed", err)
    end
    -- Then the local state: a crash before this point leaves stores the
    -- checkpoint no longer names, which a start ignores. Each changelog
    -- partition's stable offset goes back to 0, as before a first
    -- commit: compaction keeps its records, and none may replace another,
    -- until the job's next commit.
    if o.reset_state then
        local tstore = require("tide.store")
        for _, s in ipairs(stores) do
            local cl = s.changelog and system.open({ data_dir = o.data_dir },
                str_format("local:%s-%s-changelog", t.name, s.name))
            for _, p in ipairs(cl and affected or {}) do
                local sok, serr = cl.log:set_stable(p, 0)
                if not sok then
                    cl:close()
                    lock:close()
                    return fail("offsets", "checkpoint written, but the "
                                .. "stable offset of changelog '%s' "
                                .. "partition %d could not be reset: %s; "
                                .. "start the job once before any 'tide "
                                .. "streams clean' of it", cl.name, p, serr)
                end
            end
            if cl then
                cl:close()
            end
            for _, p in ipairs(affected) do
                local dir = str_format("%s/stores/%s/%d",
                                       job_dir(o.data_dir, t.name), s.name, p)
                local rok, rerr = tstore.remove(dir)
                if not rok then
                    lock:close()
                    return fail("offsets", "checkpoint written, but %s could "
                                .. "not be removed: %s; the job still starts "
                                .. "those tasks empty (the checkpoint no "
                                .. "longer names that state); remove it by "
                                .. "hand to free the space", dir, rerr)
                end
            end
        end
    end
    lock:close()
    out:write(str_format("  done: %s written; the job resumes there at its "
                         .. "next start\n", t.ckpt.path))
    return 0
end

-- ---- tide streams delete ----------------------------------------------------------

local DELETE_USAGE = [[
usage: tide streams delete NAME [--force] [--data-dir DIR]
Deletes stream NAME of the data dir with all its records. Refused while
a running job reads or writes it (an input, an output, a changelog or its
dead letters), and, without --force, when a stopped job's checkpoint
holds offsets in it (an input, or a store's changelog: that job would
refuse to start, or lose the store's state); its name is free at once.
]]

-- The streams running job `info` uses, as local names: { [name] = what }.
local function used_by(desc, name)
    local uses = {}
    for _, s in ipairs(wire.list(desc.inputs or {})) do
        if system.parse(s.spec) == "local" then
            uses[s.name] = "an input"
        end
    end
    for _, s in ipairs(wire.list(desc.outputs or {})) do
        if system.parse(s.spec) == "local" then
            uses[s.name] = uses[s.name] or "an output"
        end
    end
    for _, s in ipairs(wire.list(desc.stores or {})) do
        if s.changelog then
            uses[str_format("%s-%s-changelog", name, s.name)] =
                "the changelog of store '" .. s.name .. "'"
        end
    end
    uses[name .. "-dead-letters"] = "its dead letters"
    return uses
end

local function streams_delete(args)
    local o, code = parse("streams", args, DELETE_USAGE, {},
                          { ["--force"] = "force" })
    if not o then
        return code
    end
    -- args[1] is "delete".
    if #o.pos ~= 2 then
        return usage_error("streams", "expected 'streams delete NAME'")
    end
    local name = o.pos[2]
    if name:find("/", 1, true) or name == "." or name == ".." then
        return usage_error("streams", "bad stream name '%s'", name)
    end
    local sdir = str_format("%s/streams/%s", o.data_dir, name)
    if not is_dir(o.data_dir) then
        return fail("streams", "data dir '%s' does not exist; check "
                    .. "--data-dir or $TIDE_DATA_DIR", o.data_dir)
    end
    if not fs.exists(sdir .. "/stream.conf") then
        local names = list_dir(o.data_dir .. "/streams")
        local shown = {}
        for _, n in ipairs(names) do
            if not n:find(".tmp-", 1, true) then
                shown[#shown + 1] = n
            end
        end
        return fail("streams", "no stream '%s' in data dir '%s' (streams: "
                    .. "%s)", name, o.data_dir, #shown > 0
                    and concat(shown, ", ") or "none")
    end
    local locks = {}
    local function release()
        for _, l in ipairs(locks) do
            l:close()
        end
    end
    for _, job in ipairs(job_names(o.data_dir)) do
        -- Each job's lock is held until the stream is gone: none starts
        -- meanwhile.
        local lock = fs.lock(str_format("%s/jobs/%s/run.lock", o.data_dir,
                                        job))
        if lock then
            locks[#locks + 1] = lock
            local info = _M.inspect(o.data_dir, job)
            local what
            for _, k in ipairs(info.keys) do
                local spec = split_key(k)
                if spec == "local:" .. name then
                    what = "an input"
                end
            end
            for _, s in ipairs(info.stores) do
                if s.changelog == name and next(info.ckpt or {}) then
                    what = "the changelog of store '" .. s.name .. "'"
                end
            end
            if what and not o.force then
                release()
                return fail("streams", "stream '%s' is %s of stopped job "
                            .. "'%s', whose checkpoint holds offsets in it: "
                            .. "deleted, the job %s; add --force to delete "
                            .. "it anyway", name, what, job,
                            what == "an input" and "refuses to start until "
                            .. "its offsets are reset (tide offsets reset "
                            .. job .. " --to earliest ...)"
                            or "refuses to start (its state is lost) until "
                            .. "its checkpoint.json and stores/ are deleted")
            end
        else
            local st = _M.probe(o.data_dir, job)
            local uses = st.desc and used_by(st.desc, job)
            local what = uses and uses[name]
            if what or not st.desc then
                release()
                if not st.desc then
                    return fail("streams", "job '%s' is running (or starting) "
                                .. "and does not answer on its control "
                                .. "socket, so whether it uses stream '%s' "
                                .. "is unknown; try again when it runs or "
                                .. "is stopped", job, name)
                end
                return fail("streams", "stream '%s' is %s of running job "
                            .. "'%s'%s: stop the job first", name, what, job,
                            st.pid and str_format(" (pid %d)", st.pid) or "")
            end
        end
    end
    -- A rename first: the name is free at once, and a reader never sees a
    -- stream half deleted.
    local gone = str_format("%s/streams/.%s.tmp-delete-%d-%d", o.data_dir,
                            name, os.time(), math.random(1e9))
    local ok, rerr = os.rename(sdir, gone)
    if not ok then
        release()
        return fail("streams", "cannot delete stream '%s': %s", name,
                    tostring(rerr))
    end
    local tstore = require("tide.store")
    local rok, err = tstore.remove(gone)
    release()
    if not rok then
        return fail("streams", "stream '%s' is deleted, but its files in %s "
                    .. "could not be removed: %s; remove them by hand", name,
                    gone, err)
    end
    stdout:write(str_format("deleted stream '%s'\n", name))
    return 0
end

--- Runs `tide jobs`, `tide offsets` or `tide streams delete`; returns the
--- exit code.
---@param cmd string
---@param args string[]
---@return integer
function _M.main(cmd, args)
    if cmd == "jobs" then
        return jobs_cmd(args)
    elseif cmd == "offsets" then
        return offsets_cmd(args)
    elseif cmd == "streams" and args[1] == "delete" then
        return streams_delete(args)
    end
    return usage_error(cmd, "not an operator command")
end

return _M
