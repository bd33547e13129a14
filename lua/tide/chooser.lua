--- The input chooser of one task: which of its input partitions it reads
--- next (docs/container.md "Input order", docs/time.md).
---
--- 1. Bootstrap inputs first: while any input marked `bootstrap = true`
---    has not been read up to the end it had when the task was assigned,
---    only bootstrap inputs are read. This happens again at every
---    assignment, so after a restart too.
--- 2. Then by priority: a higher `priority` is read whenever it has
---    messages.
--- 3. Among inputs of equal priority, in event-time order: the partition
---    whose next message has the oldest event time goes first, for as
---    long as its messages are no newer than the next one of any other
---    partition. Equal times take turns, so none starves.
--- 4. While a partition of that priority has nothing to read and another
---    has, the task waits up to `max_idle` for it (as Kafka Streams'
---    max.task.idle.ms) before going on without it.
---
--- A "part" is one input partition of the task: { reader, priority,
--- bootstrap_end (offset, or nil when not a bootstrap input), tsfn (the
--- event-time function, false: the record's timestamp), kdec, vdec }. The
--- chooser reads each part into a buffer of its own (part.buf[head..n])
--- and hands out ranges of it; messages stay buffered until taken, so a
--- part's reader may be ahead of what was processed (part.next counts).
---
--- Event times of buffered messages are worked out only when two parts
--- compete (part.ets[i]); with a timestamp function that needs the
--- decoded message, so the chooser decodes it then, keeps the raw bytes
--- in part.rawk/rawv/rawh[i] (for dead letters) and marks it decoded
--- (part.dec = i). A message that fails to decode or whose timestamp
--- function raises gets the oldest time: it is handed out at once and
--- fails again where on_error applies (tide.task).
local ipairs, sort, pcall, type = ipairs, table.sort, pcall, type
local decode_headers = require("tide.headers").decode

local _M = {}
local Chooser = {}
local mt = { __index = Chooser }

-- Messages read from a part at a time.
local READ = 256
local NEG_INF = -math.huge

--- Makes a chooser over `parts` (a list, kept by reference; each part is
--- returned as is by poll). opts: { now = function() -> ms }.
---@param parts table
---@param opts table|nil
---@return table
function _M.new(parts, opts)
    local by_prio, levels = {}, {}
    local boot = {}
    for _, part in ipairs(parts) do
        local prio = part.priority or 0
        local group = by_prio[prio]
        if not group then
            group = { prio = prio, cursor = 0 }
            by_prio[prio] = group
            levels[#levels + 1] = group
        end
        group[#group + 1] = part
        if part.bootstrap_end then
            boot[#boot + 1] = part
        end
        part.buf, part.head, part.n = {}, 1, 0
        part.ets, part.etn = {}, 0
        part.rawk, part.rawv, part.rawh, part.dec = {}, {}, {}, 0
    end
    sort(levels, function(a, b) return a.prio > b.prio end)
    return setmetatable({ levels = levels, boot = boot,
                          bootstrapping = #boot > 0, max_idle = 0,
                          now = opts and opts.now or os.time,
                          wait_until = nil }, mt)
end

-- Makes sure part has buffered messages if its reader has any. Returns
-- true (some are buffered), false (none now), or nil and an error.
-- With `lazy`, a part found empty this very millisecond is not read
-- again (an empty read is a system call, and a busy task asks at every
-- batch); a caller that gets nothing from any part must ask again
-- without it, since "nothing" ends a drain.
local function fill(part, now, lazy)
    if part.head <= part.n then
        return true
    end
    if lazy and part.empty_at == now then
        return false
    end
    local n, err = part.reader:poll(READ, part.buf)
    if not n then
        return nil, err
    end
    part.head, part.n, part.etn, part.dec = 1, n, 0, 0
    if n > 0 then
        part.empty_since = nil
        part.last_data = now
        return true
    end
    if part.empty_since == nil then
        part.empty_since = now
    end
    part.empty_at = now
    return false
end
_M.fill = fill

local function decode3(part, m, rk, rv, rh)
    if rv ~= nil then
        m.value = part.vdec(rv)
    end
    if rk ~= nil then
        m.key = part.kdec(rk)
    end
    if rh ~= nil then
        m.headers = decode_headers(rh)
    end
end

-- Decodes buffered message i of part in place, keeping its raw bytes.
-- Returns true, or false (left as it was) when decoding raised.
local function decode_at(part, i)
    local m = part.buf[i]
    local rk, rv, rh = m.key, m.value, m.headers
    part.rawk[i], part.rawv[i], part.rawh[i] = rk, rv, rh
    if not pcall(decode3, part, m, rk, rv, rh) then
        m.key, m.value, m.headers = rk, rv, rh
        return false
    end
    part.dec = i
    return true
end

-- Returns the event time of buffered message i of part (the messages
-- before it have theirs already), working it out once.
local function et_at(part, i)
    if i <= part.etn then
        return part.ets[i]
    end
    local m = part.buf[i]
    local fn, et = part.tsfn, nil
    if not fn then
        et = m.timestamp
    elseif decode_at(part, i) then
        local ok, v = pcall(fn, m)
        if ok and type(v) == "number" and v > NEG_INF and v < math.huge then
            et = v
        end
    end
    et = et or NEG_INF
    part.ets[i], part.etn = et, i
    return et
end

-- Hands out buffered messages head..last of part, at most max.
local function take(part, last, max)
    local from = part.head
    if last - from + 1 > max then
        last = from + max - 1
    end
    part.head = last + 1
    return part, from, last
end

-- Chooses within one priority group. Returns part, from, to; false when
-- waiting for an empty part (max_idle); nil when nothing is there; or
-- nil, err, part when a read failed. `lazy`: see fill.
local function poll_group(self, group, max, now, lazy)
    local n_parts = #group
    if n_parts == 1 then
        local part = group[1]
        local ok, err = fill(part, now)
        if ok == nil then
            return nil, err, part
        end
        if ok then
            return take(part, part.n, max)
        end
        return nil
    end
    local best, best_et, best_idx, second_et = nil, nil, 0, nil
    local waiting = false
    local start = group.cursor
    for k = 1, n_parts do
        local idx = (start + k - 1) % n_parts + 1
        local part = group[idx]
        local ok, err = fill(part, now, lazy)
        if ok == nil then
            return nil, err, part
        end
        if ok then
            local et = et_at(part, part.head)
            if best == nil or et < best_et then
                second_et = best_et
                best, best_et, best_idx = part, et, idx
            elseif second_et == nil or et < second_et then
                second_et = et
            end
        elseif self.max_idle > 0
            and now - part.empty_since < self.max_idle then
            -- Kafka Streams' max.task.idle.ms: a message may still come
            -- to this partition that is older than what the others have.
            local until_ = part.empty_since + self.max_idle
            if not waiting or until_ < self.wait_until then
                self.wait_until = until_
            end
            waiting = true
        end
    end
    if best == nil then
        if lazy then
            return poll_group(self, group, max, now, false)
        end
        self.wait_until = nil
        return nil
    end
    if waiting then
        return false
    end
    group.cursor = best_idx
    if second_et == nil then
        return take(best, best.n, max)
    end
    -- Take the leader's messages up to the next one of another part.
    local last, n = best.head, best.n
    local stop = best.head + max - 1
    if stop > n then
        stop = n
    end
    if best.tsfn then
        while last < stop and et_at(best, last + 1) <= second_et do
            last = last + 1
        end
    else
        -- Record timestamps: nothing to work out or keep.
        local buf = best.buf
        while last < stop and buf[last + 1].timestamp <= second_et do
            last = last + 1
        end
    end
    return take(best, last, max)
end

--- Hands out up to `max` buffered messages of the input partition that
--- comes next: returns part, from, to (part.buf[from..to], to >= from);
--- nil, 0 when no input has a message now, or the task waits for one
--- (then self.wait_until is when it stops waiting, by self.now()); or
--- nil, nil, err, part when a read failed.
---@return table|nil part, integer|nil from, integer|string|nil to_or_err,
---        table|nil failed
function Chooser:poll(max)
    local now = self.now()
    self.wait_until = nil
    if self.bootstrapping then
        local left = false
        for _, part in ipairs(self.boot) do
            if not part.bootstrapped then
                local ok, err = fill(part, now)
                if ok == nil then
                    return nil, nil, err, part
                end
                if ok then
                    local p, from, to = take(part, part.n, max)
                    if part.buf[to].offset + 1 >= part.bootstrap_end then
                        part.bootstrapped = true
                    end
                    return p, from, to
                end
                -- Caught up: offsets past the last record may be gone
                -- (compaction, retention) but nothing more is there.
                part.bootstrapped = true
            end
            left = left or not part.bootstrapped
        end
        if left then
            return nil, 0
        end
        self.bootstrapping = false
        if self.on_bootstrapped then
            self.on_bootstrapped()
        end
    end
    for _, group in ipairs(self.levels) do
        local part, a, b = poll_group(self, group, max, now, true)
        if part then
            return part, a, b
        elseif part == false then
            return nil, 0
        elseif a ~= nil then
            return nil, nil, a, b
        end
    end
    return nil, 0
end

--- True while bootstrap inputs are still being read to their ends.
function Chooser:is_bootstrapping()
    return self.bootstrapping
end

return _M
