--- Thin wrapper over tide_log_* and tide_reader_*: the embedded,
--- partitioned log (one stream under a data dir).
---
--- Caller bugs (wrong argument types, a closed handle) raise errors;
--- runtime failures return nil, a message and the TIDE_E* code.
local ffi  = require("ffi")
local base = require("tide.base")

local lib = base.lib                          -- cache the namespace, not functions
local ffi_gc, ffi_string, ffi_new, ffi_fill, ffi_sizeof =
    ffi.gc, ffi.string, ffi.new, ffi.fill, ffi.sizeof
local type, error, setmetatable, tonumber, pairs, tostring =
    type, error, setmetatable, tonumber, pairs, tostring
local str_format = string.format
local OK, EAGAIN, ERANGE = base.OK, base.EAGAIN, base.ERANGE
local get_errbuf, errbuf_msg = base.get_errbuf, base.errbuf_msg

local _M = {}

local Log = {}
local log_mt = { __index = Log }
local Reader = {}
local reader_mt = { __index = Reader }

-- Reused out-params and argument structs, never allocated per call.
local plog    = ffi_new("tide_log_t *[1]")
local preader = ffi_new("tide_reader_t *[1]")
local params  = ffi_new("tide_log_params_t")
local rec     = ffi_new("tide_rec_t")         -- push() argument, poll() result
local pstart  = ffi_new("int64_t[1]")
local pend    = ffi_new("int64_t[1]")
local rec_array_t = ffi.typeof("tide_rec_t[?]")

local MODES = {
    open   = lib.TIDE_LOG_OPEN,
    create = lib.TIDE_LOG_CREATE,
    excl   = lib.TIDE_LOG_EXCL,
}
local MODE_NAMES = {}
for k, v in pairs(MODES) do
    MODE_NAMES[v] = k
end
local FSYNC = { batch = lib.TIDE_FSYNC_BATCH, none = lib.TIDE_FSYNC_NONE }
local FSYNC_NAMES = { [lib.TIDE_FSYNC_BATCH] = "batch",
                      [lib.TIDE_FSYNC_NONE] = "none" }
local INT_PARAMS = {
    partitions = true, segment_bytes = true, retention_ms = true,
    retention_bytes = true, delete_retention_ms = true, flush_bytes = true,
}
local OFFSET_BEGINNING, OFFSET_END = lib.TIDE_OFFSET_BEGINNING,
                                     lib.TIDE_OFFSET_END

local DEFAULT_BATCH = 256

local is_int = base.is_int

local function is_part(v)
    return type(v) == "number" and v % 1 == 0 and v >= 0 and v < 2147483648
end

-- Returns nil, the handle's error detail (or strerror when it has none)
-- and the code.
local function log_fail(h, rc)
    return base.fail(lib.tide_log_errmsg(h), rc)
end

local function reader_fail(h, rc)
    return base.fail(lib.tide_reader_errmsg(h), rc)
end

local function check_open(self, level)
    if not self.cdata then
        error("stream '" .. self.name .. "' is closed", level + 1)
    end
end

-- tide_log_get_range and tide_log_clean do not describe ERANGE on the
-- handle, so the message is made here.
local function range_fail(self, partition)
    return nil, str_format("partition %d out of range: stream '%s' has %d",
                           partition, self.name, lib.tide_log_count(self.cdata)),
           ERANGE
end

