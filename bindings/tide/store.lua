--- Thin wrapper over tide_store_*, tide_iter_* and tide_path_remove: a
--- task's key-value store (RocksDB behind a write cache in C, changelogged
--- to a log partition).
---
--- Caller bugs (wrong argument types, a closed handle) raise errors;
--- runtime failures return nil, a message and the TIDE_E* code.
local ffi  = require("ffi")
local base = require("tide.base")

local lib = base.lib                          -- cache the namespace, not functions
local ffi_gc, ffi_string, ffi_new, ffi_fill, ffi_sizeof =
    ffi.gc, ffi.string, ffi.new, ffi.fill, ffi.sizeof
local type, error, setmetatable, tonumber, pairs, tostring, select =
    type, error, setmetatable, tonumber, pairs, tostring, select
local OK, ENOENT, ENOBUFS = base.OK, base.ENOENT, base.ENOBUFS
local get_string_buf, get_size_ptr = base.get_string_buf, base.get_size_ptr
local get_errbuf, errbuf_msg = base.get_errbuf, base.errbuf_msg

local _M = {}

local Store = {}
local store_mt = { __index = Store }

-- Reused out-params and argument structs, never allocated per call.
local pstore   = ffi_new("tide_store_t *[1]")
local piter    = ffi_new("tide_iter_t *[1]")
local params   = ffi_new("tide_store_params_t")
local precs    = ffi_new("int64_t[1]")
local pbytes   = ffi_new("int64_t[1]")
local pkey     = ffi_new("const char *[1]")
local pval     = ffi_new("const char *[1]")
local pklen    = ffi_new("size_t[1]")
local pvlen    = ffi_new("size_t[1]")
local pcount   = ffi_new("int64_t[1]")

local ENGINES = {
    rocksdb = lib.TIDE_STORE_ROCKSDB,
    memory  = lib.TIDE_STORE_MEMORY,
}

-- What count() reads (tide_store_count).
local COUNTS = {
    keys      = lib.TIDE_STORE_COUNT_KEYS,
    bytes     = lib.TIDE_STORE_COUNT_BYTES,
    hits      = lib.TIDE_STORE_COUNT_HITS,
    misses    = lib.TIDE_STORE_COUNT_MISSES,
    log_bytes = lib.TIDE_STORE_COUNT_LOG_BYTES,
}

-- Offsets and counts beyond any real log: "no limit".
local NO_LIMIT = 2 ^ 53

local is_int = base.is_int

-- Returns nil, the store's error detail (or strerror when it has none)
-- and the code.
local function store_fail(h, rc)
    return base.fail(lib.tide_store_errmsg(h), rc)
end

local function check_open(self, level)
    if not self.cdata then
        error("store is closed", level + 1)
    end
end

--- Opens (creating as needed) the store in folder `dir`.
---
--- `opts` fields (all optional): engine ("rocksdb" (default) | "memory":
--- nothing on disk, `dir` may then be nil), partition (the changelog
--- partition, default 0), cache_entries (write cache size in keys;
--- default 100000), changelog (a tide.log object: every flushed write is
--- pushed to it; the store keeps it alive), from (a folder made by
--- snapshot(): `dir` is replaced by a copy of it first).
---@param dir string|nil
---@param opts table|nil
---@return table|nil store, string|nil err, integer|nil code
function _M.open(dir, opts)
    if dir ~= nil and type(dir) ~= "string" then
        error("bad store folder: string expected, got " .. type(dir), 2)
    end
    if opts ~= nil and type(opts) ~= "table" then
        error("bad options: table expected, got " .. type(opts), 2)
    end
    ffi_fill(params, ffi_sizeof(params))
    local log, from, kafka
    if opts then
        for k, v in pairs(opts) do
            if k == "engine" then
                local e = ENGINES[v]
                if not e then
                    error("bad engine '" .. tostring(v)
                          .. "': rocksdb or memory expected", 2)
                end
                params.engine = e
            elseif k == "partition" or k == "cache_entries" then
                if not is_int(v) or v < 0 then
                    error("bad " .. k .. ": non-negative integer expected", 2)
                end
                params[k] = v
            elseif k == "changelog" then
                if type(v) ~= "table" or v.cdata == nil then
                    error("bad changelog: an open tide.log object expected",
                          2)
                end
                log = v
            elseif k == "kafka_changelog" then
                if type(v) ~= "table" or type(v.topic) ~= "string"
                    or type(v.client) ~= "table" or v.client.cdata == nil then
                    error("bad kafka_changelog: { client = an open tide.kafka"
                          .. " client, topic = name } expected", 2)
                end
                kafka = v
            elseif k == "from" then
                if type(v) ~= "string" then
                    error("bad from: snapshot folder (string) expected", 2)
                end
                from = v
            else
                error("unknown option '" .. tostring(k) .. "'", 2)
            end
        end
    end
    if dir == nil and params.engine ~= lib.TIDE_STORE_MEMORY then
        error("bad store folder: string expected, got nil", 2)
    end
    params.changelog = log and log.cdata or nil
    params.kafka_changelog = kafka and kafka.client.cdata or nil
    params.kafka_topic = kafka and kafka.topic or nil
    params.from = from                    -- 'from' stays referenced here
    local err, errlen = get_errbuf()
    local rc = lib.tide_store_new(pstore, dir, params, err, errlen)
    params.from = nil
    params.changelog = nil
    params.kafka_changelog = nil
    params.kafka_topic = nil
    if rc ~= OK then
        return nil, errbuf_msg(rc), rc
    end
    return setmetatable({
        cdata = ffi_gc(pstore[0], lib.tide_store_free),
        log = log,          -- the Lua object too, so it outlives the store
        kafka = kafka,      -- likewise the Kafka client
        dir = dir,
    }, store_mt)
