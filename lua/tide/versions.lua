--- Code versions in the supervisor (docs/container.md "Hot reload across
--- workers"): loading and checking a new version, swapping it into every
--- worker, and rolling every worker back when one fails on probation.
--- Installs its methods on the supervisor's class.
local reload_mod = require("tide.reload")
local loop_mod = require("tide.loop")
local dashboard = require("tide.dashboard")

local type, pairs, ipairs, tostring, tonumber = type, pairs, ipairs, tostring, tonumber
local str_format, concat, sort = string.format, table.concat, table.sort
local now_ms = loop_mod.now
local realtime = loop_mod.realtime

--- Adds rollback and reload to `Sup`; `util` holds the supervisor's
--- helpers (alive).
return function(Sup, util)
local alive = util.alive

--- Keeps a reload in the history the dashboard shows (the last
--- dashboard.HISTORY): when, what asked for it, the versions, the
--- outcome (ok, refused, rolled_back, failed) and why.
function Sup:note_reload(trigger, from, to, outcome, why, t0)
    dashboard.remember(self, "reload_log", {
        at = realtime(), trigger = trigger, from = from, to = to,
        outcome = outcome, why = why, ms = t0 and now_ms() - t0 })
end

-- A later rollback of version `bad` (on probation) changes the outcome
-- of its reload.
local function note_rollback(self, bad, why)
    local list = self.reload_log or {}
    for i = #list, 1, -1 do
        if list[i].to == bad and list[i].outcome == "ok" then
            list[i].outcome, list[i].why = "rolled_back", why
            return
        end
    end
end

--- Goes back to the code before the last reload in every worker (one
--- worker's failure rolls every worker back). `from` already did.
function Sup:rollback(bad, why, from)
    if not self.prev or self.version ~= bad then
        return
    end
    self.bad[bad] = true
    self.job, self.version = self.prev.job, self.prev.version
    self.max_process_ms = self.job.max_process_time_ms
    self.prev = nil
    self.rolled_back = self.rolled_back + 1
    note_rollback(self, bad, why)
    self.log("warn", str_format("reload: version %s rolled back to %s: %s; "
                                .. "every worker runs %s again; %s is not "
                                .. "tried again until its files change", bad,
                                self.version, why, self.version, bad))
    for _, w in pairs(self.workers) do
        if alive(w) and w ~= from then
            self:send(w, { op = "rollback", version = bad, why = why })
        end
    end
end

-- What a reload may not change while the job runs, beyond inputs,
-- outputs and stores (reload.prepare checks those).
local function restart_needed(old, new)
    local checks = {
        { "commit_interval", old.commit_interval_ms, new.commit_interval_ms },
        { "window", old.window and "a window()" or "no window()",
          new.window and "a window()" or "no window()" },
        { "window_interval", old.window_interval_ms, new.window_interval_ms },
        { "max_memory", old.max_memory, new.max_memory },
    }
    for _, c in ipairs(checks) do
        if c[2] ~= c[3] then
            local function show(v)
                if type(v) == "number" and c[1] ~= "max_memory" then
                    return str_format("%g s", v / 1000)
                end
                return tostring(v or "default")
            end
            return str_format("restart needed: %s changed (running: %s; new: "
                              .. "%s); stop the job and start it again to "
                              .. "apply this version", c[1], show(c[2]),
                              show(c[3]))
        end
    end
    return nil
end

--- Loads the job's files again and, when they are a new valid version
--- that may replace the running one, swaps it into every worker. Returns
--- true and a line, or nil and the reason.
function Sup:reload(trigger, quiet)
    local t0 = now_ms()
    local job = self.job
    local id = reload_mod.version(job.path, job.modules)
    if id == nil then
        local msg = str_format("cannot read %s", job.path)
        self:note_reload(trigger, self.version, nil, "failed", msg, t0)
        self.log("warn", str_format("reload (%s): %s; still running version "
                                    .. "%s", trigger, msg, self.version))
        return nil, msg
    end
    if id == self.version then
        if not quiet then
            self.log("info", str_format("reload (%s): version %s is already "
                                        .. "running", trigger, id))
        end
        return true, "version " .. id .. " is already running"
    end
    if self.bad[id] then
        local msg = str_format("version %s failed before (%s); it is not "
                               .. "tried again until its files change", id,
                               self.bad[id] == true and "rolled back"
                               or self.bad[id])
        if not quiet then
            self.log("warn", str_format("reload (%s): %s", trigger, msg))
            self:note_reload(trigger, self.version, id, "refused", msg, t0)
        end
        return nil, msg
    end
    local new, why = reload_mod.prepare(job, self.opts.overrides,
                                        self.opts.load_limit_ms)
    if new then
        why = restart_needed(job, new)
        if why then
            new = nil
        end
    end
    if not new then
        self.bad[id] = why
        self.refused = self.refused + 1
        local msg = str_format("version %s refused: %s", id, why)
        self.log("warn", str_format("reload (%s) of %s: %s; still running "
                                    .. "version %s", trigger, job.path, msg,
                                    self.version))
        self:note_reload(trigger, self.version, id, "refused", why, t0)
        return nil, msg
    end
    local new_id = reload_mod.version_of(new)
    local old_id = self.version
    self.prev = { job = job, version = old_id }
    self.job, self.version = new, new_id
    local names = {}
    for name in pairs(new.modules or {}) do
        if type(name) == "string" then
            names[#names + 1] = name
        end
    end
    local failed
    self.swapping, self.late_rollback = true, nil
    for id_ = 1, self.nworkers do
        local w = self.workers[id_]
        if alive(w) and not failed then
            local reply, err = self:request(w, {
                op = "swap", version = new_id, sources = new.sources,
                modules = names })
            if not reply then
                failed = str_format("worker %d: %s", w.id, err)
            end
        end
    end
    self.swapping = false
    local late = self.late_rollback
    self.late_rollback = nil
    if failed then
        if self.version == new_id then
            self:rollback(new_id, failed)
        end
        self:note_reload(trigger, old_id, new_id, "rolled_back", failed, t0)
        self.bad[new_id] = failed
        return nil, str_format("version %s rolled back: %s", new_id, failed)
    end
    self.reloads = self.reloads + 1
    self.max_process_ms = new.max_process_time_ms  -- applies at once
    local probation = new.reload_probation or 1000
    local msg = str_format("version %s -> %s, swapped into %d worker%s in "
                           .. "%.1f ms; on probation for %d messages per "
                           .. "task", old_id, new_id, self.nworkers,
                           self.nworkers == 1 and "" or "s", now_ms() - t0,
                           probation)
    self.log("info", str_format("reloaded %s (%s): %s", job.path, trigger,
                                msg))
    self:note_reload(trigger, old_id, new_id, "ok", nil, t0)
    if late then
        -- A worker failed on probation while the others were swapping.
        self:rollback(late[1], late[2], late[3])
    end
    if self.version ~= new_id then
        return nil, str_format("version %s rolled back: it failed on "
                               .. "probation (see the log)", new_id)
    end
    return true, msg
end
end
