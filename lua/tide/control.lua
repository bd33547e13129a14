--- The supervisor's control commands (`tide tasks|workers|move|pause|
--- resume|reload`), served on the job's control socket. Installs its
--- methods on the supervisor's class.
local wire = require("tide.wire")
local cjson = require("cjson.safe")

local type, pairs, ipairs, tostring, tonumber = type, pairs, ipairs, tostring, tonumber
local str_format, concat, sort = string.format, table.concat, table.sort

local INSPECT = { eval = true, store = true, trace = true, trace_poll = true,
                  complete = true }

--- Adds task_lines, command and serve_commands to `Sup`; `util` holds the
--- supervisor's helpers (alive, mib).
return function(Sup, util)
local alive, mib = util.alive, util.mib

function Sup:task_lines()
    local lines = {}
    local status = {}
    for _, w in pairs(self.workers) do
        if alive(w) then
            local reply = self:request(w, { op = "status" }, 10000)
            if reply then
                for p, s in pairs(wire.by_task(reply.tasks)) do
                    s.worker = w
                    status[p] = s
                end
            end
        end
    end
    for p = 0, self.nparts - 1 do
        local s = status[p]
        if s then
            local offs = {}
            for k, v in pairs(s.offsets or {}) do
                offs[#offs + 1] = str_format("%s=%.0f", k, v)
            end
            sort(offs)
            lines[#lines + 1] = str_format(
                "task %d %s worker=%d pid=%d version=%s processed=%.0f "
                .. "lag=%s offsets=%s", p, s.state, s.worker.id,
                s.worker.pid or 0, s.version or self.version,
                s.processed or 0, s.lag and str_format("%.0f", s.lag) or "?",
                concat(offs, ","))
        else
            lines[#lines + 1] = str_format("task %d %s", p,
                                           self.owner[p] and "BUSY"
                                           or (self.member
                                               and "ELSEWHERE (another "
                                               .. "process of the Kafka "
                                               .. "group)"
                                               or "UNASSIGNED"))
        end
    end
    return concat(lines, "\n")
end

local HELP = "commands: reload | tasks | workers | pause TASK | resume TASK "
             .. "| move TASK WORKER | eval|store|trace|trace_poll JSON | "
             .. "describe"

-- How long the supervisor waits for a worker's answer to an inspection:
-- an evaluation is stopped by the worker after its own limit (5 s), or
-- by the watchdog after max_process_time.
local INSPECT_WAIT_MS = 10000

-- Forwards inspection `op` (tide.inspect) with arguments `args` (JSON
-- text) to the worker of task args.task; returns the JSON of its answer.
function Sup:inspect(op, json)
    local args = cjson.decode(json or "")
    if type(args) ~= "table" then
        return nil, str_format("%s: a JSON object expected after the command",
                               op)
    end
    local p = tonumber(args.task)
    if not p or p % 1 ~= 0 or p < 0 or p >= self.nparts then
        return nil, str_format("bad task '%s': the job has tasks 0 to %d",
                               tostring(args.task), self.nparts - 1)
    end
    local w = self.owner[p]
    if not w then
        return nil, str_format("task %d is not assigned now; try again", p)
    end
    args.op, args.task = op, p
    local wait = INSPECT_WAIT_MS
    if op == "eval" then
        wait = wait + self.max_process_ms
    end
    local reply, err, full = self:request(w, args, wait)
    if not reply and not full then
        return nil, err
    end
    reply = reply or full          -- an answer with its error, and output
    reply.rid, reply.op = nil, nil
    reply.worker = w.id
    return true, wire.encode(reply)
end

-- The job as the REPL's describe() shows it: inputs, outputs, stores,
-- serdes, tasks and workers.
function Sup:describe()
    local job = self.job
    local function streams(list)
        local out = {}
        for i, s in ipairs(list) do
            out[i] = { name = s.name, spec = s.spec, serde = s.serde.name,
                       key_serde = s.key_serde.name,
                       bootstrap = s.bootstrap or nil,
                       priority = s.priority, broadcast = s.broadcast or nil }
        end
        return out
    end
    local stores = {}
    for i, s in ipairs(job.store_list or {}) do
        stores[i] = { name = s.name, engine = s.engine,
                      changelog = s.changelog or false,
                      serde = s.serde and s.serde.name,
                      key_serde = s.key_serde and s.key_serde.name }
    end
    local owners = {}
    for p = 0, self.nparts - 1 do
        owners[p + 1] = self.owner[p] and self.owner[p].id or 0
    end
    return true, wire.encode({
        name = job.name, version = self.version, tasks = self.nparts,
        workers = self.nworkers, owners = owners,
        inputs = streams(job.inputs), outputs = streams(job.outputs),
        stores = stores, path = job.path,
        group = self.member and job.name or nil,
    })
end

function Sup:command(line)
    local words = {}
    for w in line:gmatch("%S+") do
        words[#words + 1] = w
    end
    local cmd = words[1] or ""
    local function task_arg(i)
        local p = tonumber(words[i])
        if not p or p % 1 ~= 0 or p < 0 or p >= self.nparts then
            return nil, str_format("bad task '%s': the job has tasks 0 to %d",
                                   tostring(words[i]), self.nparts - 1)
        end
        return p
    end
    if cmd == "reload" then
        return self:reload("tide reload")
    elseif cmd == "tasks" or cmd == "status" then
        return true, self:task_lines()
    elseif cmd == "workers" then
        local lines = {}
        for id = 1, self.nworkers do
            local w = self.workers[id]
            local tasks = {}
            for p in pairs(w and w.tasks or {}) do
                tasks[#tasks + 1] = p
            end
            sort(tasks)
            lines[#lines + 1] = str_format(
                "worker %d pid=%d %s rss=%s tasks=%s", id,
                w and w.pid or 0, alive(w) and "RUNNING" or "DOWN",
                alive(w) and mib(w.proc:rss() or 0) or "-",
                #tasks > 0 and concat(tasks, ",") or "none")
        end
        return true, concat(lines, "\n")
    elseif cmd == "pause" or cmd == "resume" then
        local p, err = task_arg(2)
        if not p then
            return nil, err
        end
        local line
        line, err = self:set_paused(p, cmd == "pause")
        return line and true, line or err
    elseif INSPECT[cmd] then
        return self:inspect(cmd, line:match("^%S+%s+(.*)$"))
    elseif cmd == "describe" then
        return self:describe()
    elseif cmd == "group_owner" then
        -- Which process of the Kafka group holds task N now.
        local p, err = task_arg(2)
        if not p then
            return nil, err
        end
        if self.owner[p] then
            return true, "here"
        end
        if not self.member then
            return nil, "this job is not in a Kafka group"
        end
        local lead = require("tide.checkpoint_kafka").lead_input(self.job)
        local who
        who, err = self.member:group_owner(lead.name, p)
        if not who then
            return nil, err
        end
        return true, who
    elseif cmd == "move" then
        local p, err = task_arg(2)
        if not p then
            return nil, err
        end
        local id = tonumber(words[3])
        local line
        line, err = self:move(p, id)
        return line and true, line or err
    end
    return nil, str_format("unknown command '%s' (%s)", cmd, HELP)
end

function Sup:serve_commands()
    self.command_waiting = false
    while true do
        local cmd = self.loop:pop_command()
        if not cmd then
            break
        end
        local ok, text = self:command(cmd)
        self.loop:reply((ok and "ok: " or "error: ") .. tostring(text) .. "\n")
    end
end
end
