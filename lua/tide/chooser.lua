--- The input chooser of one task: which of its input partitions it reads
--- next (docs/container.md "Input order").
---
--- 1. Bootstrap inputs first: while any input marked `bootstrap = true`
---    has not been read up to the end it had when the task was assigned,
---    only bootstrap inputs are read. This happens again at every
---    assignment, so after a restart too.
--- 2. Then by priority: a higher `priority` is read whenever it has
---    messages.
--- 3. Inputs of equal priority take turns, one batch each, so none
---    starves.
---
--- A "part" is one input partition of the task: { reader, priority,
--- bootstrap_end (offset, or nil when not a bootstrap input) }; the
--- chooser reads into the caller's table and says which part it read.
local ipairs, sort = ipairs, table.sort

local _M = {}
local Chooser = {}
local mt = { __index = Chooser }

--- Makes a chooser over `parts` (a list, kept by reference; each part is
--- returned as is by poll).
---@param parts table
---@return table
function _M.new(parts)
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
    end
    sort(levels, function(a, b) return a.prio > b.prio end)
    return setmetatable({ levels = levels, boot = boot,
                          bootstrapping = #boot > 0 }, mt)
end

-- Reads a batch from the group's next part that has messages, starting
-- after the part read last. Returns part, n; nil, 0; or nil, nil, err.
local function poll_group(group, msgs, max)
    local n_parts = #group
    local start = group.cursor
    for k = 1, n_parts do
        local idx = (start + k - 1) % n_parts + 1
        local part = group[idx]
        local n, err = part.reader:poll(max, msgs)
        if not n then
            return nil, nil, err, part
        end
        if n > 0 then
            group.cursor = idx
            return part, n
        end
    end
    return nil, 0
end

--- Reads up to `max` messages of the input partition that comes next into
--- msgs[1..n]. Returns part, n (n > 0); nil, 0 when no input has a
--- message now; or nil, nil, err, part when a read failed.
---@return table|nil part, integer|nil n, string|nil err, table|nil failed
function Chooser:poll(msgs, max)
    if self.bootstrapping then
        local left = false
        for _, part in ipairs(self.boot) do
            if not part.bootstrapped then
                local n, err = part.reader:poll(max, msgs)
                if not n then
                    return nil, nil, err, part
                end
                if n > 0 then
                    if msgs[n].offset + 1 >= part.bootstrap_end then
                        part.bootstrapped = true
                    end
                    return part, n
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
        local part, n, err, failed = poll_group(group, msgs, max)
        if part or err then
            return part, n, err, failed
        end
    end
    return nil, 0
end

--- True while bootstrap inputs are still being read to their ends.
function Chooser:is_bootstrapping()
    return self.bootstrapping
end

return _M
