-- What the specs of a job spread over processes (group_spec, eos_spec)
-- share: a kcat producer loop, the true counts of its input, the newest
-- outputs, waiting for lag 0, and stopping processes. Keys are
-- "k<i % nkeys>", values the record's number i.
local h = require("cli.helper")
local broker = require("kafka.broker")

local fmt, concat = string.format, table.concat

local _M = {}

-- The kcat producer loop: batches of `batch` records "k<i % nkeys>:<i>"
-- (i from 0) to `topic` (murmur2_random, as the Java client and tide place
-- keys; idempotent, acks=all, so that a broker's loss neither loses nor
-- doubles input), `pause` s apart, until work/STOP exists (hang guard:
-- 3000 batches); then it writes the next i to work/producer.done. A kcat
-- that exits non-zero is noted in work/producer.fail. Returns its pid
-- (also in work/writer.pid, so that h.kill_ours stops it). `first`, when
-- given, is the size of the first batch (a backlog to start with).
function _M.start_producer(c, work, topic, batch, pause, nkeys, first)
    os.remove(work .. "/STOP")
    local done = h.q(work .. "/producer.done")
    local script = fmt([[
i=0; n=0; b=%d
while [ ! -e %s ] && [ $n -lt 3000 ]; do
  seq $i $((i + b - 1)) | awk '{ print "k" ($1 %% %d) ":" $1 }' |
    %s -b %s -P -t %s -K : -X partitioner=murmur2_random -X acks=all \
      -X enable.idempotence=true -X message.timeout.ms=120000 \
      2>>%s || echo "batch at $i: kcat exited $?" >>%s
  i=$((i + b)); n=$((n + 1)); b=%d; sleep %.3f
done
echo $i >%s.tmp && mv %s.tmp %s
]], first or batch, h.q(work .. "/STOP"), nkeys or 40,
        broker.kafka.kcat_cmd(), h.q(c.bootstrap), h.q(topic),
        h.q(work .. "/producer.err"), h.q(work .. "/producer.fail"), batch,
        pause, done, done, done)
    h.write_file(work .. "/producer.sh", script)
    local pid = h.spawn("sh " .. h.q(work .. "/producer.sh")
                        .. " </dev/null >/dev/null 2>&1")
    h.write_file(work .. "/writer.pid", pid .. "\n")
    return pid
end

-- Stops the producer (hang guard: 150 s, a batch may wait out a broker's
-- loss); fails if a kcat of it failed. Returns how many records it sent.
function _M.stop_producer(work)
    h.write_file(work .. "/STOP", "")
    local deadline = h.now() + 150
    while h.now() < deadline do
        local n = tonumber(h.read_file(work .. "/producer.done") or "")
        if n then
            local fail = h.read_file(work .. "/producer.fail")
            assert(fail == nil, "the kcat producer failed: " .. tostring(fail)
                   .. "\n" .. (h.read_file(work .. "/producer.err") or ""))
            return n
        end
        h.sleep(0.1)
    end
    error("the kcat producer did not stop within 150 s")
end

-- The true count of each key: the input topic as kcat reads it. Fails
-- unless it holds exactly the `sent` records the producer sent, once each.
function _M.true_counts(c, topic, sent)
    local r = c.kcat({ "-C", "-t", topic, "-e", "-q", "-f", "%k %s\\n" })
    assert(r.code == 0, "kcat -C " .. topic .. ": " .. r.err)
    local truth, seen, n = {}, {}, 0
    for k, v in r.out:gmatch("(%S+) (%d+)\n") do
        assert(not seen[v], "input " .. v .. " is twice in " .. topic)
        seen[v] = true
        truth[k] = (truth[k] or 0) + 1
        n = n + 1
    end
    assert(n == sent, fmt("%s holds %d records, the producer sent %d", topic,
                          n, sent))
    return truth
end

-- The newest value of each key in `topic`, read with kcat: { [key] =
-- number }, and the number of records.
function _M.last_values(c, topic)
    local r = c.kcat({ "-C", "-t", topic, "-e", "-q", "-f", "%k %s\\n" })
    assert(r.code == 0, "kcat -C " .. topic .. ": " .. r.err)
    local last, n = {}, 0
    for k, v in r.out:gmatch("(%S+) (%S+)\n") do
        last[k] = tonumber(v)
        n = n + 1
    end
    return last, n
end

