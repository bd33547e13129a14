-- Standby replicas (issue 13, part 4; docs/kafka.md "Standby replicas"),
-- against a real Apache Kafka broker: two `tide run` processes of a
-- counting job with `standby_replicas = 1` each keep a warm copy of the
-- other's task; kcat produces a backlog of 1,000,000 distinct keys
-- (TIDE_STANDBY_KEYS; 100,000 under ASan), then more of them while they run; one process is
-- SIGKILLed. The other must take its task (half a million keys in its
-- store) over from its own snapshot, replaying only what came after it,
-- and every key's last output must still be its true count.
local h = require("cli.helper")
local broker = require("kafka.broker")
local u = require("kafka.group_util")

local fmt = string.format

local SRC = os.getenv("TIDE_SOURCE_DIR") or "."
-- Under ASan (the sanitizer preloaded), a tenth: the same path, at a
-- tenth of the time.
local ASAN = (os.getenv("LD_PRELOAD") or ""):find("asan", 1, true) ~= nil
local NKEYS = tonumber(os.getenv("TIDE_STANDBY_KEYS"))
    or (ASAN and 100000 or 1000000)

describe("standby replicas in a Kafka group", function()
    local c, work, pids

    before_each(function()
        work = h.tmpdir()
        pids = {}
    end)

    after_each(function()
        h.kill_ours(pids, work)
        if c then c.stop() end
        c = nil
    end)

    local name = "ksb-count"

    local function start(i, args)
        return u.start_process(work .. "/d" .. i, work, args, pids, name, i)
    end

    local run = u.once(function()
        c = broker.start({ nodes = 1 })
        c.create_topic("ksb-in", 2)
        -- spec/kafka/jobs/count.lua with a standby copy of each task.
        local text = assert(h.read_file(SRC .. "/spec/kafka/jobs/count.lua"))
        local job = text:gsub('commit_interval = "200ms",',
                              'commit_interval = "200ms",\n'
                              .. '    standby_replicas = 1,')
        assert(job ~= text)
        h.write_file(work .. "/count.lua", job)
        local args = { "run", work .. "/count.lua", "-c", "name=" .. name,
                       "-c", "inputs.1=kafka:ksb-in",
                       "-c", "outputs.1=kafka:ksb-out",
                       "-c", "config.out=kafka:ksb-out",
                       "-c", "kafka.bootstrap.servers=" .. c.bootstrap,
                       "-c", "kafka.session.timeout.ms=6000",
                       "--workers", "1", "--create",
                       -- a takeover that replays nothing logs its store
                       -- line at debug
                       "--log-level=debug" }
        local p = {}
        p[1] = start(1, args)
        h.wait_log(p[1], "kafka group: tasks [%d,]+ assigned", 1,
                   "process 1's tasks")
        p[2] = start(2, args)
        h.wait_log(p[2], "kafka group: tasks [%d,]+ assigned", 1,
                   "process 2's task")
        u.start_producer(c, work, "ksb-in", 2000, 0.1, NKEYS, NKEYS)
        -- The backlog is counted (committed) before the kill, so that each
        -- task's store holds its half of the keys.
        assert(broker.wait_for(300, function()
            local _, read = u.committed(c, name, "ksb-in")
            return read >= NKEYS
        end), "the group did not commit its backlog of " .. NKEYS
              .. " keys within 300 s")
        -- Each process keeps a copy of the other's task.
        for i = 1, 2 do
            h.wait_log(p[i], "standby of task %d: caught up", 1,
                       "process " .. i .. "'s standby copy", 240)
        end
        h.sleep(3)
        local before = u.group_lines(h.tide_stderr(p[2]), "assigned")
        local killed_at = #h.tide_stderr(p[2])
        u.kill_run(p[1])
        local moved = broker.wait_for(60, function()
            return u.group_lines(h.tide_stderr(p[2]), "assigned") > before
        end)
        h.sleep(2)
        local sent = u.stop_producer(work)
        local ok, err = pcall(u.wait_lag0, c, name, "ksb-in", 2, sent, 90,
                              { p[2] })
        local r = { moved = moved, sent = sent, lag_err = not ok and err,
                    truth = u.true_counts(c, "ksb-in", sent) }
        r.stopped = u.stop_all({ p[2] })
        r.last, r.outputs = u.last_values(c, "ksb-out")
        r.log1 = h.tide_stderr(p[1])
        r.after = r.stopped[1].log:sub(killed_at + 1)
        print(fmt("standby_spec: %d inputs, %d outputs", sent, r.outputs))
        return r
    end)

    it("takes the killed process's task over from its standby snapshot, "
       .. "replaying only the tail", function()
        local r = run()
        assert(r.moved, "process 2 was not given process 1's task:\n"
               .. r.stopped[1].log)
        local found
        for task, snap, ckpt, n in r.after:gmatch(
            "store 'counts' task (%d+): from local snapshot at offset "
            .. "(%d+) to checkpoint offset (%d+), replayed (%d+)") do
            found = { task = task, snap = tonumber(snap),
                      ckpt = tonumber(ckpt), n = tonumber(n) }
        end
        assert(found, "no restore from a local snapshot after the kill:\n"
               .. r.after)
        print(fmt("standby_spec: task %s taken over at changelog offset %d "
                  .. "from a snapshot at %d: %d records replayed",
                  found.task, found.ckpt, found.snap, found.n))
        -- The task's store held about half the keys, each one a changelog
        -- record at least; the copy was at most a step (1 s) behind the
        -- owner's last checkpoint.
        assert(found.ckpt > NKEYS / 3, fmt("task %s: only %d changelog "
                                           .. "records", found.task,
                                           found.ckpt))
        assert.equals(found.ckpt - found.snap, found.n)
        assert(found.n < found.ckpt / 4, fmt(
            "task %s replayed %d of its %d changelog records", found.task,
            found.n, found.ckpt))
    end)

    it("keeps each key's true count as its last output", function()
        local r = run()
        u.assert_counts(r.truth, r.last)
        assert(not r.lag_err, r.lag_err)
    end)

    it("stops the survivor cleanly", function()
        local r = run()
        local why = u.unclean(r.stopped[1], name)
        assert(not why, tostring(why) .. ":\n" .. r.stopped[1].log)
    end)
end)