--- Opens stream `name` under data dir `dir`.
---
--- `opts` fields (all optional): mode ("open" (default): the stream must
--- exist, "create": create it when missing, "excl": create it, failing
--- with EEXIST when it exists), partitions, compact (boolean), fsync
--- ("batch" | "none"), segment_bytes, retention_ms, retention_bytes,
--- delete_retention_ms, flush_bytes. A 0 (or absent) value picks the
--- default; partitions, compact and segment_bytes are fixed at creation.
---@param dir string
---@param name string
---@param opts table|nil
---@return table|nil log, string|nil err, integer|nil code
function _M.open(dir, name, opts)
    if type(dir) ~= "string" then
        error("bad data dir: string expected, got " .. type(dir), 2)
    end
    if type(name) ~= "string" then
        error("bad stream name: string expected, got " .. type(name), 2)
    end
    if opts ~= nil and type(opts) ~= "table" then
        error("bad options: table expected, got " .. type(opts), 2)
    end
    ffi_fill(params, ffi_sizeof(params))
    if opts then
        for k, v in pairs(opts) do
            if k == "mode" then
                local m = MODES[v]
                if not m then
                    error("bad mode '" .. tostring(v)
                          .. "': open, create or excl expected", 2)
                end
                params.mode = m
            elseif k == "compact" then
                if type(v) ~= "boolean" then
                    error("bad compact: boolean expected", 2)
                end
                params.compact = v and 1 or 0
            elseif k == "fsync" then
                local f = FSYNC[v]
                if not f then
                    error("bad fsync '" .. tostring(v)
                          .. "': batch or none expected", 2)
                end
                params.fsync = f
            elseif INT_PARAMS[k] then
                if not is_int(v) then
                    error("bad " .. k .. ": integer expected", 2)
                end
                params[k] = v
            else
                error("unknown option '" .. tostring(k) .. "'", 2)
            end
        end
    end
    local err, errlen = get_errbuf()
    local rc = lib.tide_log_new(plog, dir, name, params, err, errlen)
    if rc ~= OK then
        return nil, errbuf_msg(rc), rc
    end
    return setmetatable({
        cdata = ffi_gc(plog[0], lib.tide_log_free),
        name = name,
    }, log_mt)
end

--- Buffers one record for appending and returns the partition it goes
--- to. A nil key is placed round-robin, a key by Kafka's murmur2
--- partitioner, unless `partition` is given. A nil value is a tombstone.
--- `ts` is milliseconds since the epoch (nil: now). `hdrs` is an encoded
--- header block, stored as is. Records become readable at the next
--- flush() (automatic once flush_bytes are buffered).
---@param key string|nil
---@param value string|nil
---@param partition integer|nil
---@param ts integer|nil
---@param hdrs string|nil
---@return integer|nil partition, string|nil err, integer|nil code
function Log:push(key, value, partition, ts, hdrs)
    check_open(self, 2)
    if key == nil then
        rec.key = nil
        rec.klen = -1
    elseif type(key) == "string" then
        rec.key = key
        rec.klen = #key
    else
        error("bad key: string or nil expected, got " .. type(key), 2)
    end
    if value == nil then
        rec.val = nil
        rec.vlen = -1
    elseif type(value) == "string" then
        rec.val = value
        rec.vlen = #value
    else
        error("bad value: string or nil expected, got " .. type(value), 2)
    end
    if hdrs == nil then
        rec.hdrs = nil
        rec.hlen = 0
    elseif type(hdrs) == "string" then
        rec.hdrs = hdrs
        rec.hlen = #hdrs
    else
        error("bad headers: string or nil expected, got " .. type(hdrs), 2)
    end
    if partition == nil then
        rec.partition = -1
    elseif is_part(partition) then
        rec.partition = partition
    else
        error("bad partition: non-negative integer or nil expected", 2)
    end
    if ts == nil then
        rec.ts = 0
    elseif is_int(ts) then
        rec.ts = ts
    else
        error("bad timestamp: integer milliseconds or nil expected", 2)
    end
    local rc = lib.tide_log_push(self.cdata, rec)
    -- The strings were borrowed for the call only; drop the pointers.
    rec.key, rec.val, rec.hdrs = nil, nil, nil
    if rc ~= OK then
        return log_fail(self.cdata, rc)
    end
    return rec.partition
end

--- Appends every buffered record; when it returns true they are durable
--- (with fsync = "batch").
---@return true|nil ok, string|nil err, integer|nil code
function Log:flush()
    check_open(self, 2)
    local rc = lib.tide_log_flush(self.cdata)
    if rc ~= OK then
        return log_fail(self.cdata, rc)
    end
    return true
end

