--- The `mem` system: in-process streams for specs and the REPL, with the
--- semantics of the `local` system (docs/runtime.md, "System interface").
---
--- Streams live in the registry table env.mem, by name:
---
---     env.mem[name] = { name = name, partitions = { [p + 1] = records } }
---
--- where `records[offset + 1]` is `{ key, value, offset, timestamp,
--- partition, headers }`. Readers and tide.testing may read it; only
--- flush() appends to it. Offsets are dense from 0 (nothing is ever
--- removed). As on `local`: keyed records go to Kafka's murmur2
--- partition, unkeyed ones round-robin per stream handle; pushed records
--- become visible at flush() (or close()); ts nil or 0 means now; an empty
--- header block is stored as nil.
local partition = require("tide.partition")

local type, error, setmetatable = type, error, setmetatable
local str_find, str_format = string.find, string.format
local part_get = partition.get

local _M = {}

local Stream = {}
local stream_mt = { __index = Stream }
local Reader = {}
local reader_mt = { __index = Reader }

local MAX_PARTITIONS = 4096             -- as the embedded log

--- Returns the time in milliseconds since the epoch used for records
--- pushed without one; a spec may replace it.
---@return integer
_M.clock = require("tide.loop").realtime

local function is_int(v)
    return type(v) == "number" and v % 1 == 0
end

local function is_part(v)
    return type(v) == "number" and v % 1 == 0 and v >= 0 and v < 2147483648
end

-- The embedded log's rule for stream names, so that a spec written
-- against mem streams holds on local ones.
local function name_ok(name)
    return #name > 0 and #name <= 200 and not str_find(name, "^%.")
           and not str_find(name, "[^%w%.%-_]")
end

--- Opens stream `name` in the registry env.mem. With opts.create, a
--- missing stream is made with opts.partitions partitions (default 1);
--- an existing one keeps its own count. Returns the stream, or nil and a
--- one-line error.
---@param env table { mem = table }
---@param name string
---@param opts table|nil { create = boolean, partitions = integer }
---@return table|nil stream, string|nil err
function _M.open(env, name, opts)
    if type(env) ~= "table" or type(env.mem) ~= "table" then
        error("bad env: table with a mem registry table expected", 2)
    end
    if type(name) ~= "string" then
        error("bad stream name: string expected, got " .. type(name), 2)
    end
    local create, partitions = false, nil
    if opts ~= nil then
        if type(opts) ~= "table" then
            error("bad options: table expected, got " .. type(opts), 2)
        end
        create = opts.create and true or false
        partitions = opts.partitions
        if partitions ~= nil and not is_int(partitions) then
            error("bad partitions: integer expected", 2)
        end
    end
    if not name_ok(name) then
        return nil, "bad stream name '" .. name .. "': use letters, digits, "
                    .. "'.', '_' and '-' (not first '.'), at most 200"
    end
    if partitions ~= nil and (partitions < 0
                              or partitions > MAX_PARTITIONS) then
        return nil, "bad stream settings: partitions must be 1.."
                    .. MAX_PARTITIONS
    end
    local state = env.mem[name]
    if state == nil then
        if not create then
            return nil, "no stream 'mem:" .. name .. "'; create it first "
                        .. "(open it with create = true)"
        end
        if partitions == nil or partitions == 0 then
            partitions = 1
        end
        local parts = {}
        for p = 1, partitions do
            parts[p] = {}
        end
        state = { name = name, partitions = parts }
        env.mem[name] = state
    end
    return setmetatable({
        state = state,
        parts = state.partitions,
        nparts = #state.partitions,
        pending = {},           -- records pushed since the last flush
        npending = 0,
        rr = 0,                 -- next round-robin pick, per handle
        system = "mem",
        name = name,
        open = true,
    }, stream_mt)
end

local function closed(self)
    error("stream '" .. self.name .. "' is closed", 3)
end

local function range_err(self, p)
    return nil, str_format("partition %d out of range: stream '%s' has %d",
                           p, self.name, self.nparts)
end

--- Returns the number of partitions.
---@return integer
function Stream:count()
    if not self.open then
        closed(self)
    end
    return self.nparts
end

--- Returns 0 and the offset the next record of partition `p` gets, or nil
--- and an error for a partition out of range.
---@param p integer
---@return integer|nil start, integer|string end_or_err
function Stream:range(p)
    if not self.open then
        closed(self)
    end
    if not is_part(p) then
        error("bad partition: non-negative integer expected", 2)
    end
    local recs = self.parts[p + 1]
    if recs == nil then
        return range_err(self, p)
    end
    return 0, #recs
