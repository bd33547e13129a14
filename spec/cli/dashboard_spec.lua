-- End to end: the dashboard and /state of `tide run --http` (issue 15,
-- parts 2 and 3), checked with clients we did not write: headless
-- Chromium runs the page's JavaScript against a real job (its DOM is read
-- once the page polled /api/status, and two screenshots are kept under
-- $TIDE_BUILD_DIR/artifacts/), and curl reads /metrics and /state. The
-- job is spec/cli/jobs/counter.lua (counts per key in store "counts") on
-- 2 partitions and 2 workers, fed by a background `tide produce` loop;
-- its numbers are compared once it drained, so that they stand still.
-- Waits are bounded hang guards, never timing assertions.
local h = require("cli.helper")
local get, sample, wait_until = h.http_get, h.metric, h.wait_until
local cjson = require("cjson")

local SRC = os.getenv("TIDE_SOURCE_DIR") or "."
local BUILD = os.getenv("TIDE_BUILD_DIR") or "."
local CHROMIUM = "/usr/bin/chromium"
local NKEYS = 23

local fmt = string.format

-- curl: { code = HTTP status, body = text }.
local function get_json(port, path)
  local r = get(port, path)
  local ok, doc = pcall(cjson.decode, r.body)
  assert(ok, fmt("GET %s (%s): not JSON: %s", path, tostring(r.code), r.body))
  return r.code, doc
end

-- Runs headless Chromium on `url` with `args` (a string); its stdout.
local function chromium(args, url)
  local r = h.run(fmt("env -u LD_PRELOAD timeout 60 %s --headless --no-sandbox "
                      .. "--disable-gpu --hide-scrollbars "
                      .. "--user-data-dir=%s %s %s",
                      CHROMIUM, h.q(os.tmpname() .. ".chromium"), args,
                      h.q(url)))
  assert(r.code == 0, fmt("chromium %s exited %s: %s", args, tostring(r.code),
                          r.err))
  return r
end

-- A screenshot of the page `secs` s into it (virtual time: its polls
-- run), at `size` "W,H", kept as artifacts/dashboard-NAME.png.
local function screenshot(url, name, size, secs)
  local dir = BUILD .. "/artifacts"
  os.execute("mkdir -p " .. h.q(dir))
  local path = fmt("%s/dashboard-%s.png", dir, name)
  os.remove(path)
  chromium(fmt("--virtual-time-budget=%d --window-size=%s --screenshot=%s",
               secs * 1000, size, h.q(path)), url)
  local png = h.read_file(path)
  assert(png and png:sub(2, 4) == "PNG", "no screenshot at " .. path)
  print("dashboard screenshot: " .. path)
  return path
end

-- Lua pattern text matching `s` literally.
local function lit(s)
  return (s:gsub("%p", "%%%0"))
end

-- The attribute `name` of the element with id `id` in `dom`.
local function attr(dom, id, name)
  local tag = dom:match('<[^>]- id="' .. lit(id) .. '"[^>]*>')
  assert(tag, "no element with id " .. id .. " in the page")
  return tag:match(" " .. lit(name) .. '="([^"]*)"')
end

