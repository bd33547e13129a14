-- Tables and joins (tide.tables, tide.joins) through the test kit: each
-- join kind checked against an oracle computed here without the library,
-- on mem: streams in one process (`final = true` as --drain --final).
local testing = require("tide.testing")
local joins = require("tide.joins")

local fmt = string.format

local function count_keys(t)
    local n = 0
    for _ in pairs(t) do n = n + 1 end
    return n
end

describe("tables", function()
    it("materializes a table input, deletes on a tombstone and keeps "
       .. "its records from process", function()
        local seen = {}
        local res = assert(testing.run({
            name = "t", serde = "json",
            inputs = { { "users", table = true }, "events" },
            outputs = { "out" },
            process = function(msg, ctx)
                seen[#seen + 1] = msg.stream
                ctx:send("out", msg.key, {
                    user = ctx.tables.users:get(msg.key) or "none" })
            end,
        }, { inputs = {
            users = { { key = "a", value = { n = 1 } },
                      { key = "b", value = { n = 2 } },
                      { key = "a", value = { n = 3 } },
                      { key = "b", value = nil } },
            events = { { key = "a", value = 1 }, { key = "b", value = 2 } },
        } }))
        assert.same({ "events", "events" }, seen)
        assert.same({ a = { n = 3 } }, res.stores.users)
        assert.same({ a = { n = 3 } }, res.tables.users)
        assert.same({ n = 3 }, res.outputs.out[1].value.user)
        assert.equals("none", res.outputs.out[2].value.user)
    end)

    it("gives every task the whole of a global (broadcast) table",
       function()
        local rates = {}
        for i = 1, 40 do
            rates[i] = { key = "c" .. i, value = i }
        end
        local events = {}
        for i = 1, 200 do
            events[i] = { key = "e" .. i, value = { c = "c" .. (i % 40 + 1) } }
        end
        local res = assert(testing.run({
            name = "g", serde = "json", outputs = { "out" },
            inputs = { { "rates", table = true, broadcast = true },
                       "events" },
            process = function(msg, ctx)
                ctx:send("out", msg.key, {
                    task = ctx.partition,
                    rate = ctx.tables.rates:get(msg.value.c) or false })
            end,
        }, { partitions = 4, inputs = { rates = rates, events = events } }))
        local tasks = {}
        for _, o in ipairs(res.outputs.out) do
            assert.equals(tonumber(o.key:sub(2)) % 40 + 1, o.value.rate)
            tasks[o.value.task] = true
        end
        assert.equals(200, #res.outputs.out)
        assert.is_true(count_keys(tasks) > 1)
    end)

    it("calls on_table after each update with the old value", function()
        local calls = {}
        assert(testing.run({
            name = "t", serde = "json",
            inputs = { { "users", table = true, store = "u" } },
            on_table = function(msg, old, ctx)
                calls[#calls + 1] = { msg.key, old, msg.value,
                                      ctx.tables.u:get(msg.key) }
            end,
        }, { inputs = { users = { { key = "a", value = 1 },
                                  { key = "a", value = 2 },
                                  { key = "a", value = nil } } } }))
        assert.same({ { "a", nil, 1, 1 }, { "a", 1, 2, 2 },
                      { "a", 2, nil, nil } }, calls)
    end)

    it("answers as-of lookups in a versioned table", function()
        math.randomseed(3)
        -- versions of 5 keys at random times (some deletes), in random
        -- order; the oracle keeps them all
        local recs, versions = {}, {}
        for i = 1, 400 do
            local k = "k" .. (i % 5)
            local t = math.random(1, 5000) * 2     -- even: no ties with probes
            local v = (i % 9 == 0) and nil or i
            recs[#recs + 1] = { key = k, value = v, timestamp = t }
            versions[k] = versions[k] or {}
            versions[k][#versions[k] + 1] = { t = t, v = v, i = i }
        end
        local probes, want = {}, {}
        for i = 1, 300 do
            local k = "k" .. (i % 5)
            local at = math.random(1, 10100) * 2 + 1
            probes[i] = { key = k, value = i, timestamp = at }
            local best
            for _, ver in ipairs(versions[k]) do
                -- the newest at or before `at`; of equal times the later
                -- record wins (it overwrote the version)
                if ver.t <= at and (not best or ver.t > best.t
                                    or (ver.t == best.t and ver.i > best.i))
                then
                    best = ver
                end
            end
            want[i] = best and best.v or "none"
        end
        local st = joins.stream_table("asof", { table = "prices",
                                               output = "out" })
        local res = assert(testing.run({
            name = "t", serde = "json",
            inputs = { { "prices", table = true, versioned = true },
                       "probes" },
            outputs = { "out" },
            process = function(msg, ctx) st:add(msg, ctx) end,
        }, { inputs = { prices = recs, probes = probes } }))
        local got = {}
        for _, o in ipairs(res.outputs.out) do
            got[o.value.left] = o.value.right or "none"
        end
        assert.equals(300, count_keys(got))
        assert.same(want, got)
    end)

    it("drops versions past the history, keeping what a query within it "
       .. "needs", function()
        local vs
        local res = assert(testing.run({
            name = "t", serde = "json",
            inputs = { { "p", table = true, versioned = true,
                         history = "10s" } },
            on_table = function(msg, old, ctx)
                vs = {}
                for t, v in ctx.tables.p:versions("a") do
                    vs[#vs + 1] = { t, v }
                end
            end,
        }, { inputs = { p = {
            { key = "a", value = 1, timestamp = 1000 },
            { key = "a", value = 2, timestamp = 2000 },
            { key = "a", value = 3, timestamp = 3000 },
            { key = "a", value = 4, timestamp = 20000 },
            { key = "a", value = 5, timestamp = 21000 } } } }))
        -- 21000 - 10s = 11000: 3000 answers queries at 11000, older go
        assert.same({ { 21000, 5 }, { 20000, 4 }, { 3000, 3 } }, vs)
        assert.same({ a = { { at = 21000, value = 5 },
                            { at = 20000, value = 4 },
                            { at = 3000, value = 3 } } }, res.tables.p)
    end)

    it("needs a restart to make an input a table or change its options",
       function()
        local reload = require("tide.reload")
        local job = require("tide.job")
        local path = os.tmpname() .. ".lua"
        local function write(inputs)
            local f = assert(io.open(path, "w"))
            f:write("return { name = 'j', inputs = " .. inputs
                    .. ", process = function() end }")
            f:close()
        end
        write([[{ "p", "s" }]])
        local j = assert(job.load(path))
        write([[{ { "p", table = true }, "s" }]])
        local new, why, kind = reload.prepare(j, {})
        assert.is_nil(new)
        assert.equals("restart", kind)
        assert.matches("restart needed: inputs changed", why, 1, true)
        j = assert(job.load(path))
        write([[{ { "p", table = true, versioned = true }, "s" }]])
        new, why = reload.prepare(j, {})
        assert.is_nil(new)
        assert.matches("table p versioned", why, 1, true)
        os.remove(path)
    end)

    it("rejects bad table options with one line", function()
        local job = require("tide.job")
        local function check(inputs, extra, want)
            local j = { name = "j", inputs = inputs,
                        process = function() end }
            for k, v in pairs(extra or {}) do j[k] = v end
            local ok, err = job.validate(j, "j.lua")
            assert.is_nil(ok)
            assert.matches(want, err, 1, true)
            assert.is_nil(err:find("\n"))
        end
        check({ { "p", versioned = true } }, nil,
              "option 'versioned' is for tables: add table = true")
        check({ { "p", table = true, priority = 2 }, "s" }, nil,
              "a table cannot have a priority")
        check({ { "p", table = true, history = "1h" }, "s" }, nil,
              "option 'history' is for versioned tables")
        check({ { "p", table = true, colour = 1 }, "s" }, nil,
              "unknown option 'colour'")
        check({ { "p", table = true }, "s" }, { stores = { p = {} } },
              "also in 'stores'")
        check({ { "_p", table = true }, "s" }, nil, "starts with '_'")
        check({ "s" }, { on_table = function() end },
              "no input is a table")
        check({ { "p", table = true, history = "soon", versioned = true } },
              nil, "option 'history': bad duration")
    end)
end)

describe("tide.joins", function()
    it("stream–table: every view finds its profile, inner drops the rest",
       function()
        local profiles, views, want = {}, {}, {}
        for i = 1, 50 do
            profiles[#profiles + 1] = { key = "u" .. i, value = { n = i } }
        end
        for i = 1, 300 do
            local u = "u" .. (i % 60 + 1)          -- u51..u60 have none
            views[#views + 1] = { key = u, value = { v = i } }
            local n = tonumber(u:sub(2))
            if n <= 50 then want[i] = n end
        end
        local j = joins.stream_table("enrich", { table = "profiles",
                                                 kind = "inner",
                                                 output = "out" })
        local res = assert(testing.run({
            name = "st", serde = "json",
            inputs = { { "profiles", table = true }, "views" },
            outputs = { "out" },
            process = function(msg, ctx) j:add(msg, ctx) end,
        }, { partitions = 3, inputs = { profiles = profiles,
                                         views = views } }))
        local got = {}
        for _, o in ipairs(res.outputs.out) do
            got[o.value.left.v] = o.value.right.n
        end
        assert.same(want, got)
    end)

    -- events on both sides with disorder; the oracle pairs every left
    -- and right of one key with tr - tl in [-before, after].
    local function ss_events(n, seed)
        math.randomseed(seed)
        local left, right = {}, {}
        for i = 1, n do
            local k = "k" .. (i % 4)
            local t = 10000 + i * 37 - math.random(0, 300)
            local side = math.random() < 0.5 and left or right
            side[#side + 1] = { key = k, value = { id = i, t = t },
                                timestamp = t }
        end
        return left, right
    end

    local function ss_oracle(left, right, before, after, kind)
        local want, lm, rm = {}, {}, {}
        for _, l in ipairs(left) do
            for _, r in ipairs(right) do
                local d = r.timestamp - l.timestamp
                if l.key == r.key and d >= -before and d <= after then
                    want[fmt("%d %d", l.value.id, r.value.id)] = true
                    lm[l.value.id], rm[r.value.id] = true, true
                end
            end
        end
        if kind ~= "inner" then
            for _, l in ipairs(left) do
                if not lm[l.value.id] then
                    want[fmt("%d -", l.value.id)] = true
                end
            end
        end
        if kind == "outer" then
            for _, r in ipairs(right) do
                if not rm[r.value.id] then
                    want[fmt("- %d", r.value.id)] = true
                end
            end
        end
        return want
    end

    for _, c in ipairs({ { "inner", { within = "500ms" }, 500, 500 },
                         { "left", { before = "200ms", after = "700ms" },
                           200, 700 },
                         { "outer", { within = "300ms" }, 300, 300 } }) do
        local kind, iv, before, after = c[1], c[2], c[3], c[4]
        it("stream–stream " .. kind .. " join within an interval, state "
           .. "emptied at the end", function()
            local left, right = ss_events(1500, #kind)
            local want = ss_oracle(left, right, before, after, kind)
            local opts = { left = "a", right = "b", kind = kind,
                           grace = "400ms", output = "out" }
            for k, v in pairs(iv) do opts[k] = v end
            local j = joins.stream_stream("ab", opts)
            local res = assert(testing.run({
                name = "ss", serde = "json", outputs = { "out" },
                inputs = { "a", "b" },
                stores = joins.stores(j),
                process = function(msg, ctx) j:add(msg, ctx) end,
                on_timer = joins.timers(j),
            }, { final = true, inputs = { a = left, b = right } }))
            local got, n = {}, 0
            for _, o in ipairs(res.outputs.out) do
                local l, r = o.value.left, o.value.right
                got[fmt("%s %s", l and l.id or "-", r and r.id or "-")] =
                    true
                n = n + 1
            end
            assert.same(want, got)
            assert.equals(count_keys(want), n)      -- no duplicates
            assert.same({}, res.stores.ab)
            assert.same({}, res.timers)
        end)
    end

    it("stream–stream: a record later than the grace is counted as late",
       function()
        local j = joins.stream_stream("ab", { left = "a", right = "b",
                                              within = "1s", late = "drop",
                                              output = "out" })
        local res = assert(testing.run({
            name = "ss", serde = "json", outputs = { "out" },
            inputs = { "a", "b" }, stores = joins.stores(j),
            process = function(msg, ctx) j:add(msg, ctx) end,
            on_timer = joins.timers(j),
        }, { inputs = {
            a = { { key = "k", value = 1, timestamp = 10000 },
                  { key = "k", value = 2, timestamp = 20000 },
                  { key = "k", value = 3, timestamp = 5000 } },
            b = { { key = "x", value = 0, timestamp = 19000 } },
        } }))
        assert.equals(1, res.stores.ab["#late"])
    end)

    it("table–table: joined values on each change, tombstones when the "
       .. "join stops holding (inner, left, outer)", function()
        math.randomseed(11)
        local a, b, order = {}, {}, {}
        for i = 1, 400 do
            local k = "k" .. math.random(1, 8)
            local v = math.random() < 0.2 and nil or i
            local rec = { key = k, value = v, timestamp = i }
            if math.random() < 0.5 then
                a[#a + 1] = rec
                order[#order + 1] = { "a", rec }
            else
                b[#b + 1] = rec
                order[#order + 1] = { "b", rec }
            end
        end
        for _, kind in ipairs({ "inner", "left", "outer" }) do
            local j = joins.table_table("ab", { left = "a", right = "b",
                                                kind = kind,
                                                output = "out" })
            local res = assert(testing.run({
                name = "tt", serde = "json", outputs = { "out" },
                inputs = { { "a", table = true, bootstrap = false },
                           { "b", table = true, bootstrap = false } },
                on_table = joins.on_table(j),
            }, { inputs = { a = a, b = b } }))
            -- the oracle: the latest output per key is the join of the
            -- final tables, or a tombstone / nothing
            local fa, fb = {}, {}
            for _, e in ipairs(order) do
                local t = e[1] == "a" and fa or fb
                t[e[2].key] = e[2].value
            end
            local last = {}
            for _, o in ipairs(res.outputs.out) do
                last[o.key] = o.value or false
            end
            for i = 1, 8 do
                local k = "k" .. i
                local l, r = fa[k], fb[k]
                local holds = (kind == "inner" and l and r)
                              or (kind == "left" and l)
                              or (kind == "outer" and (l or r))
                if holds then
                    assert.same({ left = l, right = r }, last[k],
                                kind .. " " .. k)
                else
                    assert.is_true(last[k] == nil or last[k] == false,
                                   kind .. " " .. k)
                end
            end
        end
    end)

    it("rejects bad options with one line", function()
        assert.has_error(function()
            joins.stream_stream("j", { left = "a", right = "b",
                                       output = "o" })
        end, "tide.joins: join 'j': give the interval: within = \"10s\", "
             .. "or before and after")
        assert.has_error(function()
            joins.stream_stream("j", { left = "a", right = "b", within = 1,
                                       kind = "full", output = "o" })
        end, "tide.joins: join 'j': kind must be \"inner\", \"left\" or "
             .. "\"outer\", not full")
        assert.has_error(function()
            joins.table_table("j", { left = "a", right = "b", colour = 1,
                                     output = "o" })
        end, "tide.joins: join 'j': unknown option 'colour' (known: left, "
             .. "right, kind, output, on_result)")
    end)
end)
