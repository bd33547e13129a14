-- End to end, with the real binary and log: keyed timers (ctx:timer,
-- on_timer), `--drain --final`, a processing timer that wakes an idle
-- job, the watermark kept across restarts, and event-time windows built
-- on timers that stay exact through SIGKILLs (docs/time.md "Timers").
local h = require("cli.helper")

local fmt = string.format
local drain, consume = h.drain, h.consume_lines

local function job_file(work, name, src)
  local path = fmt("%s/%s.lua", work, name)
  h.write_file(path, src)
  return path
end

-- Tumbling windows of 1 s by event time (value.ts), counted per key in a
-- store; each window's timer (at its last millisecond) sends
-- "key|window count" and deletes the count. A late message (none here:
-- the disorder stays under max_out_of_orderness) is counted apart.
local WINDOW_JOB = [[
return {
  name = "win",
  inputs = { "clicks" },
  outputs = { { "windows", serde = "string" } },
  serde = "json",
  timestamp = function(msg) return msg.value.ts end,
  max_out_of_orderness = "1s",
  commit_interval = "100ms",
  stores = { counts = { serde = "string" }, late = { serde = "string" } },
  process = function(msg, ctx)
    local ts = msg.value.ts
    if ts < ctx.watermark then
      ctx.stores.late:incr("late")
      return
    end
    local win = ts - ts % 1000
    local k = msg.key .. "|" .. win
    ctx.stores.counts:incr(k)
    ctx:timer(k, win + 999)
  end,
  on_timer = function(key, at, ctx)
    local n = ctx.stores.counts:get(key)
    ctx:send("windows", key, tostring(n))
    ctx.stores.counts:delete(key)
  end,
}
]]

-- The same windows built with tide.windows: hopping windows of 2 s every
-- 1 s, summing value.n, emitted once each.
local LIB_JOB = [[
local windows = require("tide.windows")
local w = windows.new("win", {
  shape = windows.hopping("2s", "1s"), agg = windows.agg.sum,
  value = function(msg) return msg.value.n end, output = "windows" })
return {
  name = "libwin",
  inputs = { "clicks" },
  outputs = { "windows" },
  serde = "json",
  timestamp = function(msg) return msg.value.ts end,
  max_out_of_orderness = "1s",
  commit_interval = "100ms",
  stores = windows.stores(w),
  process = function(msg, ctx) w:add(msg, ctx) end,
  on_timer = windows.timers(w),
}
]]

local work, dir
before_each(function() work, dir = h.scratch() end)
after_each(function()
  h.kill_started(work)
  h.rmdir(work)
end)

