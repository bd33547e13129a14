--- Tables (docs/time.md "Tables and joins"): an input declared
--- `{ "profiles", table = true }` is materialized by tide into a store of
--- the task, one record at a time (a nil value deletes the key), and read
--- as `ctx.tables.profiles:get(key)`. The store is a normal changelogged
--- store, written with the message's other writes, so a table is exact
--- after any crash like all state.
---
--- A plain table keeps the latest value per key, in the input's serdes
--- (so `ctx.stores.profiles` and `tide state dump` read it too).
--- A versioned table keeps past values by the record's event time, raw:
---   encoded key .. "\0" .. be64(2^52 - time)  ->  "v" .. raw value
---                                                 | "d" (deleted then)
--- so that, for one key, versions sort newest first and the newest
--- version at or before a time is the first key at or after
--- key .. "\0" .. be64(2^52 - time): one forward seek. With a history
--- retention, a write drops the versions of its key that no query within
--- `history` of the key's newest version can need.
local timers = require("tide.timers")

local type, error, tostring, ipairs, setmetatable = type, error, tostring,
    ipairs, setmetatable
local str_byte, str_sub, str_format, str_rep = string.byte, string.sub,
    string.format, string.rep
local floor = math.floor
local be64, read_be64 = timers.be64, timers.read_be64

local _M = {}

local OFF = 2 ^ 52                 -- times are stored as OFF - time
local HIGH = str_rep("\255", 9)    -- above every version suffix
local DELETED = "d"
local BYTE_D = str_byte(DELETED)

local Table = {}
Table.__index = Table

