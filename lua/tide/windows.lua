--- Windows over event time, as a library over ctx:timer and a store
--- (docs/time.md "Windows"): tumbling, hopping, sliding, session and count
--- windows; an aggregate given as functions; results emitted on each
--- change or once, when the watermark passes the window's end plus its
--- grace; late records counted and dead-lettered or dropped; a window's
--- state deleted once it closes.
---
---     local windows = require("tide.windows")
---     local per_min = windows.new("per_min", {
---         shape = windows.tumbling("1m"), agg = windows.agg.count,
---         emit = "final", grace = "5s", output = "counts" })
---     return { ..., stores = windows.stores(per_min),
---              process = function(msg, ctx) per_min:add(msg, ctx) end,
---              on_timer = windows.timers(per_min) }
---
--- State, in the window's store (json values): "late" -> records dropped
--- as late; for time windows gk .. "\0" .. be64(start) -> accumulator;
--- for sessions the same key -> { e = last time, a = accumulator }; for
--- sliding windows gk .. "\1" .. be64(time) -> the values at that time;
--- for count windows gk .. "\0c" -> { n, a, s, e }. Times are offset by
--- 2^52 so that negative starts sort too. Timer keys: name .. "\0" ..
--- be64(start or time) .. gk.
local job_mod = require("tide.job")
local timers = require("tide.timers")

local type, error, tostring, pairs, ipairs = type, error, tostring, pairs,
    ipairs
local setmetatable, getmetatable, select = setmetatable, getmetatable, select
local str_format, str_sub, str_find = string.format, string.sub, string.find
local remove, tinsert = table.remove, table.insert
local be64, read_be64 = timers.be64, timers.read_be64

local _M = {}

local OFF = 2 ^ 52                 -- added to times before encoding
local LATE_KEY = "late"

local function enc_time(t)
    return be64(t + OFF)
end

local function dec_time(s, at)
    return read_be64(s, at) - OFF
end

local function bad(fmt, ...)
    error("tide.windows: " .. str_format(fmt, ...), 3)
end

local function ms_of(what, v, zero_ok)
    local ms, err
    if zero_ok then
        ms, err = job_mod.duration0_ms(v)
    else
        ms, err = job_mod.duration_ms(v)
    end
    if not ms then
        bad("%s: %s", what, err)
    end
    if ms % 1 ~= 0 then
        bad("%s: %s is not a whole number of milliseconds", what,
            tostring(v))
    end
    return ms
end

-- ---- shapes -------------------------------------------------------------------

--- Tumbling windows of `size` (a duration: seconds or "1m", "500ms"):
--- [k*size, (k+1)*size), one per record.
function _M.tumbling(size)
    local ms = ms_of("tumbling size", size)
    return { kind = "time", size = ms, advance = ms, name = "tumbling" }
end

--- Hopping windows of `size`, one starting every `advance`: a record is in
--- size/advance of them.
function _M.hopping(size, advance)
    local s, a = ms_of("hopping size", size), ms_of("hopping advance", advance)
    if a > s then
        bad("hopping advance (%g ms) is longer than the size (%g ms): "
            .. "records between windows would belong to none", a, s)
    end
    return { kind = "time", size = s, advance = a, name = "hopping" }
end

--- Sliding windows of `size`: one per distinct record time t of a key,
--- covering (t - size, t] (Kafka Streams' sliding windows, by the records'
--- times).
function _M.sliding(size)
    return { kind = "sliding", size = ms_of("sliding size", size),
             name = "sliding" }
end

--- Session windows: a key's records less than `gap` apart are in one
--- session; sessions that a record bridges merge (needs agg.merge).
function _M.session(gap)
    return { kind = "session", gap = ms_of("session gap", gap),
             name = "session" }
end

--- Count windows: every `n` records of a key make one window.
function _M.count(n)
    if type(n) ~= "number" or n < 1 or n % 1 ~= 0 then
        bad("count window size must be a whole number above 0, not %s",
            tostring(n))
    end
    return { kind = "count", n = n, name = "count" }
