-- End to end, with the real binary and log: event time (input order by
-- event time, max_idle), watermarks (values, an idle partition), and the
-- ctx gaps of issue 14 part 6 (ctx.partitions, ctx:send's options,
-- ctx.log). docs/time.md tells what is tested here.
local h = require("cli.helper")

local fmt = string.format
local drain, consume = h.drain, h.consume_lines

-- Writes job text `src` to work/<name>.lua; returns its path.
local function job_file(work, name, src)
  local path = fmt("%s/%s.lua", work, name)
  h.write_file(path, src)
  return path
end

-- Appends lines (a list of "key:json") to `stream` with tide produce.
-- No lines: makes the stream, empty.
local function produce(dir, stream, lines, parts)
  h.ok({ "produce", stream, "-K", ":", "--partitions", tostring(parts or 1) },
       { dir = dir, stdin = #lines > 0 and table.concat(lines, "\n") .. "\n"
                            or "" })
end

-- Waits (hang guard: 30 s) until `stream` has n records; returns them.
local function wait_records(dir, stream, n)
  local seen
  for _ = 1, 3000 do
    seen = consume(dir, stream)
    if #seen >= n then return seen end
    h.sleep(0.01)
  end
  error(fmt("'%s' has %d records, not %d, after 30 s", stream, #seen, n), 2)
end

-- A job over inputs a and b that writes, per message in the order it
-- processes them, "<stream> <event time> <ctx.watermark>" to 'seen'.
local ORDER_JOB = [[
return {
    name = "order",
    inputs = { { "a", timestamp = function(msg) return msg.value.t end },
               "b" },
    outputs = { { "seen", serde = "string" } },
    serde = "json",
    timestamp = function(msg) return msg.value.ts end,
    %s
    process = function(msg, ctx)
        local et = msg.value.t or msg.value.ts
        ctx:send("seen", nil, msg.stream .. " " .. et .. " "
                 .. tostring(ctx.watermark))
    end,
}
]]

-- Every test gets a fresh scratch dir, and nothing it started outlives it.
local work, dir
before_each(function() work, dir = h.scratch() end)
after_each(function()
  h.kill_started(work)
  h.rmdir(work)
end)

describe("event time", function()
  it("reads two inputs in event-time order, whatever order they were "
     .. "written in", function()
    -- a (event time in "t", the input's own function) has the odd
    -- seconds, b (the job's function, "ts") the even ones; all of a is
    -- written before b, so turns of a batch each would not sort them.
    local a, b = {}, {}
    for i = 1, 600 do
      a[i] = fmt('k:{"t":%d}', (2 * i - 1) * 1000)
      b[i] = fmt('k:{"ts":%d}', 2 * i * 1000)
    end
    produce(dir, "a", a)
    produce(dir, "b", b)
    drain(dir, job_file(work, "order", fmt(ORDER_JOB, "")))
    local seen = consume(dir, "seen")
    assert.equals(1200, #seen)
    for i, l in ipairs(seen) do
      local s, et = l:match("^(%a) (%d+) ")
      assert.equals(i * 1000, tonumber(et), "message " .. i .. ": " .. l)
      assert.equals(i % 2 == 1 and "a" or "b", s)
    end
  end)

  it("orders by the record timestamps by default", function()
    -- A first job writes a and b with ctx:send's timestamp option (a:
    -- odd seconds, b: even), all of a first; the second job, with no
    -- timestamp function, reads them in record-timestamp order.
    local lines = {}
    for i = 1, 400 do
      lines[i] = fmt('k:{"s":"%s","ts":%d}', i <= 200 and "a" or "b",
                     i <= 200 and (2 * i - 1) * 1000 or (2 * (i - 200)) * 1000)
    end
    produce(dir, "src", lines)
    drain(dir, job_file(work, "split", [[
return {
    name = "split", inputs = { "src" }, outputs = { "a", "b" },
    serde = "json",
    process = function(msg, ctx)
        ctx:send(msg.value.s, msg.key, msg.value,
                 { timestamp = msg.value.ts })
    end,
}
]]))
    drain(dir, job_file(work, "merge", [[
return {
    name = "merge", inputs = { "a", "b" },
    outputs = { { "seen", serde = "string" } }, serde = "json",
    process = function(msg, ctx)
        ctx:send("seen", nil, tostring(msg.value.ts))
    end,
}
]]))
    local seen = consume(dir, "seen", "%T %s\\n")
    assert.equals(400, #seen)
    for i, l in ipairs(seen) do
      assert.equals(fmt("%d %d", i * 1000, i * 1000), l)
    end
  end)

  -- Writes a (event times 5000, 6000) and an empty b, and starts the
  -- order job with `max_idle` in the background.
  local function start_idle(max_idle)
    produce(dir, "a", { 'k:{"t":5000}', 'k:{"t":6000}' })
    produce(dir, "b", {})
    return h.start_tide(dir, work, {
      "run", job_file(work, "order",
                      fmt(ORDER_JOB, fmt('max_idle = "%s",', max_idle))),
      "--workers", "1" })
  end

  it("waits for an empty input while max_idle lasts", function()
    -- b is empty: with max_idle = 1h the task waits for it, and again
    -- each time b is empty while a has messages.
    local job = start_idle("1h")
    h.wait_log(job, "started", 1, "the job to start", 30)
    h.sleep(1)
    assert.same({}, consume(dir, "seen"))
    produce(dir, "b", { 'k:{"ts":1000}' })
    assert.same({ "b 1000 -inf" }, wait_records(dir, "seen", 1))
    h.sleep(1)
    assert.equals(1, #consume(dir, "seen"))
    produce(dir, "b", { 'k:{"ts":7000}' })
    local seen = wait_records(dir, "seen", 3)
    assert.same({ "b 1000 -inf", "a 5000 1000", "a 6000 1000" }, seen)
    h.stop(job)
  end)

  it("waits no longer than max_idle", function()
    local job = start_idle("100ms")
    assert.same({ "a 5000 -inf", "a 6000 -inf" },
                wait_records(dir, "seen", 2))
    h.stop(job)
  end)
end)

describe("watermarks", function()
  it("are the oldest newest event time of the input partitions, less "
     .. "max_out_of_orderness", function()
    produce(dir, "a", { 'k:{"t":10000}', 'k:{"t":20000}', 'k:{"t":30000}',
                        'k:{"t":12000}' })
    produce(dir, "b", { 'k:{"ts":15000}', 'k:{"ts":25000}',
                        'k:{"ts":35000}' })
    drain(dir, job_file(work, "order",
                        fmt(ORDER_JOB, 'max_out_of_orderness = "1s",')))
    -- The a at 12000 comes after a's 30000 (it is out of order within
    -- its partition, and still older than b's next) and does not move
    -- the watermark back.
    assert.same({ "a 10000 -inf", "b 15000 9000", "a 20000 14000",
                  "b 25000 19000", "a 30000 24000", "a 12000 24000",
                  "b 35000 29000" }, consume(dir, "seen"))
  end)

  it("stop being held back by a partition idle for idle_timeout",
     function()
    -- b never has a message. The first message of a busies process()
    -- for 50 ms, so that b has been idle for longer than 10 ms when the
    -- next batch starts; with an idle_timeout of an hour it holds the
    -- watermark at -inf throughout.
    local a = {}
    for i = 1, 600 do a[i] = fmt('k:{"t":%d}', i * 1000) end
    produce(dir, "a", a)
    produce(dir, "b", {})
    local src = [[
return {
    name = "idle",
    inputs = { "a", "b" },
    outputs = { { "seen", serde = "string" } },
    serde = "json",
    timestamp = function(msg) return msg.value.t end,
    idle_timeout = %s,
    process = function(msg, ctx)
        if msg.value.t == 1000 then
            local t0 = os.clock()
            while os.clock() - t0 < 0.05 do end
        end
        ctx:send("seen", nil, msg.value.t .. " " .. tostring(ctx.watermark))
    end,
}
]]
    drain(dir, job_file(work, "idle", fmt(src, '"1h"')))
    local seen = consume(dir, "seen")
    assert.equals(600, #seen)
    assert.equals("600000 -inf", seen[600])
    h.rmdir(work)
    work, dir = h.scratch()
    produce(dir, "a", a)
    produce(dir, "b", {})
    drain(dir, job_file(work, "idle", fmt(src, '"10ms"')))
    seen = consume(dir, "seen")
    assert.equals(600, #seen)
    assert.equals("1000 -inf", seen[1])
    assert.equals("600000 600000", seen[600])
  end)
end)

describe("bad time fields", function()
  local cases = {
    { 'max_idle = "soon",', "field 'max_idle': bad duration soon" },
    { 'max_out_of_orderness = -1,',
      "field 'max_out_of_orderness': bad duration -1" },
    { 'idle_timeout = 0,', "field 'idle_timeout': bad duration 0" },
  }
  for _, c in ipairs(cases) do
    it("refuses " .. c[1] .. " with one line", function()
      produce(dir, "a", { "k:{}" })
      produce(dir, "b", { "k:{}" })
      local path = job_file(work, "order", fmt(ORDER_JOB, c[1]))
      local r = h.tide({ "run", path, "--drain" }, { dir = dir })
      assert.equals(1, r.code)
      assert.matches(c[2], r.err, 1, true)
      assert.equals(1, #h.lines(r.err), r.err)
    end)
  end

  it("refuses a job's or an input's timestamp that is not a function",
     function()
    produce(dir, "a", { "k:{}" })
    local path = job_file(work, "bad", [[
return { name = "bad", inputs = { { "a", timestamp = "t" } },
         process = function() end }
]])
    local r = h.tide({ "run", path, "--drain" }, { dir = dir })
    assert.equals(1, r.code)
    assert.matches("inputs[1]: option 'timestamp' must be a function, not "
                   .. "a string", r.err, 1, true)
    assert.equals(1, #h.lines(r.err), r.err)
    path = job_file(work, "bad", [[
return { name = "bad", inputs = { "a" }, timestamp = "t",
         process = function() end }
]])
    r = h.tide({ "run", path, "--drain" }, { dir = dir })
    assert.equals(1, r.code)
    assert.matches("field 'timestamp' must be a function, not a string",
                   r.err, 1, true)
    assert.equals(1, #h.lines(r.err), r.err)
  end)

  it("hands a message whose timestamp function gives no number to "
     .. "on_error", function()
    produce(dir, "a", { 'k:{"t":"noon"}', 'k:{"t":2000}' })
    local path = job_file(work, "bad", [[
return { name = "bad", inputs = { "a" }, serde = "json",
         outputs = { { "seen", serde = "string" } },
         on_error = "skip",
         timestamp = function(msg) return msg.value.t end,
         process = function(msg, ctx) ctx:send("seen", nil, "ok") end }
]])
    local err = drain(dir, path)
    assert.matches("skipped stream 'a' partition 0 offset 0: the timestamp "
                   .. "function of input 'a' returned a string, not a "
                   .. "number of milliseconds", err, 1, true)
    assert.same({ "ok" }, consume(dir, "seen"))
  end)
end)

describe("ctx", function()
  it("ctx:send's options set the partition, timestamp and headers; a "
     .. "plain table is still headers", function()
    produce(dir, "in", { 'k1:{"p":2,"ts":1234}', 'k2:{"p":0,"ts":99}' })
    produce(dir, "out", {}, 4)
    drain(dir, job_file(work, "send", [[
return {
    name = "send", inputs = { "in" }, serde = "json",
    outputs = { { "out", serde = "string" }, { "old", serde = "string" } },
    process = function(msg, ctx)
        ctx:send("out", msg.key, "v" .. msg.value.p, {
            partition = msg.value.p, timestamp = msg.value.ts,
            headers = { src = msg.key } })
        ctx:send("old", msg.key, "w", { x = "1" })
    end,
}
]]))
    local out = consume(dir, "out", "%p %T %h %k %s\\n")
    table.sort(out)
    assert.same({ "0 99 src=k2 k2 v0", "2 1234 src=k1 k1 v2" }, out)
    assert.same({ "x=1 k1 w", "x=1 k2 w" }, consume(dir, "old", "%h %k %s\\n"))
  end)

  it("refuses bad ctx:send options and ctx.log levels with one line "
     .. "naming the call", function()
    produce(dir, "in", { 'k:{"c":1}', 'k:{"c":2}', 'k:{"c":3}',
                         'k:{"c":4}', 'k:{"c":5}', 'k:{"c":6}' })
    local err = drain(dir, job_file(work, "bad", [[
return {
    name = "bad", inputs = { "in" }, serde = "json",
    outputs = { { "out", serde = "string" } }, on_error = "skip",
    process = function(msg, ctx)
        local c = msg.value.c
        if c == 1 then ctx:send("out", nil, "x", { partition = 7 })
        elseif c == 2 then ctx:send("out", nil, "x", { timestamp = "now" })
        elseif c == 3 then ctx:send("out", nil, "x", { partition = 0,
                                                       color = "red" })
        elseif c == 4 then ctx.log("loud", "x")
        elseif c == 5 then ctx:send("out", nil, "x", { timestamp = 1.5 })
        else ctx:send("out", nil, "ok") end
    end,
}
]]))
    for _, want in ipairs({
      "offset 0: %S+:6: ctx:send: partition 7 is out of range for 'out' "
        .. "%(partitions 0 to 0%) worker=",
      "offset 1: %S+:7: ctx:send: timestamp must be a positive whole number "
        .. "of milliseconds since the epoch, not a string worker=",
      "offset 2: %S+:8: ctx:send: unknown option 'color' %(known: "
        .. "partition, timestamp, headers; headers go in { headers = h }%) worker=",
      "offset 3: %S+:10: ctx.log: unknown level 'loud' %(use debug, info, "
        .. "warn or error%) worker=",
      "offset 4: %S+:11: ctx:send: timestamp must be a positive whole number "
        .. "of milliseconds since the epoch, not 1.5 worker=",
    }) do
      assert.matches("skipped stream 'in' partition 0 " .. want, err)
    end
    assert.same({ "ok" }, consume(dir, "out"))
  end)

  it("ctx.partitions is the input partition count; ctx.log writes to the "
     .. "job's log with the job and task", function()
    produce(dir, "in", { "a:{}", "b:{}", "c:{}", "d:{}", "e:{}", "f:{}" }, 3)
    local err = drain(dir, job_file(work, "logs", [[
return {
    name = "logs", inputs = { "in" }, serde = "json",
    process = function(msg, ctx)
        ctx.log("info", "key", msg.key, "of", ctx.partitions, nil)
        ctx:log("warn", "colon form too")
    end,
}
]]))
    for _, key in ipairs({ "a", "b", "c", "d", "e", "f" }) do
      local p = h.partition_of(key, 3)
      assert.matches(fmt(" info job logs task %d: key %s of 3 nil", p, key),
                     err, 1, true)
    end
    assert.equals(6, h.count(err, " warn job logs task %d: colon form too"))
  end)
end)