--- Makes the table object of input `spec` (a normalised table input of
--- tide.job) over store `st` (the task's store of that name).
---@param spec table
---@param st table
---@return table
function _M.new(spec, st)
    return setmetatable({
        name = spec.name, store = spec.store, st = st,
        versioned = spec.versioned == true, history = spec.history_ms,
        kenc = spec.key_serde.encode, vdec = spec.serde.decode,
    }, Table)
end

-- The suffix of a version at `t`: newer times sort first.
local function vsuffix(t)
    if t >= OFF then
        return be64(0)
    end
    return be64(OFF - t)
end

-- The first key of st in [from, to) that is exactly `klen` bytes long,
-- with its raw value, counting the writes the current message holds
-- (pending): a key longer than klen is another key's version (a key that
-- contains "\0"), and is skipped.
local function seek(st, from, to, klen)
    local pend = st.pending
    local best, bestv
    if st.pkeys[1] ~= nil then
        for _, k in ipairs(st.pkeys) do
            local v = pend[k]
            if v and k >= from and k < to and #k == klen
                and (best == nil or k < best) then
                best, bestv = k, v
            end
        end
    end
    local k, v = st.s:first(from, to)
    if k == nil and v ~= nil then
        error(str_format("table store '%s': %s", st.name, tostring(v)), 0)
    end
    if k ~= nil and (#k ~= klen or pend[k] ~= nil) then
        k, v = nil, nil
        local it, err = st.s:iter(from, best or to)
        if not it then
            error(str_format("table store '%s': %s", st.name,
                             tostring(err)), 0)
        end
        for k2, v2 in it do
            if #k2 == klen and pend[k2] == nil then
                k, v = k2, v2
                break
            end
        end
    end
    if k ~= nil and (best == nil or k < best) then
        return k, v
    end
    return best, bestv
end

local function check_time(what, at)
    if type(at) ~= "number" or at ~= at then
        error(str_format("%s: time must be a number of milliseconds, not "
                         .. "%s", what, type(at) == "number" and tostring(at)
                         or "a " .. type(at)), 3)
    end
    return floor(at)
end

--- Returns the value of `key` in the table, or nil. In a versioned table,
--- `at` (ms, optional) asks for the value as of that time: that of the
--- newest version at or before it (nil when none, or when the key was
--- deleted then), and the version's time as a second value; without
--- `at`, the latest. A plain table ignores `at`.
---@param key any
---@param at number|nil
---@return any value, number|nil time
function Table:get(key, at)
    if key == nil then
        return nil
    end
    if not self.versioned then
        return self.st:get(key)
    end
    local prefix = self.kenc(key) .. "\0"
    local from = prefix
    if at ~= nil then
        at = check_time("table '" .. self.name .. "': get", at)
        if at <= -OFF then
            return nil
        end
        from = prefix .. vsuffix(at)
    end
    local k, v = seek(self.st, from, prefix .. HIGH, #prefix + 8)
    if k == nil or str_byte(v, 1) == BYTE_D then
        return nil
    end
    return self.vdec(str_sub(v, 2)), OFF - read_be64(k, #prefix + 1)
end

--- Returns an iterator over the versions of `key` in a versioned table,
--- newest first: time, value (nil: deleted at that time).
---@param key any
---@return function
function Table:versions(key)
    if not self.versioned then
        error(str_format("table '%s': versions() is for versioned tables",
                         self.name), 2)
    end
    local prefix = self.kenc(key) .. "\0"
    local list = {}
    for k, v in self.st:range(prefix, prefix .. HIGH) do
        if #k == #prefix + 8 then
            list[#list + 1] = { OFF - read_be64(k, #prefix + 1), v }
        end
    end
    local i, vdec = 0, self.vdec
    return function()
        i = i + 1
        local e = list[i]
        if e == nil then
            return nil
        end
        local v = e[2]
        if str_byte(v, 1) == BYTE_D then
            return e[1], nil
        end
        return e[1], vdec(str_sub(v, 2))
    end
end

-- Holds a raw write in store st (as Store:put does after encoding).
local function put_raw(st, kraw, vraw)
    local p = st.pending
    if p[kraw] == nil then
        local keys = st.pkeys
        keys[#keys + 1] = kraw
    end
    p[kraw] = vraw or false
end

-- Drops the versions of a key older than the newest one before `cutoff`
-- (none of them can answer a query at or after cutoff).
local function expire(st, prefix, cutoff)
    local klen = #prefix + 8
    local it, err = st.s:iter(prefix .. vsuffix(cutoff - 1), prefix .. HIGH)
    if not it then
        error(str_format("table store '%s': %s", st.name, tostring(err)), 0)
    end
    local kept = false
    for k in it do
        if #k == klen and st.pending[k] == nil then
            if kept then
                put_raw(st, k, nil)
            end
            kept = true
        end
    end
end

--- Writes table record `m` (decoded) into table `tbl`: its raw value
--- `vraw` (nil: a tombstone, deleting the key), at event time `t` for a
--- versioned table. With `want_old`, returns the value the key had before
--- (in a versioned table: as of `t`).
---@return any old
function _M.update(tbl, m, vraw, t, want_old)
    local key = m.key
    if key == nil then
        error(str_format("table '%s': a record without a key cannot be "
                         .. "kept in the table", tbl.name), 0)
    end
    local st = tbl.st
    local old
    if not tbl.versioned then
        local kraw = st.kenc(key)
        if want_old then
            old = st:get(key)
        end
        put_raw(st, kraw, vraw)
        return old
    end
    if type(t) ~= "number" or t ~= t or t <= -OFF or t >= OFF then
        error(str_format("versioned table '%s': the record's event time %s "
                         .. "is not a time in milliseconds", tbl.name,
                         tostring(t)), 0)
    end
    t = floor(t)
    if want_old then
        old = tbl:get(key, t)
    end
    local prefix = tbl.kenc(key) .. "\0"
    put_raw(st, prefix .. vsuffix(t), vraw and ("v" .. vraw) or DELETED)
    if tbl.history then
        local newest = t
        local k = seek(st, prefix, prefix .. HIGH, #prefix + 8)
        if k then
            local nt = OFF - read_be64(k, #prefix + 1)
            if nt > newest then
                newest = nt
            end
        end
        expire(st, prefix, newest - tbl.history)
    end
    return old
end

return _M
