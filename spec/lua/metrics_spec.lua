-- tide.metrics: the Burrow-style lag status, the Prometheus text and the
-- /health body (docs/operate.md "Metrics and health").
local metrics = require("tide.metrics")
local cjson = require("cjson")

local function window(list)
  local out = {}
  for i, v in ipairs(list) do
    out[i] = { committed = v[1], lag = v[2] }
  end
  return out
end

describe("tide.metrics", function()
  describe("lag_status()", function()
    it("is OK until the window is full", function()
      assert.equal("OK", metrics.lag_status(window({ { 0, 5 }, { 0, 9 } })))
    end)

    it("is STALL when the committed offset stands while lag > 0", function()
      local w = {}
      for i = 1, metrics.WINDOW do w[i] = { 100, 7 } end
      assert.equal("STALL", metrics.lag_status(window(w)))
    end)

    it("is OK when the lag was zero once in the window", function()
      local w = {}
      for i = 1, metrics.WINDOW do w[i] = { 100, i == 3 and 0 or 7 } end
      assert.equal("OK", metrics.lag_status(window(w)))
    end)

    it("is WARN when the lag grows across the window while commits move",
       function()
      local w = {}
      for i = 1, metrics.WINDOW do w[i] = { i * 10, i * 3 } end
      assert.equal("WARN", metrics.lag_status(window(w)))
    end)

    it("is OK when the lag goes down somewhere", function()
      local w = {}
      for i = 1, metrics.WINDOW do w[i] = { i * 10, i == 5 and 1 or 20 + i } end
      assert.equal("OK", metrics.lag_status(window(w)))
    end)
  end)

  local view = {
    job = 'j"x', version = "v1", ntasks = 2, uptime = 1.5, commits = 3,
    reloads = 1, refused = 0, rolled_back = 0, restarts = 0,
    buckets = { 0.001, 0.01 },
    workers = { { id = 1, up = true, rss = 1000 } },
    tasks = {
      { task = 0, worker = 1, state = "RUNNING", lag_status = "OK",
        committed = { ["local:s"] = 4 },
        stats = { processed = 10, sent = 9, skipped = 1, dead = 0, lag = 2,
                  hist = { 3, 1 }, hsum = 0.02, hcount = 5,
                  parts = { { key = "local:s", stream = "s", partition = 0,
                              next = 10, ["end"] = 12 } } } },
      { task = 1, state = "RESTORING", lag_status = "OK",
        restore = { store = "counts", records = 5, total = 20 } },
    },
  }

  describe("prometheus()", function()
    local text = metrics.prometheus(view)

    it("escapes label values and writes each family once", function()
      assert.truthy(text:find('tide_info{job="j\\"x",version="v1"} 1', 1,
                              true))
      local _, n = text:gsub("# TYPE tide_task_state gauge", "")
      assert.equal(1, n)
    end)

    it("writes cumulative histogram buckets", function()
      assert.truthy(text:find('le="0.001"} 3', 1, true))
      assert.truthy(text:find('le="0.01"} 4', 1, true))
      assert.truthy(text:find('le="+Inf"} 5', 1, true))
    end)

    it("writes lag per input partition and restore progress", function()
      assert.truthy(text:find('tide_task_input_lag_messages{job="j\\"x",'
                              .. 'partition="0",stream="s",task="0"} 2', 1,
                              true))
      assert.truthy(text:find('tide_task_restore_progress_ratio{job="j\\"x",'
                              .. 'store="counts",task="1"} 0.25', 1, true))
    end)
  end)

  describe("health()", function()
    it("is 503 unless every task runs, with each task's state", function()
      local code, body = metrics.health(view)
      assert.equal(503, code)
      local doc = cjson.decode(body)
      assert.equal("DOWN", doc.status)
      assert.equal("RESTORING", doc.tasks[2].state)
      assert.equal(0.25, doc.tasks[2].restore.progress)
      view.tasks[2] = nil
      code = metrics.health(view)
      assert.equal(200, code)
    end)
  end)
end)
