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

  it("keeps a 64-task job with one store running under steady input",
     function()
    pending("with a hard limit of 1024 such a job sits at 976 descriptors "
            .. "at rest (64 stores x 7 = 448, the log about 500), and the "
            .. "descriptors a commit's snapshots and RocksDB's flushes open "
            .. "for a moment push it over within seconds: it stops with "
            .. "'Too many open files'. Needs a soft limit raised to a higher "
            .. "hard one (the log side) or fewer descriptors per partition")
  end)
end)
