local job = require("tide.job")

local function tmpjob(text)
    local path = os.tmpname() .. ".lua"
    local f = assert(io.open(path, "w"))
    f:write(text)
    f:close()
    return path
end

local MINIMAL = [[
return { name = "j", inputs = { "in" }, process = function() end }
]]

describe("tide.job", function()
    describe("load()", function()
        it("loads a minimal job with defaults", function()
            local path = tmpjob(MINIMAL)
            local j = assert(job.load(path))
            os.remove(path)
            assert.equals("j", j.name)
            assert.equals("local", j.inputs[1].system)
            assert.equals("in", j.inputs[1].name)
            assert.equals("string", j.inputs[1].serde.name)
            assert.equals("fail", j.on_error)
            assert.equals(5000, j.commit_interval_ms)
            assert.is_nil(j.window_interval_ms)
            assert.same({}, j.config)
        end)

        local cases = {
            { "a missing name", [[return { inputs = { "i" }, process = function() end }]],
              "missing field 'name'" },
            { "a missing process", [[return { name = "j", inputs = { "i" } }]],
              "missing field 'process'" },
            { "an unknown field", [[return { name = "j", inptus = {}, process = function() end }]],
              "unknown field 'inptus'" },
            { "an unknown serde", [[return { name = "j", inputs = { "i" }, serde = "xml", process = function() end }]],
              "unknown serde 'xml'" },
            { "an unknown per-stream serde", [[return { name = "j", inputs = { { "i", serde = "avro" } }, process = function() end }]],
              "unknown serde 'avro'" },
            { "a bad on_error", [[return { name = "j", inputs = { "i" }, on_error = "ignore", process = function() end }]],
              "on_error" },
            { "a bad duration", [[return { name = "j", inputs = { "i" }, commit_interval = "soon", process = function() end }]],
              "bad duration" },
            { "no inputs", [[return { name = "j", inputs = {}, process = function() end }]],
              "at least one stream" },
            { "a wrong type", [[return { name = "j", inputs = { "i" }, process = "f" }]],
              "'process' must be a function" },
            { "a non-table", [[return 42]], "must return a table" },
            { "a global assignment", [[x = 1 return {}]], "global 'x'" },
            { "an unknown system", [[return { name = "j", inputs = { "redis:i" }, process = function() end }]],
              "unknown system 'redis'" },
            { "a stream listed twice", [[return { name = "j", inputs = { "i", "local:i" }, process = function() end }]],
              "listed twice" },
            { "a bad max_process_time", [[return { name = "j", inputs = { "i" }, max_process_time = -1, process = function() end }]],
              "field 'max_process_time': bad duration" },
            { "a max_memory too small", [[return { name = "j", inputs = { "i" }, max_memory = "1MiB", process = function() end }]],
              "at least 16MiB" },
            { "a max_memory in an unknown unit", [[return { name = "j", inputs = { "i" }, max_memory = "2 parsecs", process = function() end }]],
              "bad size" },
            { "an unknown input option", [[return { name = "j", inputs = { { "i", bootstrapp = true } }, process = function() end }]],
              "unknown option 'bootstrapp' (known: serde, key_serde, bootstrap, priority, broadcast, timestamp)" },
            { "an input option on an output", [[return { name = "j", inputs = { "i" }, outputs = { { "o", priority = 2 } }, process = function() end }]],
              "outputs[1]: unknown option 'priority'" },
        }
        for _, c in ipairs(cases) do
            it("rejects " .. c[1] .. " with one clear line naming the file", function()
                local path = tmpjob(c[2])
                local j, err = job.load(path)
                os.remove(path)
                assert.is_nil(j)
                assert.matches(c[3], err, 1, true)
                assert.matches(path, err, 1, true)
                assert.is_nil(err:find("\n"))
            end)
        end

        it("reports syntax errors with file and line", function()
            local path = tmpjob("return {\n name = \n")
            local j, err = job.load(path)
            os.remove(path)
            assert.is_nil(j)
            assert.matches(path .. ":%d+:", err)
        end)

        it("reports a missing file", function()
            local j, err = job.load("/nonexistent/job.lua")
            assert.is_nil(j)
            assert.matches("cannot open", err, 1, true)
        end)
    end)

    describe("load() of code that misbehaves", function()
        local function loads(code, opts)
            local path = tmpjob(code .. "\n" .. MINIMAL)
            local j, err = job.load(path, nil, opts)
            os.remove(path)
            return j, err, path
        end

        for _, c in ipairs({
            { "while true do end", "while true do end" },
            { "for i = 1, math.huge do end", "for i = 1, math.huge do end" },
            { "a loop calling a function",
              "local function f(x) return x + 1 end local x = 0 "
              .. "while x >= 0 do x = f(x) end" },
            { "a loop that pcall cannot keep going",
              "while true do pcall(function() while true do end end) end" },
        }) do
            it("stops " .. c[1] .. " after opts.limit_ms, leaving the JIT on "
               .. "and no hook", function()
                local j, err, path = loads(c[2], { limit_ms = 200 })
                assert.is_nil(j)
                assert.matches(path .. ": top-level code still running after "
                               .. "0.2 s (at " .. path .. ":1;", err, 1, true)
                assert.is_nil(err:find("\n"))
                assert.is_true(jit.status())
                assert.is_nil(debug.gethook())
            end)
        end

        it("loads a job whose top level takes a while but finishes", function()
            local j = assert(loads("local s = 0 for i = 1, 1e6 do s = s + i end",
                                   { limit_ms = 10000 }))
            assert.equals("j", j.name)
            assert.is_true(jit.status())
        end)

        it("leaves the loaded job's code to the JIT", function()
            local path = tmpjob([[
return { name = "j", inputs = { "in" }, process = function(m)
    local s = 0
    for i = 1, 100 do s = s + i * m end
    return s
end }]])
            local j = assert(job.load(path, nil, { limit_ms = 10000 }))
            local log = os.tmpname()
            local v = require("jit.v")
            v.start(log)
            local s = 0
            for i = 1, 20000 do s = s + j.process(i) end
            v.off()
            local f = assert(io.open(log))
            local text = f:read("*a")
            f:close()
            os.remove(log)
            os.remove(path)
            assert.equals(5050 * 20000 * 20001 / 2, s)
            local name = path:match("[^/]*$"):gsub("%p", "%%%0")
            assert.matches("TRACE%s+%d+ " .. name .. ":%d+ loop", text)
        end)

        it("makes os.exit raise while the file loads, then puts it back",
           function()
            local exit = os.exit
            local j, err, path = loads("os.exit(0)")
            assert.is_nil(j)
            assert.matches(path .. ":1: os.exit() called: a job cannot end "
                           .. "the process", err, 1, true)
            assert.equals(exit, os.exit)
            j, err = loads("local x = require('os').exit x(3)")
            assert.is_nil(j)
            assert.matches("os.exit() called", err, 1, true)
            assert.equals(exit, os.exit)
        end)

        it("reports error values readably", function()
            local _, err, path = loads("error({ code = 7 })")
            assert.equals(path .. ": error object {code = 7}", err)
            _, err = loads("error(nil)")
            assert.matches("no message", err, 1, true)
            _, err, path = loads("error(setmetatable({}, { __tostring = "
                                 .. "function() return 'mine' end }))")
            assert.equals(path .. ": mine", err)
        end)
    end)

    describe("errtext()", function()
        it("shows any value in one line and never raises", function()
            assert.equals("x", job.errtext("x"))
            assert.equals("error value 7", job.errtext(7))
            assert.equals("error value false", job.errtext(false))
            assert.equals('error object {["a b"] = 1, [1] = "s", k = {...}}',
                          job.errtext({ "s", ["a b"] = 1, k = {} }))
            local bad = setmetatable({}, { __tostring = function()
                error("no")
            end })
            assert.equals("error object {}", job.errtext(bad))
            local big = {}
            for i = 1, 20 do big["k" .. i] = i end
            assert.matches("^error object {k%d+ = %d+, .*, %.%.%.}$",
                           job.errtext(big))
        end)
    end)

    describe("override()", function()
        it("sets nested keys, numbers and booleans", function()
            local path = tmpjob([[return { name = "j", inputs = { "i" },
                config = { top_n = 10, deep = { x = "a" }, flag = false,
                           new = { k = "u" } },
                process = function() end }]])
            local j = assert(job.load(path, { "config.top_n=5",
                "config.deep.x=b", "config.flag=true", "commit_interval=1s",
                "config.new.k=v" }))
            os.remove(path)
            assert.equals(5, j.config.top_n)
            assert.equals("b", j.config.deep.x)
            assert.is_true(j.config.flag)
            assert.equals("v", j.config.new.k)
            assert.equals(1000, j.commit_interval_ms)
        end)

        it("refuses a config key the job does not declare, naming the "
           .. "keys it has", function()
            local path = tmpjob([[return { name = "j", inputs = { "i" },
                config = { top_n = 10, deep = { x = "a" } },
                process = function() end }]])
            local j, err = job.load(path, { "config.topn=5" })
            assert.is_nil(j)
            assert.matches("bad -c 'config.topn=5': the job's config has no "
                           .. "key 'topn' (its keys: deep, top_n)", err, 1,
                           true)
            j, err = job.load(path, { "config.deep.y=1" })
            assert.is_nil(j)
            assert.matches("config.deep has no key 'y' (its keys: x)", err,
                           1, true)
            os.remove(path)
            path = tmpjob([[return { name = "j", inputs = { "i" },
                process = function() end }]])
            j, err = job.load(path, { "config.x=1" })
            os.remove(path)
            assert.is_nil(j)
            assert.matches("the job has no config table", err, 1, true)
        end)

        it("rejects a malformed override", function()
            local t = {}
            local ok, err = job.override(t, { "novalue" })
            assert.is_nil(ok)
            assert.matches("KEY=VALUE", err, 1, true)
        end)

        it("rejects an unknown top-level field set by override", function()
            local path = tmpjob(MINIMAL)
            local j, err = job.load(path, { "bogus=1" })
            os.remove(path)
            assert.is_nil(j)
            assert.matches("unknown field 'bogus'", err, 1, true)
        end)
    end)

    describe("duration_ms()", function()
        it("parses seconds and units", function()
            assert.equals(5000, job.duration_ms(5))
            assert.equals(250, job.duration_ms("250ms"))
            assert.equals(120000, job.duration_ms("2m"))
            assert.equals(1500, job.duration_ms("1.5s"))
            assert.is_nil(job.duration_ms("-1s"))
            assert.is_nil(job.duration_ms(0))
        end)
    end)
end)
