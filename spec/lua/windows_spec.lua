-- Windows (tide.windows) through the test kit, each shape checked against
-- a brute-force oracle over out-of-order events: mem: streams, one
-- process, `final = true` as `tide run --drain --final`.
local testing = require("tide.testing")
local windows = require("tide.windows")

-- n events over `keys` keys, event times rising `step` ms a message with
-- up to `disorder` ms of disorder, as { key, t, v } (v: a small number).
local function events(n, keys, step, disorder, seed)
    math.randomseed(seed or 7)
    local t = {}
    for i = 1, n do
        t[i] = { "k" .. (i % keys), 100000 + i * step
                 - math.random(0, disorder), math.random(1, 9) }
    end
    return t
end

local function input(evs)
    local t = {}
    for i, e in ipairs(evs) do
        t[i] = { key = e[1], value = { t = e[2], v = e[3] },
                 timestamp = e[2] }
    end
    return t
end

-- Runs window `w` over evs in a job (json serde; event time from the
-- record timestamp); returns the result and the emissions as a map
-- "key start end" -> value (the last emission of each window), and the
-- number of emissions.
local function run(w, evs, extra)
    local j = {
        name = "win", inputs = { "in" }, outputs = { "out" },
        serde = "json", max_out_of_orderness = "2s",
        stores = windows.stores(w),
        process = function(msg, ctx) w:add(msg, ctx) end,
        on_timer = windows.timers(w),
    }
    for k, v in pairs(extra or {}) do j[k] = v end
    local res = assert(testing.run(j, { final = true,
                                        inputs = { ["in"] = input(evs) } }))
    local got, n = {}, 0
    for _, o in ipairs(res.outputs.out) do
        got[("%s %d %d"):format(o.key, o.value.start, o.value["end"])] =
            o.value.value
        n = n + 1
    end
    return res, got, n
end

local function count_keys(t)
    local n = 0
    for _ in pairs(t) do n = n + 1 end
    return n
end

local function value(msg) return msg.value.v end

