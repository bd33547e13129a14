-- End to end: `tide run --http` (issue 15, parts 1 and 2), checked with
-- clients we did not write: curl scrapes /metrics and /health, and
-- Prometheus's own parser (`promtool check metrics`) checks the text.
-- Waits are bounded hang guards, never timing assertions.
local h = require("cli.helper")
local get, sample, wait_until = h.http_get, h.metric, h.wait_until

local SRC = os.getenv("TIDE_SOURCE_DIR") or "."
local PASS = SRC .. "/spec/cli/jobs/pass.lua"
local METERED = SRC .. "/spec/cli/jobs/metered.lua"

local fmt = string.format

local function have(cmd)
  return h.run("command -v " .. cmd).code == 0
end

describe("tide run --http", function()
  local work, dir
  local pids = {}

  before_each(function()
    work, dir = h.scratch()
    h.ok({ "streams", "create", "pings", "--partitions", "2" }, { dir = dir })
  end)

  after_each(function()
    h.kill_started(work)
    h.kill_ours(pids, work)
  end)

  it("serves /metrics that promtool accepts and /health that follows "
     .. "the tasks", function()
    assert.is_true(have("curl"), "curl is needed (make deps)")
    local input = {}
    for i = 1, 300 do input[i] = "m" .. i end
    h.ok({ "produce", "pings" }, { dir = dir,
                                  stdin = table.concat(input, "\n") .. "\n" })
    local job = h.start_tide(dir, work, { "run", PASS, "--workers", "1",
                                          "--http", "0" }, pids)
    local log = h.wait_log(job, "serving /metrics and /health on "
                           .. "http://127%.0%.0%.1:%d+/", 1, "the HTTP line")
    local port = tonumber(log:match("http://127%.0%.0%.1:(%d+)/"))
    h.wait_caught_up(dir, "pass", 2, job)

    -- /health: 200 with every task RUNNING.
    local health = wait_until("/health 200", function()
      local r = get(port, "/health")
      return r.code == 200 and r
    end, job)
    local cjson = require("cjson")
    local doc = cjson.decode(health.body)
    assert.equal("UP", doc.status)
    assert.equal(2, #doc.tasks)
    for _, t in ipairs(doc.tasks) do
      assert.equal("RUNNING", t.state)
      assert.equal("OK", t.lag_status)
    end

    -- /metrics: the counts agree with `tide tasks` and with what was
    -- produced, once the worker's stats (each second) caught up.
    local tasks = h.tasks(dir, "pass")
    local text = wait_until("metrics with every message", function()
      local r = get(port, "/metrics")
      local a = sample(r.body, "tide_task_messages_in_total", { task = 0 })
      local b = sample(r.body, "tide_task_messages_in_total", { task = 1 })
      return a and b and a + b == 300 and r.body
    end, job)
    for p = 0, 1 do
      local processed = tonumber(tasks[p].line:match("processed=(%d+)"))
      assert.equal(processed, sample(text, "tide_task_messages_in_total",
                                     { task = p }))
      assert.equal(processed, sample(text, "tide_task_messages_out_total",
                                     { task = p }))
      assert.equal(0, sample(text, "tide_task_input_lag_messages",
                             { task = p, stream = "pings", partition = p }))
      assert.equal(processed, sample(text, "tide_task_input_offset",
                                     { task = p, partition = p }))
      assert.equal(1, sample(text, "tide_task_state",
                             { task = p, state = "RUNNING" }))
      assert.is_true(sample(text, "tide_task_batch_process_seconds_count",
                            { task = p }) >= 1)
    end
    assert.is_true(sample(text, "tide_worker_resident_memory_bytes",
                          { worker = 1 }) > 0)
    assert.is_nil(text:find('key="', 1, true))

    if have("promtool") then
      local f = work .. "/metrics.txt"
      h.write_file(f, text)
      local r = h.run("env -u LD_PRELOAD promtool check metrics", { stdin_file = f })
      assert.equal(0, r.code, r.out .. r.err)
    else
      pending("promtool is missing (Debian package prometheus; make deps)")
    end

    -- More input: the counters grow between two scrapes.
    h.ok({ "produce", "pings" }, { dir = dir, stdin = "x\ny\nz\nw\n" })
    wait_until("the counters to grow", function()
      local r = get(port, "/metrics")
      local a = sample(r.body, "tide_task_messages_in_total", { task = 0 })
      local b = sample(r.body, "tide_task_messages_in_total", { task = 1 })
      return a and b and a + b == 304
    end, job)

    -- A paused task: 503, and its state says so.
    h.ok({ "pause", "pass", "1" }, { dir = dir })
    local r = get(port, "/health")
    assert.equal(503, r.code)
    doc = cjson.decode(r.body)
    assert.equal("DOWN", doc.status)
    assert.equal("PAUSED", doc.tasks[2].state)
    assert.equal("RUNNING", doc.tasks[1].state)
    h.ok({ "resume", "pass", "1" }, { dir = dir })
    assert.equal(200, get(port, "/health").code)

    -- Other paths and methods.
    assert.equal(404, get(port, "/nope").code)
    assert.equal(405, get(port, "/metrics", "POST").code)

    h.stop(job)
  end)

  it("exports errors by kind, latency, lag in seconds, time, commits and "
     .. "stores", function()
    -- metered.lua on one partition: 2000 messages over 50 keys (event
    -- times 100 s on), then one that does not decode, one that raises,
    -- and one late for its window; all skipped or dropped.
    h.ok({ "streams", "create", "events", "--partitions", "1" },
         { dir = dir })
    local lines = {}
    for i = 1, 2000 do
      lines[i] = fmt('k%d:{"t":%d}', i % 50, 100000 + i)
    end
    lines[#lines + 1] = "k1:not json"
    lines[#lines + 1] = 'k1:{"t":102000,"boom":true}'
    lines[#lines + 1] = 'k1:{"t":1000}'
    h.ok({ "produce", "events", "-K", ":" },
         { dir = dir, stdin = table.concat(lines, "\n") .. "\n" })
    local job = h.start_tide(dir, work, { "run", METERED, "--workers", "1",
                                          "--http", "0" }, pids)
    local log = h.wait_log(job, "serving /metrics and /health on "
                           .. "http://127%.0%.0%.1:%d+/", 1, "the HTTP line")
    local port = tonumber(log:match("http://127%.0%.0%.1:(%d+)/"))
    local t0 = { job = "metered", task = 0 }
    local function with(extra)
      local l = { job = "metered", task = 0 }
      for k, v in pairs(extra) do l[k] = v end
      return l
    end
    local function scrape()
      return get(port, "/metrics").body
    end

    -- Every message taken and the stores committed (a commit each 100 ms).
    local text = wait_until("the errors and the store counts", function()
      local t = scrape()
      return sample(t, "tide_task_errors_total",
                    with({ kind = "late", action = "drop" })) == 1
             and sample(t, "tide_store_entries",
                        with({ store = "seen" })) == 50
             and t
    end, job)
    for _, ka in ipairs({ { "decode", "skip", 1 }, { "process", "skip", 1 },
                          { "late", "drop", 1 }, { "timeout", "skip", 0 },
                          { "decode", "dead_letter", 0 } }) do
      assert.equal(ka[3], sample(text, "tide_task_errors_total",
                                 with({ kind = ka[1], action = ka[2] })),
                   ka[1] .. "/" .. ka[2])
    end
    -- Latency: one observation per message of a batch that ended (the
    -- two skipped ones too), each within a minute of its record time.
    local lc = sample(text, "tide_task_end_to_end_latency_seconds_count", t0)
    assert.equal(2003, lc)
    assert.equal(lc, sample(text, "tide_task_end_to_end_latency_seconds_bucket",
                            with({ le = "60" })))
    assert.is_true(sample(text, "tide_task_end_to_end_latency_seconds_sum",
                          t0) / lc < 60)
    -- The store: each of the 50 keys read from RocksDB once (then
    -- cached), every other read of "seen" answered by the cache.
    assert.equal(50, sample(text, "tide_store_cache_misses_total",
                            with({ store = "seen" })))
    assert.equal(2000 + 1 - 50, sample(text, "tide_store_cache_hits_total",
                                       with({ store = "seen" })))
    assert.is_true(sample(text, "tide_store_bytes", with({ store = "seen" }))
                   > 0)
    -- Lag: none, so 0 s.
    assert.equal(0, sample(text, "tide_task_input_lag_seconds",
                           with({ stream = "events", partition = 0 })))
    -- Time: the 2003 messages kept the task busy for some milliseconds;
    -- it waits for input since.
    local busy = sample(text, "tide_task_busy_seconds_total", t0)
    local idle = sample(text, "tide_task_idle_seconds_total", t0)
    assert.is_true(busy > 0 and busy < 60, "busy " .. tostring(busy))
    assert.is_true(idle > 0, "idle " .. tostring(idle))
    assert.is_true(sample(text, "tide_task_backpressure_seconds_total", t0)
                   >= 0)
    -- Commits: counted with their duration and bytes (outputs, changelogs).
    local commits = sample(text, "tide_task_commits_total", t0)
    assert.is_true(commits >= 1)
    assert.equal(commits, sample(text,
                                 "tide_task_commit_duration_seconds_count",
                                 t0))
    local bytes = sample(text, "tide_task_commit_bytes_total", t0)
    assert.is_true(bytes >= 2000 * #'{"t":100001}', "bytes " .. bytes)

    if have("promtool") then
      local f = work .. "/metrics.txt"
      h.write_file(f, text)
      local r = h.run("env -u LD_PRELOAD promtool check metrics",
                      { stdin_file = f })
      assert.equal(0, r.code, r.out .. r.err)
    else
      pending("promtool is missing (Debian package prometheus; make deps)")
    end

    -- More input: the counters grow between two scrapes.
    h.ok({ "produce", "events", "-K", ":" },
         { dir = dir, stdin = 'k1:{"t":103000}\nk2:{"t":103001}\n' })
    local later = wait_until("the counters to grow", function()
      local t = scrape()
      local c = sample(t, "tide_task_commit_duration_seconds_count", t0)
      return sample(t, "tide_task_end_to_end_latency_seconds_count", t0)
               == lc + 2 and c > commits and t
    end, job)
    assert.is_true(sample(later, "tide_task_idle_seconds_total", t0) > idle)
    assert.is_true(sample(later, "tide_task_commit_bytes_total", t0) > bytes)
    assert.equal(2000 + 1 - 50 + 2, sample(later, "tide_store_cache_hits_total",
                                           with({ store = "seen" })))

    -- A paused task with input waiting: its lag in seconds is the age of
    -- the last message it processed, and grows.
    h.ok({ "pause", "metered", "0" }, { dir = dir })
    h.ok({ "produce", "events", "-K", ":" },
         { dir = dir, stdin = 'k3:{"t":103002}\n' })
    wait_until("a lag in seconds", function()
      local v = sample(scrape(), "tide_task_input_lag_seconds",
                       with({ stream = "events", partition = 0 }))
      return v and v >= 1
    end, job)
    h.ok({ "resume", "metered", "0" }, { dir = dir })

    -- The progress line carries its figures as fields.
    h.stop(job)
    local err = h.tide_stderr(job)
    local line = err:match("[^\n]*messages processed[^\n]*")
    assert.is_truthy(line, err)
    assert.matches("processed=%d+", line)
    assert.matches("rate=%d+", line)
    assert.matches("skipped=2", line)
    assert.matches("dead=0", line)
  end)

  it("counts a message given up after two timeouts as kind timeout",
     function()
    -- stuck.lua: "hang" loops past max_process_time (2 s) twice, then is
    -- dead-lettered by the worker started the third time.
    h.ok({ "streams", "create", "events", "--partitions", "1" },
         { dir = dir })
    h.ok({ "produce", "events" }, { dir = dir, stdin = "a\nhang\nb\n" })
    local job = h.start_tide(dir, work, { "run", SRC .. "/spec/cli/jobs/"
                                          .. "stuck.lua", "--workers", "1",
                                          "--http", "0" }, pids)
    local log = h.wait_log(job, "http://127%.0%.0%.1:%d+/", 1, "the port")
    local port = tonumber(log:match("http://127%.0%.0%.1:(%d+)/"))
    local l = { job = "stuck", task = 0, kind = "timeout",
                action = "dead_letter" }
    local text = wait_until("the timeout counted", function()
      local t = get(port, "/metrics").body
      return sample(t, "tide_task_errors_total", l) == 1 and t
    end, job)
    l.kind = "process"
    assert.equal(0, sample(text, "tide_task_errors_total", l))
    l.kind = "memory"
    assert.equal(0, sample(text, "tide_task_errors_total", l))
    h.stop(job)
  end)

  it("refuses a bad address and a port in use with one line", function()
    local r = h.tide({ "run", PASS, "--http", "bogus" }, { dir = dir })
    assert.equal(1, r.code)
    assert.matches("^tide run: %-%-http bogus: bad address 'bogus'", r.err)
    assert.equal(1, h.count(r.err, "\n"))

    r = h.tide({ "run", PASS, "--http", "70000" }, { dir = dir })
    assert.equal(1, r.code)
    assert.matches("bad address '70000'", r.err)

    -- A port someone listens on: the first job's own.
    local job = h.start_tide(dir, work, { "run", PASS, "--workers", "1",
                                          "--http", "0" }, pids)
    local log = h.wait_log(job, "http://127%.0%.0%.1:%d+/", 1, "the port")
    local port = log:match("http://127%.0%.0%.1:(%d+)/")
    local w2, d2 = h.scratch()
    h.ok({ "streams", "create", "pings", "--partitions", "1" }, { dir = d2 })
    r = h.tide({ "run", PASS, "--http", "127.0.0.1:" .. port }, { dir = d2 })
    assert.equal(1, r.code)
    assert.matches("address is in use", r.err)
    assert.equal(1, h.count(r.err, "\n"))
    h.rmdir(w2)
    h.stop(job)
  end)
end)
