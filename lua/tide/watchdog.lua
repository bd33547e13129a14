--- The supervisor's watchdog (docs/container.md "A stuck or bloated task
--- is stopped"): reads each worker's watch slot every tick and kills a
--- worker whose call into job code runs past max_process_time, or whose
--- resident memory passes max_memory; remembers the message it was at, so
--- that it is retried once and then handed to on_error. Installs its
--- methods on the supervisor's class.
local task_mod = require("tide.task")

local type, pairs, ipairs, tostring, tonumber = type, pairs, ipairs, tostring, tonumber
local str_format, concat, sort = string.format, table.concat, table.sort

local RSS_EVERY_MS = 500
local SIGKILL = 9
local KIND_NAMES = {}
for name, k in pairs(task_mod.KIND) do
    KIND_NAMES[k] = name
end

--- Adds kill_for and watchdog to `Sup`; `util` holds the supervisor's
--- helpers (alive, mib).
return function(Sup, util)
local alive, mib = util.alive, util.mib

-- A worker stuck in job code or over max_memory: kill it, and remember
-- the message it was at, to retry once and then give it up.
function Sup:kill_for(w, kind, why, slot)
    w.kill_reason = why
    if slot and slot.task >= 0 and slot.offset >= 0 and slot.input > 0 then
        local parts = self.topo:parts_of(slot.task)
        local part = parts[slot.input]
        if part then
            local g = self.give_up[slot.task]
            if g and g.key == part.key and g.offset == slot.offset then
                g.count = g.count + 1
            else
                g = { key = part.key, offset = slot.offset, count = 1 }
                self.give_up[slot.task] = g
            end
            g.text = why
            g.kind = kind
        end
    end
    if slot and slot.probation and self.prev then
        self:rollback(self.version, (why:gsub("^%a+: ", "")))
    end
    self.log("warn", why .. str_format("; stopping worker %d (pid %d) and "
                                       .. "restarting its tasks", w.id,
                                       w.pid or 0))
    w.proc:kill(SIGKILL)
end

-- Reads a watch slot consistently (seq unchanged around the read).
local function read_slot(watch)
    for _ = 1, 3 do
        local seq = watch.seq
        local s = {
            seq = seq, in_call = watch.in_call, task = watch.task,
            input = watch.input, offset = tonumber(watch.offset),
            kind = watch.kind % 16, probation = watch.kind >= 16,
        }
        if watch.seq == seq then
            return s
        end
    end
    return nil
end

function Sup:watchdog(now)
    for _, w in pairs(self.workers) do
        if alive(w) and w.ready and w.watch ~= nil then
            local s = read_slot(w.watch)
            if s and s.in_call ~= 0 then
                if s.seq ~= w.wd_seq then
                    w.wd_seq, w.wd_since = s.seq, now
                elseif now - w.wd_since > self.max_process_ms
                    and not w.kill_reason then
                    local what = KIND_NAMES[s.kind] or "job code"
                    local where = ""
                    if s.input > 0 then
                        local part = self.topo:parts_of(s.task)[s.input]
                        where = str_format(" on input '%s' offset %.0f",
                                           part and part.key or "?",
                                           s.offset)
                    end
                    self:kill_for(w, "timeout", str_format(
                        "timeout: %s() of task %d ran past max_process_time "
                        .. "(%g s)%s, version %s", what, s.task,
                        self.max_process_ms / 1000, where, self.version), s)
                end
            else
                w.wd_seq = nil
            end
        end
    end
    if now - (self.last_rss or 0) >= RSS_EVERY_MS then
        self.last_rss = now
        for _, w in pairs(self.workers) do
            if alive(w) and not w.kill_reason then
                local rss = w.proc:rss()
                if rss and rss > self.max_memory then
                    local s = w.watch ~= nil and read_slot(w.watch)
                    if s and s.in_call == 0 then
                        s = nil
                    end
                    local where = ""
                    if s then
                        local part = s.input > 0
                                     and self.topo:parts_of(s.task)[s.input]
                        where = str_format(" in %s() of task %d%s",
                                           KIND_NAMES[s.kind] or "job code",
                                           s.task, part and str_format(
                                               " on input '%s' offset %.0f",
                                               part.key, s.offset) or "")
                    end
                    self:kill_for(w, "memory", str_format(
                        "memory: worker %d uses %s, past max_memory (%s)%s",
                        w.id, mib(rss), mib(self.max_memory), where), s)
                end
            end
        end
    end
end

return RSS_EVERY_MS
end
