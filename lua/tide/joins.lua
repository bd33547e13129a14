--- Joins, as a library over tables, stores and timers (docs/time.md
--- "Tables and joins"), in the style of tide.windows:
---
---   stream–table   joins.stream_table(name, { table = "profiles", ... }):
---                  each message looks its key up in a table input, as of
---                  its event time when the table is versioned;
---   stream–stream  joins.stream_stream(name, { left = "views", right =
---                  "clicks", within = "10s", kind = "inner" | "left" |
---                  "outer" }): both sides buffered in a store by key and
---                  event time, joined within the interval, expired by
---                  event-time timers once the watermark passes it;
---   table–table    joins.table_table(name, { left = "users", right =
---                  "accounts" }): on the key, a joined value (or a
---                  tombstone) on each change of either side, via on_table.
---
---     local joins = require("tide.joins")
---     local j = joins.stream_stream("vc", { left = "views",
---         right = "clicks", within = "10s", output = "joined" })
---     return { ..., stores = joins.stores(j),
---              process = function(msg, ctx) j:add(msg, ctx) end,
---              on_timer = joins.timers(j) }
---
--- Stream–stream state, in the join's store (json values): "#late" ->
--- records dropped as late; side .. gk .. "\0" .. be64(time + 2^52) ..
--- be64(offset) .. be64(partition) -> { v = value, m = matched } (side:
--- "l" or "r"). A record is keyed by its input offset, so a replay after
--- a crash writes the same entries again. Timer keys: name .. "\0" ..
--- the entry's key, at the time the entry expires.
local job_mod = require("tide.job")
local timers = require("tide.timers")

local type, error, tostring, pairs, ipairs, select = type, error, tostring,
    pairs, ipairs, select
local setmetatable, getmetatable = setmetatable, getmetatable
local str_format, str_sub, str_find = string.format, string.sub,
    string.find
local be64, read_be64 = timers.be64, timers.read_be64

local _M = {}

local OFF = 2 ^ 52                 -- added to times before encoding
local LATE_KEY = "#late"
local KINDS = { inner = true, left = true, outer = true }

local function bad(fmt, ...)
    error("tide.joins: " .. str_format(fmt, ...), 3)
end

local function ms_of(what, v)
    local ms, err = job_mod.duration0_ms(v)
    if not ms then
        bad("%s: %s", what, err)
    end
    if ms % 1 ~= 0 then
        bad("%s: %s is not a whole number of milliseconds", what,
            tostring(v))
    end
    return ms
end

local function check_name(name)
    if type(name) ~= "string" or not str_find(name, "^[%w_]+$")
        or str_sub(name, 1, 1) == "_" then
        bad("join name must be letters, digits and '_' (not first), not %s",
            tostring(name))
    end
end

local function check_opts(name, opts, known)
    if type(opts) ~= "table" then
        bad("join '%s': options table expected", name)
    end
    local set = {}
    for word in known:gmatch("[%w_]+") do
        set[word] = true
    end
    for k in pairs(opts) do
        if not set[k] then
            bad("join '%s': unknown option '%s' (known: %s)", name,
                tostring(k), known)
        end
    end
    if opts.output == nil and opts.on_result == nil then
        bad("join '%s': give output (a stream) or on_result(ctx, key, left, "
            .. "right)", name)
    end
    if opts.output ~= nil and type(opts.output) ~= "string" then
        bad("join '%s': output must be a stream name", name)
    end
    if opts.on_result ~= nil and type(opts.on_result) ~= "function" then
        bad("join '%s': on_result must be a function", name)
    end
    for _, f in ipairs({ "key", "value" }) do
        if opts[f] ~= nil and type(opts[f]) ~= "function" then
            bad("join '%s': %s must be a function(msg)", name, f)
        end
    end
end

-- The join key of msg: msg.key, or opts.key(msg).
local function key_of(self, msg)
    if self.key then
        return self.key(msg)
    end
    return msg.key
end

local function value_of(self, msg)
    if self.value then
        return self.value(msg)
    end
    return msg.value
end

-- Sends one result: { left, right } keyed by the join key to the output,
-- or on_result(ctx, key, left, right, extra). A table–table tombstone is
-- left and right nil (a nil value on the output).
local function emit(self, ctx, key, left, right, ts, extra)
    if self.on_result then
        return self.on_result(ctx, key, left, right, extra)
    end
    local v
    if left ~= nil or right ~= nil then
        v = { left = left, right = right }
    end
    if ts ~= nil and ts >= 1 and ts < 2 ^ 53 and ts % 1 == 0 then
        ctx:send(self.output, key, v, { timestamp = ts })
    else
        ctx:send(self.output, key, v)
    end
end

