-- End to end, with the real binary and log: tables (`table = true`
-- inputs, versioned as-of lookups) and tide.joins (docs/time.md "Tables
-- and joins"): a stream–table join over a backlog where every view finds
-- its profile, a versioned as-of join, and a stream–stream interval join
-- through SIGKILLs compared with an oracle computed here.
local h = require("cli.helper")

local fmt = string.format
local drain, consume = h.drain, h.consume_lines

local function job_file(work, name, src)
  local path = fmt("%s/%s.lua", work, name)
  h.write_file(path, src)
  return path
end

local ENRICH_JOB = [[
local joins = require("tide.joins")
local enrich = joins.stream_table("enrich", { table = "profiles",
                                             output = "enriched" })
return {
  name = "enrich",
  inputs = { { "profiles", table = true }, "views" },
  outputs = { "enriched" },
  serde = "json",
  commit_interval = "200ms",
  process = function(msg, ctx) enrich:add(msg, ctx) end,
}
]]

-- Prices are a versioned table (event time: value.ts); each order is
-- joined with the price its item had at the order's time.
local ASOF_JOB = [[
local joins = require("tide.joins")
local asof = joins.stream_table("asof", { table = "prices",
                                         output = "priced" })
return {
  name = "asof",
  inputs = { { "prices", table = true, versioned = true },
             "orders" },
  outputs = { "priced" },
  serde = "json",
  timestamp = function(msg) return msg.value.ts end,
  process = function(msg, ctx) asof:add(msg, ctx) end,
}
]]

-- Views and clicks of a user within 400 ms of each other, a left join:
-- a view without a click goes out with right = nil once its interval
-- closes.
local SS_JOB = [[
local joins = require("tide.joins")
local j = joins.stream_stream("vc", { left = "views", right = "clicks",
                                      within = "400ms", kind = "left",
                                      output = "joined" })
return {
  name = "vc",
  inputs = { "views", "clicks" },
  outputs = { "joined" },
  serde = "json",
  timestamp = function(msg) return msg.value.ts end,
  max_out_of_orderness = "1s",
  commit_interval = "100ms",
  stores = joins.stores(j),
  process = function(msg, ctx) j:add(msg, ctx) end,
  on_timer = joins.timers(j),
}
]]

local work, dir
before_each(function() work, dir = h.scratch() end)
after_each(function()
  h.kill_started(work)
  h.rmdir(work)
end)

describe("tables and joins, end to end", function()
  it("joins a backlog of views with a table: every view finds its profile",
     function()
    local N = 20000
    local profiles, views = {}, {}
    for i = 1, N do
      profiles[i] = fmt('u%d:{"n":%d}', i, i)
    end
    math.randomseed(21)
    for i = 1, N do
      local u = math.random(1, N)
      views[i] = fmt('u%d:{"id":%d,"u":%d}', u, i, u)
    end
    h.ok({ "produce", "profiles", "-K", ":", "--partitions", "2" },
         { dir = dir, stdin = table.concat(profiles, "\n") .. "\n" })
    h.ok({ "produce", "views", "-K", ":", "--partitions", "2" },
         { dir = dir, stdin = table.concat(views, "\n") .. "\n" })
    local job = job_file(work, "enrich", ENRICH_JOB)
    local err = h.tide({ "run", job, "--drain", "--workers", "2" },
                       { dir = dir })
    assert.equals(0, err.code, err.err)
    assert.matches("bootstrap inputs read to", err.err, 1, true)
    local seen, n = {}, 0
    for _, l in ipairs(consume(dir, "enriched")) do
      local left = l:match('"left":(%b{})') or ""
      local id, u = left:match('"id":(%d+)'), left:match('"u":(%d+)')
      local pn = (l:match('"right":(%b{})') or ""):match('"n":(%d+)')
      assert(id, l)
      assert.equals(u, pn, "view " .. id .. " joined the wrong profile")
      seen[tonumber(id)] = true
      n = n + 1
    end
    assert.equals(N, n)
    for i = 1, N do
      assert.is_true(seen[i], "view " .. i .. " has no output")
    end
    -- the table is a store like any other
    local dump = h.tide({ "state", "dump", job, "profiles" }, { dir = dir })
    assert.equals(0, dump.code, dump.err)
    assert.equals(N, #h.lines(dump.out))
  end)

  it("answers an as-of join from a versioned table", function()
    math.randomseed(22)
    local prices, versions = {}, {}
    for i = 1, 3000 do
      local item = "i" .. (i % 20)
      local ts = 1000000 + math.random(0, 100000) * 2
      prices[i] = fmt('%s:{"p":%d,"ts":%d}', item, i, ts)
      versions[item] = versions[item] or {}
      table.insert(versions[item], { ts = ts, p = i })
    end
    local orders, want = {}, {}
    for i = 1, 3000 do
      local item = "i" .. (i % 20)
      local ts = 1000000 + math.random(0, 101000) * 2 + 1
      orders[i] = fmt('%s:{"o":%d,"ts":%d}', item, i, ts)
      local best
      for _, v in ipairs(versions[item]) do
        if v.ts <= ts and (not best or v.ts > best.ts
                           or (v.ts == best.ts and v.p > best.p)) then
          best = v
        end
      end
      want[i] = best and best.p or 0
    end
    h.ok({ "produce", "prices", "-K", ":", "--partitions", "2" },
         { dir = dir, stdin = table.concat(prices, "\n") .. "\n" })
    h.ok({ "produce", "orders", "-K", ":", "--partitions", "2" },
         { dir = dir, stdin = table.concat(orders, "\n") .. "\n" })
    local job = job_file(work, "asof", ASOF_JOB)
    drain(dir, job)
    local got = 0
    for _, l in ipairs(consume(dir, "priced")) do
      local o = tonumber((l:match('"left":(%b{})') or ""):match('"o":(%d+)'))
      local p = tonumber((l:match('"right":(%b{})') or ""):match('"p":(%d+)')
                         or "0")
      assert(o, l)
      assert.equals(want[o], p, "order " .. o)
      got = got + 1
    end
    assert.equals(3000, got)
  end)

  it("keeps a stream–stream left join exact through SIGKILLs", function()
    math.randomseed(23)
    local N = 16000
    local views, clicks, vs, cs = {}, {}, {}, {}
    local base = 1700000000000
    for i = 1, N do
      local u = "u" .. (i % 17)
      local ts = base + i * 3 - math.random(0, 500)
      if math.random() < 0.5 then
        views[#views + 1] = fmt('%s:{"id":%d,"ts":%d}', u, i, ts)
        vs[#vs + 1] = { u = u, id = i, ts = ts }
      else
        clicks[#clicks + 1] = fmt('%s:{"id":%d,"ts":%d}', u, i, ts)
        cs[#cs + 1] = { u = u, id = i, ts = ts }
      end
    end
    -- the oracle: every (view, click) of a user within 400 ms, and each
    -- view that has none with "-"
    local want, by_user = {}, {}
    for _, c in ipairs(cs) do
      by_user[c.u] = by_user[c.u] or {}
      table.insert(by_user[c.u], c)
    end
    for _, v in ipairs(vs) do
      local any = false
      for _, c in ipairs(by_user[v.u] or {}) do
        if math.abs(c.ts - v.ts) <= 400 then
          want[fmt("%d %d", v.id, c.id)] = true
          any = true
        end
      end
      if not any then want[fmt("%d -", v.id)] = true end
    end
    h.ok({ "produce", "views", "-K", ":", "--partitions", "2" },
         { dir = dir, stdin = table.concat(views, "\n") .. "\n" })
    h.ok({ "produce", "clicks", "-K", ":", "--partitions", "2" },
         { dir = dir, stdin = table.concat(clicks, "\n") .. "\n" })
    local job = job_file(work, "vc", SS_JOB)
    local mid = 0
    for kill = 1, 5 do
      local t = h.start_tide(dir, work, { "run", job, "--workers", "2" })
      h.wait_log(t, "job 'vc' started", 1, "the start")
      if kill % 2 == 0 then
        -- as soon as this run adds results: mid-run
        local before = #consume(dir, "joined")
        for _ = 1, 300 do
          if #consume(dir, "joined") > before then break end
          h.sleep(0.02)
        end
      else
        h.sleep(0.05 + math.random() * 0.4)
      end
      h.kill9(t.pid)
      h.wait_exit(t)
      if #consume(dir, "joined") > 0 and kill < 5 then mid = mid + 1 end
    end
    assert.is_true(mid > 0, "no kill came after the first result")
    drain(dir, job, { "--final" })
    local got = {}
    for _, l in ipairs(consume(dir, "joined")) do
      local lid = (l:match('"left":(%b{})') or ""):match('"id":(%d+)')
      local rid = (l:match('"right":(%b{})') or ""):match('"id":(%d+)') or "-"
      assert(lid, l)
      local k = lid .. " " .. rid
      -- duplicates may come (at-least-once sends); nothing wrong may
      assert.is_true(want[k] ~= nil, "unexpected result " .. k)
      got[k] = true
    end
    for k in pairs(want) do
      assert.is_true(got[k], "missing result " .. k)
    end
    -- every buffered record expired with its interval
    local dump = h.tide({ "state", "dump", job, "vc" }, { dir = dir })
    assert.equals(0, dump.code, dump.err)
    assert.equals("", dump.out)
  end)
end)
