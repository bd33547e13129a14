-- tide produce fed by a live program: records are written in batches
-- (few fdatasync calls, as from a file), yet a slow trickle is readable
-- within a fraction of a second, every record is durable at exit 0, and
-- a terminal shows the progress.
local h = require("cli.helper")
local fmt = string.format

local function have(cmd)
  return os.execute("command -v " .. cmd .. " >/dev/null 2>&1") == 0
end

-- A LuaJIT program that writes `n` lines in writes of `per` lines, with
-- `pause` seconds between writes (a live generator).
local function writer(n, per, pause)
  return fmt([[luajit -e 'local ffi = require("ffi")
    ffi.cdef("int usleep(unsigned int);")
    local n, per = %d, %d
    for i = 0, n - 1, per do
      local t = {}
      for j = i, math.min(n, i + per) - 1 do t[#t + 1] = "k" .. j .. ":v" .. j .. "\n" end
      io.stdout:write(table.concat(t)); io.stdout:flush()
      ffi.C.usleep(%d)
    end']], n, per, math.floor(pause * 1e6))
end

describe("tide produce from a live program", function()
  local work, dir
  before_each(function()
    work, dir = h.scratch()
    assert(os.execute("mkdir -p " .. h.q(dir)) == 0)
    h.ok({ "streams", "create", "live", "--partitions", "4" },
         { dir = dir, stderr_ok = true })
  end)
  after_each(function()
    h.rmdir(work)
  end)

  it("writes in batches, not a sync per pause of its input", function()
    assert.is_true(have("strace"), "strace is missing (make deps installs it)")
    -- 20,000 lines in 400 writes, 1 ms apart: when each pause was a
    -- flush round (an fdatasync per partition written), that made ~250;
    -- in batches it is under 10
    local trace = work .. "/trace"
    local r = h.run(fmt("(%s | strace -f -qq -e trace=fdatasync -o %s %s "
                        .. "produce live -K : --data-dir %s)",
                        writer(20000, 50, 0.001), h.q(trace), h.q(h.bin),
                        h.q(dir)))
    assert.are.equal(0, r.code, r.err)
    local syncs = select(2, (h.read_file(trace) or ""):gsub("fdatasync%(", ""))
    assert.is_true(syncs > 0, "no fdatasync traced: " .. r.err)
    assert.is_true(syncs < 64, fmt("%d fdatasync calls for 400 writes", syncs))
    local out = h.ok({ "consume", "live", "-e" }, { dir = dir })
    assert.are.equal(20000, #h.lines(out))
  end)

  it("makes a trickle readable while it still runs, and durable at exit",
     function()
    -- one line every 100 ms for 3 s
    local done = work .. "/done"
    local pid = h.spawn(fmt("(%s | %s produce live -K : --data-dir %s; "
                            .. "echo $? > %s) >/dev/null 2>&1",
                            writer(30, 1, 0.1), h.q(h.bin), h.q(dir),
                            h.q(done)))
    -- the first lines are readable long before the writer ends
    local seen, t0 = 0, h.now()
    while h.now() - t0 < 2.5 do
      seen = #h.lines(h.ok({ "consume", "live", "-e" }, { dir = dir }))
      if seen > 0 then
        break
      end
      h.sleep(0.05)
    end
    assert.is_true(seen > 0 and seen < 30,
                   fmt("%d lines readable while producing", seen))
    -- (the shell makes the file before it writes the code in it)
    while not (h.read_file(done) or ""):match("%d") and h.now() - t0 < 20 do
      h.sleep(0.1)
    end
    assert.are.equal("0", (h.read_file(done) or ""):match("%d+"), "exit code")
    assert.are.equal(30, #h.lines(h.ok({ "consume", "live", "-e" },
                                       { dir = dir })))
    local t1 = h.now()
    while h.alive(pid) and h.now() - t1 < 5 do
      h.sleep(0.05)
    end
    assert.is_false(h.alive(pid))
  end)

  it("shows its progress on a terminal, and not in a pipe", function()
    assert.is_true(have("script"), "script is missing (util-linux)")
    -- 15 lines over 1.5 s: at least one progress update, then the total
    local log = work .. "/tty"
    local r = h.run(fmt("script -qec %s %s", h.q(fmt(
      "%s | %s produce live -K : --data-dir %s", writer(15, 1, 0.1),
      h.q(h.bin), h.q(dir))), h.q(log)))
    assert.are.equal(0, r.code, r.err)
    local tty = h.read_file(log) or ""
    assert.matches("tide produce: %d+ records to 'live'", tty)
    assert.matches("tide produce: 15 records to 'live' %(%d+/s%)\r?\n", tty)
    -- not a terminal: nothing on stderr
    r = h.run(fmt("(%s | %s produce live -K : --data-dir %s)",
                  writer(15, 1, 0.1), h.q(h.bin), h.q(dir)))
    assert.are.equal(0, r.code)
    assert.are.equal("", r.err)
  end)
end)