-- Fails, listing a few, unless each key's newest output in `last` is its
-- count in `truth`, and no other key has an output.
function _M.assert_counts(truth, last)
    local bad = {}
    for k, want in pairs(truth) do
        if last[k] ~= want then
            bad[#bad + 1] = fmt("key %s: last output %s, true count %d", k,
                                tostring(last[k]), want)
        end
    end
    for k, v in pairs(last) do
        if not truth[k] then
            bad[#bad + 1] = fmt("key %s: output %s, never input", k, v)
        end
    end
    table.sort(bad)
    local nkeys = 0
    for _ in pairs(truth) do nkeys = nkeys + 1 end
    assert(#bad == 0, fmt("%d of %d keys wrong, e.g.\n  %s", #bad, nkeys,
                          concat(bad, "\n  ", 1, math.min(#bad, 8))))
end

-- Runs fn once for the tests of a describe that share one run: the first
-- call runs it and keeps what it returns; the next ones return that, or
-- fail at once if the first call failed (a run is not repeated).
function _M.once(fn)
    local result, state
    return function()
        if state == "failed" then
            error("the shared run failed: see the first test's error", 2)
        elseif state == "done" then
            return result
        end
        state = "failed"
        result = fn()
        state = "done"
        return result
    end
end

-- Waits (hang guard: `secs`) until kafka-consumer-groups --describe shows
-- group g at lag 0 on every one of the `parts` partitions of `topic`,
-- with `total` records read. Returns the text. On the hang guard the
-- error shows the logs of `jobs` (started by h.start_tide).
-- Group g's committed offsets of `topic`, from kafka-consumer-groups
-- --describe: the partitions listed, the sum of their offsets and of their
-- lags, and the tool's text.
function _M.committed(c, g, topic)
    local r = c.groups_cmd({ "--describe", "--group", g })
    local rows, read, behind = 0, 0, 0
    for l in r.out:gmatch("[^\n]+") do
        local grp, t, cur, lag = l:match(
            "^(%S+)%s+(%S+)%s+%d+%s+(%S+)%s+%S+%s+(%S+)")
        if grp == g and t == topic then
            rows = rows + 1
            read = read + (tonumber(cur) or 0)
            behind = behind + (tonumber(lag) or 1)
        end
    end
    return rows, read, behind, r.out .. r.err
end

function _M.wait_lag0(c, g, topic, parts, total, secs, jobs)
    local deadline = h.now() + secs
    local text
    repeat
        local rows, read, behind
        rows, read, behind, text = _M.committed(c, g, topic)
        if rows == parts and behind == 0 and read == total then
            return text
        end
        h.sleep(1)
    until h.now() > deadline
    local logs = {}
    for i, j in pairs(jobs or {}) do
        local rc = h.read_file(j.base .. ".rc")
        logs[#logs + 1] = fmt("---- log of process %d (pid %d, %s):\n%s", i,
                              j.pid, rc and "exited " .. rc:gsub("%s", "")
                                     or "running", h.tide_stderr(j))
    end
    error(fmt("group %s did not read all %d records of %s within %d s:\n%s"
              .. "\n%s", g, total, topic, secs, text, concat(logs, "\n")), 2)
end

-- Starts `tide run ARGS` of job `name` as process i on data dir `dir`
-- (its pid noted in `pids`); returns it once its log says the job
-- started (hang guard: 90 s).
function _M.start_process(dir, work, args, pids, name, i)
    local job = h.start_tide(dir, work, args, pids)
    h.wait_log(job, "job '" .. name:gsub("%-", "%%-") .. "' started", 1,
               "process " .. i .. " to start", 90)
    return job
end

-- SIGKILLs tide run `job` and waits until its workers are gone too.
-- (pgrep without the ASan build's LD_PRELOAD, under which it hangs.)
function _M.kill_run(job)
    local kids = h.sh("env -u LD_PRELOAD pgrep -P " .. job.pid
                      .. " 2>/dev/null")
    h.kill9(job.pid)
    for kid in kids:gmatch("%d+") do
        assert(broker.wait_for(10, function()
            return not h.alive(tonumber(kid))
        end), "worker " .. kid .. " outlived its supervisor's SIGKILL")
    end
    h.wait_exit(job)
end

-- SIGTERMs those of `jobs` still running, then waits for each (hang
-- guard: 30 s, then SIGKILL). Returns { [i] = { rc = exit status, log =,
-- early = true when job i had ended before the SIGTERM, hung = true when
-- it had to be SIGKILLed } }.
function _M.stop_all(jobs)
    local t = {}
    for i, j in pairs(jobs) do
        t[i] = { early = h.exited(j) }
        if not t[i].early then h.signal(j, "TERM") end
    end
    for i, j in pairs(jobs) do
        t[i].hung = not broker.wait_for(30, function() return h.exited(j) end)
        if t[i].hung then _M.kill_run(j) end
        t[i].rc = h.wait_exit(j)
        t[i].log = h.tide_stderr(j)
    end
    return t
end

-- Why stopped process `s` (from stop_all) did not stop cleanly, or nil.
function _M.unclean(s, name)
    if s.early then
        return "ended before the SIGTERM, exit status " .. s.rc
    elseif s.hung then
        return "did not end within 30 s of SIGTERM"
    elseif s.rc ~= 0 then
        return "exited " .. s.rc .. " after SIGTERM"
    elseif not s.log:find("job '" .. name .. "' stopped cleanly", 1, true)
        then
        return "exited 0 without 'stopped cleanly'"
    end
end

-- "kafka group: tasks 1,2 assigned in 35 ms" lines of a log: how many of
-- kind `what` ("assigned", "revoked").
function _M.group_lines(log, what)
    return h.count(log, "kafka group: tasks [%d,]+ " .. what .. " in %d+ ms")
end


return _M
