--- Thin wrapper over tide_kafka_* and tide_kreader_*: one Kafka client
--- (producer, consumer of the job's group, admin) and readers of one
--- partition each. Caller bugs raise; runtime failures return nil, a
--- one-line message and the TIDE_E* code.
local ffi  = require("ffi")
local base = require("tide.base")

local lib = base.lib
local ffi_gc, ffi_new, ffi_string = ffi.gc, ffi.new, ffi.string
local type, error, setmetatable, pairs, tostring = type, error, setmetatable, pairs, tostring
local tonumber = tonumber
local OK, ENOENT = base.OK, base.ENOENT
local get_errbuf, errbuf_msg = base.get_errbuf, base.errbuf_msg

local _M = {}

--- Offsets a reader may start from besides a number (librdkafka's).
_M.NO_OFFSET = -1001

local Client = {}
local client_mt = { __index = Client }
local Reader = {}
local reader_mt = { __index = Reader }

local pclient = ffi_new("tide_kafka_t *[1]")
local preader = ffi_new("tide_kreader_t *[1]")
local i32a, i32b = ffi_new("int32_t[1]"), ffi_new("int32_t[1]")
local i64a, i64b = ffi_new("int64_t[1]"), ffi_new("int64_t[1]")
local rec = ffi_new("tide_rec_t[1]")
local rec_array_t = ffi.typeof("tide_rec_t[?]")
local META_MAX = 4096

-- The user's properties as a C array of pairs; the strings stay
-- referenced by the returned Lua table.
local function conf_array(conf)
    local list = {}
    for k, v in pairs(conf or {}) do
        list[#list + 1] = tostring(k)
        list[#list + 1] = tostring(v)
    end
    local arr = ffi_new("const char *[?]", #list + 1)
    for i = 1, #list do
        arr[i - 1] = list[i]
    end
    return arr, #list / 2, list
end

local function client_err(self, rc)
    return nil, ffi_string(lib.tide_kafka_errmsg(self.cdata)), rc
end

--- Makes a client of consumer group `group` with librdkafka properties
--- `conf` ({ ["bootstrap.servers"] = "host:port", ... }). Returns it, or
--- nil and an error (a bad or unknown property).
function _M.new(group, conf)
    if type(group) ~= "string" or group == "" then
        error("bad group: non-empty string expected", 2)
    end
    local arr, n, keep = conf_array(conf)
    local err, errlen = get_errbuf()
    local rc = lib.tide_kafka_new(pclient, group, arr, n, err, errlen)
    local _ = keep
    if rc ~= OK then
        return nil, errbuf_msg(rc), rc
    end
    return setmetatable({ cdata = ffi_gc(pclient[0], lib.tide_kafka_free),
                          readers = 0 }, client_mt)
end

local function check(self)
    if self.cdata == nil then
        error("kafka client is closed", 3)
    end
end

--- Returns the partition count and replication of `topic`, or nil, an
--- error and the code (ENOENT: no such topic).
function Client:topic_info(topic, timeout_ms)
    check(self)
    local rc = lib.tide_kafka_topic_info(self.cdata, topic, i32a, i32b,
                                         timeout_ms or 10000)
    if rc ~= OK then
        return client_err(self, rc)
    end
    return i32a[0], i32b[0]
end

--- Creates `topic`. Returns true, or nil, an error and the code (EEXIST
--- when it exists).
function Client:create_topic(topic, partitions, replication, compact,
                             timeout_ms)
    check(self)
    local rc = lib.tide_kafka_create_topic(self.cdata, topic, partitions,
                                           replication or -1,
                                           compact and 1 or 0,
                                           timeout_ms or 30000)
    if rc ~= OK then
        return client_err(self, rc)
    end
    return true
end

_M.ASSIGN, _M.REVOKE, _M.LOST = lib.TIDE_KAFKA_ASSIGN, lib.TIDE_KAFKA_REVOKE,
                                lib.TIDE_KAFKA_LOST
local pkind, pn = ffi_new("int32_t[1]"), ffi_new("int32_t[1]")
local GROUP_MAX = 4096
local pparts = ffi_new("int32_t[?]", GROUP_MAX)

--- Joins the group as a member subscribed to `topic`. Returns true, or
--- nil and an error.
function Client:subscribe(topic, conf)
    check(self)
    local arr, n, keep = conf_array(conf)
    local rc = lib.tide_kafka_subscribe(self.cdata, topic, arr, n)
    local _ = keep
    if rc ~= OK then
        return client_err(self, rc)
    end
    return true
end

--- Waits up to timeout_ms for a group event: returns its kind (ASSIGN,
--- REVOKE, LOST) and the list of partitions, to be acknowledged with
--- rebalance_done(); or false when none came; or nil and an error.
function Client:group_poll(timeout_ms)
    check(self)
    local rc = lib.tide_kafka_group_poll(self.cdata, timeout_ms or 0, pkind,
                                         pparts, GROUP_MAX, pn)
    if rc < 0 then
        return client_err(self, rc)
    end
    if rc == 0 then
        return false
    end
    local parts = {}
    for i = 0, pn[0] - 1 do
        parts[#parts + 1] = pparts[i]
    end
    return pkind[0], parts
end

--- Names the group member that holds partition p of topic
--- ("client.id=... host=..."), or nil and why.
function Client:group_owner(topic, p, timeout_ms)
    check(self)
    local buf = ffi_new("char[256]")
    local rc = lib.tide_kafka_group_owner(self.cdata, topic, p, buf, 256,
                                          timeout_ms or 10000)
    if rc ~= OK then
        if rc == ENOENT then
            return nil, "no process of the group holds it now"
        end
        return client_err(self, rc)
    end
    return ffi_string(buf)
end

--- The group's assignment of `topic`'s partitions 0 .. nparts - 1, as
--- its coordinator has it: owner[p] is the place (0-based, in the order
--- of the member ids) of the member holding p, or -1; `members` is their
--- number and `self` this client's place (-1: not a member). Returns
--- owner, members, self; or nil and an error.
function Client:group_assignment(topic, nparts, timeout_ms)
    check(self)
    local buf = ffi_new("int32_t[?]", nparts > 0 and nparts or 1)
    local nm, me = ffi_new("int32_t[1]"), ffi_new("int32_t[1]")
    local rc = lib.tide_kafka_group_assignment(self.cdata, topic, buf, nparts,
                                               nm, me, timeout_ms or 10000)
    if rc ~= OK then
        return client_err(self, rc)
    end
    local owner = {}
    for p = 0, nparts - 1 do
        owner[p] = buf[p]
    end
    return owner, nm[0], me[0]
end

--- Acknowledges the event group_poll() returned.
function Client:rebalance_done()
    check(self)
    local rc = lib.tide_kafka_rebalance_done(self.cdata)
    if rc ~= OK then
        return client_err(self, rc)
    end
    return true
end

--- Returns the first offset and the high watermark of a partition.
function Client:watermarks(topic, p, timeout_ms)
    check(self)
    local rc = lib.tide_kafka_watermarks(self.cdata, topic, p, i64a, i64b,
                                         timeout_ms or 10000)
    if rc ~= OK then
        return client_err(self, rc)
    end
    return tonumber(i64a[0]), tonumber(i64b[0])
end

--- Returns the partition (0 .. n - 1) that Kafka's default partitioner
--- (murmur2, as tide.partition, in C) gives the string `key` among n.
function _M.partition(key, n)
    return lib.tide_partition_get(key, #key, n)
end

--- Queues a record (strings or nil; hdrs: an encoded header block) to
--- partition p of topic (nil: the partitioner's choice).
function Client:produce(topic, p, key, value, ts, hdrs)
    check(self)
    local r = rec[0]
    r.key = key
    r.klen = key and #key or -1
    r.val = value
    r.vlen = value and #value or -1
    r.hdrs = hdrs
    r.hlen = hdrs and #hdrs or 0
    r.ts = ts or 0
    local rc = lib.tide_kafka_produce(self.cdata, topic, p or -1, rec)
    if rc ~= OK then
        return client_err(self, rc)
    end
    return true
end

--- Waits until every queued record is acknowledged. Returns true, or
--- nil and the first failure.
function Client:flush(timeout_ms)
    check(self)
    local rc = lib.tide_kafka_flush(self.cdata, timeout_ms or 60000)
    if rc ~= OK then
        return client_err(self, rc)
    end
    return true
end

--- The offset after the last record this client delivered to partition
--- p of topic, or nil when it delivered none there.
function Client:written_end(topic, p)
    check(self)
    local e = tonumber(lib.tide_kafka_written_end(self.cdata, topic, p))
    return e >= 0 and e or nil
end

-- The C arrays of an offsets list ({ topic, partition, offset, metadata
-- }...); the Lua strings stay referenced by `list`.
local function offset_arrays(list)
    local n = #list
    local topics = ffi_new("const char *[?]", n + 1)
    local parts = ffi_new("int32_t[?]", n + 1)
    local offs = ffi_new("int64_t[?]", n + 1)
    local metas = ffi_new("const char *[?]", n + 1)
    for i = 1, n do
        local e = list[i]
        topics[i - 1] = e.topic
        parts[i - 1] = e.partition
        offs[i - 1] = e.offset
        metas[i - 1] = e.metadata
    end
    return topics, parts, offs, metas, n
end

--- Commits offsets to the group: list of { topic, partition, offset,
--- metadata }. Returns true, or nil and an error.
function Client:commit(list)
    check(self)
    local topics, parts, offs, metas, n = offset_arrays(list)
    local rc = lib.tide_kafka_commit(self.cdata, topics, parts, offs, metas, n)
    if rc ~= OK then
        return client_err(self, rc)
    end
    return true
end

--- Exactly-once: readies the transactional producer (the client was
--- made with a transactional.id), fencing an older one with the same id.
--- Returns true, or nil, an error and the code (EAGAIN: no answer yet).
function Client:txn_init(timeout_ms)
    check(self)
    local rc = lib.tide_kafka_txn_init(self.cdata, timeout_ms or 30000)
    if rc ~= OK then
        return client_err(self, rc)
    end
    return true
end

--- Commits the open transaction with the offsets of `list` (as commit()),
--- sent to the group that `gmeta` (group_meta() of the member, a string;
--- nil: the group outside membership) names. Returns true, or nil and an
--- error: the transaction was aborted.
function Client:txn_commit(list, gmeta, timeout_ms)
    check(self)
    local topics, parts, offs, metas, n = offset_arrays(list)
    local rc = lib.tide_kafka_txn_commit(self.cdata, topics, parts, offs,
                                         metas, n, gmeta, gmeta and #gmeta
                                         or 0, timeout_ms or 60000)
    if rc ~= OK then
        return client_err(self, rc)
    end
    return true
end

--- Aborts the open transaction, if any. Returns true, or nil and an
--- error.
function Client:txn_abort(timeout_ms)
    check(self)
    local rc = lib.tide_kafka_txn_abort(self.cdata, timeout_ms or 30000)
    if rc ~= OK then
        return client_err(self, rc)
    end
    return true
end

local psize = ffi_new("size_t[1]")

--- The group member's metadata (generation and member id) as a string,
--- for txn_commit in another process; or nil and an error.
function Client:group_meta()
    check(self)
    local buf = ffi_new("char[?]", META_MAX)
    local rc = lib.tide_kafka_group_meta(self.cdata, buf, META_MAX, psize)
    if rc ~= OK then
        return client_err(self, rc)
    end
    return ffi_string(buf, psize[0])
end

--- Returns the group's committed offset of a partition (nil when none)
--- and its metadata, or nil, nil, an error.
function Client:committed(topic, p, timeout_ms)
    check(self)
    local buf = ffi_new("char[?]", META_MAX)
    local rc = lib.tide_kafka_committed(self.cdata, topic, p, i64a, buf,
                                        META_MAX, timeout_ms or 10000)
    if rc ~= OK then
        local _, msg = client_err(self, rc)
        return nil, nil, msg, rc
    end
    local off = tonumber(i64a[0])
    if off < 0 then
        return nil, ffi_string(buf)
    end
    return off, ffi_string(buf)
end

--- A reader of partition p of topic from `offset` (a number). Returns
--- it, or nil and an error.
function Client:reader(topic, p, offset, batch)
    check(self)
    local rc = lib.tide_kreader_new(preader, self.cdata, topic, p, offset)
    if rc ~= OK then
        return client_err(self, rc)
    end
    self.readers = self.readers + 1
    batch = batch or 256
    return setmetatable({
        cdata = ffi_gc(preader[0], lib.tide_kreader_free), client = self,
        recs = rec_array_t(batch), batch = batch, kafka_reader = true,
    }, reader_mt)
end

--- Frees the client (its readers first). Safe to call twice.
function Client:close()
    if self.cdata ~= nil then
        lib.tide_kafka_free(ffi_gc(self.cdata, nil))
        self.cdata = nil
    end
end

--- Reads up to n records (default: the batch size), waiting up to
--- timeout_ms for the first; returns the count and the reused record
--- array (indexed from 0; valid until the next call), or nil and an
--- error.
function Reader:poll_batch(n, timeout_ms)
    if self.cdata == nil then
        error("kafka reader is closed", 2)
    end
    local got = lib.tide_kreader_poll_batch(self.cdata, self.recs,
                                            n or self.batch, timeout_ms or 0)
    if got < 0 then
        return nil, ffi_string(lib.tide_kreader_errmsg(self.cdata)), got
    end
    return got, self.recs
end

--- The partition's high watermark as the last fetch saw it, or -1.
function Reader:cached_end()
    return tonumber(lib.tide_kreader_cached_end(self.cdata))
end

--- The offset of the next record to read.
function Reader:offset()
    return tonumber(lib.tide_kreader_offset(self.cdata))
end

--- Frees the reader. Safe to call twice.
function Reader:close()
    if self.cdata ~= nil then
        lib.tide_kreader_free(ffi_gc(self.cdata, nil))
        self.cdata = nil
        self.client.readers = self.client.readers - 1
    end
end

_M.ENOENT = ENOENT
_M.EAGAIN = base.EAGAIN
return _M