end

-- ---- aggregates ---------------------------------------------------------------

--- Ready-made aggregates: { init() -> acc, add(acc, v) -> acc, merge(a, b)
--- -> acc, result(acc) -> value }. Accumulators are stored as JSON.
_M.agg = {}

_M.agg.count = {
    init = function() return 0 end,
    add = function(a) return a + 1 end,
    merge = function(a, b) return a + b end,
}

_M.agg.sum = {
    init = function() return 0 end,
    add = function(a, v) return a + v end,
    merge = function(a, b) return a + b end,
}

_M.agg.min = {
    init = function() return false end,
    add = function(a, v)
        if a == false or v < a then return v end
        return a
    end,
    merge = function(a, b)
        if a == false then return b end
        if b == false or a <= b then return a end
        return b
    end,
    result = function(a) return a ~= false and a or nil end,
}

_M.agg.max = {
    init = function() return false end,
    add = function(a, v)
        if a == false or v > a then return v end
        return a
    end,
    merge = function(a, b)
        if a == false then return b end
        if b == false or a >= b then return a end
        return b
    end,
    result = function(a) return a ~= false and a or nil end,
}

_M.agg.avg = {
    init = function() return { 0, 0 } end,
    add = function(a, v) a[1], a[2] = a[1] + v, a[2] + 1 return a end,
    merge = function(a, b) return { a[1] + b[1], a[2] + b[2] } end,
    result = function(a) return a[2] > 0 and a[1] / a[2] or nil end,
}

--- The `n` values with the highest by(v) (default: v itself), highest
--- first; ties keep the earlier value.
function _M.agg.top_n(n, by)
    if type(n) ~= "number" or n < 1 or n % 1 ~= 0 then
        bad("top_n: n must be a whole number above 0, not %s", tostring(n))
    end
    by = by or function(v) return v end
    local function insert(list, v)
        local score = by(v)
        local i = #list + 1
        while i > 1 and by(list[i - 1]) < score do
            i = i - 1
        end
        if i <= n then
            tinsert(list, i, v)
            if #list > n then
                remove(list)
            end
        end
        return list
    end
    return {
        init = function() return {} end,
        add = insert,
        merge = function(a, b)
            for _, v in ipairs(b) do
                insert(a, v)
            end
            return a
        end,
    }
end

-- ---- the window object ----------------------------------------------------------

local Win = {}
Win.__index = Win

local SHAPES = { time = true, sliding = true, session = true, count = true }

