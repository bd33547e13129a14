--- The `local` system: streams in the embedded log under env.data_dir,
--- through the tide.log binding. Interface in docs/runtime.md ("System
--- interface").
---
--- Every stream is opened with fsync = "batch", overriding a stored
--- "none", so that flush() returning true means durable.
local ffi  = require("ffi")
local tlog = require("tide.log")

local msg_of = require("tide.system").msg_of
local type, error, setmetatable, tonumber = type, error, setmetatable,
                                            tonumber

local _M = {}

local Stream = {}
local stream_mt = { __index = Stream }
local Reader = {}
local reader_mt = { __index = Reader }

-- Records copied out of C per poll_batch call: the size of each binding
-- reader's tide_rec_t array.
local BATCH = 512

--- Opens stream `name` in env.data_dir. With opts.create, a missing
--- stream is made with opts.partitions partitions (default 1); an
--- existing one keeps its own count. Returns the stream, or nil and a
--- one-line error.
---@param env table { data_dir = string }
---@param name string
---@param opts table|nil { create = boolean, partitions = integer,
---  compact = boolean, segment_bytes = integer (fixed at creation) }
---@return table|nil stream, string|nil err
function _M.open(env, name, opts)
    if type(env) ~= "table" or type(env.data_dir) ~= "string" then
        error("bad env: table with a data_dir string expected", 2)
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
        if partitions ~= nil and (type(partitions) ~= "number"
                                  or partitions % 1 ~= 0) then
            error("bad partitions: integer expected", 2)
        end
    end
    local log, err = tlog.open(env.data_dir, name, {
        mode = create and "create" or "open",
        partitions = partitions,
        compact = opts ~= nil and opts.compact or nil,
        segment_bytes = opts ~= nil and opts.segment_bytes or nil,
        fsync = "batch",
    })
    if not log then
        return nil, err
    end
    return setmetatable({
        log = log,
        system = "local",
        name = name,
    }, stream_mt)
end

local function closed(self)
    error("stream '" .. self.name .. "' is closed", 3)
end

--- Returns the number of partitions.
---@return integer
function Stream:count()
    local log = self.log or closed(self)
    return log:count()
end

--- Returns the first offset stored in partition `p` and the offset the
--- next record will get, or nil and an error for a partition out of
--- range.
---@param p integer
---@return integer|nil start, integer|string end_or_err
function Stream:range(p)
    local log = self.log or closed(self)
    return log:range(p)
end

--- Buffers a record and returns its partition (see docs/runtime.md), or
--- nil and an error (partition out of range, record too big). Raises on
--- arguments of the wrong type. Readable after flush().
---@param key string|nil
---@param value string|nil
---@param partition integer|nil
---@param ts integer|nil
---@param hdrs string|nil
---@return integer|nil partition, string|nil err
function Stream:push(key, value, partition, ts, hdrs)
    local log = self.log or closed(self)
    return log:push(key, value, partition, ts, hdrs)
end

--- Writes every pushed record; returns true once they are durable, else
--- nil and an error (the records stay buffered for a retry).
---@return true|nil ok, string|nil err
function Stream:flush()
    local log = self.log or closed(self)
    return log:flush()
end

--- Writes every pushed record without waiting for the disk: readers see
--- them at once; they are durable at the next flush. Returns true, or nil
--- and an error (the records stay buffered).
---@return true|nil ok, string|nil err
function Stream:publish()
    local log = self.log or closed(self)
    return log:publish()
end

--- Flushes and closes the stream. Readers opened on it keep working.
--- Safe to call twice.
function Stream:close()
    if self.log then
        self.log:close()
        self.log = nil
    end
end

--- Opens a reader on partition `p` from `offset` (integer >= 0,
--- "beginning" or "end"). An offset below the first stored starts at the
--- first; one past the end waits for it. Returns nil and an error for a
--- partition out of range.
---@param p integer
---@param offset integer|string
---@return table|nil reader, string|nil err
function Stream:reader(p, offset)
    local log = self.log or closed(self)
    local lr, err = log:reader(p, offset, BATCH)
    if not lr then
        return nil, err
    end
    return setmetatable({ lr = lr, partition = p, name = self.name },
                        reader_mt)
end

--- Reads up to `max` records into out[1..n] as fresh tables { key,
--- value, offset, timestamp, partition, stream, headers } (raw bytes; all
--- of a msg's fields, so none is added later) and returns
--- n (0: nothing now), or nil and an error. Records already read when an
--- error comes up are returned first; the error shows on the next call.
---@param max integer >= 1
---@param out table
---@return integer|nil n, string|nil err
function Reader:poll(max, out)
    local lr = self.lr
    if lr == nil then
        error("reader is closed", 2)
    end
    if type(max) ~= "number" or max < 1 then
        error("bad max: positive integer expected", 2)
    end
    local p, name = self.partition, self.name
    local total = 0
    while true do
        local want = max - total
        if want > BATCH then
            want = BATCH
        end
        local n, recs = lr:poll_batch(want)
        if not n then
            if total > 0 then
                return total
            end
            return nil, recs
        end
        for i = 0, n - 1 do
            total = total + 1
            out[total] = msg_of(recs[i], p, name)
        end
        -- A short batch means caught up: do not ask C again.
        if n < want or total >= max then
            return total
        end
    end
end

--- Returns the offset of the next record to read.
---@return integer
function Reader:offset()
    local lr = self.lr
    if lr == nil then
        error("reader is closed", 2)
    end
    return lr:offset()
end

--- Frees the reader. Safe to call twice.
function Reader:close()
    if self.lr then
        self.lr:close()
        self.lr = nil
    end
end

return _M
