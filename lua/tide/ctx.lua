--- ctx, the second argument of process(msg, ctx) and the only argument of
--- init, window and close: a task's view of the container (README "The job
--- API", docs/time.md). One per task.
local type, error, tostring, select = type, error, tostring, select
local pairs, ipairs, setmetatable = pairs, ipairs, setmetatable
local encode_headers = require("tide.headers").encode
local tables_mod = require("tide.tables")
local realtime = require("tide.loop").realtime
local str_format, concat = string.format, table.concat

local _M = {}
local Ctx = {}
Ctx.__index = Ctx

-- The fields of send's options table; a 4th argument with any of them is
-- read as options, else as a headers table (the older form).
local SEND_OPTIONS = { partition = true, timestamp = true, headers = true }

-- Levels of ctx.log, as the job's log writes them.
local LEVELS = { debug = true, info = true, warn = true, error = true }

local function send_error(fmt, ...)
    error("ctx:send: " .. str_format(fmt, ...), 3)
end

--- Sends `value` with `key` to output `stream`. The 4th argument is
--- either a headers table ({ name = string value }, e.g. msg.headers to
--- pass them on) or an options table { partition = p, timestamp = ms,
--- headers = h }: a table with any of the keys partition, timestamp or
--- headers is options (so a header of one of those names must go in
--- `headers`). partition: 0 .. the output's count - 1 (default: murmur2
--- of the key); timestamp: integer milliseconds since the epoch (default:
--- the timestamp of the message being processed; now from init, window
--- and close, as Kafka Streams does). The send is held until process()
--- returns, so a message that raises sends nothing.
function Ctx:send(stream, key, value, opts)
    local out = self._outs[stream]
    if not out then
        error(str_format("ctx:send: '%s' is not an output of job '%s' "
                         .. "(outputs: %s); declare it in 'outputs'",
                         tostring(stream), self.job, self._out_list), 2)
    end
    local ts, part, hdrs = self._ts, nil, opts
    if opts ~= nil then
        if type(opts) ~= "table" then
            send_error("the 4th argument must be a table (headers, or "
                       .. "options { partition, timestamp, headers }), not "
                       .. "a %s", type(opts))
        end
        local p, t, h = opts.partition, opts.timestamp, opts.headers
        if p ~= nil or t ~= nil or h ~= nil then
            for k in pairs(opts) do
                if not SEND_OPTIONS[k] then
                    send_error("unknown option '%s' (known: partition, "
                               .. "timestamp, headers; headers go in "
                               .. "{ headers = h })", tostring(k))
                end
            end
            if p ~= nil then
                local n = out.stream:count()
                if type(p) ~= "number" or p % 1 ~= 0 or p < 0 or p >= n then
                    send_error("partition %s is out of range for '%s' "
                               .. "(partitions 0 to %d)", tostring(p),
                               out.spec, n - 1)
                end
            end
            if t ~= nil then
                if type(t) ~= "number" or t % 1 ~= 0 or t <= 0
                    or t >= 2^53 then
                    send_error("timestamp must be a positive whole number "
                               .. "of milliseconds since the epoch, not %s%s",
                               type(t) == "number" and "" or "a ",
                               type(t) == "number" and tostring(t) or type(t))
                end
                ts = t
            end
            if h ~= nil and type(h) ~= "table" then
                send_error("option 'headers' must be a table, not a %s",
                           type(h))
            end
            part, hdrs = p, h
        end
    end
    local pend = self._pending
    local n = pend.n
    pend[n + 1] = out
    pend[n + 2] = key ~= nil and out.kenc(key) or nil
    pend[n + 3] = value ~= nil and out.venc(value) or nil
    pend[n + 4] = ts
    pend[n + 5] = hdrs ~= nil and encode_headers(hdrs) or nil
    pend[n + 6] = part
    pend.n = n + 6
end

--- Registers a timer: on_timer(key, at, ctx, kind) runs once it is due
--- (docs/time.md "Timers"). kind "event" (default): once the task's
--- watermark passes `at`; "processing": once the wall clock reaches `at`
--- (ms since the epoch). One timer per key, time and kind: registering
--- it again keeps one. Held with the message's other writes.
function Ctx:timer(key, at, kind)
    local tm = self._timers
    if not tm then
        error(str_format("ctx:timer: job '%s' has no on_timer; define "
                         .. "on_timer = function(key, time, ctx, kind) to "
                         .. "use timers", self.job), 2)
    end
    tm:set(key, at, kind)