describe("timers, end to end", function()
  it("keeps event-time windows exact through SIGKILLs, and --final "
     .. "closes the rest", function()
    -- 60,000 clicks over 2 partitions, 13 keys; event times rise 5 ms a
    -- message with up to 600 ms of disorder
    math.randomseed(14)
    local base = 1700000000000
    local truth, lines = {}, {}
    for i = 1, 60000 do
      local key = "u" .. (i % 13)
      local ts = base + i * 5 - math.random(0, 600)
      lines[i] = fmt('%s:{"ts":%d}', key, ts)
      local k = key .. "|" .. (ts - ts % 1000)
      truth[k] = (truth[k] or 0) + 1
    end
    h.ok({ "produce", "clicks", "-K", ":", "--partitions", "2" },
         { dir = dir, stdin = table.concat(lines, "\n") .. "\n" })
    local job = job_file(work, "win", WINDOW_JOB)

    local mid = 0
    for kill = 1, 8 do
      local t = h.start_tide(dir, work, { "run", job, "--workers", "2" })
      h.wait_log(t, "job 'win' started", 1, "the start")
      h.sleep(0.05 + math.random() * 0.5)
      h.kill9(t.pid)
      h.wait_exit(t)
      local n = #consume(dir, "windows")
      if n > 0 and kill < 8 then mid = mid + 1 end
    end
    -- the kills came while windows were being emitted
    assert.is_true(mid > 0, "no kill came after the first window closed")
    drain(dir, job, { "--final" })

    local got, emissions = {}, 0
    for _, l in ipairs(consume(dir, "windows", "%k %s\\n")) do
      local k, v = l:match("^(%S+) (%d+)$")
      assert(k, l)
      emissions = emissions + 1
      -- every emission of a window carries the same, exact value
      assert.equals(truth[k], tonumber(v), "window " .. k)
      got[k] = true
    end
    local windows = 0
    for k in pairs(truth) do
      windows = windows + 1
      assert.is_true(got[k], "window " .. k .. " was never emitted")
    end
    assert.is_true(emissions >= windows)
    -- nothing was late, and every count was emptied by its timer
    local dump = h.tide({ "state", "dump", job, "late" }, { dir = dir })
    assert.equals("", dump.out)
    dump = h.tide({ "state", "dump", job, "counts" }, { dir = dir })
    assert.equals("", dump.out)
  end)

  it("keeps tide.windows results exact through SIGKILLs", function()
    math.randomseed(15)
    local base = 1700000000000
    local truth, lines = {}, {}
    for i = 1, 40000 do
      local key = "u" .. (i % 11)
      local ts = base + i * 5 - math.random(0, 600)
      local n = i % 7
      lines[i] = fmt('%s:{"ts":%d,"n":%d}', key, ts, n)
      local s = ts - ts % 1000
      for start = s - 1000, s, 1000 do
        local k = fmt("%s %d", key, start)
        truth[k] = (truth[k] or 0) + n
      end
    end
    h.ok({ "produce", "clicks", "-K", ":", "--partitions", "2" },
         { dir = dir, stdin = table.concat(lines, "\n") .. "\n" })
    local job = job_file(work, "libwin", LIB_JOB)
    for _ = 1, 6 do
      local t = h.start_tide(dir, work, { "run", job, "--workers", "2" })
      h.wait_log(t, "job 'libwin' started", 1, "the start")
      h.sleep(0.05 + math.random() * 0.5)
      h.kill9(t.pid)
      h.wait_exit(t)
    end
    drain(dir, job, { "--final" })
    local got = {}
    for _, l in ipairs(consume(dir, "windows", "%k %s\\n")) do
      local k, v = l:match("^(%S+) (.*)$")
      local start, sum = v:match('"start":(%d+)'), v:match('"value":(%d+)')
      assert(start and sum, l)
      local w = k .. " " .. start
      assert.equals(truth[w], tonumber(sum), "window " .. w)
      got[w] = true
    end
    for w in pairs(truth) do
      assert.is_true(got[w], "window " .. w .. " was never emitted")
    end
  end)

  it("leaves windows open without --final, and closes them with it",
     function()
    h.ok({ "produce", "clicks", "-K", ":", "--partitions", "1" },
         { dir = dir, stdin = 'a:{"ts":1000}\na:{"ts":1500}\nb:{"ts":4200}\n' })
    local job = job_file(work, "win", WINDOW_JOB)
    drain(dir, job)
    -- the watermark is 4200 - 1000: only a's window [1000, 2000) closed
    assert.same({ "a|1000 2" }, consume(dir, "windows", "%k %s\\n"))
    local r = h.tide({ "run", job, "--final" }, { dir = dir })
    assert.equals(2, r.code)
    assert.matches("%-%-final goes with %-%-drain", r.err)
    drain(dir, job, { "--final" })
    assert.same({ "a|1000 2", "b|4000 1" }, consume(dir, "windows",
                                                    "%k %s\\n"))
  end)

  it("keeps the watermark across a restart: late stays late", function()
    h.ok({ "produce", "clicks", "-K", ":", "--partitions", "1" },
         { dir = dir, stdin = 'a:{"ts":1000}\na:{"ts":9000}\n' })
    local job = job_file(work, "win", WINDOW_JOB)
    drain(dir, job)
    -- 5000 is below the watermark (9000 - 1000) the last run reached
    h.ok({ "produce", "clicks", "-K", ":" },
         { dir = dir, stdin = 'a:{"ts":5000}\n' })
    drain(dir, job)
    local dump = h.tide({ "state", "dump", job, "late" }, { dir = dir })
    assert.equals(0, dump.code, dump.err)
    assert.equals("late\t1\n", dump.out)
  end)

  it("fires a processing timer in an idle job, and refuses a reload "
     .. "that drops on_timer", function()
    local src = [[
return {
  name = "ping",
  inputs = { "in" },
  outputs = { "out" },
  process = function(msg, ctx)
    ctx:timer(msg.key, ctx:now() + 300, "processing")
  end,
  on_timer = function(key, at, ctx, kind)
    ctx:send("out", key, kind)
  end,
}
]]
    h.ok({ "produce", "in", "--partitions", "1" }, { dir = dir, stdin = "" })
    local job = job_file(work, "ping", src)
    local t = h.start_tide(dir, work, { "run", job, "--workers", "1" })
    h.wait_log(t, "job 'ping' started", 1, "the start")
    local t0 = h.now()
    h.ok({ "produce", "in", "-K", ":" }, { dir = dir, stdin = "k1:x\n" })
    local out
    repeat
      out = consume(dir, "out", "%k %s\\n")
      h.sleep(0.02)
    until #out > 0 or h.now() - t0 > 10
    assert.same({ "k1 processing" }, out)
    -- 300 ms, and no input came since: the timer woke the worker
    assert.is_true(h.now() - t0 < 5, "took " .. (h.now() - t0) .. " s")

    h.write_file(job, (src:gsub("  on_timer = function.-end,\n", "")))
    local r = h.tide({ "reload", job }, { dir = dir })
    assert.equals(1, r.code)
    assert.matches("restart needed: on_timer changed", r.out .. r.err)
    h.stop(t)
  end)
end)