local function table_of(self, ctx, tname)
    local t = ctx.tables[tname]
    if not t then
        error(str_format("join '%s': the job has no table '%s'; declare the "
                         .. "input as { \"%s\", table = true }", self.name,
                         tostring(tname), tostring(tname)), 0)
    end
    return t
end

-- ---- stream–table -------------------------------------------------------------

local StreamTable = {}
StreamTable.__index = StreamTable

--- Makes a stream–table join named `name`. opts:
---   table     the table input to look up (its stream name)
---   key       function(msg) -> the key to look up (default msg.key)
---   value     function(msg) -> the left side of a result (default
---             msg.value)
---   kind      "left" (default: a message without a match gives right =
---             nil) or "inner" (it gives nothing)
---   output    a stream for { left, right } keyed by the key, or
---   on_result function(ctx, key, left, right)
--- A versioned table is read as of the message's event time
--- (ctx.event_time); a plain one at its latest.
function _M.stream_table(name, opts)
    check_name(name)
    check_opts(name, opts, "table, key, value, kind, output, on_result")
    if type(opts.table) ~= "string" then
        bad("join '%s': table must name a table input", name)
    end
    local kind = opts.kind or "left"
    if kind ~= "left" and kind ~= "inner" then
        bad("join '%s': a stream–table join is \"left\" or \"inner\", not %s",
            name, tostring(kind))
    end
    return setmetatable({
        name = name, table = opts.table, key = opts.key, value = opts.value,
        kind = kind, output = opts.output, on_result = opts.on_result,
    }, StreamTable)
end

--- Returns the table's value for msg (nil: none), as of the message's
--- event time in a versioned table.
function StreamTable:lookup(msg, ctx)
    local t = table_of(self, ctx, self.table)
    local key = key_of(self, msg)
    if t.versioned then
        return (t:get(key, ctx.event_time))
    end
    return t:get(key)
end

--- Joins msg (call it from process) and emits the result.
function StreamTable:add(msg, ctx)
    local right = self:lookup(msg, ctx)
    if right == nil and self.kind == "inner" then
        return
    end
    emit(self, ctx, key_of(self, msg), value_of(self, msg), right)
end

--- Returns the value of `key` in table `tname` of ctx as of the message's
--- event time (versioned tables; a plain table: its latest value).
function _M.lookup(ctx, tname, key)
    local t = ctx.tables[tname]
    if not t then
        error(str_format("tide.joins.lookup: the job has no table '%s'",
                         tostring(tname)), 2)
    end
    if t.versioned then
        return (t:get(key, ctx.event_time))
    end
    return t:get(key)
end

-- ---- stream–stream ------------------------------------------------------------

local StreamStream = {}
StreamStream.__index = StreamStream

local function enc_time(t)
    return be64(t + OFF)
end