describe("the dashboard of tide run --http", function()
  local work, dir
  local pids = {}

  before_each(function()
    work, dir = h.scratch()
    h.ok({ "streams", "create", "events", "--partitions", "2" },
         { dir = dir })
  end)

  after_each(function()
    h.kill_started(work)
    h.kill_ours(pids, work)
  end)

  it("shows the running job's tasks with the numbers /metrics has, and "
     .. "/state reads its store", function()
    assert(h.run("command -v " .. CHROMIUM).code == 0,
           "chromium is missing (" .. CHROMIUM .. "): the dashboard spec "
           .. "runs the page in headless Chromium; `make deps` installs it "
           .. "(Debian package chromium)")
    -- The job file is a copy, so that an edit reloads it.
    local file = work .. "/counter.lua"
    local code = h.read_file(SRC .. "/spec/cli/jobs/counter.lua")
    h.write_file(file, code)
    local job = h.start_tide(dir, work, { "run", file, "--workers", "2",
                                          "--http", "0" }, pids)
    local log = h.wait_log(job, "http://127%.0%.0%.1:%d+/", 1, "the port")
    local port = tonumber(log:match("http://127%.0%.0%.1:(%d+)/"))
    local url = fmt("http://127.0.0.1:%d/", port)
    h.wait_log(job, "job 'counter' started", 1, "the start")

    -- Under load: the page's first screenshot, while the writer runs.
    h.start_writer(dir, work, { batch = 200, nkeys = NKEYS, parts = 2,
                                pause = 0.05, max_batches = 400 })
    wait_until("input to flow", function()
      local _, s = get_json(port, "/api/status")
      local n = 0
      for _, t in ipairs(s.tasks) do n = n + (t.processed or 0) end
      return n >= 1000
    end, job)
    screenshot(url, "desktop", "1280,1700", 6)
    local total = h.stop_writer(work)

    -- A reload: the history says so.
    h.write_file(file, code .. "-- edited\n")
    h.wait_log(job, "reloaded ", 1, "the reload")

    -- Drained: every message counted in /metrics, and idle.
    h.wait_caught_up(dir, "counter", 2, job)
    local metrics = wait_until("metrics with every message", function()
      local r = get(port, "/metrics")
      local a = sample(r.body, "tide_task_messages_in_total", { task = 0 })
      local b = sample(r.body, "tide_task_messages_in_total", { task = 1 })
      return a and b and a + b == total and r.body
    end, job)

    -- The page, once its script polled a few times; its state browser
    -- reads the range the link names.
    local dom = chromium("--virtual-time-budget=3000 --dump-dom",
                         url .. "#state/counts?from=k1&to=k2&limit=5").out
    assert.matches('<h1 id="job">counter</h1>', dom, 1, true)
    assert.equal("UP", dom:match('id="status" class="badge UP">(%u+)<'))
    assert.equal("2", attr(dom, "sum-tasks", "data-value"))
    assert.equal(tostring(total), attr(dom, "sum-in", "data-value"))
    assert.equal("0", attr(dom, "sum-lag", "data-value"))
    for p = 0, 1 do
      local id = "task-" .. p .. "-"
      assert.equal("RUNNING", attr(dom, id .. "state", "data-value"))
      assert.equal(sample(metrics, "tide_task_messages_in_total",
                          { task = p }),
                   tonumber(attr(dom, id .. "processed", "data-value")))
      assert.equal(sample(metrics, "tide_task_messages_out_total",
                          { task = p }),
                   tonumber(attr(dom, id .. "sent", "data-value")))
      assert.equal("0", attr(dom, id .. "lag", "data-value"))
      local input = id .. "input-events-" .. p
      assert.equal(sample(metrics, "tide_task_input_offset",
                          { task = p, partition = p }),
                   tonumber(attr(dom, input, "data-next")))
      assert.equal(sample(metrics, "tide_task_input_end_offset",
                          { task = p, partition = p }),
                   tonumber(attr(dom, input, "data-end")))
      -- The rates of a drained job.
      assert.equal("0", attr(dom, id .. "rate-in", "data-value"))
    end
    -- Topology: the input, the output, the store and its changelog.
    for _, name in ipairs({ "events", "counts-out", "counts",
                            "counter-counts-changelog" }) do
      assert.matches('data-name="' .. name .. '"', dom, 1, true)
    end
    -- The commit history (counter commits every 50 ms) and the reload.
    assert.is_truthy(attr(dom, "commit-0-messages", "data-value"))
    assert.equal("ok", attr(dom, "reload-0-outcome", "data-value"))
    assert.equal("5", attr(dom, "state-count", "data-value"))
    local rows = {}
    for k in dom:match('<table id="state%-entries">(.-)</table>')
                :gmatch("<tr><td>([^<]*)</td>") do
      rows[#rows + 1] = k
    end
    assert.same({ "k1", "k10", "k11", "k12", "k13" }, rows)
    local _, status = get_json(port, "/api/status")
    assert.equal(20, #status.commit_log)
    assert.equal(1, #status.reload_log)
    assert.equal("file change", status.reload_log[1].trigger)
    screenshot(url, "phone", "390,844", 3)

    -- /state/STORE/KEY: as `tide state get` answers, on the key's task.
    local c, doc = get_json(port, "/state/counts/k3")
    assert.equal(200, c)
    local want = 0
    for i = 0, total - 1 do
      if i % NKEYS == 3 then want = want + 1 end
    end
    assert.equal(tostring(want), doc.value)
    assert.equal(h.partition_of("k3", 2), doc.task)
    assert.equal("counts", doc.store)
    assert.equal("k3", doc.key)
    assert.is_number(doc.offsets["local:events"])
    assert.equal(doc.value, h.ok({ "state", "get", "counter", "counts", "k3" },
                                 { dir = dir, stderr_ok = true })
                            :match("^(.-)\n$"))

    -- A key that needs escaping in a URL.
    h.ok({ "produce", "events", "-K", "|" }, { dir = dir,
                                              stdin = "a b/ç?&|x\n" })
    doc = wait_until("the new key", function()
      local cc, d = get_json(port, "/state/counts/a%20b%2F%C3%A7%3F%26")
      return cc == 200 and d
    end, job)
    assert.equal("a b/ç?&", doc.key)
    assert.equal("1", doc.value)

    -- Absent everywhere, an unknown store, bad input.
    c, doc = get_json(port, "/state/counts/nope")
    assert.equal(404, c)
    assert.matches("key 'nope' is not in store 'counts'", doc.error, 1, true)
    c, doc = get_json(port, "/state/nope/k3")
    assert.equal(404, c)
    assert.same({ "counts" }, doc.stores)
    assert.matches("has no store 'nope' %(stores: counts%)", doc.error)
    for _, bad in ipairs({ "/state/counts/k%zz", "/state/counts?limit=0",
                           "/state/counts?limit=x", "/state/counts?bogus=1",
                           "/state/" }) do
      c, doc = get_json(port, bad)
      assert.equal(400, c, bad)
      assert.is_string(doc.error, bad)
    end

    -- A range, merged across both tasks in key order.
    c, doc = get_json(port, "/state/counts?from=k1&to=k2&limit=5")
    assert.equal(200, c)
    local keys, tasks = {}, {}
    for i, e in ipairs(doc.entries) do
      keys[i] = e.key
      tasks[e.task] = true
    end
    assert.same({ "k1", "k10", "k11", "k12", "k13" }, keys)
    assert.is_true(doc.more)
    assert.is_true(tasks[0] and tasks[1])
    c, doc = get_json(port, "/state/counts?from=k2&to=k3")
    assert.equal(200, c)
    assert.equal(4, doc.count)          -- [k2, k3): k2, k20, k21, k22
    assert.is_false(doc.more)

    -- Keys and values stay out of /metrics.
    assert.is_nil(get(port, "/metrics").body:find("a b/", 1, true))
    h.stop(job)
  end)

  it("is installed with tide and served from the install prefix", function()
    local prefix = work .. "/prefix"
    local r = h.run(fmt("cmake --install %s --prefix %s", h.q(BUILD),
                        h.q(prefix)))
    assert.equal(0, r.code, r.err)
    local web = prefix .. "/share/lua/5.1/tide/web/"
    for _, file in ipairs({ "index.html", "dashboard.js", "dashboard.css" }) do
      assert.equal(h.read_file(SRC .. "/lua/tide/web/" .. file),
                   h.read_file(web .. file), "installed " .. file)
    end
    -- The page served is the prefix's own copy.
    local marked = h.read_file(web .. "index.html") .. "<!-- prefix -->\n"
    h.write_file(web .. "index.html", marked)
    h.ok({ "streams", "create", "pings", "--partitions", "1" },
         { dir = dir })
    local bin = h.bin
    h.bin = prefix .. "/bin/tide"
    local ok, job = pcall(h.start_tide, dir, work,
                          { "run", SRC .. "/spec/cli/jobs/pass.lua",
                            "--workers", "1", "--http", "0" }, pids)
    h.bin = bin
    assert(ok, job)
    local log = h.wait_log(job, "http://127%.0%.0%.1:%d+/", 1, "the port")
    local port = tonumber(log:match("http://127%.0%.0%.1:(%d+)/"))
    for path, file in pairs({ ["/"] = "index.html",
                              ["/dashboard.js"] = "dashboard.js",
                              ["/dashboard.css"] = "dashboard.css" }) do
      local want = h.read_file(web .. file)
      local got = get(port, path)
      assert.equal(200, got.code, path)
      assert.equal(want, got.body, path)
    end
    assert.equal(marked, get(port, "/").body)
    h.stop(job)
  end)
end)
