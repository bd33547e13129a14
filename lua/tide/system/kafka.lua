--- The `kafka` system: streams are topics of an Apache Kafka cluster,
--- through librdkafka (tide.kafka). Interface in docs/runtime.md
--- ("System interface"); how tide uses Kafka in docs/kafka.md.
---
--- env.kafka = { conf = { [librdkafka property] = value }, group = the
--- job's name } says where the cluster is; one client per env serves
--- every stream opened with it (created on first use).
local kafka = require("tide.kafka")
local base = require("tide.base")

local type, error, setmetatable, tostring, tonumber = type, error, setmetatable, tostring, tonumber
local pairs = pairs
local msg_of = require("tide.system").msg_of
local kpartition = kafka.partition
local str_format = string.format

local _M = {}

local BATCH = 256
local TIMEOUT_MS = 15000
-- How long a poll waits for records known to be in the partition.
local FETCH_WAIT_MS = 200

local Stream = {}
local stream_mt = { __index = Stream }
local Reader = {}
local reader_mt = { __index = Reader }

--- Returns the env's client, making it on first use; or nil and an error.
function _M.client(env)
    local k = env.kafka
    if type(k) ~= "table" or type(k.conf) ~= "table"
        or k.conf["bootstrap.servers"] == nil then
        return nil, "no Kafka cluster given: add -c kafka.bootstrap.servers="
                    .. "HOST:PORT (or kafka = { [\"bootstrap.servers\"] = "
                    .. "\"HOST:PORT\" } in the job)"
    end
    if not k.client then
        local conf = k.conf
        if k.txn_id then
            conf = {}
            for key, v in pairs(k.conf) do
                conf[key] = v
            end
            conf["transactional.id"] = k.txn_id
        end
        local c, err = kafka.new(k.group or "tide", conf)
        if not c then
            return nil, err
        end
        if k.txn_id then
            -- Waits for the transaction coordinator (a minute at most):
            -- this also aborts what a killed worker with this id left open.
            local deadline = os.time() + 60
            local ok, code
            while true do
                ok, err, code = c:txn_init(10000)
                if ok or code ~= kafka.EAGAIN or os.time() >= deadline then
                    break
                end
            end
            if not ok then
                c:close()
                return nil, "exactly-once: cannot start the transactional "
                            .. "producer '" .. k.txn_id .. "': " .. err
            end
        end
        k.client = c
    end
    return k.client
end

--- Waits until the cluster of env answers, asking about `topic`: a
--- broker that is down at start is waited for, with one log line (then
--- one a minute), until it answers or `stopped()` says to give up.
--- Returns true, or nil and an error (a bad property, or stopped).
function _M.wait_ready(env, topic, log, stopped)
    local c, err = _M.client(env)
    if not c then
        return nil, err
    end
    local t0, said = os.time(), nil
    while true do
        local parts, perr, code = c:topic_info(topic, 5000)
        if parts or code == base.ENOENT then
            if said then
                log("info", str_format("kafka: the cluster at %s answers "
                                       .. "after %d s", env.kafka.conf
                                       ["bootstrap.servers"],
                                       os.time() - t0))
            end
            return true
        end
        if not said or os.time() - said >= 60 then
            log("warn", str_format("kafka: no broker at %s answers (%s); "
                                   .. "retrying every 5 s (Ctrl-C stops)",
                                   tostring(env.kafka.conf
                                            ["bootstrap.servers"]), perr))
            said = os.time()
        end
        if stopped(5000) then
            return nil, "stopped while waiting for the Kafka cluster"
        end
    end
end

--- Opens topic `name`. With opts.create, a missing topic is made with
--- opts.partitions partitions (default 1), opts.replication replicas
--- (default: the broker's) and compaction when opts.compact.
function _M.open(env, name, opts)
    if type(env) ~= "table" then
        error("bad env: table expected", 2)
    end
    opts = opts or {}
    local c, err = _M.client(env)
    if not c then
        return nil, str_format("stream 'kafka:%s': %s", name, err)
    end
    local parts, repl, code = c:topic_info(name, TIMEOUT_MS)
    if not parts and code == base.ENOENT and opts.create then
        local ok, cerr, ccode = c:create_topic(name, opts.partitions or 1,
                                               opts.replication or env.kafka
                                               .replication, opts.compact,
                                               TIMEOUT_MS)
        if not ok and ccode ~= base.EEXIST then
            return nil, str_format("stream 'kafka:%s': %s", name, cerr)
        end
        -- The new topic's metadata reaches every broker a moment later.
        for _ = 1, 50 do
            parts, repl, code = c:topic_info(name, TIMEOUT_MS)
            if parts and parts > 0 then
                break
            end
            require("tide.fs").sleep_ms(100)
        end
    end
    if not parts then
        if code == base.ENOENT then
            return nil, str_format("no topic '%s' on the Kafka cluster at %s;"
                                   .. " create it (kafka-topics --create "
                                   .. "--topic %s --partitions N)", name,
                                   tostring(env.kafka.conf
                                            ["bootstrap.servers"]), name)
        end
        return nil, str_format("stream 'kafka:%s': %s", name, repl)
    end
    return setmetatable({ client = c, name = name, system = "kafka",
                          parts = parts, replication = repl, rr = 0 },
                        stream_mt)
end

function Stream:count()
    return self.parts
end

--- First offset and high watermark of partition p.
function Stream:range(p)
    if type(p) ~= "number" or p < 0 or p >= self.parts then
        return nil, str_format("no partition %s in kafka:%s (%d partitions)",
                               tostring(p), self.name, self.parts)
    end
    -- A partition whose leader was lost answers again once another
    -- broker leads it: wait that long, not more.
    local deadline = os.time() + 30
    while true do
        local lo, hi, code = self.client:watermarks(self.name, p, TIMEOUT_MS)
        if lo or code ~= base.EAGAIN or os.time() >= deadline then
            return lo, hi
        end
        require("tide.fs").sleep_ms(500)
    end
end

--- The end of partition p for its only writer, this process, after a
--- flush: from the producer's delivery reports when it wrote there (no
--- request, so a leader moving does not hold a commit up); else `known`
--- (the end as of the task's checkpoint, when nothing was written since);
--- else asked.
function Stream:written_end(p, known)
    local e = self.client:written_end(self.name, p)
    if e then
        return e
    end
    if known then
        return known
    end
    local _, hi = self:range(p)
    return hi
end

--- Queues a record; its partition is Kafka's default partitioner's for a
--- key (murmur2, as local does), round-robin without one.
function Stream:push(key, value, p, ts, hdrs)
    if p == nil then
        if type(key) == "string" then
            p = kpartition(key, self.parts)
        elseif key ~= nil then
            error("bad key: string expected, got " .. type(key), 2)
        else
            p = self.rr % self.parts
            self.rr = self.rr + 1
        end
    elseif p < 0 or p >= self.parts or p % 1 ~= 0 then
        return nil, str_format("no partition %s in kafka:%s (%d partitions)",
                               tostring(p), self.name, self.parts)
    end
    local ok, err = self.client:produce(self.name, p, key, value,
                                        ts or os.time() * 1000, hdrs)
    if not ok then
        return nil, err
    end
    return p
end

--- Waits until every queued record is acknowledged by the in-sync
--- replicas (acks=all).
function Stream:flush()
    return self.client:flush(60000)
end

--- Records go out as soon as librdkafka's linger passes; nothing to do.
function Stream:publish()
    return true
end

--- The client is the env's, shared: closing a stream keeps it.
function Stream:close()
end

--- A reader of partition p from offset (a number, "beginning" or "end").
--- An offset below the first kept starts at the first.
function Stream:reader(p, offset)
    local lo, hi = self:range(p)
    if not lo then
        return nil, hi
    end
    local from = offset
    if offset == "beginning" then
        from = lo
    elseif offset == "end" then
        from = hi
    elseif type(offset) ~= "number" or offset < 0 or offset % 1 ~= 0 then
        error("bad offset: integer >= 0, \"beginning\" or \"end\" expected",
              2)
    elseif offset < lo then
        from = lo
    end
    local r, err = self.client:reader(self.name, p, from, BATCH)
    if not r then
        return nil, err
    end
    return setmetatable({ kr = r, partition = p, name = self.name },
                        reader_mt)
end

--- Reads up to max records into out[1..n] (fresh tables, as local's
--- reader gives them). Returns n (0: none now), or nil and an error.
function Reader:poll(max, out)
    local kr = self.kr
    if kr == nil then
        error("reader is closed", 2)
    end
    local want = max > BATCH and BATCH or max
    local n, recs = kr:poll_batch(want, 0)
    if n == 0 then
        -- Fetches run in the background: when records are known to be
        -- there (or nothing was fetched yet), wait a little for them, so
        -- that 0 means caught up, as on local.
        local hi = kr:cached_end()
        if hi < 0 or kr:offset() < hi then
            n, recs = kr:poll_batch(want, FETCH_WAIT_MS)
        end
    end
    if not n then
        return nil, recs
    end
    local p, name = self.partition, self.name
    for i = 0, n - 1 do
        out[i + 1] = msg_of(recs[i], p, name)
    end
    return n
end

function Reader:offset()
    return self.kr:offset()
end

function Reader:close()
    if self.kr then
        self.kr:close()
        self.kr = nil
    end
end

return _M
