-- End to end: what a job needs of the system's limits (issue 10, D8). The
-- real `tide run` runs spec/cli/jobs/counter.lua (one RocksDB store) over
-- a 64-partition input, that is 64 tasks and 64 stores, under
-- `ulimit -n 1024`: it once failed at start with "Too many open files".
local h = require("cli.helper")

local SRC = os.getenv("TIDE_SOURCE_DIR") or "."
local COUNTER = SRC .. "/spec/cli/jobs/counter.lua"

local fmt = string.format

local PARTS = 64
local N = 6400
local KEYS = 640

describe("tide run under ulimit -n 1024", function()
  local dir

  before_each(function()
    dir = h.tmpdir()
  end)

  after_each(function()
    -- a job left running by a failed test (none on success)
    local pid = h.read_file(dir .. "/jobs/counter/run.lock")
    pid = pid and tonumber(pid:match("%d+"))
    if pid and h.alive(pid) then
      os.execute("kill -9 " .. pid)
    end
    h.rmdir(dir)
  end)

  it("drains a 64-task job with one store, with exact counts", function()
    h.ok({ "streams", "create", "events", "--partitions", tostring(PARTS) },
         { dir = dir })
    h.ok({ "streams", "create", "counts-out", "--partitions",
           tostring(PARTS) }, { dir = dir })
    local lines, truth = {}, {}
    for i = 1, N do
      local k = "k" .. (i * 7919) % KEYS
      truth[k] = (truth[k] or 0) + 1
      lines[i] = k .. ":" .. i
    end
    h.ok({ "produce", "events", "-K", ":" },
         { dir = dir, stdin = table.concat(lines, "\n") .. "\n" })

    local r = h.run(fmt("sh -c %s", h.q(fmt(
      "ulimit -n 1024 && exec %s run %s --drain --data-dir %s",
      h.q(h.bin), h.q(COUNTER), h.q(dir)))))
    assert.equals(0, r.code, r.err)
    assert.matches(fmt("job 'counter' started: %d tasks", PARTS), r.err)

    local dump = h.ok({ "state", "dump", COUNTER, "counts" }, { dir = dir })
    local got, nkeys = {}, 0
    for k, v in dump:gmatch("([^\t\n]+)\t([^\n]*)\n") do
      got[k] = tonumber(v)
      nkeys = nkeys + 1
    end
    assert.equals(KEYS, nkeys)
    assert.same(truth, got)

    -- The outputs agree: the newest count per key is the key's count.
    assert.same(truth, h.newest_counts(dir, "counts-out"))
  end)

  it("keeps a 64-task job with one store running under steady input "
     .. "(two workers)", function()
    -- Before worker processes, one process held 976 descriptors at rest
    -- (64 stores x 7, the log about 500), and a commit's snapshots pushed
    -- it over 1024 within seconds: it stopped after about 14 rounds here
    -- with "Too many open files". A worker holds only its own tasks'
    -- stores and readers.
    h.ok({ "streams", "create", "events", "--partitions", tostring(PARTS) },
         { dir = dir })
    h.ok({ "streams", "create", "counts-out", "--partitions",
           tostring(PARTS) }, { dir = dir })
    local base = dir .. "/run"
    local job = { base = base, pid = h.spawn(fmt("sh -c %s </dev/null "
      .. ">/dev/null 2>&1", h.q(fmt(
      "ulimit -n 1024 && exec %s run %s --workers 2 --data-dir %s "
      .. ">%s.out 2>%s.err", h.q(h.bin), h.q(COUNTER), h.q(dir), h.q(base),
      h.q(base))))) }
    local truth, n = {}, 0
    -- steady input for about 8 s: commits every 50 ms take snapshots
    for round = 1, 40 do
      local lines = {}
      for j = 1, 200 do
        n = n + 1
        local k = "k" .. (n * 7919) % KEYS
        truth[k] = (truth[k] or 0) + 1
        lines[j] = k .. ":" .. n
      end
      h.ok({ "produce", "events", "-K", ":" },
           { dir = dir, stdin = table.concat(lines, "\n") .. "\n" })
      h.sleep(0.2)
      assert.is_true(h.alive(job.pid), fmt("the job stopped after %d "
                                           .. "rounds:\n%s", round,
                                           h.tide_stderr(job)))
    end
    -- every message processed and committed, then a clean stop
    local done = false
    for _ = 1, 600 do
      local ck = h.read_file(dir .. "/jobs/counter/checkpoint.json") or ""
      local sum = 0
      for off in ck:gmatch('"local:events":(%d+)') do
        sum = sum + tonumber(off)
      end
      if sum == n then
        done = true
        break
      end
      h.sleep(0.1)
    end
    assert.is_true(done, "not every message was committed:\n"
                         .. h.tide_stderr(job))
    os.execute("kill -TERM " .. job.pid)
    local got = {}
    for _ = 1, 300 do
      if not h.alive(job.pid) then break end
      h.sleep(0.1)
    end
    assert.is_false(h.alive(job.pid), "the job did not stop")
    local err = h.tide_stderr(job)
    assert.is_nil(err:find("Too many open files", 1, true), err)
    assert.matches("stopped cleanly", err, 1, true)
    local dump = h.ok({ "state", "dump", COUNTER, "counts" }, { dir = dir })
    for k, v in dump:gmatch("([^\t\n]+)\t([^\n]*)\n") do
      got[k] = tonumber(v)
    end
    assert.same(truth, got)
  end)
end)
