--- Standby copies, kept by a worker (docs/kafka.md "Standby replicas").
--- With `standby_replicas = 1`, the supervisor of a Kafka group asks one
--- of its workers to keep a warm copy of a task another process owns:
--- the task's RocksDB stores, opened from their newest local snapshot and
--- brought up to the group's checkpoint of the task by replaying its
--- changelog topic, then snapshotted again. When the owner dies and the
--- group gives this process the task, the copy is closed and the task's
--- restore starts from that snapshot, replaying only the tail.
---
--- The copy follows the checkpoint, not the changelog's end: records past
--- the checkpoint may belong to a transaction that will be aborted, or be
--- rolled back by the owner's restore; a snapshot past the checkpoint
--- would be thrown away by the restore anyway.
local ckpt_kafka = require("tide.checkpoint_kafka")
local now_ms = require("tide.loop").now

local pairs, next, tostring = pairs, next, tostring
local str_format, concat, sort = string.format, table.concat, table.sort
local setmetatable = setmetatable

local _M = {}

-- How often the group's checkpoint of each standby task is read.
_M.STEP_MS = 1000
-- Records replayed per store and step: the worker's own tasks wait
-- while it replays, so a large backlog is taken in pieces.
_M.MAX_RECORDS = 50000
-- How long a read of the group's checkpoint may hold the worker up.
local FETCH_MS = 2000

local Standby = {}
Standby.__index = Standby

--- The standby copies of worker `w` (a tide.worker).
function _M.new(w)
    return setmetatable({
        w = w, tasks = {}, next_ms = 0,
        ckpt = ckpt_kafka.new({}, w.env, w.job),
    }, Standby)
end

local function offsets_text(offs)
    local list = {}
    for name, off in pairs(offs or {}) do
        list[#list + 1] = str_format("%s=%.0f", name, off)
    end
    sort(list)
    return #list > 0 and concat(list, ",") or "none"
end

--- Starts keeping a copy of task p. Returns true, or nil and an error.
function Standby:on(p)
    local w = self.w
    if self.tasks[p] then
        return true
    end
    if w.tasks[p] then
        return nil, str_format("task %d runs in this worker", p)
    end
    local t0 = now_ms()
    local entry, err = self.ckpt:load_one(p, FETCH_MS * 5)
    if entry == nil then
        return nil, err
    end
    local ok
    ok, err = w.state:add_standby(p, entry or nil)
    if not ok then
        return nil, err
    end
    self.tasks[p] = { t0 = t0, replayed = 0, ready = false }
    self.next_ms = 0
    w.log("info", str_format("standby of task %d: opened at changelog "
                             .. "offsets %s in %.0f ms", p,
                             offsets_text(w.state:standby_offsets(p)),
                             now_ms() - t0))
    return true
end

--- Stops keeping the copy of task p (its snapshots stay on disk).
function Standby:off(p)
    if self.tasks[p] then
        self.w.state:remove_standby(p)
        self.tasks[p] = nil
    end
end

--- The time of the next step (for the worker's idle wait), or nil when
--- there is no copy to keep.
function Standby:due()
    return next(self.tasks) ~= nil and self.next_ms or nil
end

-- Advances task p's copy one step.
function Standby:advance(p, t)
    local w = self.w
    local entry, err = self.ckpt:load_one(p, FETCH_MS)
    if entry == nil then
        if not t.warned then
            w.log("warn", str_format("standby of task %d: %s; trying again",
                                     p, tostring(err)))
            t.warned = true
        end
        return true
    end
    t.warned = false
    if not entry then
        return true                 -- nothing committed yet
    end
    local n, caught_up = w.state:advance_standby(p, entry.changelogs,
                                                 _M.MAX_RECORDS)
    if not n then
        -- The checkpoint went back (offsets reset): open it again.
        w.log("warn", str_format("standby of task %d: %s; opening it again",
                                 p, tostring(caught_up)))
        w.state:remove_standby(p)
        local ok, aerr = w.state:add_standby(p, entry)
        if not ok then
            self.tasks[p] = nil
            return nil, aerr
        end
        return false
    end
    t.replayed = t.replayed + n
    if caught_up and not t.ready then
        t.ready = true
        w.log("info", str_format("standby of task %d: caught up to "
                                 .. "changelog offsets %s, %d records "
                                 .. "replayed in %.1f s", p,
                                 offsets_text(entry.changelogs), t.replayed,
                                 (now_ms() - t.t0) / 1000))
    end
    return caught_up
end

--- Runs a step when one is due: each copy is brought towards the group's
--- checkpoint of its task. A copy that cannot be kept is closed, with a
--- log line (the supervisor places it again).
function Standby:step(now)
    if now < self.next_ms or next(self.tasks) == nil then
        return
    end
    local more = false
    for p, t in pairs(self.tasks) do
        local caught_up, err = self:advance(p, t)
        if caught_up == nil then
            self.w.log("error", str_format("standby of task %d closed: %s",
                                           p, tostring(err)))
        elseif not caught_up then
            more = true
        end
    end
    -- Behind: the next piece at the next round.
    self.next_ms = more and now or now_ms() + _M.STEP_MS
end

--- The copies as { [p] = changelog offsets }, for status.
function Standby:status()
    local out = {}
    for p in pairs(self.tasks) do
        out[p] = self.w.state:standby_offsets(p)
    end
    return out
end

return _M
