-- Input order within a task (tide.chooser), through the test kit: mem:
-- streams, one process, every task in one worker.
local testing = require("tide.testing")

-- n messages; ts(i) gives each one's record timestamp (default: none,
-- so the test kit stamps them as it writes them).
local function msgs(n, prefix, key, ts)
    local t = {}
    for i = 1, n do
        t[i] = { key = key or ("k" .. i), value = prefix .. i,
                 timestamp = ts and ts(i) or nil }
    end
    return t
end

-- Runs a one-partition job over inputs `a` and `b` (options per input)
-- and returns the values in the order process() saw them.
local function order_of(a_opts, b_opts, n_a, n_b, ts_a, ts_b)
    local seen = {}
    local a = { "a" }
    local b = { "b" }
    for k, v in pairs(a_opts or {}) do a[k] = v end
    for k, v in pairs(b_opts or {}) do b[k] = v end
    local res, err = testing.run({
        name = "order", inputs = { a, b },
        process = function(msg)
            seen[#seen + 1] = msg.value
        end,
    }, { inputs = { a = msgs(n_a, "a", nil, ts_a),
                   b = msgs(n_b, "b", nil, ts_b) } })
    assert(res, err)
    return seen
end

local function first_index(list, prefix)
    for i, v in ipairs(list) do
        if v:sub(1, #prefix) == prefix then
            return i
        end
    end
end

local function last_index(list, prefix)
    local last
    for i, v in ipairs(list) do
        if v:sub(1, #prefix) == prefix then
            last = i
        end
    end
    return last
end

describe("tide.chooser", function()
    it("reads a bootstrap input to its end before any other", function()
        -- b is listed second and has the lower priority: bootstrap wins
        local seen = order_of({ priority = 5 }, { bootstrap = true }, 2000,
                              3000)
        assert.equals(5000, #seen)
        assert.equals(3000, last_index(seen, "b"))
        assert.equals(3001, first_index(seen, "a"))
    end)

    it("reads a higher priority first whenever it has messages", function()
        local seen = order_of({ priority = 0 }, { priority = 1 }, 2000, 2000)
        assert.equals(4000, #seen)
        assert.is_true(last_index(seen, "b") < first_index(seen, "a"),
                       "a message of the lower priority came first")
    end)

    it("reads the input whose next message is oldest first", function()
        -- a's records are all newer than b's: b goes first although a is
        -- listed first and was written first
        local seen = order_of(nil, nil, 500, 500,
                              function(i) return 2000000 + i end,
                              function(i) return 1000000 + i end)
        assert.equals(1000, #seen)
        assert.equals(500, last_index(seen, "b"))
        -- interleaved times interleave the inputs, message by message
        seen = order_of(nil, nil, 300, 300,
                        function(i) return 1000 + 2 * i end,
                        function(i) return 1001 + 2 * i end)
        for i = 1, 600 do
            local want = (i % 2 == 1 and "a" or "b") .. math.ceil(i / 2)
            assert.equals(want, seen[i])
        end
    end)

    it("takes turns between inputs of equal priority and time", function()
        -- one timestamp for every record: event time cannot decide
        local same = function() return 1700000000000 end
        local seen = order_of(nil, nil, 3000, 3000, same, same)
        assert.equals(6000, #seen)
        -- neither waits for the other to finish: both show up early
        local head = { a = 0, b = 0 }
        for i = 1, 1024 do
            local p = seen[i]:sub(1, 1)
            head[p] = head[p] + 1
        end
        assert.is_true(head.a >= 256 and head.b >= 256,
                       ("first 1024: %d from a, %d from b"):format(head.a,
                                                                  head.b))
        -- and each input stays in order
        local last = { a = 0, b = 0 }
        for _, v in ipairs(seen) do
            local p, n = v:sub(1, 1), tonumber(v:sub(2))
            assert.is_true(n > last[p], v)
            last[p] = n
        end
    end)

    it("gives every task all partitions of a broadcast input", function()
        local per_task = {}
        local res, err = testing.run({
            name = "bcast",
            inputs = { "events", { "table", broadcast = true } },
            process = function(msg, ctx)
                if msg.stream == "table" then
                    local t = per_task[ctx.partition] or {}
                    per_task[ctx.partition] = t
                    t[#t + 1] = msg.value
                end
            end,
        }, { partitions = 3, inputs = {
            events = msgs(30, "e"), table = msgs(12, "t") } })
        assert(res, err)
        for p = 0, 2 do
            assert.is_not_nil(per_task[p], "task " .. p .. " saw nothing")
            table.sort(per_task[p])
            assert.equals(12, #per_task[p], "task " .. p)
        end
    end)

    it("refuses bad input options with the input named", function()
        local ok, err = testing.run({
            name = "bad", inputs = { { "a", priority = 1.5 } },
            process = function() end,
        }, {})
        assert.is_nil(ok)
        assert.matches("inputs%[1%]: priority must be a whole number", err)
        ok, err = testing.run({
            name = "bad", inputs = { { "a", bootstrap = "yes" } },
            process = function() end,
        }, {})
        assert.is_nil(ok)
        assert.matches("option 'bootstrap' must be a boolean", err)
        ok, err = testing.run({
            name = "bad", inputs = { { "a", broadcast = true } },
            process = function() end,
        }, {})
        assert.is_nil(ok)
        assert.matches("every input is broadcast", err)
    end)
end)
