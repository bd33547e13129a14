--- The supervisor's control commands (`tide tasks|workers|move|pause|
--- resume|reload`), served on the job's control socket. Installs its
--- methods on the supervisor's class.
local wire = require("tide.wire")

local type, pairs, ipairs, tostring, tonumber = type, pairs, ipairs, tostring, tonumber
local str_format, concat, sort = string.format, table.concat, table.sort

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
                                           or "UNASSIGNED")
        end
    end
    return concat(lines, "\n")
end

local HELP = "commands: reload | tasks | workers | pause TASK | resume TASK "
             .. "| move TASK WORKER"

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