--- Writes every buffered record to its partition's file without waiting
--- for the disk: readers in any process see them at once; they become
--- durable at the next flush(). A kill -9 of this process loses none of
--- them; a machine crash before the next flush() may.
---@return true|nil ok, string|nil err, integer|nil code
function Log:publish()
    check_open(self, 2)
    local rc = lib.tide_log_publish(self.cdata)
    if rc ~= OK then
        return log_fail(self.cdata, rc)
    end
    return true
end

--- Returns the number of partitions.
---@return integer
function Log:count()
    check_open(self, 2)
    return lib.tide_log_count(self.cdata)
end

--- Returns the stream's settings as a table (the fields of open's opts).
---@return table
function Log:params()
    check_open(self, 2)
    local p = params
    lib.tide_log_get_params(self.cdata, p)
    return {
        mode = MODE_NAMES[p.mode],
        partitions = p.partitions,
        compact = p.compact ~= 0,
        fsync = FSYNC_NAMES[p.fsync],
        segment_bytes = tonumber(p.segment_bytes),
        retention_ms = tonumber(p.retention_ms),
        retention_bytes = tonumber(p.retention_bytes),
        delete_retention_ms = tonumber(p.delete_retention_ms),
        flush_bytes = tonumber(p.flush_bytes),
    }
end

--- Returns the first offset still stored in `partition` and the offset
--- the next record will get (end - start records at most).
---@param partition integer
---@return integer|nil start, integer|string end_or_err, integer|nil code
function Log:range(partition)
    check_open(self, 2)
    if not is_part(partition) then
        error("bad partition: non-negative integer expected", 2)
    end
    local rc = lib.tide_log_get_range(self.cdata, partition, pstart, pend)
    if rc == ERANGE then
        return range_fail(self, partition)
    end
    if rc ~= OK then
        return log_fail(self.cdata, rc)
    end
    return tonumber(pstart[0]), tonumber(pend[0])
end

--- Runs retention and, on compacted streams, compaction on the closed
--- segments of `partition` (nil: all) and returns the bytes freed.
---@param partition integer|nil
---@return integer|nil freed, string|nil err, integer|nil code
function Log:clean(partition)
    check_open(self, 2)
    if partition == nil then
        partition = -1
    elseif not is_part(partition) then
        error("bad partition: non-negative integer or nil expected", 2)
    end
    local r = lib.tide_log_clean(self.cdata, partition)
    if r < 0 then
        local rc = tonumber(r)
        if rc == ERANGE then
            return range_fail(self, partition)
        end
        return log_fail(self.cdata, rc)
    end
    return tonumber(r)
end

--- Sets the stable offset of `partition`: records at or past it are not
--- committed yet, so compaction neither drops them nor lets them
--- supersede older records. Returns true, or nil, err, code.
---@param partition integer
---@param offset integer
---@return boolean|nil ok, string|nil err, integer|nil code
function Log:set_stable(partition, offset)
    check_open(self, 2)
    if not is_part(partition) then
        error("bad partition: non-negative integer expected", 2)
    end
    if not is_int(offset) then
        error("bad offset: integer expected", 2)
    end
    local rc = lib.tide_log_set_stable(self.cdata, partition, offset)
    if rc ~= OK then
        return log_fail(self.cdata, rc)
    end
    return true
end

--- Flushes and frees the handle; readers opened on it keep working. Safe
--- to call twice.
function Log:close()
    if self.cdata then
        lib.tide_log_free(ffi_gc(self.cdata, nil))
        self.cdata = nil
    end
end