--- Makes a window named `name` (also its store's name and its timers'
--- prefix). opts:
---   shape   windows.tumbling/hopping/sliding/session/count(...)
---   agg     an aggregate: windows.agg.count, .sum, .min, .max, .avg,
---           .top_n(n, by), or { init, add, merge (sessions), result }
---   key     function(msg) -> the group key, a string or number
---           (default msg.key)
---   value   function(msg) -> what agg.add gets (default msg.value)
---   emit    "final" (default): once, when the window closes; "update":
---           after each change, and nothing at the close
---   grace   how long after its end a window still takes records (event
---           time; default 0)
---   late    "dead_letter" (default; needs the job's dead letters, else
---           they are dropped and a warning says so once per task) or
---           "drop"; late records are counted either way
---   output  a stream to send { start, end, value } to, keyed by the group
---           key (json serde), or
---   on_result function(ctx, key, window, value), window = { start, end }
function _M.new(name, opts)
    if type(name) ~= "string" or not str_find(name, "^[%w_]+$")
        or str_sub(name, 1, 1) == "_" then
        bad("window name must be letters, digits and '_' (not first), "
            .. "not %s", tostring(name))
    end
    if type(opts) ~= "table" then
        bad("window '%s': options table expected", name)
    end
    local shape = opts.shape
    if type(shape) ~= "table" or not SHAPES[shape.kind] then
        bad("window '%s': shape must be windows.tumbling(size), "
            .. "hopping(size, advance), sliding(size), session(gap) or "
            .. "count(n)", name)
    end
    local agg = opts.agg
    if type(agg) ~= "table" or type(agg.init) ~= "function"
        or type(agg.add) ~= "function" then
        bad("window '%s': agg must be a table with init() and add(acc, v), "
            .. "e.g. windows.agg.count", name)
    end
    if shape.kind == "session" and type(agg.merge) ~= "function" then
        bad("window '%s': session windows need agg.merge(a, b)", name)
    end
    local emit = opts.emit or "final"
    if emit ~= "final" and emit ~= "update" then
        bad("window '%s': emit must be \"final\" or \"update\", not %s",
            name, tostring(emit))
    end
    local late = opts.late or "dead_letter"
    if late ~= "dead_letter" and late ~= "drop" then
        bad("window '%s': late must be \"dead_letter\" or \"drop\", not %s",
            name, tostring(late))
    end
    if opts.output == nil and opts.on_result == nil then
        bad("window '%s': give output (a stream) or on_result(ctx, key, "
            .. "window, value)", name)
    end
    for k in pairs(opts) do
        if not ({ shape = 1, agg = 1, key = 1, value = 1, emit = 1,
                  grace = 1, late = 1, output = 1, on_result = 1 })[k] then
            bad("window '%s': unknown option '%s' (known: shape, agg, key, "
                .. "value, emit, grace, late, output, on_result)", name,
                tostring(k))
        end
    end
    return setmetatable({
        name = name, shape = shape, agg = agg, emit = emit, late = late,
        grace = opts.grace ~= nil and ms_of("grace", opts.grace, true) or 0,
        key = opts.key, value = opts.value, output = opts.output,
        on_result = opts.on_result, prefix = name .. "\0", warned = {},
    }, Win)
end

