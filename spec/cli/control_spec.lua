-- End to end: a job's control socket never hurts the job (issue 10, D9).
-- The real `tide run` runs spec/cli/jobs/counter.lua under `ulimit -n 256`
-- while a Python client holds 300 idle connections to its control.sock:
-- 300 idle clients once took every descriptor of the job, which then died
-- at its next commit. Waits are bounded hang guards, never timing
-- assertions.
local h = require("cli.helper")

local SRC = os.getenv("TIDE_SOURCE_DIR") or "."
local COUNTER = SRC .. "/spec/cli/jobs/counter.lua"

local fmt = string.format

local IDLE = 300
local NOFILE = 256      -- below IDLE: idle clients alone could exhaust it

-- Connects IDLE clients that send nothing, then reads each until the job
-- closes it (hang guard: 60 s) and prints one word per client: "busy",
-- "timeout", "other" (any other text) or "open" (never closed).
local IDLE_PY = [[
import socket, sys, time, os
path, n, ready = sys.argv[1], int(sys.argv[2]), sys.argv[3]
socks = []
for i in range(n):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(path)
    socks.append(s)
open(ready + ".tmp", "w").write("%d\n" % len(socks))
os.rename(ready + ".tmp", ready)
deadline = time.time() + 60
for s in socks:
    s.settimeout(max(0.01, deadline - time.time()))
    got = b""
    try:
        while True:
            b = s.recv(256)
            if not b:
                break
            got += b
        word = ("busy" if got.startswith(b"busy: ") else
                "timeout" if got.startswith(b"timeout: ") else "other")
    except socket.timeout:
        word = "open"
    except OSError as e:
        word = "other"
    print(word, flush=True)
]]

local function count(s, pat)
  local n = 0
  for _ in s:gmatch(pat) do n = n + 1 end
  return n
end

local function wait_for(what, fn, job)
  for _ = 1, 6000 do
    local v = fn()
    if v then return v end
    if job and h.read_file(job.base .. ".rc") then
      error(fmt("job ended (status %s) while waiting for %s; log:\n%s",
                h.read_file(job.base .. ".rc"), what,
                h.read_file(job.base .. ".err") or ""), 2)
    end
    h.sleep(0.01)
  end
  error("waiting for " .. what .. ": gave up after 60 s", 2)
end

-- Starts `tide run JOB --data-dir DIR` under `ulimit -n NOFILE`, as
-- spec/cli/helper.lua's start_tide does (its status goes to <base>.rc).
local function start_job(dir, work, job_file)
  local base = work .. "/job"
  local script = fmt("ulimit -n %d && %s run %s --data-dir %s >%s 2>%s & "
                     .. "echo $! >%s.tmp && mv %s.tmp %s; wait $!; "
                     .. "echo $? >%s.tmp && mv %s.tmp %s", NOFILE,
                     h.q(h.bin), h.q(job_file), h.q(dir),
                     h.q(base .. ".out"), h.q(base .. ".err"),
                     h.q(base .. ".pid"), h.q(base .. ".pid"),
                     h.q(base .. ".pid"), h.q(base .. ".rc"),
                     h.q(base .. ".rc"), h.q(base .. ".rc"))
  h.spawn("sh -c " .. h.q(script) .. " </dev/null >/dev/null 2>&1")
  local pid = wait_for("the job's pid", function()
    return tonumber(h.read_file(base .. ".pid") or "")
  end)
  return { pid = pid, base = base }
end

-- The newest count per key in counts-out, summed over keys.
local function total_counted(dir)
  local last = h.newest_counts(dir, "counts-out")
  local sum = 0
  for _, n in pairs(last) do sum = sum + n end
  return sum
end

local function produce(dir, first, n)
  local lines = {}
  for i = first, first + n - 1 do
    lines[#lines + 1] = fmt("k%d:%d", i % 7, i)
  end
  h.ok({ "produce", "events", "-K", ":" },
       { dir = dir, stdin = table.concat(lines, "\n") .. "\n" })
end

describe("tide run's control socket", function()
  local dir, work, job, idle_pid

  before_each(function()
    dir, work = h.tmpdir(), h.tmpdir()
    h.ok({ "streams", "create", "events", "--partitions", "2" }, { dir = dir })
    h.ok({ "streams", "create", "counts-out", "--partitions", "2" },
         { dir = dir })
  end)

  after_each(function()
    if idle_pid then os.execute("kill -9 " .. idle_pid .. " 2>/dev/null") end
    if job and not h.read_file(job.base .. ".rc") then
      os.execute("kill -9 " .. job.pid .. " 2>/dev/null")
    end
    idle_pid, job = nil, nil
    h.rmdir(dir)
    h.rmdir(work)
  end)

  it("outlives 300 idle clients, then answers reload and stops with 0",
     function()
    produce(dir, 1, 100)
    job = start_job(dir, work, COUNTER)
    local sock = dir .. "/jobs/counter/control.sock"
    wait_for("100 messages counted", function()
      return total_counted(dir) == 100
    end, job)

    h.write_file(work .. "/idle.py", IDLE_PY)
    local ready = work .. "/idle.ready"
    idle_pid = h.spawn(fmt("python3 %s %s %d %s >%s 2>&1",
                           h.q(work .. "/idle.py"), h.q(sock), IDLE,
                           h.q(ready), h.q(work .. "/idle.out")))
    local connected = wait_for("the idle clients", function()
      return tonumber(h.read_file(ready) or "")
    end, job)
    assert.equals(IDLE, connected)

    -- The job goes on processing and committing while they are there.
    produce(dir, 101, 200)
    wait_for("300 messages counted", function()
      return total_counted(dir) == 300
    end, job)

    -- Every idle client is closed: most at once ("busy"), the ones taken
    -- after 5 s without a line ("timeout").
    local words = wait_for("the idle clients to be closed", function()
      local s = h.read_file(work .. "/idle.out") or ""
      return count(s, "\n") >= IDLE and s or nil
    end, job)
    assert.equals(IDLE, count(words, "busy\n") + count(words, "timeout\n"),
                  words:sub(1, 400))
    assert.is_true(count(words, "busy\n") >= IDLE - 16)

    local r = h.tide({ "reload", COUNTER }, { dir = dir })
    assert.equals(0, r.code, r.out .. r.err)
    assert.matches("^ok", r.out)

    produce(dir, 301, 50)
    wait_for("350 messages counted", function()
      return total_counted(dir) == 350
    end, job)

    os.execute("kill -TERM " .. job.pid)
    local rc = wait_for("the job to exit", function()
      return tonumber(h.read_file(job.base .. ".rc") or "")
    end)
    local log = h.read_file(job.base .. ".err") or ""
    assert.equals(0, rc, log)
    assert.not_matches("i/o error", log)
    assert.matches("stopped cleanly", log)
  end)
end)
