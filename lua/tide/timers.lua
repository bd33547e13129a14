--- Keyed timers of one task (docs/time.md "Timers"): ctx:timer(key, at,
--- kind) registers one, on_timer(key, at, ctx, kind) is called once it is
--- due. They live in the task's `_timers` store, so they are changelogged,
--- restored with the rest of the state after a crash, and their firing
--- (the delete of the timer, with whatever on_timer wrote and sent) is
--- committed or rolled back as a whole, like a message.
---
--- Store layout (raw byte keys, RocksDB's order):
---   "e" .. 8-byte big-endian time .. encoded key   an event-time timer
---   "p" .. 8-byte big-endian time .. encoded key   a processing-time timer
---   "w"                                            the task's watermark
---                                                  at its last commit
--- so that the next timer of a kind is the first key of its prefix, and
--- (key, time, kind) is one timer: registering it twice keeps one.
local type, error, tostring, tonumber = type, error, tostring, tonumber
local setmetatable, getmetatable, ipairs, pcall, select = setmetatable,
    getmetatable, ipairs, pcall, select
local str_char, str_byte, str_sub, str_format, str_find = string.char,
    string.byte, string.sub, string.format, string.find
local floor = math.floor
local INF, NEG_INF = math.huge, -math.huge

local _M = {}

--- The name of the store that holds a task's timers; user store names may
--- not start with '_'.
_M.STORE = "_timers"

--- The options of that store, as job.stores would give them.
_M.STORE_OPTIONS = { serde = "string", key_serde = "bytes" }

local PREFIX = { event = "e", processing = "p" }
local PREFIX_END = { event = "f", processing = "q" }
local KIND_OF = { e = "event", p = "processing" }
local WM_KEY = "w"
local MAX_AT = 2 ^ 53
local KINDS = { "event", "processing" }
local BATCH = 256                    -- due timers read with one iterator

local Timers = {}
Timers.__index = Timers

-- 8 bytes, big-endian, of a whole number in [0, 2^53).
local function be64(n)
    local hi = floor(n / 4294967296)
    local lo = n - hi * 4294967296
    return str_char(floor(hi / 16777216) % 256, floor(hi / 65536) % 256,
                    floor(hi / 256) % 256, hi % 256,
                    floor(lo / 16777216) % 256, floor(lo / 65536) % 256,
                    floor(lo / 256) % 256, lo % 256)
end

local function read_be64(s, at)
    local b1, b2, b3, b4, b5, b6, b7, b8 = str_byte(s, at, at + 7)
    local hi = ((b1 * 256 + b2) * 256 + b3) * 256 + b4
    local lo = ((b5 * 256 + b6) * 256 + b7) * 256 + b8
    return hi * 4294967296 + lo
end

-- The raw store key of one timer.
local function timer_key(kind, at, kraw)
    return PREFIX[kind] .. be64(at) .. kraw
end

--- Makes the timers of a task over its `_timers` store `st` (a ctx store:
--- writes held per message). kenc/kdec: the job's key serde.
function _M.new(st, kenc, kdec)
    return setmetatable({
        st = st, kenc = kenc, kdec = kdec,
        -- The earliest timer of each kind, or lower (a delete does not
        -- raise it): -inf until looked up. Processing times are wall-clock
        -- milliseconds.
        next = { event = NEG_INF, processing = NEG_INF },
        -- Due timers read ahead (raw keys, time order) and the index of
        -- the next one, per kind; nil when none are read.
        q = {}, qi = {},
        saved_wm = nil,
    }, Timers)
end

-- Checks the arguments of ctx:timer and ctx:delete_timer; raises one
-- error naming what is wrong (level 3: the job code's line).
local function check(what, key, at, kind)
    if key == nil then
        error(str_format("ctx:%s: key is nil; give the key the timer is "
                         .. "for (on_timer gets it back)", what), 3)
    end
    if type(at) ~= "number" or at % 1 ~= 0 or at < 0 or at >= MAX_AT then
        error(str_format("ctx:%s: time must be a whole number of "
                         .. "milliseconds since the epoch, from 0 to 2^53, "
                         .. "not %s", what, type(at) == "number"
                         and tostring(at) or "a " .. type(at)), 3)
    end
    if kind ~= nil and PREFIX[kind] == nil then
        error(str_format("ctx:%s: kind must be \"event\" or \"processing\","
                         .. " not %s", what, type(kind) == "string"
                         and '"' .. kind .. '"' or tostring(kind)), 3)
    end
end

--- Registers a timer (ctx:timer). Part of the current message's writes.
function Timers:set(key, at, kind)
    check("timer", key, at, kind)
    kind = kind or "event"
    local ok, kraw = pcall(self.kenc, key)
    if not ok then
        error("ctx:timer: the key does not encode: " .. tostring(kraw), 2)
    end
    self.st:put(timer_key(kind, at, kraw), "1")
    if at < self.next[kind] then
        self.next[kind] = at
    end
    local q = self.q[kind]
    if q ~= nil and at <= read_be64(q[#q], 2) then
        self.q[kind] = nil                       -- it belongs in the queue
    end
end

--- Deletes a timer (ctx:delete_timer); one that does not exist is no error.
function Timers:delete(key, at, kind)
    check("delete_timer", key, at, kind)
    kind = kind or "event"
    local ok, kraw = pcall(self.kenc, key)
    if not ok then
        error("ctx:delete_timer: the key does not encode: " .. tostring(kraw),
              2)
    end
    self.st:put(timer_key(kind, at, kraw), nil)
    self.q[kind] = nil                           -- it may be in the queue
end

-- Is a timer of `kind` at `at` due at `limit` (the watermark for event
-- timers, the wall clock for processing ones)?
local function is_due(kind, at, limit)
    return at < limit or (kind == "processing" and at == limit)
end

-- Reads up to BATCH due timers of `kind` into its queue, in time order,
-- with one store iterator (making one costs a merge of the unflushed
-- writes, too much per timer). The seek starts at the known lower bound,
-- not at the prefix: fired timers are deletes that RocksDB keeps as
-- tombstones until a compaction, and stepping over all of them at each
-- look would make firing n timers cost n^2.
local function fill(self, kind, limit)
    local from = PREFIX[kind]
    local low = self.next[kind]
    if low > 0 and low < MAX_AT then
        from = from .. be64(low)
    end
    local it, err = self.st.s:iter(from, PREFIX_END[kind])
    if not it then
        error("timers: " .. tostring(err), 0)
    end
    local q, n, after = {}, 0, INF
    for k in it do
        local at = read_be64(k, 2)
        if not is_due(kind, at, limit) then
            after = at
            break
        end
        n = n + 1
        q[n] = k
        if n >= BATCH then
            break
        end
    end
    if n > 0 then
        self.q[kind], self.qi[kind] = q, 1
        self.next[kind] = read_be64(q[1], 2)
    else
        self.next[kind] = after
    end
end

--- Returns the next due timer: kind, time, decoded key, raw store key; or
--- nil. An event timer is due once the watermark passes its time (no
--- message at or before it can still come); a processing timer once the
--- wall clock reaches it. The caller removes it (Timers:remove) as part of
--- firing it.
function Timers:due(watermark, now)
    local nxt = self.next
    for _, kind in ipairs(KINDS) do
        local limit = kind == "event" and watermark or now
        if self.q[kind] == nil and is_due(kind, nxt[kind], limit) then
            fill(self, kind, limit)
        end
        local q = self.q[kind]
        if q ~= nil then
            local i = self.qi[kind]
            local raw = q[i]
            local at = read_be64(raw, 2)
            if is_due(kind, at, limit) then
                nxt[kind] = at                   -- nothing earlier is left
                if i == #q then
                    self.q[kind] = nil
                else
                    self.qi[kind] = i + 1
                end
                return kind, at, self.kdec(str_sub(raw, 10)), raw
            end
        end
    end
    return nil
end

--- Forgets what is known of the earliest timers: after the current
--- writes were discarded, a timer removed since may be back.
function Timers:forget()
    self.next.event, self.next.processing = NEG_INF, NEG_INF
    self.q.event, self.q.processing = nil, nil
end

--- The time of the latest event timer (nil: none).
function Timers:last_event()
    local it, err = self.st.s:iter(PREFIX.event, PREFIX_END.event)
    if not it then
        error("timers: " .. tostring(err), 0)
    end
    local last
    for k in it do
        last = read_be64(k, 2)
    end
    return last
end

--- When the next processing timer is due, in wall-clock ms (-inf: not
--- known yet; inf: none).
function Timers:next_processing()
    return self.next.processing
end

--- Removes a fired timer (raw store key) as part of the current writes.
function Timers:remove(raw)
    self.st:put(raw, nil)
end

--- Returns the watermark saved at the last commit (nil: none).
function Timers:saved_watermark()
    local v = self.st.s:get(WM_KEY)
    return v and tonumber(v)
end

--- Saves the watermark for the commit under way (only when it moved).
function Timers:save_watermark(wm)
    if wm > NEG_INF and wm ~= self.saved_wm then
        local ok, err = self.st.s:set(WM_KEY, str_format("%.17g", wm))
        if not ok then
            return nil, err
        end
        self.saved_wm = wm
    end
    return true
end

--- The kind of a raw store key ("event" or "processing").
function _M.kind_of(raw)
    return KIND_OF[str_sub(raw, 1, 1)]
end

--- An on_timer for libraries whose timers are keyed "<name>\0<rest>"
--- (tide.windows, tide.joins): hands each to the object of that name
--- among `...` (objects of metatable `mt`) as obj:fire(rest, at, ctx);
--- other timers go to a function given last. `lib` ("windows"), `one`
--- ("window") and `many` ("windows") name them in errors, which are
--- raised at the caller of lib.timers.
function _M.router(lib, one, many, mt, ...)
    local by, fallback = {}, nil
    local n = select("#", ...)
    for i = 1, n do
        local o = select(i, ...)
        if getmetatable(o) == mt then
            by[o.name] = o
        elseif i == n and type(o) == "function" then
            fallback = o
        else
            error(str_format("tide.%s: timers: %s (and a function for other "
                             .. "timers last) expected, got a %s", lib, many,
                             type(o)), 3)
        end
    end
    return function(key, at, ctx, kind)
        if type(key) == "string" then
            local z = str_find(key, "\0", 1, true)
            local o = z and by[str_sub(key, 1, z - 1)]
            if o then
                return o:fire(str_sub(key, z + 1), at, ctx)
            end
        end
        if fallback then
            return fallback(key, at, ctx, kind)
        end
        error(str_format("tide.%s: a timer of key %q belongs to no %s given "
                         .. "to %s.timers()", lib, tostring(key), one, lib))
    end
end

_M.be64, _M.read_be64 = be64, read_be64
return _M