--- Store options for `job.stores` of the given windows, merged into
--- `extra` (the job's other stores) when given last.
function _M.stores(...)
    local t = {}
    local n = select("#", ...)
    for i = 1, n do
        local w = select(i, ...)
        if getmetatable(w) == Win then
            t[w.name] = { serde = "json" }
        elseif i == n and type(w) == "table" then
            for k, v in pairs(w) do
                t[k] = v
            end
        else
            bad("stores: windows (and a table of other stores last) "
                .. "expected, got a %s", type(w))
        end
    end
    return t
end

--- on_timer for a job: hands each timer to the window it belongs to;
--- others go to `fallback(key, at, ctx, kind)` (the job's own timers).
function _M.timers(...)
    local on_timer = timers.router("windows", "window", "windows", Win, ...)
    return on_timer
end

-- The group key of msg, as a string.
local function group_key(self, msg)
    local k
    if self.key then
        k = self.key(msg)
    else
        k = msg.key
    end
    local t = type(k)
    if t == "number" then
        return tostring(k)
    elseif t ~= "string" then
        error(str_format("window '%s': the group key must be a string or "
                         .. "a number, not a %s (give key = function(msg) "
                         .. "... end)", self.name, t), 0)
    end
    return k
end

local function value_of(self, msg)
    if self.value then
        return self.value(msg)
    end
    return msg.value
end

-- Sends a result.
local function emit(self, ctx, gk, start, end_, acc)
    local v = acc
    if self.agg.result then
        v = self.agg.result(acc)
    end
    local win = { start = start, ["end"] = end_ }
    if self.on_result then
        return self.on_result(ctx, gk, win, v)
    end
    local ts = end_ - 1
    ctx:send(self.output, gk, { start = start, ["end"] = end_, value = v },
             { timestamp = ts >= 1 and ts or 1 })
end

-- A late record: counted, and dead-lettered unless told to drop.
local function on_late(self, ctx)
    local st = rawget(ctx.stores, self.name)
    st:incr(LATE_KEY, 1)
    ctx._late = true             -- counted for /metrics by tide.task
    if self.late == "dead_letter" then
        if ctx:has_dead_letters() then
            ctx:dead_letter("late")
        elseif not self.warned[ctx.partition] then
            self.warned[ctx.partition] = true
            ctx.log("warn", str_format("window '%s': late records are "
                                       .. "counted and dropped: the job has "
                                       .. "no dead letters (set dead_letters "
                                       .. "= true, or late = \"drop\")",
                                       self.name))
        end
    end
end

local function store_of(self, ctx)
    local st = rawget(ctx.stores, self.name)
    if not st then
        error(str_format("window '%s' has no store: add it with stores = "
                         .. "windows.stores(...)", self.name), 0)
    end
    return st
end

-- ---- time windows (tumbling, hopping) ---------------------------------------------

local function add_time(self, ctx, st, gk, t, v)
    local size, adv, grace = self.shape.size, self.shape.advance, self.grace
    local wm = ctx.watermark
    local last = t - t % adv                 -- the latest start holding t
    local any_open, any_late = false, false
    local s = last
    while s > t - size do
        local e = s + size
        if wm > e - 1 + grace then
            any_late = true
        else
            any_open = true
            local sk = gk .. "\0" .. enc_time(s)
            local acc = st:get(sk)
            if acc == nil then
                acc = self.agg.init()
                ctx:timer(self.prefix .. enc_time(s) .. gk, e - 1 + grace)
            end
            acc = self.agg.add(acc, v)
            st:put(sk, acc)
            if self.emit == "update" then
                emit(self, ctx, gk, s, e, acc)
            end
        end
        s = s - adv
    end
    if any_late and not any_open then
        on_late(self, ctx)
    end
end

local function fire_time(self, ctx, st, rest)
    local s = dec_time(rest, 1)
    local gk = str_sub(rest, 9)
    local sk = gk .. "\0" .. enc_time(s)
    local acc = st:get(sk)
    if acc ~= nil then
        if self.emit == "final" then
            emit(self, ctx, gk, s, s + self.shape.size, acc)
        end
        st:delete(sk)
    end
end

-- ---- session windows --------------------------------------------------------------

local function session_close(self, e)
    return e + self.shape.gap - 1 + self.grace
end

local function add_session(self, ctx, st, gk, t, v)
    local gap = self.shape.gap
    local wm = ctx.watermark
    if wm > t + gap - 1 + self.grace then
        return on_late(self, ctx)
    end
    local agg = self.agg
    local start, last = t, t
    local acc = agg.add(agg.init(), v)
    -- The key's open sessions that t joins: start < t + gap, end > t - gap.
    local from = gk .. "\0" .. enc_time(-OFF)
    local to = gk .. "\0" .. enc_time(t + gap)
    local merged = {}
    for k, sess in st:range(from, to) do
        if sess.e > t - gap and wm <= session_close(self, sess.e) then
            merged[#merged + 1] = { k = k, s = dec_time(k, #gk + 2),
                                    e = sess.e, a = sess.a }
        end
    end
    for _, m in ipairs(merged) do
        acc = agg.merge(m.a, acc)
        if m.s < start then start = m.s end
        if m.e > last then last = m.e end
        st:delete(m.k)
        ctx:delete_timer(self.prefix .. enc_time(m.s) .. gk,
                         session_close(self, m.e))
    end
    st:put(gk .. "\0" .. enc_time(start), { e = last, a = acc })
    ctx:timer(self.prefix .. enc_time(start) .. gk, session_close(self, last))
    if self.emit == "update" then
        emit(self, ctx, gk, start, last + 1, acc)
    end
end

local function fire_session(self, ctx, st, rest, at)
    local s = dec_time(rest, 1)
    local gk = str_sub(rest, 9)
    local sk = gk .. "\0" .. enc_time(s)
    local sess = st:get(sk)
    if sess ~= nil and session_close(self, sess.e) == at then
        if self.emit == "final" then
            emit(self, ctx, gk, s, sess.e + 1, sess.a)
        end
        st:delete(sk)
    end
end

-- ---- sliding windows --------------------------------------------------------------

-- The aggregate of gk's buffered values in (t - size, t].
local function sliding_acc(self, st, gk, t)
    local agg = self.agg
    local acc = agg.init()
    local from = gk .. "\1" .. enc_time(t - self.shape.size + 1)
    local to = gk .. "\1" .. enc_time(t + 1)
    for _, vals in st:range(from, to) do
        for _, v in ipairs(vals) do
            acc = agg.add(acc, v)
        end
    end
    return acc
end

local function add_sliding(self, ctx, st, gk, t, v)
    local size, grace = self.shape.size, self.grace
    if ctx.watermark > t + grace then
        return on_late(self, ctx)
    end
    local bk = gk .. "\1" .. enc_time(t)
    local vals = st:get(bk)
    if vals == nil then
        vals = {}
        -- The window ending at t closes at t + grace; the values at t are
        -- needed until the last window holding them, ending at
        -- t + size - 1, closed: one past its timer, as timers of one
        -- time fire in key order.
        ctx:timer(self.prefix .. enc_time(t) .. gk, t + grace)
        ctx:timer(self.prefix .. enc_time(t) .. gk, t + size + grace)
    end
    vals[#vals + 1] = v
    st:put(bk, vals)
    if self.emit == "update" then
        -- The window ending at t, and the later ones that hold t.
        local ends = { t }
        local from = gk .. "\1" .. enc_time(t + 1)
        local to = gk .. "\1" .. enc_time(t + size)
        for k in st:range(from, to) do
            ends[#ends + 1] = dec_time(k, #gk + 2)
        end
        for _, e in ipairs(ends) do
            emit(self, ctx, gk, e - size + 1, e + 1,
                 sliding_acc(self, st, gk, e))
        end
    end
end

local function fire_sliding(self, ctx, st, rest, at)
    local t = dec_time(rest, 1)
    local gk = str_sub(rest, 9)
    local bk = gk .. "\1" .. enc_time(t)
    if st:get(bk) == nil then
        return
    end
    if at == t + self.grace and self.emit == "final" then
        emit(self, ctx, gk, t - self.shape.size + 1, t + 1,
             sliding_acc(self, st, gk, t))
    end
    if at == t + self.shape.size + self.grace then
        st:delete(bk)
    end
end

-- ---- count windows ----------------------------------------------------------------

local function add_count(self, ctx, st, gk, t, v)
    local ck = gk .. "\0c"
    local c = st:get(ck) or { n = 0, a = self.agg.init(), s = t, e = t }
    c.n = c.n + 1
    c.a = self.agg.add(c.a, v)
    if t < c.s then c.s = t end
    if t > c.e then c.e = t end
    if c.n >= self.shape.n then
        emit(self, ctx, gk, c.s, c.e + 1, c.a)
        st:delete(ck)
    else
        st:put(ck, c)
        if self.emit == "update" then
            emit(self, ctx, gk, c.s, c.e + 1, c.a)
        end
    end
end

-- ---- entry points -----------------------------------------------------------------

local ADD = { time = add_time, session = add_session, sliding = add_sliding,
              count = add_count }
local FIRE = { time = fire_time, session = fire_session,
               sliding = fire_sliding }

--- Adds the message being processed to its windows (call it from
--- process). Its time is the message's event time (ctx.event_time: the
--- job's timestamp function, or the record timestamp).
function Win:add(msg, ctx)
    local st = store_of(self, ctx)
    local t = ctx.event_time
    if type(t) ~= "number" or t % 1 ~= 0 or t < -OFF or t >= OFF then
        error(str_format("window '%s': the event time %s is not a whole "
                         .. "number of milliseconds", self.name,
                         tostring(t)), 0)
    end
    return ADD[self.shape.kind](self, ctx, st, group_key(self, msg), t,
                                value_of(self, msg))
end

--- Handles one of this window's timers (windows.timers does the routing).
function Win:fire(rest, at, ctx)
    local fire = FIRE[self.shape.kind]
    if fire then
        return fire(self, ctx, store_of(self, ctx), rest, at)
    end
end

--- Records dropped as late by this window, in the task of ctx.
function Win:late_count(ctx)
    return store_of(self, ctx):get(LATE_KEY) or 0
end

return _M
