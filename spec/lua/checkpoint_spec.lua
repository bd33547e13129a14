local checkpoint = require("tide.checkpoint")

local PATH = "/d/jobs/j/checkpoint.json"

local function doc(tasks)
    return '{"version":1,"job":"j","tasks":{' .. tasks .. '}}'
end

describe("tide.checkpoint", function()
    describe("decode()", function()
        local decode = checkpoint.decode

        it("returns each task's input and changelog offsets", function()
            local t = assert(decode(doc('"0":{"inputs":{"local:in":5},'
                                        .. '"changelogs":{"counts":3}},'
                                        .. '"1":{"inputs":{}}'), PATH, "j"))
            assert.same({ [0] = { inputs = { ["local:in"] = 5 },
                                  changelogs = { counts = 3 } },
                          [1] = { inputs = {}, changelogs = {} } }, t)
            assert.same({}, assert(decode(doc(""), PATH, "j")))
        end)

        it("keeps its error on one line whatever names the file holds "
           .. "(found by fuzz/checkpoint)", function()
            local long = ("\\"):rep(200)
            for _, body in ipairs({
                '"i\\n\\r0":{"inputs":{}}',
                '"1":{"inputs":{"a\\nb":-1}}',
                '"1":{"inputs":{"' .. long .. '":-1}}',
            }) do
                local t, err = decode(doc(body), PATH, "j")
                assert.is_nil(t)
                assert.is_nil(err:find("[%c]"), "control byte in: " .. err)
                assert.is_true(#err < 600, err)
                assert.matches(PATH, err, 1, true)
            end
        end)

        it("keeps offsets up to 2^53 exact", function()
            local t = assert(decode(doc('"0":{"inputs":{"a":9007199254740992}}'),
                                    PATH, "j"))
            assert.equals(2 ^ 53, t[0].inputs.a)
        end)

        -- Each bad file gives nil and one line naming the file (and the
        -- task where there is one) and what to do.
        local bad = {
            { "not JSON", "{", "corrupt checkpoint" },
            { "an array", "[1]", "not a version 1 checkpoint of job 'j'" },
            { "another job", '{"version":1,"job":"k","tasks":{}}',
              "of job 'j'" },
            { "another version", '{"version":2,"job":"j","tasks":{}}',
              "version 1" },
            { "tasks as an array", '{"version":1,"job":"j","tasks":[{}]}',
              '"tasks" must be an object' },
            { "a task not named by a number", doc('"x":{"inputs":{}}'),
              "bad task 'x'" },
            { "a negative task", doc('"-1":{"inputs":{}}'), "bad task '-1'" },
            { "a task twice", doc('"7":{"inputs":{}},"07":{"inputs":{}}'),
              "task 7 appears twice" },
            { "a task without inputs", doc('"0":{}'), "bad entry for task 0" },
            { "inputs as an array", doc('"3":{"inputs":[5]}'),
              'task 3: "inputs" must be an object of input names to '
              .. 'offsets, not an array' },
            { "changelogs as an array",
              doc('"0":{"inputs":{},"changelogs":[1]}'),
              'task 0: "changelogs" must be an object' },
            { "an offset of 1e300", doc('"2":{"inputs":{"local:in":1e300}}'),
              "task 2: bad offset for input 'local:in'" },
            { "a negative offset", doc('"0":{"inputs":{"a":-1}}'),
              "task 0: bad offset for input 'a'" },
            { "a fractional offset", doc('"0":{"inputs":{"a":1.5}}'),
              "task 0: bad offset" },
            { "an offset as text", doc('"0":{"inputs":{"a":"5"}}'),
              "task 0: bad offset" },
            { "a changelog offset past 2^53",
              doc('"0":{"inputs":{},"changelogs":{"s":9007199254740993e3}}'),
              "task 0: bad offset for changelog of store 's'" },
        }
        for _, c in ipairs(bad) do
            it("refuses " .. c[1], function()
                local t, err = decode(c[2], PATH, "j")
                assert.is_nil(t)
                assert.matches(PATH .. ": ", err, 1, true)
                assert.matches(c[3], err, 1, true)
                assert.matches("delete it to reprocess", err, 1, true)
                assert.is_nil(err:find("\n"))
            end)
        end

        it("never raises, whatever the bytes", function()
            local seeds = {
                doc('"0":{"inputs":{"local:in":5},"changelogs":{"s":3}}'),
                doc('"1":{"inputs":[5]}'), string.rep("[", 1100),
                string.rep('{"a":', 1100), "\0\255\254", "", "null", "1e999",
            }
            math.randomseed(7)
            for i = 1, 5000 do
                local text = seeds[i % #seeds + 1]
                for _ = 1, math.random(3) do
                    local at = math.random(#text + 1)
                    local c = math.random(2) == 1
                              and string.char(math.random(0, 255))
                              or ('{}[]":,0e-'):sub(math.random(10))
                                               :sub(1, 1)
                    text = text:sub(1, at - 1) .. c
                           .. text:sub(at + math.random(0, 1))
                end
                local ok, t, err = pcall(decode, text, PATH, "j")
                assert(ok, "raised on " .. ("%q"):format(text) .. ": "
                       .. tostring(t))
                assert(t ~= nil or type(err) == "string", text)
            end
            assert.is_nil((decode(nil, PATH, "j")))
        end)
    end)

    describe("check()", function()
        local check = checkpoint.check
        local INPUTS = { "local:in", "local:more" }

        local function tasks(n, inputs)
            local t = {}
            for p = 0, n - 1 do
                t[p] = { inputs = inputs or { ["local:in"] = 1 },
                         changelogs = {} }
            end
            return t
        end

        it("takes a checkpoint of every task, and none at all", function()
            assert.is_true(check(tasks(2), PATH, "j", 2, INPUTS))
            assert.is_true(check({}, PATH, "j", 2, INPUTS))
            -- an input the checkpoint does not name starts at the beginning
            assert.is_true(check(tasks(2, {}), PATH, "j", 2, INPUTS))
        end)

        it("refuses a task the job does not have", function()
            local t = tasks(2)
            t[7] = { inputs = {}, changelogs = {} }
            local ok, err = check(t, PATH, "j", 2, INPUTS)
            assert.is_nil(ok)
            assert.matches(PATH .. ": task 7 does not exist: job 'j' has 2 "
                           .. "tasks", err, 1, true)
            assert.matches("delete the job's checkpoint.json", err, 1, true)
        end)

        it("refuses a missing task", function()
            local t = tasks(3)
            t[1] = nil
            local ok, err = check(t, PATH, "j", 3, INPUTS)
            assert.is_nil(ok)
            assert.matches(PATH .. ": task 1 is missing", err, 1, true)
        end)

        it("refuses an input the job does not read", function()
            local ok, err = check(tasks(1, { ["local:gone"] = 4 }), PATH, "j",
                                  1, INPUTS)
            assert.is_nil(ok)
            assert.matches(PATH .. ": task 0 has an offset for input "
                           .. "'local:gone', which job 'j' does not read "
                           .. "(inputs: local:in, local:more)", err, 1, true)
        end)
    end)

    describe("save() and load()", function()
        it("round-trip in memory", function()
            local c = checkpoint.new({}, "j")
            assert.same({}, c:load())
            assert.is_true(c:save({ [0] = { inputs = { a = 2 ^ 53 } } }))
            assert.same({ [0] = { inputs = { a = 2 ^ 53 }, changelogs = {} } },
                        c:load())
        end)
    end)
end)