--- Makes a stream–stream join named `name` (also its store's name and its
--- timers' prefix). opts:
---   left, right  the two input streams (names)
---   within       a left record at t joins the right records at
---                [t - within, t + within]; or
---   before, after  [t - before, t + after] (either defaults to 0)
---   grace        how late (event time) a record may still come (default 0)
---   kind         "inner" (default), "left" (a left record that matched
---                nothing is emitted with right = nil once its interval
---                closes) or "outer" (either side, with the other nil)
---   key          function(msg) -> the join key, a string or number
---                (default msg.key)
---   value        function(msg) -> what is buffered and emitted (default
---                msg.value)
---   late         "dead_letter" (default) or "drop"; late records are
---                counted either way
---   output       a stream for { left, right } keyed by the key, or
---   on_result    function(ctx, key, left, right, { left_time, right_time })
function _M.stream_stream(name, opts)
    check_name(name)
    check_opts(name, opts, "left, right, within, before, after, grace, "
               .. "kind, key, value, late, output, on_result")
    if type(opts.left) ~= "string" or type(opts.right) ~= "string" then
        bad("join '%s': left and right must name the two input streams",
            name)
    end
    if opts.left == opts.right then
        bad("join '%s': left and right are both '%s'; a stream–stream join "
            .. "needs two inputs", name, opts.left)
    end
    local before, after
    if opts.within ~= nil then
        if opts.before ~= nil or opts.after ~= nil then
            bad("join '%s': give within, or before and after, not both",
                name)
        end
        before = ms_of("within", opts.within)
        after = before
    elseif opts.before ~= nil or opts.after ~= nil then
        before = opts.before ~= nil and ms_of("before", opts.before) or 0
        after = opts.after ~= nil and ms_of("after", opts.after) or 0
    else
        bad("join '%s': give the interval: within = \"10s\", or before "
            .. "and after", name)
    end
    local kind = opts.kind or "inner"
    if not KINDS[kind] then
        bad("join '%s': kind must be \"inner\", \"left\" or \"outer\", not "
            .. "%s", name, tostring(kind))
    end
    local late = opts.late or "dead_letter"
    if late ~= "dead_letter" and late ~= "drop" then
        bad("join '%s': late must be \"dead_letter\" or \"drop\", not %s",
            name, tostring(late))
    end
    return setmetatable({
        name = name, left = opts.left, right = opts.right, before = before,
        after = after, kind = kind, late = late, key = opts.key,
        value = opts.value, output = opts.output, on_result = opts.on_result,
        grace = opts.grace ~= nil and ms_of("grace", opts.grace) or 0,
        prefix = name .. "\0", warned = {},
    }, StreamStream)
end

local function store_of(self, ctx)
    local st = rawget(ctx.stores, self.name)
    if not st then
        error(str_format("join '%s' has no store: add it with stores = "
                         .. "joins.stores(...)", self.name), 0)
    end
    return st
end

-- A late record: counted, and dead-lettered unless told to drop.
local function on_late(self, ctx, st)
    st:incr(LATE_KEY, 1)
    if self.late == "dead_letter" then
        if ctx:has_dead_letters() then
            ctx:dead_letter("late")
        elseif not self.warned[ctx.partition] then
            self.warned[ctx.partition] = true
            ctx.log("warn", str_format("join '%s': late records are counted "
                                       .. "and dropped: the job has no dead "
                                       .. "letters (set dead_letters = true, "
                                       .. "or late = \"drop\")", self.name))
        end
    end
end

-- Whether an unmatched record of `side` is emitted when it expires.
local function keeps_unmatched(self, side)
    return self.kind == "outer" or (self.kind == "left" and side == "l")
end

--- Adds the message being processed (from the left or the right input)
--- to the join: it is joined with the other side's buffered records
--- within the interval (a result each), then buffered until the watermark
--- passes its interval plus grace.
function StreamStream:add(msg, ctx)
    local st = store_of(self, ctx)
    local side
    if msg.stream == self.left then
        side = "l"
    elseif msg.stream == self.right then
        side = "r"
    else
        error(str_format("join '%s': a message of '%s', which is neither "
                         .. "side ('%s', '%s')", self.name,
                         tostring(msg.stream), self.left, self.right), 0)
    end
    local t = ctx.event_time
    if type(t) ~= "number" or t % 1 ~= 0 or t <= -OFF or t >= OFF then
        error(str_format("join '%s': the event time %s is not a whole "
                         .. "number of milliseconds", self.name,
                         tostring(t)), 0)
    end
    local grace = self.grace
    if ctx.watermark > t + grace then
        return on_late(self, ctx, st)
    end
    local gk = key_of(self, msg)
    local tk = type(gk)
    if tk == "number" then
        gk = tostring(gk)
    elseif tk ~= "string" then
        error(str_format("join '%s': the join key must be a string or a "
                         .. "number, not a %s (give key = function(msg) ... "
                         .. "end)", self.name, tk), 0)
    end
    local v = value_of(self, msg)
    -- The other side's records that this one joins.
    local other, lo, hi, expires
    if side == "l" then
        other, lo, hi = "r", t - self.before, t + self.after
        expires = t + self.after + grace
    else
        other, lo, hi = "l", t - self.after, t + self.before
        expires = t + self.before + grace
    end
    local base = other .. gk .. "\0"
    local klen = #base + 24
    local track = keeps_unmatched(self, other)
    local matched = false
    for k, e in st:range(base .. enc_time(lo), base .. enc_time(hi + 1)) do
        if #k == klen then
            matched = true
            local ot = read_be64(k, #base + 1) - OFF
            local ts = ot > t and ot or t
            if side == "l" then
                emit(self, ctx, gk, v, e.v, ts,
                     { left_time = t, right_time = ot })
            else
                emit(self, ctx, gk, e.v, v, ts,
                     { left_time = ot, right_time = t })
            end
            if track and not e.m then
                e.m = true
                st:put(k, e)
            end
        end
    end
    local off, part = msg.offset or 0, msg.partition or 0
    local own = side .. gk .. "\0" .. enc_time(t) .. be64(off) .. be64(part)
    st:put(own, { v = v, m = matched })
    ctx:timer(self.prefix .. own, expires)
end

--- Handles one of this join's timers (joins.timers does the routing): the
--- entry expires; an unmatched one of a left (or outer) join is emitted
--- with the other side nil.
function StreamStream:fire(rest, at, ctx)
    local st = store_of(self, ctx)
    local e = st:get(rest)
    if e == nil then
        return
    end
    local side = str_sub(rest, 1, 1)
    if not e.m and keeps_unmatched(self, side) then
        local z = #rest - 24
        local gk = str_sub(rest, 2, z - 1)
        local t = read_be64(rest, z + 1) - OFF
        if side == "l" then
            emit(self, ctx, gk, e.v, nil, nil, { left_time = t })
        else
            emit(self, ctx, gk, nil, e.v, nil, { right_time = t })
        end
    end
    st:delete(rest)
end

--- Records dropped as late by this join, in the task of ctx.
function StreamStream:late_count(ctx)
    return store_of(self, ctx):get(LATE_KEY) or 0
end

-- ---- table–table --------------------------------------------------------------

local TableTable = {}
TableTable.__index = TableTable

--- Makes a table–table join named `name`, on the key. opts:
---   left, right  the two table inputs (stream names)
---   kind         "inner" (default: a result while both sides have the
---                key), "left" (while the left has it) or "outer" (while
---                either has it)
---   output       a stream for { left, right } keyed by the key, a
---                tombstone (nil value) when the join stops holding; or
---   on_result    function(ctx, key, left, right); left and right both nil
---                for a tombstone
--- Give the job on_table = joins.on_table(j, ...).
function _M.table_table(name, opts)
    check_name(name)
    check_opts(name, opts, "left, right, kind, output, on_result")
    if type(opts.left) ~= "string" or type(opts.right) ~= "string"
        or opts.left == opts.right then
        bad("join '%s': left and right must name two table inputs", name)
    end
    local kind = opts.kind or "inner"
    if not KINDS[kind] then
        bad("join '%s': kind must be \"inner\", \"left\" or \"outer\", not "
            .. "%s", name, tostring(kind))
    end
    return setmetatable({
        name = name, left = opts.left, right = opts.right, kind = kind,
        output = opts.output, on_result = opts.on_result,
    }, TableTable)
end

local function holds(kind, l, r)
    if kind == "inner" then
        return l ~= nil and r ~= nil
    elseif kind == "left" then
        return l ~= nil
    end
    return l ~= nil or r ~= nil
end

--- Handles a change of one of the two tables (on_table(msg, old, ctx)):
--- emits the joined value of msg.key, or a tombstone when the join held
--- before the change and no longer does. Returns false when msg is of
--- neither table.
function TableTable:on_table(msg, old, ctx)
    local key = msg.key
    local l, r, lo, ro
    if msg.stream == self.left then
        l, lo = msg.value, old
        r = table_of(self, ctx, self.right):get(key)
        ro = r
    elseif msg.stream == self.right then
        r, ro = msg.value, old
        l = table_of(self, ctx, self.left):get(key)
        lo = l
    else
        return false
    end
    if holds(self.kind, l, r) then
        emit(self, ctx, key, l, r)
    elseif holds(self.kind, lo, ro) then
        emit(self, ctx, key, nil, nil)
    end
    return true
end

-- ---- wiring into the job --------------------------------------------------------

--- Store options for `job.stores` of the given joins (stream–stream joins
--- have a store; others need none), merged into `extra` (the job's other
--- stores) when given last.
function _M.stores(...)
    local t = {}
    local n = select("#", ...)
    for i = 1, n do
        local j = select(i, ...)
        local m = getmetatable(j)
        if m == StreamStream then
            t[j.name] = { serde = "json" }
        elseif m == StreamTable or m == TableTable then    -- luacheck: ignore
            -- no state of its own
        elseif i == n and type(j) == "table" then
            for k, v in pairs(j) do
                t[k] = v
            end
        else
            bad("stores: joins (and a table of other stores last) expected, "
                .. "got a %s", type(j))
        end
    end
    return t
end

--- on_timer for a job: hands each timer to the stream–stream join it
--- belongs to; others go to `fallback(key, at, ctx, kind)` (the job's own
--- timers, or windows.timers(...)).
function _M.timers(...)
    local on_timer = timers.router("joins", "join", "stream–stream joins",
                                   StreamStream, ...)
    return on_timer
end

--- on_table for a job: hands each table change to the table–table joins
--- of that table, then to `fallback(msg, old, ctx)` when given (it sees
--- every change).
function _M.on_table(...)
    local list, fallback = {}, nil
    local n = select("#", ...)
    for i = 1, n do
        local j = select(i, ...)
        if getmetatable(j) == TableTable then
            list[#list + 1] = j
        elseif i == n and type(j) == "function" then
            fallback = j
        else
            bad("on_table: table–table joins (and a function last) "
                .. "expected, got a %s", type(j))
        end
    end
    return function(msg, old, ctx)
        for i = 1, #list do
            list[i]:on_table(msg, old, ctx)
        end
        if fallback then
            return fallback(msg, old, ctx)
        end
    end
end

return _M