end

--- Returns the value of `key`, or nil when it is absent or deleted. Sees
--- writes not yet flushed.
---@param key string
---@return string|nil value, string|nil err, integer|nil code
function Store:get(key)
    check_open(self, 2)
    if type(key) ~= "string" then
        error("bad key: string expected, got " .. type(key), 2)
    end
    local buf, cap = get_string_buf()     -- shared scratch; copied out below
    local len = get_size_ptr()
    len[0] = cap
    local rc = lib.tide_store_get(self.cdata, key, #key, buf, len)
    if rc == ENOBUFS then                 -- grow once, to the size C asked for
        buf = get_string_buf(tonumber(len[0]))
        rc = lib.tide_store_get(self.cdata, key, #key, buf, len)
    end
    if rc == OK then
        return ffi_string(buf, len[0])
    end
    if rc == ENOENT then
        return nil                        -- "not there" is not an error
    end
    return store_fail(self.cdata, rc)
end

--- Sets `key` to `value` (nil deletes it), in the write cache. A full
--- cache is flushed first.
---@param key string
---@param value string|nil
---@return true|nil ok, string|nil err, integer|nil code
function Store:set(key, value)
    check_open(self, 2)
    if type(key) ~= "string" then
        error("bad key: string expected, got " .. type(key), 2)
    end
    local rc
    if value == nil then
        rc = lib.tide_store_set(self.cdata, key, #key, nil, 0)
    elseif type(value) == "string" then
        rc = lib.tide_store_set(self.cdata, key, #key, value, #value)
    else
        error("bad value: string or nil expected, got " .. type(value), 2)
    end
    if rc ~= OK then
        return store_fail(self.cdata, rc)
    end
    return true
end

--- Writes the cached writes into RocksDB (one WriteBatch) and pushes one
--- changelog record per key written since the last flush. The changelog
--- records are buffered in the log: flush the log to make them durable.
---@return true|nil ok, string|nil err, integer|nil code
function Store:flush()
    check_open(self, 2)
    local rc = lib.tide_store_flush(self.cdata)
    if rc ~= OK then
        return store_fail(self.cdata, rc)
    end
    return true
end

--- Flushes, then puts a checkpoint of the store (hard links) at folder
--- `dir`, replacing what was there. The content is durable afterwards.
---@param dir string
---@return true|nil ok, string|nil err, integer|nil code
function Store:snapshot(dir)
    check_open(self, 2)
    if type(dir) ~= "string" then
        error("bad snapshot folder: string expected, got " .. type(dir), 2)
    end
    local err, errlen = get_errbuf()
    local rc = lib.tide_store_snapshot(self.cdata, dir, err, errlen)
    if rc ~= OK then
        return nil, errbuf_msg(rc), rc
    end
    return true
end

--- Applies changelog records read from `reader` (a tide.log reader) with
--- offsets below `upto` (C's 'until'; nil: no limit), at most `max` of
--- them (nil: no limit), straight into RocksDB. The cache must hold no
--- unflushed writes. Returns the records applied, their bytes in the log
--- and whether there is nothing more to apply now (`upto` or the end of
--- the log reached).
---@param reader table
---@param upto integer|nil
---@param max integer|nil
---@return integer|nil records, integer|string bytes_or_err,
---        boolean|integer done_or_code
function Store:restore(reader, upto, max)
    check_open(self, 2)
    if type(reader) ~= "table" or reader.cdata == nil then
        error("bad reader: an open tide.log or tide.kafka reader expected", 2)
    end
    if upto == nil then
        upto = NO_LIMIT
    elseif not is_int(upto) or upto < 0 then
        error("bad upto: offset >= 0 or nil expected", 2)
    end
    if max == nil then
        max = NO_LIMIT
    elseif not is_int(max) or max < 1 then
        error("bad max: positive integer or nil expected", 2)
    end
    local rc
    if reader.kafka_reader then
        rc = lib.tide_store_restore_kafka(self.cdata, reader.cdata, upto, max,
                                          precs, pbytes)
    else
        rc = lib.tide_store_restore(self.cdata, reader.cdata, upto, max,
                                    precs, pbytes)
    end
    if rc ~= OK and rc ~= ENOENT then
        return store_fail(self.cdata, rc)
    end
    return tonumber(precs[0]), tonumber(pbytes[0]), rc == ENOENT
end

--- Returns a count of the store: "keys" (RocksDB's estimate of its keys;
--- a key written again since the last compaction may count twice),
--- "bytes" (its SST files and memtables), "hits" and "misses" (get()
--- calls the cache answered, and those that read RocksDB, since open),
--- "log_bytes" (key and value bytes pushed to the changelog since open).
--- Cached writes count in "keys" and "bytes" once flushed. Returns nil,
--- a message and the code when it cannot tell now (EAGAIN: a restore's
--- records are not all in RocksDB yet).
---@param what string
---@return integer|nil n, string|nil err, integer|nil code
function Store:count(what)
    check_open(self, 2)
    local w = COUNTS[what]
    if not w then
        error("bad count '" .. tostring(what) .. "': keys, bytes, hits, "
              .. "misses or log_bytes expected", 2)
    end
    local rc = lib.tide_store_count(self.cdata, w, pcount)
    if rc ~= OK then
        return nil, base.strerror(rc), rc
    end
    return tonumber(pcount[0])
end

-- Checks the bounds of a range call (raising at the caller's caller)
-- and makes its C iterator in piter[0]: true, or nil, err, code.
local function iter_open(self, from, to)
    check_open(self, 3)
    if from ~= nil and type(from) ~= "string" then
        error("bad from: string or nil expected, got " .. type(from), 3)
    end
    if to ~= nil and type(to) ~= "string" then
        error("bad to: string or nil expected, got " .. type(to), 3)
    end
    local rc = lib.tide_iter_new(piter, self.cdata, from, from and #from or 0,
                                 to, to and #to or 0)
    if rc ~= OK then
        return store_fail(self.cdata, rc)
    end
    return true
end

--- Returns the first key in [from, to) in byte order and its value
--- (copies), or nil when there is none; nil, err, code on a failure. The
--- iterator behind it is released before it returns.
---@param from string|nil
---@param to string|nil
---@return string|nil key, string|nil value_or_err, integer|nil code
function Store:first(from, to)
    local ok, ierr, icode = iter_open(self, from, to)
    if not ok then
        return nil, ierr, icode
    end
    local it = piter[0]
    local r = lib.tide_iter_poll(it, pkey, pklen, pval, pvlen)
    local k, v, err, code
    if r == OK then
        k, v = ffi_string(pkey[0], pklen[0]), ffi_string(pval[0], pvlen[0])
    elseif r ~= ENOENT then
        err, code = select(2, store_fail(self.cdata, r))
    end
    lib.tide_iter_free(it)
    if err then
        return nil, err, code
    end
    return k, v
end

--- Returns an iterator over the keys in [from, to) in byte order (from
--- nil: the first key; to nil: no end), for use in a generic for; each
--- step returns key, value (copies). The view is fixed when iter() is
--- called and includes unflushed writes. Returns nil, err, code when the
--- iterator cannot be made; a failure while iterating raises.
---@param from string|nil
---@param to string|nil
---@return function|nil iter, string|nil err, integer|nil code
function Store:iter(from, to)
    local ok, ierr, icode = iter_open(self, from, to)
    if not ok then
        return nil, ierr, icode
    end
    local it = ffi_gc(piter[0], lib.tide_iter_free)
    -- The C store lives while 'it' does (a reference), even after close();
    -- holding its cdata keeps the Lua side alive as well.
    local sh = self.cdata
    return function()
        if it == nil then
            return nil
        end
        local r = lib.tide_iter_poll(it, pkey, pklen, pval, pvlen)
        if r == OK then
            return ffi_string(pkey[0], pklen[0]), ffi_string(pval[0], pvlen[0])
        end
        local msg
        if r ~= ENOENT then
            msg = select(2, store_fail(sh, r))    -- before the store may go
        end
        lib.tide_iter_free(ffi_gc(it, nil))   -- done: release it now
        it = nil
        if msg then
            error("store iterator: " .. msg, 2)
        end
        return nil
    end
end

--- Drops unflushed writes and frees the store (iterators still open keep
--- it alive until they end or are collected). Safe to call twice.
function Store:close()
    if self.cdata then
        lib.tide_store_free(ffi_gc(self.cdata, nil))
        self.cdata = nil
        self.log = nil
    end
end

--- Removes `path` (a file or a whole folder); a missing path is fine.
---@param path string
---@return true|nil ok, string|nil err, integer|nil code
function _M.remove(path)
    if type(path) ~= "string" then
        error("bad path: string expected, got " .. type(path), 2)
    end
    local err, errlen = get_errbuf()
    local rc = lib.tide_path_remove(path, err, errlen)
    if rc ~= OK then
        return nil, errbuf_msg(rc), rc
    end
    return true
end

return _M
