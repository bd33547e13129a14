-- End to end: `tide run --http` (issue 15, parts 1 and 2), checked with
-- clients we did not write: curl scrapes /metrics and /health, and
-- Prometheus's own parser (`promtool check metrics`) checks the text.
-- Waits are bounded hang guards, never timing assertions.
local h = require("cli.helper")

local SRC = os.getenv("TIDE_SOURCE_DIR") or "."
local PASS = SRC .. "/spec/cli/jobs/pass.lua"

local fmt = string.format

local function have(cmd)
  return h.run("command -v " .. cmd).code == 0
end

-- curl: { code = HTTP status (number), body = text }.
local function get(port, path, method)
  local r = h.run(fmt("env -u LD_PRELOAD curl -s -m 10 %s -w '\\n%%{http_code}' "
                      .. "http://127.0.0.1:%d%s",
                      method and ("-X " .. method) or "", port, path))
  local body, code = r.out:match("^(.*)\n(%d+)$")
  return { code = tonumber(code), body = body or "", curl = r.code }
end

-- The value of the sample `name{labels}` (labels in the order written).
local function sample(text, name, labels)
  for line in text:gmatch("[^\n]+") do
    local n, l, v = line:match("^([%w_]+)(%b{}) (%S+)$")
    if n == name then
      local ok = true
      for k, want in pairs(labels or {}) do
        if not l:find(fmt('%s="%s"', k, want), 1, true) then ok = false end
      end
      if ok then return tonumber(v) end
    end
  end
  return nil
end

local function wait_until(what, fn, job)
  for _ = 1, 600 do
    local v = fn()
    if v then return v end
    if job and h.exited(job) then
      error(fmt("the job ended while waiting for %s; log:\n%s", what,
                h.tide_stderr(job)), 2)
    end
    h.sleep(0.1)
  end
  error("waiting for " .. what .. ": gave up after 60 s"
        .. (job and ("; log:\n" .. h.tide_stderr(job)) or ""), 2)
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
