--- A worker process: what `tide run`'s supervisor starts once per worker
--- (core/src/cli/main.c runs main() when TIDE_WORKER=1). It loads the
--- code version the supervisor sends, runs a tide.worker, and answers the
--- supervisor's messages between batches (docs/container.md "Messages").
local job_mod = require("tide.job")
local loop_mod = require("tide.loop")
local worker_mod = require("tide.worker")
local task_mod = require("tide.task")
local wire = require("tide.wire")
local inspect = require("tide.inspect")
local proc = require("tide.proc")
local notify_mod = require("tide.notify")

local pairs, ipairs, tostring, tonumber = pairs, ipairs, tostring, tonumber
local str_format = string.format
local bit_band = require("bit").band
local now_ms = loop_mod.now

local _M = {}

local EXIT_FAILED, EXIT_MEMORY = 1, 3
local COMMIT_WAIT_MS = 120000
local STATS_MS = 1000           -- how often stats go out under --http

local real_exit = os.exit

-- The channel to the supervisor, with frames that arrived while waiting
-- for another one kept in order.
local Link = {}
Link.__index = Link

function Link:send(msg)
    local ok, err = self.chan:send(wire.encode(msg))
    if ok == nil then
        -- The supervisor is gone: nothing to report to, and the kernel
        -- kills us anyway (PR_SET_PDEATHSIG).
        self:lost(err)
    end
end

function Link:lost(err)
    io.stderr:write(str_format("tide worker %d: lost the supervisor (%s); "
                               .. "exiting\n", self.id or 0, tostring(err)))
    real_exit(EXIT_FAILED)
end

-- Returns the next message from the channel, waiting until `deadline`;
-- nil once it passed. Exits when the supervisor is gone.
function Link:next_frame(deadline)
    while true do
        local text, err = self.chan:recv()
        if text then
            -- More whole frames may wait in the channel's buffer, where
            -- the loop cannot see them: on_events reads until none is left.
            self.maybe_more = true
            local msg = wire.decode(text)
            if msg then
                return msg
            end
        elseif err then
            self:lost(err)
        else
            local left = deadline - now_ms()
            if left <= 0 then
                return nil
            end
            self.chan:wait(left)
        end
    end
end

-- Returns the next message (queued first), waiting up to `timeout` ms;
-- nil on timeout.
function Link:recv(timeout)
    local q = self.queue
    if q[1] then
        return table.remove(q, 1)
    end
    return self:next_frame(now_ms() + (timeout or 0))
end

