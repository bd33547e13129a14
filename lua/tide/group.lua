--- The supervisor in a Kafka consumer group (docs/kafka.md "Scale-out"):
--- every `tide run` of a job whose tasks follow a kafka: input joins the
--- job's group, subscribed to that input with the cooperative-sticky
--- assignor. The partitions the group gives a process are its tasks:
--- assigned to its workers (stores restored, inputs at the group's
--- checkpoint) when they come, committed and closed before they are
--- given back, so that tasks that do not move keep running. Installs its
--- methods on the supervisor's class.
local kafka = require("tide.kafka")
local kafka_sys = require("tide.system.kafka")
local ckpt_kafka = require("tide.checkpoint_kafka")

local pairs, ipairs, tostring = pairs, ipairs, tostring
local str_format, concat, sort = string.format, table.concat, table.sort

local now_ms = require("tide.loop").now

-- How often standby copies are placed again (the group's assignment is
-- read with DescribeGroups; a rebalance places them at once).
local STANDBY_EVERY_MS = 5000

return function(Sup, util)
local alive = util.alive

--- True when the job's tasks follow a kafka: input and it does not run
--- with --drain (a drain reads every partition alone).
function Sup:in_group()
    return ckpt_kafka.lead_input(self.job) ~= nil and not self.opts.drain
end

--- Joins the group. Returns true, or nil and an error.
function Sup:group_join()
    local lead = ckpt_kafka.lead_input(self.job)
    local c, err = kafka_sys.client(self.env)
    if not c then
        return nil, err
    end
    local ok
    ok, err = c:subscribe(lead.name, self.job.kafka)
    if not ok then
        return nil, err
    end
    self.member = c
    self.ckpt.in_group = true
    self.log("info", str_format("joined Kafka group '%s' on topic %s; "
                                .. "waiting for its tasks", self.job.name,
                                lead.name))
    return true
end

local function list(parts)
    local copy = {}
    for i, p in ipairs(parts) do
        copy[i] = p
    end
    sort(copy)
    return concat(copy, ",")
end

-- Takes task p: its checkpoint as the group has it now (another process
-- may have committed since this one started), a worker, then running.
function Sup:group_take(p)
    -- A standby copy of it here is closed first: the restore starts from
    -- its snapshot, in whichever worker.
    local sw = self.standby and self.standby[p]
    if sw then
        self.standby[p] = nil
        if alive(sw) then
            self:request(sw, { op = "standby", task = p, on = false })
        end
    end
    local entry, err = self.ckpt:load_task(p)
    if err then
        return nil, err
    end
    self.saved[p] = entry
    local w = self:least_loaded()
    if not w then
        self:add_orphan(p)
        return true
    end
    local ok
    ok, err = self:assign(p, w, "kafka group")
    if not ok then
        return nil, err
    end
    if not self.paused[p] then
        local reply
        reply, err = self:request(w, { op = "resume", task = p })
        if not reply then
            return nil, err
        end
    end
    return true
end

-- Gives task p back: committed and closed (`lost`: closed without a
-- commit, which the group would refuse).
function Sup:group_give(p, lost)
    local w = self.owner[p]
    if not w then
        self:drop_orphan(p)
        return true
    end
    if lost then
        local reply, err = self:request(w, { op = "drop", task = p })
        w.tasks[p] = nil
        self.owner[p] = nil
        if not reply then
            return nil, err
        end
        return true
    end
    return self:revoke(p)
end

--- Handles the group's events that are waiting. Returns true, or nil and
--- an error that stops the job.
function Sup:group_poll()
    local c = self.member
    if not c then
        return true
    end
    while true do
        local kind, parts = c:group_poll(0)
        if kind == nil then
            return nil, parts
        end
        if not kind then
            return true
        end
        local t0 = now_ms()
        if #parts > 0 then
            local what = kind == kafka.ASSIGN and "assigned"
                         or (kind == kafka.LOST and "lost" or "revoked")
            for _, p in ipairs(parts) do
                local ok, err
                if kind == kafka.ASSIGN then
                    ok, err = self:group_take(p)
                else
                    ok, err = self:group_give(p, kind == kafka.LOST)
                end
                if not ok then
                    self.log("error", str_format("kafka group: task %d: %s",
                                                 p, tostring(err)))
                end
            end
            self.log("info", str_format("kafka group: tasks %s %s in %.0f ms",
                                        list(parts), what, now_ms() - t0))
        end
        local ok, err = c:rebalance_done()
        if not ok then
            return nil, err
        end
        self.standby_next = 0          -- placed again at once
    end
end

--- Places standby copies (`standby_replicas = 1`, docs/kafka.md "Standby
--- replicas"): the group's members in the order of their ids form a
--- ring, and the member after a task's owner keeps its copy, in one of
--- its workers. Runs every STANDBY_EVERY_MS and after each rebalance;
--- a copy whose worker died is placed again.
function Sup:group_standbys()
    if (self.job.standby_replicas or 0) < 1 or not self.member
        or self.stopping then
        return
    end
    local now = now_ms()
    if now < (self.standby_next or 0) then
        return
    end
    self.standby_next = now + STANDBY_EVERY_MS
    local lead = ckpt_kafka.lead_input(self.job)
    local owner, n, me = self.member:group_assignment(lead.name, self.nparts,
                                                      2000)
    if not owner then
        self.log("warn", str_format("standby replicas: cannot read the "
                                    .. "group's assignment: %s; trying "
                                    .. "again", tostring(n)))
        return
    end
    local want = {}
    if n > 1 and me >= 0 then
        for p = 0, self.nparts - 1 do
            local o = owner[p]
            if o >= 0 and o ~= me and (o + 1) % n == me and not self.owner[p]
                then
                want[p] = true
            end
        end
    end
    self.standby = self.standby or {}
    for p, w in pairs(self.standby) do
        if not want[p] or not alive(w) then
            self.standby[p] = nil
            if alive(w) then
                self:request(w, { op = "standby", task = p, on = false })
            end
        end
    end
    for p in pairs(want) do
        local w = not self.standby[p] and self:least_loaded()
        if w then
            local reply, err = self:request(w, { op = "standby", task = p,
                                                 on = true })
            if reply then
                self.standby[p] = w
                self.log("info", str_format("task %d: standby copy kept by "
                                            .. "worker %d", p, w.id))
            else
                self.log("warn", str_format("task %d: no standby copy: %s",
                                            p, tostring(err)))
            end
        end
    end
end

end