describe("tide.windows", function()
    it("tumbling: a count per key and window, emitted once each", function()
        local evs = events(3000, 7, 10, 1500)
        local want = {}
        for _, e in ipairs(evs) do
            local s = e[2] - e[2] % 1000
            local k = ("%s %d %d"):format(e[1], s, s + 1000)
            want[k] = (want[k] or 0) + 1
        end
        local w = windows.new("w", { shape = windows.tumbling("1s"),
                                     agg = windows.agg.count,
                                     output = "out" })
        local res, got, n = run(w, evs)
        assert.same(want, got)
        assert.equals(count_keys(want), n)       -- one emission a window
        -- every window closed: its state is gone
        assert.same({}, res.stores.w or {})
        assert.same({}, res.timers)
    end)

    it("hopping: sums over windows that overlap", function()
        local evs = events(2000, 5, 20, 1000, 3)
        local want = {}
        for _, e in ipairs(evs) do
            local s = e[2] - e[2] % 500
            while s > e[2] - 2000 do
                local k = ("%s %d %d"):format(e[1], s, s + 2000)
                want[k] = (want[k] or 0) + e[3]
                s = s - 500
            end
        end
        local w = windows.new("w", { shape = windows.hopping("2s", "500ms"),
                                     agg = windows.agg.sum, value = value,
                                     output = "out" })
        local _, got = run(w, evs)
        assert.same(want, got)
    end)

    it("session: merges records less than the gap apart", function()
        -- bursts: 5 records 100 ms apart, then a pause of 2 s or 400 ms
        local evs, t = {}, 100000
        math.randomseed(5)
        for b = 1, 200 do
            for i = 1, 5 do
                evs[#evs + 1] = { "k" .. (b % 3), t + i * 100, 1 }
            end
            t = t + (b % 4 == 0 and 2500 or 900)
        end
        -- shuffle neighbours a little (out of order, within 1 s)
        for i = 1, #evs - 3, 3 do
            evs[i], evs[i + 2] = evs[i + 2], evs[i]
        end
        local per_key = {}
        for _, e in ipairs(evs) do
            per_key[e[1]] = per_key[e[1]] or {}
            table.insert(per_key[e[1]], e[2])
        end
        local want = {}
        for k, ts in pairs(per_key) do
            table.sort(ts)
            local s, last, n = ts[1], ts[1], 0
            for _, x in ipairs(ts) do
                if x - last >= 1000 then
                    want[("%s %d %d"):format(k, s, last + 1)] = n
                    s, n = x, 0
                end
                last, n = x, n + 1
            end
            want[("%s %d %d"):format(k, s, last + 1)] = n
        end
        local w = windows.new("w", { shape = windows.session("1s"),
                                     agg = windows.agg.count,
                                     output = "out" })
        local res, got, n = run(w, evs)
        assert.same(want, got)
        assert.equals(count_keys(want), n)
        assert.same({}, res.stores.w or {})
    end)

    it("sliding: one window per record time, over (t - size, t]", function()
        local evs = events(1500, 4, 30, 800, 11)
        local want = {}
        for _, e in ipairs(evs) do
            local sum = 0
            for _, f in ipairs(evs) do
                if f[1] == e[1] and f[2] > e[2] - 1000 and f[2] <= e[2] then
                    sum = sum + f[3]
                end
            end
            want[("%s %d %d"):format(e[1], e[2] - 999, e[2] + 1)] = sum
        end
        local w = windows.new("w", { shape = windows.sliding("1s"),
                                     agg = windows.agg.sum, value = value,
                                     output = "out" })
        local res, got, n = run(w, evs)
        assert.same(want, got)
        assert.equals(count_keys(want), n)
        assert.same({}, res.stores.w or {})
    end)

    it("count: every n records of a key, in the order they came", function()
        local evs = events(100, 3, 10, 0)
        local want, seen = {}, {}
        for _, e in ipairs(evs) do
            local s = seen[e[1]] or { n = 0, sum = 0, first = e[2] }
            s.n, s.sum = s.n + 1, s.sum + e[3]
            if s.n == 4 then
                want[("%s %d %d"):format(e[1], s.first, e[2] + 1)] = s.sum
                s = nil
            end
            seen[e[1]] = s
        end
        local w = windows.new("w", { shape = windows.count(4),
                                     agg = windows.agg.sum, value = value,
                                     output = "out" })
        local res, got = run(w, evs)
        assert.same(want, got)
        -- the unfinished windows stay (a count window has no end in time)
        assert.equals(3, count_keys(res.stores.w))
    end)

    it("emit = \"update\": every change, the last one exact", function()
        local evs = events(600, 3, 10, 500)
        local want = {}
        for _, e in ipairs(evs) do
            local s = e[2] - e[2] % 1000
            local k = ("%s %d %d"):format(e[1], s, s + 1000)
            want[k] = (want[k] or 0) + 1
        end
        local w = windows.new("w", { shape = windows.tumbling(1),
                                     agg = windows.agg.count,
                                     emit = "update", output = "out" })
        local _, got, n = run(w, evs)
        assert.same(want, got)
        assert.equals(#evs, n)
    end)

    it("counts late records and dead-letters them with 'late'", function()
        local evs = { { "a", 5000, 1 }, { "a", 1000, 1 }, { "a", 5100, 1 },
                      { "a", 2500, 1 } }
        local w = windows.new("w", { shape = windows.tumbling("1s"),
                                     grace = "1s", agg = windows.agg.count,
                                     output = "out" })
        -- no lateness allowed but the grace: 1000's window closed at
        -- 1999 + 1000 < 5000; 2500's window [2000, 3000) closes at 3999
        local res, got = run(w, evs, { max_out_of_orderness = 0,
                                       dead_letters = true })
        assert.same({ ["a 5000 6000"] = 2 }, got)
        assert.equals(2, res.stores.w.late)
        assert.equals(2, #res.dead_letters)
        assert.equals("late", res.dead_letters[1].error)
        assert.equals(1, res.dead_letters[1].offset)
        -- within the grace: counted in its window
        evs[4] = { "a", 4500, 1 }
        res, got = run(w, evs, { max_out_of_orderness = 0,
                                 dead_letters = true })
        assert.same({ ["a 5000 6000"] = 2, ["a 4000 5000"] = 1 }, got)
        assert.equals(1, res.stores.w.late)
        -- late = "drop": counted, not dead-lettered
        local d = windows.new("w", { shape = windows.tumbling("1s"),
                                     grace = "1s", agg = windows.agg.count,
                                     late = "drop",
                                     output = "out" })
        res = run(d, evs, { max_out_of_orderness = 0, dead_letters = true })
        assert.equals(0, #res.dead_letters)
        assert.equals(1, res.stores.w.late)
        -- no dead letters in the job: dropped, and one warning says so
        res = run(w, evs, { max_out_of_orderness = 0 })
        local warned = 0
        for _, l in ipairs(res.logs) do
            if l:find("late records are counted and dropped", 1, true) then
                warned = warned + 1
            end
        end
        assert.equals(1, warned)
    end)

    it("has ready-made aggregates", function()
        local a = windows.agg
        local function fold(agg, list)
            local acc = agg.init()
            for _, v in ipairs(list) do acc = agg.add(acc, v) end
            if agg.result then return agg.result(acc) end
            return acc
        end
        assert.equals(3, fold(a.min, { 5, 3, 9 }))
        assert.equals(9, fold(a.max, { 5, 3, 9 }))
        assert.is_nil(fold(a.max, {}))
        assert.equals(17 / 3, fold(a.avg, { 5, 3, 9 }))
        assert.same({ 9, 5 }, fold(a.top_n(2), { 5, 3, 9 }))
        local top = a.top_n(2, function(v) return v.p end)
        assert.same({ { p = 9 }, { p = 5 } },
                    fold(top, { { p = 5 }, { p = 3 }, { p = 9 } }))
        assert.same({ 9, 7 }, top.merge and a.top_n(2).merge({ 9, 1 }, { 7 }))
        assert.equals(3, a.min.merge(3, a.min.init()))
    end)

    it("lets a job keep timers of its own beside its windows", function()
        local w = windows.new("w", { shape = windows.tumbling("1s"),
                                     agg = windows.agg.count,
                                     output = "out" })
        local mine = {}
        local j = {
            name = "mixed", inputs = { "in" }, outputs = { "out" },
            serde = "json", stores = windows.stores(w, { other = {} }),
            process = function(msg, ctx)
                w:add(msg, ctx)
                ctx:timer("own", 100)
            end,
            on_timer = windows.timers(w, function(key, at)
                mine[#mine + 1] = key .. "@" .. at
            end),
        }
        local res = assert(testing.run(j, { final = true, inputs = {
            ["in"] = input({ { "a", 1500, 1 }, { "b", 2500, 1 } }) } }))
        assert.same({ "own@100" }, mine)
        assert.equals(2, #res.outputs.out)
    end)

    it("refuses bad windows with one line", function()
        local function err(fn)
            local ok, e = pcall(fn)
            assert.is_false(ok)
            return e
        end
        assert.matches("shape must be windows.tumbling", err(function()
            windows.new("w", { shape = "1m", agg = windows.agg.count,
                               output = "o" })
        end))
        assert.matches("session windows need agg.merge", err(function()
            windows.new("w", { shape = windows.session(5),
                               agg = { init = function() end,
                                       add = function() end },
                               output = "o" })
        end))
        assert.matches("give output", err(function()
            windows.new("w", { shape = windows.tumbling(5),
                               agg = windows.agg.count })
        end))
        assert.matches("hopping advance .* is longer than the size",
                       err(function() windows.hopping("1s", "2s") end))
        assert.matches("tumbling size: bad duration", err(function()
            windows.tumbling("soon")
        end))
        assert.matches("unknown option 'emitt'", err(function()
            windows.new("w", { shape = windows.tumbling(5), emitt = "final",
                               agg = windows.agg.count, output = "o" })
        end))
    end)
end)