end

--- Returns the wall-clock time in milliseconds since the epoch: the
--- clock processing timers go by.
function Ctx:now()
    return realtime()
end

--- Deletes the timer of `key` at `at` of `kind` (default "event"), if
--- there is one.
function Ctx:delete_timer(key, at, kind)
    local tm = self._timers
    if not tm then
        error(str_format("ctx:delete_timer: job '%s' has no on_timer",
                         self.job), 2)
    end
    tm:delete(key, at, kind)
end

--- Sends the message being processed to the job's dead letters as well,
--- with `reason` in its tide.error header (e.g. "late"), once process()
--- returns. Its sends and writes still count. The job needs a
--- dead-letter stream: on_error = "dead_letter" or dead_letters = true.
function Ctx:dead_letter(reason)
    if not self._worker.dlq then
        error(str_format("ctx:dead_letter: job '%s' has no dead-letter "
                         .. "stream; set dead_letters = true (or on_error "
                         .. "= \"dead_letter\")", self.job), 2)
    end
    self._dead = tostring(reason or "dead_letter")
end

--- Whether ctx:dead_letter can be used (the job has dead letters).
function Ctx:has_dead_letters()
    return self._worker.dlq ~= nil
end

--- Asks for a commit after the current batch.
function Ctx:commit()
    self._worker.commit_requested = true
end

-- Makes ctx.log of one task: log(level, ...) writes one line to the
-- job's log, "job NAME task P: " and the values as print() shows them.
local function logger(self, w, p)
    return function(level, ...)
        local first = 1
        if level == self then
            -- Called as ctx:log(level, ...): the same.
            level, first = ..., 2
        end
        if not LEVELS[level] then
            error(str_format("ctx.log: unknown level %s (use debug, info, "
                             .. "warn or error)", type(level) == "string"
                             and "'" .. level .. "'" or tostring(level)), 2)
        end
        local parts = {}
        for i = first, select("#", ...) do
            parts[#parts + 1] = tostring((select(i, ...)))
        end
        w.log(level, str_format("job %s task %d: %s", self.job, p,
                                concat(parts, " ")))
    end
end

--- Makes the ctx of task `p` of a worker. Fields: job, partition,
--- partitions (the job's input partition count, which is its number of
--- tasks), config, stores, tables (the job's table inputs, by stream
--- name and by store name: tide.tables), memo, version, watermark (the
--- task's, kept by tide.task; -math.huge until known), log.
---@param w table  the worker (job, topology, version)
---@param p integer
---@param stores table  the task's stores by name
---@return table
function _M.new(w, p, stores)
    -- The job's stores: tide's own (timers, "_"-named) are not the job's
    -- to touch. A name that is not there raises, naming those that are,
    -- so that a typo (ctx.stores.count for "counts") says so at once.
    local mine, names = {}, {}
    for n, st in pairs(stores) do
        if n:sub(1, 1) ~= "_" then
            mine[n] = st
            names[#names + 1] = n
        end
    end
    table.sort(names)
    setmetatable(mine, { __index = function(_, name)
        error(str_format("no store '%s' (stores: %s)", tostring(name),
                         #names > 0 and table.concat(names, ", ") or "none; "
                         .. "declare them in the job's stores table"), 2)
    end })
    local tables = {}
    for _, spec in ipairs(w.job.tables or {}) do
        local t = tables_mod.new(spec, stores[spec.store])
        tables[spec.name] = t
        tables[spec.store] = t
    end
    local self = setmetatable({
        job = w.job.name, partition = p, partitions = w.nparts,
        config = w.job.config, stores = mine, memo = {}, tables = tables,
        version = w.version, watermark = -math.huge,
        _outs = w.outs, _out_list = w.out_list,
        _pending = { n = 0 }, _worker = w,
        -- Set while process() runs, read by tide.task when it returns:
        -- _dead (ctx:dead_letter's reason), _late (tide.windows found
        -- the message late).
        _dead = nil, _late = nil,
    }, Ctx)
    self.log = logger(self, w, p)
    return self
end

return _M