--- Opens a reader on `partition` at `offset` (an integer >= 0,
--- "beginning" or "end"). An offset below the first one stored starts at
--- the first; one past the end waits for it. `batch` is the size of the
--- record array poll_batch() fills (default 256).
---@param partition integer
---@param offset integer|string
---@param batch integer|nil
---@return table|nil reader, string|nil err, integer|nil code
function Log:reader(partition, offset, batch)
    check_open(self, 2)
    if not is_part(partition) then
        error("bad partition: non-negative integer expected", 2)
    end
    local off
    if offset == "beginning" then
        off = OFFSET_BEGINNING
    elseif offset == "end" then
        off = OFFSET_END
    elseif is_int(offset) and offset >= 0 then
        off = offset
    else
        error("bad offset: integer >= 0, \"beginning\" or \"end\" expected", 2)
    end
    if batch == nil then
        batch = DEFAULT_BATCH
    elseif not is_int(batch) or batch < 1 then
        error("bad batch size: positive integer expected", 2)
    end
    local rc = lib.tide_reader_new(preader, self.cdata, partition, off)
    if rc ~= OK then
        return log_fail(self.cdata, rc)
    end
    return setmetatable({
        cdata = ffi_gc(preader[0], lib.tide_reader_free),
        log = self,        -- keeps the log table (and its handle) alive
        partition = partition,
        recs = nil,        -- tide_rec_t[batch], made on first poll_batch
        batch = batch,
    }, reader_mt)
end

local function check_reader(self, level)
    if not self.cdata then
        error("reader is closed", level + 1)
    end
end

--- Returns a copy of a record's key (nil for a nil key).
---@param r ffi.cdata* tide_rec_t
---@return string|nil
function _M.key(r)
    if r.key == nil then
        return nil
    end
    return ffi_string(r.key, r.klen)
end

--- Returns a copy of a record's value (nil for a tombstone).
---@param r ffi.cdata* tide_rec_t
---@return string|nil
function _M.value(r)
    if r.val == nil then
        return nil
    end
    return ffi_string(r.val, r.vlen)
end

--- Returns a copy of a record's encoded header block (nil when none).
---@param r ffi.cdata* tide_rec_t
---@return string|nil
function _M.headers(r)
    if r.hlen == 0 then
        return nil
    end
    return ffi_string(r.hdrs, r.hlen)
end

local rec_key, rec_value, rec_headers = _M.key, _M.value, _M.headers

--- Returns the next record as a table {key, value, offset, timestamp,
--- partition, headers}, or nil when there is nothing more yet (records
--- appended later show up on a later call).
---@return table|nil rec, string|nil err, integer|nil code
function Reader:poll()
    check_reader(self, 2)
    local rc = lib.tide_reader_poll(self.cdata, rec)
    if rc ~= OK then
        if rc == EAGAIN then
            return nil
        end
        return reader_fail(self.cdata, rc)
    end
    return {
        key = rec_key(rec),
        value = rec_value(rec),
        offset = tonumber(rec.offset),
        timestamp = tonumber(rec.ts),
        partition = rec.partition,
        headers = rec_headers(rec),
    }
end

--- Reads up to `n` records (default and maximum: the reader's batch size)
--- into the reader's own tide_rec_t array and returns the count (0:
--- nothing yet) and the array, indexed from 0. The array is reused: its
--- pointers stay valid only until the next call on this reader, so copy
--- what you keep (tide.log.key/value/headers, tonumber(offset)).
---@param n integer|nil
---@return integer|nil count, ffi.cdata*|string recs_or_err, integer|nil code
function Reader:poll_batch(n)
    check_reader(self, 2)
    local recs = self.recs
    if recs == nil then
        recs = rec_array_t(self.batch)
        self.recs = recs
    end
    if n == nil then
        n = self.batch
    elseif not is_int(n) or n < 1 or n > self.batch then
        error("bad count: 1.." .. self.batch .. " expected", 2)
    end
    local got = lib.tide_reader_poll_batch(self.cdata, recs, n)
    if got < 0 then
        return reader_fail(self.cdata, got)
    end
    return got, recs
end

--- Returns the offset the next record read will have at least.
---@return integer
function Reader:offset()
    check_reader(self, 2)
    return tonumber(lib.tide_reader_get_offset(self.cdata))
end

--- Frees the reader. Safe to call twice.
function Reader:close()
    if self.cdata then
        lib.tide_reader_free(ffi_gc(self.cdata, nil))
        self.cdata = nil
        self.recs = nil
        self.log = nil
    end
end

return _M
