-- End to end: a job file's own code cannot take `tide run` down (issue 10,
-- D6). os.exit is an error, top-level code runs under a time limit (at the
-- start and on reload, where the old code keeps running), and whatever a
-- job raises at load is reported readably: a table, or running out of
-- memory. Every command runs under `timeout`, so that a hang fails its test
-- instead of blocking the suite; waits are hang guards, never timings.
local h = require("cli.helper")

local ASAN = (os.getenv("TIDE_BUILD_DIR") or ""):find("asan") ~= nil
local fmt = string.format
local GUARD = 60                 -- seconds before `timeout` kills a command

local function plain_find(s, p) return s:find(p, 1, true) ~= nil end

local GOOD = [[
-- %s
return {
    name = "hostile",
    inputs = { "in" },
    outputs = { "out" },
    commit_interval = "100ms",
    process = function(msg, ctx)
        ctx:send("out", msg.key, "%s:" .. msg.value)
    end,
}
]]

-- A job whose top level runs `code` first.
local function job_text(code, tag)
  return code .. "\n" .. fmt(GOOD, "hostile", tag or "v1")
end

-- Asserts that r failed with exit 1 and one 'tide run:' line on stderr
-- holding every plain string in `must`; returns the line.
local function assert_load_error(r, must)
  assert.are.equal(1, r.code, "exit " .. tostring(r.code) .. " (124 or 137: "
                   .. "it hung); stderr:\n" .. r.err)
  local lines = h.lines(r.err)
  assert.are.equal(1, #lines, "stderr is not one line:\n" .. r.err)
  local l = lines[1]
  assert.matches("^tide run: ", l)
  for _, bad in ipairs({ "traceback", "AddressSanitizer", "runtime error",
                         "table: 0x", ": nil" }) do
    assert.is_false(plain_find(l, bad), "'" .. bad .. "' in: " .. l)
  end
  for _, m in ipairs(must) do
    assert.is_true(plain_find(l, m), "'" .. m .. "' not in: " .. l)
  end
  return l
end

describe("a hostile job file", function()
  local work, dir, procs

  before_each(function()
    procs = {}
    work = h.tmpdir()
    dir = work .. "/data"
    os.execute("mkdir " .. h.q(work .. "/job") .. " " .. h.q(work .. "/src"))
    h.ok({ "produce", "in", "-K", ":", "--partitions", "2" },
         { dir = dir, stdin = "a:1\nb:2\n" })
  end)

  after_each(function()
    for _, job in ipairs(procs) do
      if not h.read_file(job.base .. ".rc") then
        os.execute("kill -9 " .. job.wrapper .. " " .. job.pid
                   .. " 2>/dev/null")
      end
    end
    for _, job in ipairs(procs) do
      for _ = 1, 500 do
        if not h.alive(job.pid) then break end
        h.sleep(0.01)
      end
    end
    h.rmdir(work)
  end)

  -- Runs `tide run FILE --drain` with a short load limit, under timeout.
  local function run(file, limit)
    local args = { "timeout", "-s", "KILL", tostring(GUARD), h.bin, "run",
                   file, "--drain", "--data-dir", dir }
    if limit then
      args[#args + 1] = "--load-timeout"
      args[#args + 1] = limit
    end
    for i, a in ipairs(args) do args[i] = h.q(a) end
    return h.run(table.concat(args, " "))
  end

  local function write_job(text, name)
    local path = work .. "/job/" .. (name or "job.lua")
    h.write_file(path, text)
    return path
  end

  local function no_socket()
    assert.is_nil(h.read_file(dir .. "/jobs/hostile/control.sock"),
                  "control.sock left behind")
    assert.are.equal("", h.sh("ls " .. h.q(dir .. "/jobs/hostile")
                               .. " 2>/dev/null | grep control.sock"))
  end

  describe("at the start of tide run", function()
    for _, c in ipairs({
      { "os.exit(0)", "os.exit(0)" },
      { "os.exit(true)", "os.exit(true)" },
      { "require('os').exit(0)", "require('os').exit(0)" },
      { "os.exit from a module of the job", "require('helper_mod')",
        "os.exit(0)\nreturn {}\n" },
    }) do
      it("fails the load on " .. c[1] .. ", with one line", function()
        if c[3] then write_job(c[3], "helper_mod.lua") end
        local file = write_job(job_text(c[2]))
        local l = assert_load_error(run(file), { file, "os.exit" })
        assert.matches("cannot end the process", l)
        no_socket()
      end)
    end

    for _, c in ipairs({
      { "while true do end", "while true do end" },
      { "for i = 1, math.huge do end", "for i = 1, math.huge do end" },
      { "a loop calling a function",
        "local function f(x) return x + 1 end\nlocal x = 0\n"
        .. "while x >= 0 do x = f(x) end" },
      { "a loop inside pcall inside a loop",
        "while true do pcall(function() while true do end end) end" },
      { "a loop in a coroutine",
        "coroutine.wrap(function() repeat until false end)()" },
      { "a loop in a module of the job", "require('spin_mod')",
        "local n = 0\nwhile true do n = n + 1 end\n" },
    }) do
      it("fails the load of " .. c[1] .. " after the time limit", function()
        if c[3] then write_job(c[3], "spin_mod.lua") end
        local file = write_job(job_text(c[2]))
        local l = assert_load_error(run(file, "300ms"),
                                    { file, "still running after 0.3 s",
                                      "--load-timeout" })
        if c[3] then
          assert.is_true(plain_find(l, "spin_mod.lua:"), l)
        end
        no_socket()
      end)
    end

    it("makes os.exit in process() an error of that message: the job "
       .. "stops through on_error, with its last commit", function()
      local file = write_job((job_text("", "v1"):gsub(
        "process = function%(msg, ctx%)",
        "process = function(msg, ctx)\n        os.exit(0)", 1)))
      local r = run(file)
      assert.are.equal(1, r.code, r.err)
      assert.matches("tide run: job 'hostile' failed on stream 'in' "
                     .. "partition %d offset 0: [^\n]*job%.lua:%d+: "
                     .. "os%.exit%(%) called", r.err)
      assert.is_not_nil(h.read_file(dir .. "/jobs/hostile/checkpoint.json"),
                        "no last commit")
      no_socket()
    end)

    it("gives the time limit a default and checks --load-timeout", function()
      local file = write_job(job_text(""))
      local r = run(file)
      assert.are.equal(0, r.code, r.err)
      r = run(file, "soon")
      assert.are.equal(2, r.code, r.err)
      assert.matches("--load-timeout", r.err, 1, true)
      local help = h.ok({ "run", "--help" })
      assert.matches("--load-timeout", help, 1, true)
    end)

    it("reports error({ code = 7 }) readably", function()
      local file = write_job(job_text("error({ code = 7 })"))
      local l = assert_load_error(run(file), { file, "code = 7" })
      assert.matches("error object", l, 1, true)
    end)

    it("reports error(nil) and an object with __tostring", function()
      local file = write_job(job_text("error(nil)"))
      assert_load_error(run(file), { file, "no message" })
      file = write_job(job_text(
        "error(setmetatable({}, { __tostring = function() "
        .. "return 'my own error' end }))"))
      assert_load_error(run(file), { file, "my own error" })
    end)

    it("reports running out of memory at load", function()
      if ASAN then
        pending("ulimit -v and ASan's shadow memory do not mix")
        return
      end
      local file = write_job(job_text(
        "local t = {}\nfor i = 1, 1e9 do t[i] = string.rep('x', 4096) .. i "
        .. "end"))
      local r = h.run(fmt("ulimit -v 1000000; timeout -s KILL %d %s run %s "
                          .. "--drain --data-dir %s", GUARD, h.q(h.bin),
                          h.q(file), h.q(dir)))
      assert_load_error(r, { file, "not enough memory" })
    end)
  end)

  describe("on reload", function()
    -- The job file is a symlink into a folder tide does not watch, so that
    -- only `tide reload` reloads it, and its answer tells what happened.
    local real, file

    local function start(limit, prefix)
      real = work .. "/src/real.lua"
      file = work .. "/job/job.lua"
      h.write_file(real, job_text("", "v1"))
      os.execute("ln -s ../src/real.lua " .. h.q(file))
      local args = { "run", file, "--load-timeout", limit }
      local job
      if prefix then
        -- start_tide with a shell prefix (ulimit)
        local base = work .. "/bg-limited"
        local words = { h.q(h.bin) }
        for _, a in ipairs(args) do words[#words + 1] = h.q(a) end
        local script = fmt("%s; exec %s --data-dir %s >%s.out 2>%s.err",
                           prefix, table.concat(words, " "), h.q(dir),
                           h.q(base), h.q(base))
        local pid = h.spawn("sh -c " .. h.q(script) .. " </dev/null")
        job = { pid = pid, base = base, wrapper = pid }
      else
        job = h.start_tide(dir, work, args)
      end
      procs[#procs + 1] = job
      for _ = 1, 3000 do
        if plain_find(h.tide_stderr(job), "started") then break end
        h.sleep(0.01)
      end
      assert.is_true(plain_find(h.tide_stderr(job), "started"),
                     h.tide_stderr(job))
      return job
    end

    local function reload()
      local r = h.run(fmt("timeout -s KILL %d %s reload hostile --data-dir %s",
                          GUARD, h.q(h.bin), h.q(dir)))
      assert.is_true(r.code == 0 or r.code == 1,
                     "tide reload exited " .. r.code .. ": " .. r.err)
      return r
    end

    local function outputs()
      local r = h.tide({ "consume", "out", "-e", "-f", "%s\\n" },
                       { dir = dir })
      return r.code == 0 and h.lines(r.out) or {}
    end

    local function wait_outputs(n)
      for _ = 1, 3000 do
        local o = outputs()
        if #o >= n then return o end
        h.sleep(0.01)
      end
      error("fewer than " .. n .. " outputs after 30 s")
    end

    local function stop(job)
      assert.is_true(h.alive(job.pid), "the job died; log:\n"
                     .. h.tide_stderr(job))
      os.execute("kill -TERM " .. job.pid)
      for _ = 1, 3000 do
        if not h.alive(job.pid) then break end
        h.sleep(0.01)
      end
      assert.is_false(h.alive(job.pid), "SIGTERM did not stop the job")
      local log = h.tide_stderr(job)
      assert.is_true(plain_find(log, "stopped cleanly"), log)
      no_socket()
      return log
    end

    it("refuses versions that exit, loop or raise a table; the old code "
       .. "keeps running and SIGTERM stops it", function()
      local job = start("300ms")
      wait_outputs(2)
      local n = 2
      for _, c in ipairs({
        { "os.exit(0)", "os.exit" },
        { "while true do end", "still running after 0.3 s" },
        { "for i = 1, math.huge do end", "still running after 0.3 s" },
        { "error({ code = 7 })", "code = 7" },
      }) do
        h.write_file(real, job_text(c[1], "bad"))
        local r = reload()
        assert.are.equal(1, r.code, r.out .. r.err)
        assert.matches("^error: version %x+ refused: ", r.out)
        assert.is_true(plain_find(r.out, c[2]), r.out)
        assert.is_false(plain_find(r.out, "table: 0x"), r.out)
        -- the old code still runs
        h.ok({ "produce", "in", "-K", ":", "--partitions", "2" },
             { dir = dir, stdin = "k" .. n .. ":" .. n .. "\n" })
        n = n + 1
        wait_outputs(n)
      end
      -- a good version after them is taken
      h.write_file(real, job_text("", "v2"))
      local r = reload()
      assert.are.equal(0, r.code, r.out .. r.err)
      local log = stop(job)
      for _, o in ipairs(outputs()) do
        assert.matches("^v1:", o)
      end
      assert.are.equal(4, select(2, log:gsub("refused", "")), log)
    end)

    it("stops on SIGTERM sent while a new version's top level loops",
       function()
      local job = start("2s")
      wait_outputs(2)
      h.write_file(real, job_text("while true do end", "bad"))
      -- SIGHUP reloads even when SIGTERM comes in the same poll
      os.execute("kill -HUP " .. job.pid)
      h.sleep(0.3)            -- most likely inside the load by now
      local log = stop(job)
      assert.matches("refused: [^\n]*still running after 2 s", log)
    end)

    it("reports a version that allocates without bound in process() and "
       .. "rolls it back", function()
      if ASAN then
        pending("ulimit -v and ASan's shadow memory do not mix")
        return
      end
      local job = start("5s", "ulimit -v 1000000")
      wait_outputs(2)
      h.write_file(real, [[
local hog = {}
]] .. fmt(GOOD, "hog", "hog"):gsub("process = function%(msg, ctx%)",
          "process = function(msg, ctx)\n"
          .. "        for i = 1, 1e9 do hog[i] = string.rep('x', 4096) .. i "
          .. "end", 1))
      local r = reload()
      assert.are.equal(0, r.code, r.out .. r.err)
      h.ok({ "produce", "in", "-K", ":", "--partitions", "2" },
           { dir = dir, stdin = "c:3\n" })
      wait_outputs(3)
      local log = h.tide_stderr(job)
      assert.matches("rolled back to %x+: process%(%) raised [^\n]*not "
                     .. "enough memory", log)
      assert.is_false(plain_find(log, ": nil"), log)
      stop(job)
      for _, o in ipairs(outputs()) do
        assert.matches("^v1:", o)
      end
    end)
  end)
end)