-- Waits for the answer to commit `seq`, queueing other messages.
function Link:expect(seq, timeout)
    local deadline = now_ms() + timeout
    while true do
        local msg = self:next_frame(deadline)
        if not msg then
            return nil
        end
        if (msg.op == "committed" or msg.op == "commit_failed")
            and msg.seq == seq then
            return msg
        end
        self.queue[#self.queue + 1] = msg
    end
end

local function load_version(init, msg)
    return job_mod.load(init.path, init.overrides, {
        sources = msg.sources, limit_ms = init.load_limit_ms,
        reload_modules = msg.modules and wire.list(msg.modules) or nil })
end

local INSPECT_OPS = { eval = true, store = true, trace = true,
                      trace_poll = true, complete = true }

-- Handles one message of the supervisor between batches.
local function dispatch(link, w, init, msg)
    local op, rid = msg.op, msg.rid
    local function reply(t)
        t.rid = rid
        link:send(t)
    end
    if op == "assign" then
        local p = tonumber(msg.task)
        local entry = msg.entry or nil
        if entry then
            entry = { inputs = entry.inputs or {},
                      changelogs = entry.changelogs or {} }
        end
        local ok, res = w:assign(p, entry, msg.give_up or nil)
        if ok and msg.paused then
            w:pause(p)
        end
        reply(ok and { op = "assigned", task = p, ms = res }
              or { op = "assigned", task = p, error = res })
    elseif op == "revoke" then
        local ok, res = w:revoke(tonumber(msg.task))
        reply(ok and { op = "revoked", ms = res }
              or { op = "revoked", error = res })
    elseif op == "drop" then
        -- Lost to another process of the Kafka group: closed, not
        -- committed (the group would refuse the commit).
        local task = w.tasks[tonumber(msg.task)]
        local err
        if task then
            w:drop(task)
            if w.eos and w.changed then
                -- Its records since the last commit are in this worker's
                -- open transaction, with the other tasks' ones: abort it,
                -- and take the others back to their last commit.
                local ok, aerr = w.txn_client:txn_abort()
                if ok then
                    ok, aerr = w:rewind("task " .. tostring(msg.task)
                                        .. " was lost to the group")
                end
                err = not ok and aerr or nil
            end
        end
        reply({ op = "dropped", error = err })
    elseif op == "standby" then
        -- Keep (or stop keeping) a warm copy of a task another process of
        -- the Kafka group owns (tide.standby).
        local p = tonumber(msg.task)
        w.standby = w.standby or require("tide.standby").new(w)
        local ok, err = true, nil
        if msg.on then
            ok, err = w.standby:on(p)
        else
            w.standby:off(p)
        end
        reply({ op = "standby", error = not ok and err or nil })
    elseif op == "pause" or op == "resume" then
        local ok, err = w[op](w, tonumber(msg.task))
        reply({ op = op, error = not ok and err or nil })
    elseif op == "status" then
        reply({ op = "status", tasks = w:status(), processed = w.processed })
    elseif op == "probe" then
        -- Answered at the end of this round (on_round_end), with what the
        -- whole round saw: a probe that came in after the round read its
        -- inputs must not be told "idle" on that round's word alone.
        w.probes[#w.probes + 1] = rid
    elseif op == "swap" then
        local new, err = load_version(init, msg)
        if not new then
            reply({ op = "swap", error = err })
            return
        end
        local ok, serr = w:swap(new, msg.version)
        reply(ok and { op = "swap" } or { op = "swap", error = serr })
    elseif op == "rollback" then
        if w.version == msg.version then
            w.quiet_rollback = true
            w:rollback(msg.why or "another worker failed")
            w.quiet_rollback = false
        end
    elseif INSPECT_OPS[op] then
        -- tide repl --attach, tide state get|scan: served between batches.
        w.inspector = w.inspector or inspect.new(w)
        local r = w.inspector[op](w.inspector, msg)
        r.op = op
        reply(r)
    elseif op == "stop" then
        w.stopping = true
    elseif op == "abort" then
        w.stopping = true
        w.no_final_commit = true
    end
end

--- Runs the worker process. Returns the exit code.
function _M.main()
    local chan, cerr = proc.worker_chan()
    if not chan then
        io.stderr:write("tide worker: ", tostring(cerr), "\n")
        return EXIT_FAILED
    end
    local watch = proc.worker_shm()
    local link = setmetatable({ chan = chan, queue = {} }, Link)
    local init = link:recv(60000)
    if not init or init.op ~= "init" then
        io.stderr:write("tide worker: no start message from the supervisor\n")
        return EXIT_FAILED
    end
    link.id = init.id
    -- Each line carries the worker's id (worker=N).
    local log = require("tide.logging").logger({ worker = init.id })
    if init.metrics then
        -- A restore's progress (tide.state logs it each second) goes to
        -- the supervisor too, for /health.
        local plain = log
        log = function(level, line, fields)
            local store, p, n, of = line:match(
                "^restoring (%S+) task (%d+): (%d+) of about (%d+) records")
            if store then
                link:send({ op = "restore", task = tonumber(p), store = store,
                            records = tonumber(n), total = tonumber(of) })
            end
            return plain(level, line, fields)
        end
    end
    init.overrides = wire.list(init.overrides)
    -- Job code never ends the process: os.exit raises from here on.
    os.exit = job_mod.no_exit
    local job, err = load_version(init, init)
    if not job then
        link:send({ op = "failed", error = err })
        return EXIT_FAILED
    end
    local loop = loop_mod.new()
    local notify = notify_mod.new()
    local wake
    if notify then
        wake = {
            add = function(_, stream, p)
                return stream.log and notify:add(stream.log, p) or nil
            end,
            remove = function(_, id)
                notify:remove(id)
            end,
        }
        loop:watch_fd(notify:fd())
    end
    loop:watch_fd(chan:fd())
    local seq = 0
    local env = require("tide.system").env(job, init.data_dir)
    local eos = job.processing == "exactly_once"
    if eos and env.kafka then
        -- Exactly-once: this worker's producer is transactional, with an
        -- id that the same worker of the same data dir keeps over
        -- restarts (so that a new one fences the killed one's leftovers).
        env.kafka.txn_id = init.txn_id
    end
    local w
    -- Exactly-once (docs/kafka.md "Exactly-once"): the supervisor checks
    -- the tasks are still this worker's and hands over the group member's
    -- metadata; this worker commits its transaction with the offsets;
    -- then the supervisor keeps the entries. A failed transaction is
    -- aborted, and the tasks go back to their last commit (rewind).
    local function commit_txn(entries, reply)
        local client, cerr = require("tide.system.kafka").client(env)
        if not client then
            return nil, cerr
        end
        local list = require("tide.checkpoint_kafka").offset_list(
            init.lead, entries)
        local ok, terr = client:txn_commit(list, reply.gmeta
                                           and wire.unhex(reply.gmeta))
        if not ok then
            return nil, terr, true
        end
        link:send({ op = "txn_done", seq = seq, entries = entries })
        return true
    end
    w, err = worker_mod.new(job, env, {
        loop = loop, log = log, drain = init.drain, watch = watch,
        final_window = init.final,
        notify = wake, version = init.version, tasks = {},
        commit = function(entries)
            seq = seq + 1
            link:send({ op = "commit", seq = seq, entries = entries,
                        txn = eos or nil })
            local reply = link:expect(seq, COMMIT_WAIT_MS)
            if not reply then
                return nil, "the supervisor did not answer the commit"
            end
            if reply.op ~= "committed" then
                return nil, reply.error
            end
            if eos then
                return commit_txn(entries, reply)
            end
            -- Deferred (a Kafka rebalance): committed again next time,
            -- even if nothing more comes in.
            return true, reply.deferred and "deferred" or nil
        end,
    })
    if not w then
        link:send({ op = "failed", error = err })
        return EXIT_FAILED
    end
    if eos then
        local c
        c, err = require("tide.system.kafka").client(env)
        if not c then
            link:send({ op = "failed", error = err })
            return EXIT_FAILED
        end
        w.txn_client = c
    end
    for k in pairs(init.bad or {}) do
        w.bad[k] = true
    end
    w.label = ""
    if init.metrics then
        -- tide run --http: per-task counts for /metrics (tide.worker
        -- counts each step when w.tstats is set); sends are counted
        -- here, at each output's push.
        w.tstats, w.sent = {}, 0
        for _, out in ipairs(w.out_streams) do
            local st = out.stream
            local push = st.push
            st.push = function(self, key, value, p, ts, hdrs)
                w.sent = w.sent + 1
                return push(self, key, value, p, ts, hdrs)
            end
        end
    end
    w.ignore_stop = true          -- the supervisor says when to stop
    w.hold_drain = init.drain
    w.on_rollback = function(bad, why)
        if not w.quiet_rollback then
            link:send({ op = "rolled_back", version = bad, why = why })
        end
    end
    w.on_memory = function(task, part, m)
        link:send({ op = "memory", task = task.partition, key = part.key,
                    input = part.idx, offset = m.offset,
                    probation = task.probation > 0 })
        real_exit(EXIT_MEMORY)
    end
    local was_idle = false
    w.probes = {}
    w.on_events = function(wk, ev)
        -- Frames wait either in the socket (INPUT) or in the queue that a
        -- commit's wait for its answer filled; a busy round with neither
        -- makes no system call here.
        if bit_band(ev, loop_mod.INPUT) == 0 and link.queue[1] == nil
            and not link.maybe_more then
            return true
        end
        if notify then
            notify:drain()
        end
        while true do
            local msg = link:recv(0)
            if not msg then
                break
            end
            dispatch(link, wk, init, msg)
        end
        link.maybe_more = false       -- read until the channel was empty
        return true
    end
    local next_stats = 0
    w.on_round_end = function(wk)
        if init.metrics and now_ms() >= next_stats then
            -- What /metrics and /health show, each second.
            next_stats = now_ms() + STATS_MS
            link:send({ op = "stats", tasks = wk:status(true) })
        end
        if wk.hold_drain and wk.idle and not was_idle then
            link:send({ op = "idle", processed = wk.processed })
        end
        was_idle = wk.idle == true
        local probes = wk.probes
        for i = 1, #probes do
            link:send({ op = "probe", rid = probes[i], idle = was_idle,
                        processed = wk.processed })
            probes[i] = nil
        end
    end
    link:send({ op = "ready" })
    local ok, rerr = w:run()
    if not ok then
        link:send({ op = "failed", error = rerr })
        return EXIT_FAILED
    end
    link:send({ op = "stopped", processed = w.processed,
                skipped = w.skipped, dead = w.dead })
    return 0
end

-- Kinds of calls as the watch slot numbers them (for tests and docs).
_M.KIND = task_mod.KIND

return _M
