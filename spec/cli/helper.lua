-- Shared helpers of the spec/cli/ specs: they drive the real `tide` binary
-- (TIDE_BIN) through a shell, as a user would, with a fresh data dir each.
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

function M.rmdir(d)
  if d and d:match("^/tmp/tide%-cli%-spec%.") then
    os.execute("rm -rf " .. M.q(d))
  end
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
local bg_seq = 0
function M.start_tide(dir, work, args)
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
  return { pid = pid, base = base, wrapper = wrapper }
end

-- Kills (SIGKILL) every process start_tide started with scratch dir `work`
-- that has not ended yet: for after_each, so that nothing a test started
-- outlives it.
function M.kill_started(work)
  local files = M.sh("ls " .. M.q(work) .. " 2>/dev/null")
  for f in files:gmatch("(bg%d+)%.pid\n") do
    local pid = tonumber(M.read_file(work .. "/" .. f .. ".pid") or "")
    if pid and not M.read_file(work .. "/" .. f .. ".rc") then
      os.execute("kill -9 " .. pid .. " 2>/dev/null")
    end
  end
end

-- Returns what a job started by start_tide printed on stderr so far.
function M.tide_stderr(job)
  return M.read_file(job.base .. ".err") or ""
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

return M