end

--- Buffers a record and returns its partition, or nil and an error for a
--- partition out of range. Raises on arguments of the wrong type. Visible
--- to readers after flush().
---@param key string|nil
---@param value string|nil
---@param partition integer|nil
---@param ts integer|nil
---@param hdrs string|nil
---@return integer|nil partition, string|nil err
function Stream:push(key, value, p, ts, hdrs)
    if not self.open then
        closed(self)
    end
    if key ~= nil and type(key) ~= "string" then
        error("bad key: string or nil expected, got " .. type(key), 2)
    end
    if value ~= nil and type(value) ~= "string" then
        error("bad value: string or nil expected, got " .. type(value), 2)
    end
    if hdrs ~= nil then
        if type(hdrs) ~= "string" then
            error("bad headers: string or nil expected, got " .. type(hdrs), 2)
        end
        if hdrs == "" then
            hdrs = nil
        end
    end
    local n = self.nparts
    if p == nil then
        if key ~= nil then
            p = part_get(key, n)
        else
            p = self.rr % n
            self.rr = self.rr + 1
        end
    elseif not is_part(p) then
        error("bad partition: non-negative integer or nil expected", 2)
    elseif p >= n then
        return range_err(self, p)
    end
    if ts == nil or ts == 0 then
        ts = _M.clock()
    elseif not is_int(ts) then
        error("bad timestamp: integer milliseconds or nil expected", 2)
    end
    local k = self.npending + 1
    self.npending = k
    self.pending[k] = {
        key = key,
        value = value,
        offset = -1,            -- set by flush
        timestamp = ts,
        partition = p,
        headers = hdrs,
    }
    return p
end

--- Appends every pushed record to its partition, where readers see it,
--- and returns true.
---@return true
function Stream:flush()
    if not self.open then
        closed(self)
    end
    local pending, parts = self.pending, self.parts
    for i = 1, self.npending do
        local rec = pending[i]
        local recs = parts[rec.partition + 1]
        local off = #recs
        rec.offset = off
        recs[off + 1] = rec
        pending[i] = nil
    end
    self.npending = 0
    return true
end

--- Makes pushed records readable at once: in memory that is flush.
---@return true
function Stream:publish()
    return self:flush()
end

--- Flushes and closes the stream. Readers opened on it keep working.
--- Safe to call twice.
function Stream:close()
    if self.open then
        self:flush()
        self.open = false
    end
end

--- Opens a reader on partition `p` from `offset` (integer >= 0,
--- "beginning" or "end"). An offset past the end waits for it. Returns
--- nil and an error for a partition out of range.
---@param p integer
---@param offset integer|string
---@return table|nil reader, string|nil err
function Stream:reader(p, offset)
    if not self.open then
        closed(self)
    end
    if not is_part(p) then
        error("bad partition: non-negative integer expected", 2)
    end
    local recs = self.parts[p + 1]
    local pos
    if offset == "beginning" then
        pos = 0
    elseif offset == "end" then
        pos = recs and #recs
    elseif is_int(offset) and offset >= 0 then
        pos = offset
    else
        error("bad offset: integer >= 0, \"beginning\" or \"end\" expected", 2)
    end
    if recs == nil then
        return range_err(self, p)
    end
    return setmetatable({ recs = recs, pos = pos, partition = p,
                          name = self.name }, reader_mt)
end

--- Reads up to `max` records into out[1..n] as fresh tables { key,
--- value, offset, timestamp, partition, stream, headers } and returns n (0:
--- nothing now).
---@param max integer >= 1
---@param out table
---@return integer n
function Reader:poll(max, out)
    local recs = self.recs
    if recs == nil then
        error("reader is closed", 2)
    end
    if type(max) ~= "number" or max < 1 then
        error("bad max: positive integer expected", 2)
    end
    local pos, name = self.pos, self.name
    local n = #recs - pos
    if n <= 0 then
        return 0
    end
    if n > max then
        n = max
    end
    for i = 1, n do
        local r = recs[pos + i]
        out[i] = {
            key = r.key,
            value = r.value,
            offset = r.offset,
            timestamp = r.timestamp,
            partition = r.partition,
            stream = name,
            headers = r.headers,
        }
    end
    self.pos = pos + n
    return n
end

--- Returns the offset of the next record to read.
---@return integer
function Reader:offset()
    if self.recs == nil then
        error("reader is closed", 2)
    end
    return self.pos
end

--- Closes the reader. Safe to call twice.
function Reader:close()
    self.recs = nil
end

return _M
