-- Shared helpers of the spec/cli/ specs: they drive the real `tide` binary
-- (TIDE_BIN) through a shell, as a user would, with a fresh data dir each.
local ffi = require("ffi")

local M = {}

M.bin = os.getenv("TIDE_BIN")
assert(M.bin and M.bin ~= "", "TIDE_BIN must name the tide binary")

-- Quotes one word for sh.
function M.q(s)
  s = tostring(s)
  return "'" .. s:gsub("'", "'\\''") .. "'"
end

local function sh_out(cmd)
  local p = assert(io.popen(cmd, "r"))
  local out = p:read("*a")
  p:close()
  return out
end
M.sh = sh_out

function M.read_file(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return s
end

function M.write_file(path, data)
  local f = assert(io.open(path, "wb"))
  assert(f:write(data))
  assert(f:close())
end

function M.tmpdir()
  local d = sh_out("mktemp -d /tmp/tide-cli-spec.XXXXXX"):gsub("%s+$", "")
  assert(d:match("^/tmp/tide%-cli%-spec%."), "mktemp -d failed")
  return d
end

-- Removes the folders given (those M.tmpdir made; nil is skipped).
function M.rmdir(...)
  for i = 1, select("#", ...) do
    local d = select(i, ...)
    if d and d:match("^/tmp/tide%-cli%-spec%.") then
      os.execute("rm -rf " .. M.q(d))
    end
  end
end

-- A fresh scratch dir and the data dir inside it: work, work/data.
function M.scratch()
  local work = M.tmpdir()
  return work, work .. "/data"
end

-- Runs a shell command line; returns { code =, out =, err = }.
-- opts.stdin: a string fed on stdin; opts.stdin_file: a file fed on stdin;
-- opts.env: { NAME = value } set for this command only.
function M.run(cmdline, opts)
  opts = opts or {}
  local tmp = os.tmpname()
  local env = ""
  for k, v in pairs(opts.env or {}) do
    env = env .. k .. "=" .. M.q(v) .. " "
  end
  local input = "/dev/null"
  if opts.stdin then
    input = tmp .. ".in"
    M.write_file(input, opts.stdin)
  elseif opts.stdin_file then
    input = opts.stdin_file
  end
  local full = string.format("%s%s <%s >%s 2>%s; echo $?", env, cmdline,
                             M.q(input), M.q(tmp .. ".out"),
                             M.q(tmp .. ".err"))
  local code = tonumber((sh_out(full):match("(%d+)%s*$")))
  local r = { code = code, out = M.read_file(tmp .. ".out") or "",
              err = M.read_file(tmp .. ".err") or "" }
  os.remove(tmp)
  os.remove(tmp .. ".in")
  os.remove(tmp .. ".out")
  os.remove(tmp .. ".err")
  return r
end

-- Runs tide with the given argument words (a list), e.g.
-- M.tide({ "consume", "s", "-e" }, { dir = d, stdin = "a\nb\n" }).
-- opts.dir, when given, is passed as '--data-dir DIR' after the words.
function M.tide(args, opts)
  opts = opts or {}
  local words = { M.q(M.bin) }
  for _, a in ipairs(args) do words[#words + 1] = M.q(a) end
  if opts.dir then
    words[#words + 1] = "--data-dir"
    words[#words + 1] = M.q(opts.dir)
  end
  return M.run(table.concat(words, " "), opts)
end

-- Like M.tide, but fails the test unless tide exits 0 with an empty stderr
-- (unless opts.stderr_ok). Returns stdout.
function M.ok(args, opts)
  local r = M.tide(args, opts)
  if r.code ~= 0 or (r.err ~= "" and not (opts and opts.stderr_ok)) then
    error(string.format("tide %s exited %s\nstderr: %s",
                        table.concat(args, " "), tostring(r.code), r.err), 2)
  end
  return r.out, r
end

-- Runs `tide run JOB --drain --workers 1 EXTRA...` over data dir `dir`;
-- raises (at the caller) unless it exits 0. Returns its stderr.
function M.drain(dir, job, extra)
  local args = { "run", job, "--drain", "--workers", "1" }
  for _, a in ipairs(extra or {}) do args[#args + 1] = a end
  local r = M.tide(args, { dir = dir })
  if r.code ~= 0 then
    error(string.format("tide run %s exited %s\nstderr:\n%s", job,
                        tostring(r.code), r.err), 2)
  end
  return r.err
end

-- The records of `stream` printed with format `f` (tide consume -e,
-- default "%s\n"), as lines; none while the stream does not exist yet.
function M.consume_lines(dir, stream, f)
  local r = M.tide({ "consume", stream, "-e", "-f", f or "%s\\n" },
                   { dir = dir })
  if r.code ~= 0 and r.err:find("no stream", 1, true) then return {} end
  assert(r.code == 0, r.err)
  return M.lines(r.out)
end

-- Lines of a string (a trailing newline ends the last line).
function M.lines(s)
  local t = {}
  for l in s:gmatch("([^\n]*)\n") do t[#t + 1] = l end
  return t
end

-- Starts a shell command line in the background; returns the pid of the
-- last process of its pipeline (the one `$!` names).
function M.spawn(cmdline)
  local pid = sh_out(cmdline .. " & echo $!"):match("(%d+)%s*$")
  return assert(tonumber(pid), "could not start: " .. cmdline)
end

local function state(pid)
  local s = M.read_file("/proc/" .. pid .. "/stat")
  if not s then return nil end
  return s:match("^%d+ %b() (%a)")
end

-- Whether pid is still running (a zombie counts as gone).
function M.alive(pid)
  local st = state(pid)
  return st ~= nil and st ~= "Z" and st ~= "X"
end

function M.sleep(seconds)
  os.execute(string.format("sleep %.3f", seconds))
end

-- Sends SIGKILL and waits until the process is gone.
function M.kill9(pid)
  os.execute("kill -9 " .. pid .. " 2>/dev/null")
  for _ = 1, 2000 do
    if not M.alive(pid) then return end
    M.sleep(0.01)
  end
  error("process " .. pid .. " survived SIGKILL")
end

-- Files under a folder with their sizes: { [relpath] = bytes }, and total.
function M.files(dir)
  local t, total = {}, 0
  local out = sh_out("cd " .. M.q(dir) .. " && find . -type f -printf '%s %P\\n'")
  for size, path in out:gmatch("(%d+) ([^\n]+)\n") do
    t[path] = tonumber(size)
    total = total + tonumber(size)
  end
  return t, total
end

-- Kafka's murmur2 (org.apache.kafka.common.utils.Utils.murmur2), seed
-- 0x9747b28c, and its default partitioner: (h & 0x7fffffff) % n.
local bit = require("bit")
local band, bxor, rshift, tobit = bit.band, bit.bxor, bit.rshift, bit.tobit

local function mul32(a, b)
  -- low 32 bits of a*b without losing precision in doubles
  local alo, ahi = band(a, 0xffff), rshift(a, 16)
  return tobit(alo * b + tobit(ahi * b) * 0x10000)
end

function M.murmur2(key)
  local m, r = 0x5bd1e995, 24
  local len = #key
  local h = bxor(tobit(0x9747b28c), len)
  local i = 1
  while len - (i - 1) >= 4 do
    local b1, b2, b3, b4 = key:byte(i, i + 3)
    local k = b1 + b2 * 0x100 + b3 * 0x10000 + tobit(b4 * 0x1000000)
    k = tobit(k)
    k = mul32(k, m)
    k = bxor(k, rshift(k, r))
    k = mul32(k, m)
    h = mul32(h, m)
    h = bxor(h, k)
    i = i + 4
  end
  local rest = len - (i - 1)
  if rest == 3 then h = bxor(h, key:byte(i + 2) * 0x10000) end
  if rest >= 2 then h = bxor(h, key:byte(i + 1) * 0x100) end
  if rest >= 1 then
    h = bxor(h, key:byte(i))
    h = mul32(h, m)
  end
  h = bxor(h, rshift(h, 13))
  h = mul32(h, m)
  h = bxor(h, rshift(h, 15))
  return h -- a signed 32-bit number, as Java's int
end

function M.partition_of(key, n)
  return band(M.murmur2(key), 0x7fffffff) % n
end

-- Starts `tide ARGS --data-dir DIR` in the background; its stdout and
-- stderr go to files in scratch dir `work` (<base>.out, <base>.err), and
-- its exit status to <base>.rc when it ends (128+n: signal n). Returns
-- { pid = tide's pid, base = ..., wrapper = the wrapper shell's pid }.
-- With `pids` (a list), appends the wrapper's pid and then tide's to it,
-- for M.kill_ours.
local bg_seq = 0
function M.start_tide(dir, work, args, pids)
  bg_seq = bg_seq + 1
  local base = string.format("%s/bg%d", work, bg_seq)
  local words = { M.q(M.bin) }
  for _, a in ipairs(args) do words[#words + 1] = M.q(a) end
  words[#words + 1] = "--data-dir " .. M.q(dir)
  local script = string.format(
    "%s >%s 2>%s & echo $! >%s.tmp && mv %s.tmp %s; "
    .. "wait $!; echo $? >%s.tmp && mv %s.tmp %s",
    table.concat(words, " "), M.q(base .. ".out"), M.q(base .. ".err"),
    M.q(base .. ".pid"), M.q(base .. ".pid"), M.q(base .. ".pid"),
    M.q(base .. ".rc"), M.q(base .. ".rc"), M.q(base .. ".rc"))
  local wrapper = M.spawn("sh -c " .. M.q(script)
                          .. " </dev/null >/dev/null 2>&1")
  local pid
  for _ = 1, 2000 do
    pid = tonumber(M.read_file(base .. ".pid") or "")
    if pid then break end
    M.sleep(0.005)
  end
  assert(pid, "tide did not start: " .. table.concat(args, " "))
  if pids then
    pids[#pids + 1] = wrapper
    pids[#pids + 1] = pid
  end
  return { pid = pid, base = base, wrapper = wrapper }
end

-- Kills (SIGKILL) every process start_tide started with scratch dir `work`
-- that has not ended yet: for after_each, so that nothing a test started
-- outlives it. Returns how many it killed.
function M.kill_started(work)
  local files = M.sh("ls " .. M.q(work) .. " 2>/dev/null")
  local n = 0
  for f in files:gmatch("(bg%d+)%.pid\n") do
    local pid = tonumber(M.read_file(work .. "/" .. f .. ".pid") or "")
    if pid and not M.read_file(work .. "/" .. f .. ".rc") then
      os.execute("kill -9 " .. pid .. " 2>/dev/null")
      n = n + 1
    end
  end
  return n
end

-- Returns what a job started by start_tide printed on stderr so far.
function M.tide_stderr(job)
  return M.read_file(job.base .. ".err") or ""
end

-- ---- background jobs, writer and cleanup (container, reload, repl_attach,
-- run and state specs) -------------------------------------------------------

local fmt = string.format

-- (pcall: busted may load this module again in one process, and a
-- second cdef of the struct would raise)
pcall(ffi.cdef, [[
struct tide_cli_spec_timespec { long tv_sec; long tv_nsec; };
int clock_gettime(int clk, struct tide_cli_spec_timespec *tp);
]])
local ts = ffi.new("struct tide_cli_spec_timespec")

-- Seconds on the monotonic clock.
function M.now()
  ffi.C.clock_gettime(1, ts)
  return tonumber(ts.tv_sec) + tonumber(ts.tv_nsec) * 1e-9
end

-- Number of matches of Lua pattern pat in s.
function M.count(s, pat)
  local n = 0
  for _ in s:gmatch(pat) do n = n + 1 end
  return n
end

-- Whether a job started by start_tide has ended (its .rc is written).
function M.exited(job)
  return M.read_file(job.base .. ".rc") ~= nil
end

-- Waits (hang guard: `secs`, 60 by default) until the log of a job
-- started by start_tide has at least n (1 by default) matches of Lua
-- pattern pat; returns the log. Fails, naming `what`, if the job ends
-- first.
function M.wait_log(job, pat, n, what, secs)
  local deadline = M.now() + (secs or 60)
  while M.now() < deadline do
    local log = M.tide_stderr(job)
    if M.count(log, pat) >= (n or 1) then return log end
    if M.exited(job) then break end
    M.sleep(0.01)
  end
  error(fmt("waiting for %s: fewer than %d lines matching '%s' in the log "
            .. "of pid %d; log:\n%s", what or pat, n or 1, pat, job.pid,
            M.tide_stderr(job)), 2)
end

-- Sends signal `sig` (a name such as "TERM", or a number) to a job
-- started by start_tide.
function M.signal(job, sig)
  os.execute(fmt("kill -%s %d 2>/dev/null", sig, job.pid))
end

-- Waits (hang guard: 60 s) until a job started by start_tide ends;
-- returns its exit status (128+n: signal n). On the hang guard, SIGKILLs
-- it (still ours: it has no .rc) and fails.
function M.wait_exit(job)
  for _ = 1, 6000 do
    local rc = tonumber(M.read_file(job.base .. ".rc") or "")
    if rc then return rc end
    M.sleep(0.01)
  end
  os.execute("kill -9 " .. job.pid .. " 2>/dev/null")
  error(fmt("pid %d did not exit within 60 s; log:\n%s", job.pid,
            M.tide_stderr(job)), 2)
end

-- Stops a running job with SIGTERM; fails unless it ends with status 0.
-- Returns its log.
function M.stop(job)
  M.signal(job, "TERM")
  local rc = M.wait_exit(job)
  if rc ~= 0 then
    error(fmt("tide run exited %d after SIGTERM; log:\n%s", rc,
              M.tide_stderr(job)), 2)
  end
  return M.tide_stderr(job)
end

-- The background writer: a shell loop that appends batches of opts.batch
-- lines "k<i % opts.nkeys>:<i>" (i counting from opts.first, 0 by
-- default) to stream opts.stream ("events" by default; opts.parts
-- partitions) with `tide produce`, sleeping opts.pause s (0.02 by
-- default) between batches, until the file work/STOP exists (or after
-- opts.max_batches, a hang guard); then it writes the next i to
-- work/writer.done. A failed `tide produce` is noted in work/writer.err.
-- Returns the shell's pid (also kept in work/writer.pid for M.kill_ours).
function M.start_writer(dir, work, opts)
  os.remove(work .. "/STOP")
  os.remove(work .. "/writer.done")
  local done = M.q(work .. "/writer.done")
  local script = fmt([[
i=%d; n=0
while [ ! -e %s ] && [ $n -lt %d ]; do
  seq $i $((i + %d - 1)) | awk '{ print "k" ($1 %% %d) ":" $1 }' |
    %s produce %s -K : --partitions %d --data-dir %s ||
    echo "produce failed" >>%s
  i=$((i + %d)); n=$((n + 1)); sleep %.3f
done
echo $i >%s.tmp && mv %s.tmp %s
]], opts.first or 0, M.q(work .. "/STOP"), opts.max_batches, opts.batch,
    opts.nkeys, M.q(M.bin), M.q(opts.stream or "events"), opts.parts,
    M.q(dir), M.q(work .. "/writer.err"), opts.batch, opts.pause or 0.02,
    done, done, done)
  M.write_file(work .. "/writer.sh", script)
  local pid = M.spawn("sh " .. M.q(work .. "/writer.sh")
                      .. " </dev/null >/dev/null 2>&1")
  M.write_file(work .. "/writer.pid", pid .. "\n")
  return pid
end

-- Stops the writer (hang guard: 30 s); fails if a `tide produce` of it
-- failed. Returns the number of lines it wrote (plus opts.first).
function M.stop_writer(work)
  M.write_file(work .. "/STOP", "")
  for _ = 1, 3000 do
    local n = tonumber(M.read_file(work .. "/writer.done") or "")
    if n then
      local err = M.read_file(work .. "/writer.err")
      assert(err == nil, "the writer failed: " .. tostring(err))
      return n
    end
    M.sleep(0.01)
  end
  error("the writer did not stop within 30 s")
end

-- Whether pid is a live process of the current test: its command line
-- names the test's scratch dir `work`, so never a pid the system reused.
function M.ours(pid, work)
  local cmd = M.read_file("/proc/" .. pid .. "/cmdline")
  return cmd ~= nil and work ~= nil and cmd:find(work, 1, true) ~= nil
         and M.alive(pid)
end

-- Waits (hang guard: `secs`) until pid is no longer ours (M.ours).
local function wait_gone(pid, work, secs)
  for _ = 1, secs * 100 do
    if not M.ours(pid, work) then return end
    M.sleep(0.01)
  end
end

-- For after_each: ends what a test started under scratch dir `work`,
-- then removes `work` and the other folders given. The writer
-- (M.start_writer) is asked to stop and given 10 s to end its current
-- `tide produce`. Then those of `pids` (a list, emptied; may be nil) that
-- are ours are SIGKILLed in order (list a wrapper before what it runs, as
-- start_tide does, so that none writes into a removed folder), and what
-- start_tide started in `work`; each is given 5 s to go and, if any was
-- killed, the workers of a killed supervisor 0.2 s more.
function M.kill_ours(pids, work, ...)
  if not work then return end
  pids = pids or {}
  M.write_file(work .. "/STOP", "")
  local writer = tonumber(M.read_file(work .. "/writer.pid") or "")
  if writer then wait_gone(writer, work, 10) end
  local killed = 0
  for _, pid in ipairs(pids) do
    if M.ours(pid, work) then
      os.execute("kill -9 " .. pid .. " 2>/dev/null")
      killed = killed + 1
    end
  end
  killed = killed + M.kill_started(work)
  for _, pid in ipairs(pids) do wait_gone(pid, work, 5) end
  if killed > 0 then M.sleep(0.2) end
  for i = #pids, 1, -1 do pids[i] = nil end
  M.rmdir(work, ...)
end

-- `tide tasks JOB`: { [p] = { state =, worker =, lag =, offset = (of
-- input stream "events"), line = } }, and the text.
function M.tasks(dir, name)
  local out = M.ok({ "tasks", name }, { dir = dir })
  local t = {}
  for l in out:gmatch("[^\n]+") do
    local p, state = l:match("^task (%d+) (%u+)")
    assert(p, "bad tasks line: " .. l)
    t[tonumber(p)] = {
      state = state, worker = tonumber(l:match("worker=(%d+)")),
      lag = tonumber(l:match("lag=(%d+)")),
      offset = tonumber(l:match("offsets=[^\n]-events=(%d+)")),
      line = l,
    }
  end
  return t, out
end

-- Waits (hang guard: 60 s) until every task 0..parts-1 of job `name` is
-- RUNNING with lag 0 (`tide tasks`); fails sooner if `job` (started by
-- start_tide) ends. Returns the tasks (M.tasks).
function M.wait_caught_up(dir, name, parts, job)
  local out
  for _ = 1, 600 do
    local t
    t, out = M.tasks(dir, name)
    local done = true
    for p = 0, parts - 1 do
      done = done and t[p] and t[p].state == "RUNNING" and t[p].lag == 0
    end
    if done then return t end
    if job and M.exited(job) then break end
    M.sleep(0.1)
  end
  error("the tasks did not catch up within 60 s:\n" .. tostring(out)
        .. (job and "\nlog:\n" .. M.tide_stderr(job) or ""), 2)
end

-- `tide state dump JOB STORE` (the job stopped): { [key] = number }, and
-- the text. Fails on a key printed twice.
function M.dump_numbers(dir, job, store)
  local out = M.ok({ "state", "dump", job, store }, { dir = dir })
  local t = {}
  for k, v in out:gmatch("([^\t\n]*)\t([^\n]*)\n") do
    assert(t[k] == nil, "key '" .. k .. "' dumped twice")
    t[k] = tonumber(v)
  end
  return t, out
end

-- The exactness check of a keyed counting job (spec/cli/jobs/count_echo.lua,
-- repl_count.lua: input "events", output "echo-out" valued "<input
-- value> <the key's new count>", store "counts") over data dir `dir`,
-- job file `job` stopped: the state holds, per key, the number of its
-- inputs; every input has an output; and every output of input i carries
-- i's rank among its key's inputs, so that no state was lost or doubled
-- at any point. There may be several outputs of one input (at least once,
-- after a crash) unless `once`. Returns the input and output counts.
function M.assert_exact(dir, job, once)
  local out = M.ok({ "consume", "events", "-e", "-f", "%k\t%s\\n" },
                   { dir = dir })
  local inputs, n = {}, 0
  for k, v in out:gmatch("([^\t\n]*)\t([^\n]*)\n") do
    inputs[k] = inputs[k] or {}
    inputs[k][#inputs[k] + 1] = v
    n = n + 1
  end
  local state = M.dump_numbers(dir, job, "counts")
  local bad, nbad = {}, 0
  local function note(s)
    nbad = nbad + 1
    if #bad < 8 then bad[#bad + 1] = s end
  end
  local rank = {}
  for k, vals in pairs(inputs) do
    if state[k] ~= #vals then
      note(fmt("state of key '%s' is %s, want %d", k, tostring(state[k]),
               #vals))
    end
    for i, v in ipairs(vals) do
      assert(rank[v] == nil, "input value " .. v .. " sent twice")
      rank[v] = i
    end
  end
  for k, c in pairs(state) do
    if not inputs[k] then note(fmt("state has key '%s' = %d, no input", k, c)) end
  end
  out = M.ok({ "consume", "echo-out", "-e", "-f", "%k\t%s\\n" },
             { dir = dir })
  local seen, nout = {}, 0
  for k, v, c in out:gmatch("([^\t\n]*)\t(%S+) (%d+)\n") do
    nout = nout + 1
    c = tonumber(c)
    if rank[v] == nil then
      note(fmt("output '%s %d' of key '%s' has no input", v, c, k))
    elseif once and seen[v] then
      note(fmt("input %s (key '%s') has two outputs", v, k))
    elseif rank[v] ~= c then
      note(fmt("output of input %s (key '%s') says count %d, want %d%s", v,
               k, c, rank[v], c > rank[v] and " (counted twice)"
                                            or " (lost)"))
    end
    seen[v] = true
  end
  for v in pairs(rank) do
    if not seen[v] then note("input " .. v .. " has no output") end
  end
  assert(nbad == 0, fmt("%d inputs, %d outputs, %d faults, e.g.\n  %s", n,
                        nout, nbad, table.concat(bad, "\n  ")))
  assert(n > 0, "no input at all")
  assert(not once or n == nout, fmt("%d inputs, %d outputs", n, nout))
  return n, nout
end

-- Fails (naming the caller's caller) unless run `r` (M.run, M.tide)
-- exited 0 with nothing on stderr, showing its output; returns r.out.
function M.clean_exit(r, what)
  if r.code ~= 0 or r.err ~= "" then
    error(fmt("%s exited %s\nstdout:\n%s\nstderr:\n%s", what,
              tostring(r.code), r.out, r.err), 3)
  end
  return r.out
end

-- Byte positions of the records of segment bytes `data` (a list of
-- { first =, stop = }; the format is in core/src/log/format.h). Fails
-- unless the segment ends on a record boundary.
function M.segment_records(data, what)
  local recs, pos = {}, 16
  while pos + 4 <= #data do
    local a, b, c, d = data:byte(pos + 1, pos + 4)
    local len = a + b * 256 + c * 65536 + d * 16777216
    if pos + 4 + len > #data then break end
    recs[#recs + 1] = { first = pos, stop = pos + 4 + len }
    pos = pos + 4 + len
  end
  assert(pos == #data, (what or "the segment")
         .. " does not end on a record boundary")
  return recs
end

-- Writes `bytes` over the file at `path` at byte `pos` (0-based), in place.
function M.overwrite(path, pos, bytes)
  local f = assert(io.open(path, "r+b"))
  f:seek("set", pos)
  f:write(bytes)
  f:close()
end

-- The newest value per key of stream `name` in data dir `dir`, as numbers:
-- { [key] = n } (for jobs that send each key's new count).
function M.newest_counts(dir, name)
  local out = M.ok({ "consume", name, "-e", "-f", "%k\\t%s\\n" },
                   { dir = dir })
  local last = {}
  for k, v in out:gmatch("([^\t\n]*)\t([^\n]*)\n") do
    last[k] = tonumber(v)
  end
  return last
end

-- Writes `n` lines to `path`, line i (1-based) being line_of(i), in
-- chunks of 10,000 so that large inputs take little memory.
function M.write_lines(path, n, line_of)
  local f = assert(io.open(path, "wb"))
  local buf = {}
  for i = 1, n do
    buf[#buf + 1] = line_of(i)
    if #buf == 10000 then
      f:write(table.concat(buf, "\n"), "\n")
      buf = {}
    end
  end
  if #buf > 0 then f:write(table.concat(buf, "\n"), "\n") end
  assert(f:close())
end

-- GET (or `method`) http://127.0.0.1:PORT/PATH with curl, a client we
-- did not write; returns { code = HTTP status, body =, curl = exit code }.
function M.http_get(port, path, method)
  local r = M.run(string.format(
    "env -u LD_PRELOAD curl -s -g -m 10 %s -w '\\n%%{http_code}' %s",
    method and ("-X " .. method) or "",
    M.q(string.format("http://127.0.0.1:%d%s", port, path))))
  local body, code = r.out:match("^(.*)\n(%d+)$")
  return { code = tonumber(code), body = body or "", curl = r.code }
end

-- The value of the sample `name{labels}` of a /metrics text (each label
-- of `labels` present with its value), or nil.
function M.metric(text, name, labels)
  for line in text:gmatch("[^\n]+") do
    local n, l, v = line:match("^([%w_]+)(%b{}) (%S+)$")
    if n == name then
      local ok = true
      for k, want in pairs(labels or {}) do
        if not l:find(string.format('%s="%s"', k, want), 1, true) then
          ok = false
        end
      end
      if ok then return tonumber(v) end
    end
  end
  return nil
end

-- Calls fn() every 0.1 s until it returns a true value, which it
-- returns; fails after 60 s, or at once when the started `job` (optional)
-- ended meanwhile, with its log.
function M.wait_until(what, fn, job)
  for _ = 1, 600 do
    local v = fn()
    if v then return v end
    if job and M.exited(job) then
      error(string.format("the job ended while waiting for %s; log:\n%s",
                          what, M.tide_stderr(job)), 2)
    end
    M.sleep(0.1)
  end
  error("waiting for " .. what .. ": gave up after 60 s"
        .. (job and ("; log:\n" .. M.tide_stderr(job)) or ""), 2)
end

return M
