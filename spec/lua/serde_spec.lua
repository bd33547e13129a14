-- Specs for lua/tide/serde.lua: json, string and bytes, both ways.
local serde = require("tide.serde")

local function raises(f, pattern)
    local ok, err = pcall(f)
    assert.is_false(ok)
    assert.is_string(err)
    assert.matches(pattern, err)
    return err
end

describe("tide.serde", function()
    describe("get()", function()
        it("returns json, string and bytes with their names", function()
            for _, name in ipairs({ "json", "string", "bytes" }) do
                local s = assert(serde.get(name))
                assert.equals(name, s.name)
                assert.is_function(s.encode)
                assert.is_function(s.decode)
            end
        end)

        it("returns the same table on every call", function()
            assert.equals(serde.get("json"), serde.get("json"))
        end)

        it("returns nil and names the known serdes for an unknown name",
           function()
            local s, err = serde.get("yaml")
            assert.is_nil(s)
            assert.equals("unknown serde 'yaml' (known: json, string, bytes)",
                          err)
            s, err = serde.get(nil)
            assert.is_nil(s)
            assert.matches("unknown serde 'nil'", err, 1, true)
        end)
    end)

    describe("json", function()
        local json = serde.get("json")

        it("round-trips tables, numbers, booleans and strings", function()
            local values = {
                { url = "/a", n = 3, ok = true, tags = { "x", "y" },
                  nested = { deep = { list = { 1, 2.5, -3 } } } },
                { 1, 2, 3 },
                42, -0.5, true, false, "text", "",
                "unicode \u{e9}\u{4e2d}", "quote \" and \\ and \n",
            }
            for _, v in ipairs(values) do
                assert.same(v, json.decode(json.encode(v)))
            end
        end)

        it("encodes an empty table as an object", function()
            assert.equals("{}", json.encode({}))
        end)

        it("keeps integers exact up to 2^53 and beyond 1e14", function()
            for _, n in ipairs({ 2 ^ 53, -2 ^ 53, 1234567890123456,
                                 1e14, 99999999999999, 2 ^ 60, 1e15 + 0.5 }) do
                local s = json.encode(n)
                assert.equals(n, json.decode(s))
                assert.not_matches("e%+", s)
                local t = json.decode(json.encode({ id = n, list = { n } }))
                assert.equals(n, t.id)
                assert.equals(n, t.list[1])
            end
            assert.equals("1234567890123456", json.encode(1234567890123456))
            assert.equals('{"id":9007199254740992}',
                          json.encode({ id = 2 ^ 53 }))
        end)

        it("writes huge floats so that they read back exactly", function()
            for _, n in ipairs({ 1e300, -1.5e200, 2 ^ 70, 1.7976931348623157e308 }) do
                assert.equals(n, json.decode(json.encode(n)))
                assert.equals(n, json.decode(json.encode({ n }))[1])
            end
        end)

        it("leaves strings that look like exponents alone", function()
            local t = { s = "1e+20", n = 1e20, t = "\1tide-num:1\1" }
            assert.same(t, json.decode(json.encode(t)))
        end)

        it("writes sparse arrays as objects instead of raising", function()
            local t = json.decode(json.encode({ [1] = "a", [50] = "b" }))
            assert.same({ ["1"] = "a", ["50"] = "b" }, t)
            -- A few holes stay an array, with nulls.
            assert.equals("[1,null,3]", json.encode({ 1, nil, 3 }))
        end)

        it("decodes null to serde.null, and encodes it back", function()
            assert.equals(serde.null, json.decode("null"))
            local t = json.decode('{"a":null,"b":[null,1]}')
            assert.equals(serde.null, t.a)
            assert.equals(serde.null, t.b[1])
            assert.equals("null", json.encode(serde.null))
            assert.equals('[null,1]', json.encode({ serde.null, 1 }))
        end)

        it("raises naming json and showing the bad bytes", function()
            local err = raises(function() json.decode('{"url": /a}') end,
                               "^json: cannot decode ")
            assert.matches('{\\"url\\": /a}', err, 1, true)
            assert.matches("at character 9", err, 1, true)
            raises(function() json.decode("") end, "^json: cannot decode \"\"")
            raises(function() json.decode("nan") end, "^json: ")
            raises(function() json.decode("0x10") end, "^json: ")
            raises(function() json.decode("[1,2") end, "^json: ")
        end)

        it("shows a short, printable excerpt of long or binary input",
           function()
            local bad = string.rep("x", 1000) .. "\0\255"
            local err = raises(function() json.decode(bad) end, "^json: ")
            assert.is_true(#err < 250)
            assert.matches("1002 bytes", err, 1, true)
            err = raises(function() json.decode("\0\1\2\n") end, "^json: ")
            assert.not_matches("[%z\1\2\n]", err)
            -- The excerpt is taken around the error position.
            err = raises(function()
                json.decode('{"a":' .. string.rep('"x",', 0)
                            .. string.rep(" ", 200) .. "@}")
            end, "^json: ")
            assert.matches("@}", err, 1, true)
        end)

        it("raises naming json on values it cannot encode", function()
            raises(function() json.encode(0 / 0) end, "^json: cannot encode")
            raises(function() json.encode(math.huge) end, "^json: cannot encode")
            raises(function() json.encode({ f = print }) end,
                   "^json: cannot encode table")
            local cycle = {}
            cycle.self = cycle
            raises(function() json.encode(cycle) end, "^json: cannot encode")
        end)

        it("does not change the settings of the global cjson", function()
            local cjson = require("cjson")
            assert.is_false(pcall(cjson.encode, { [1] = 1, [50] = 2 }))
        end)
    end)

    describe("string", function()
        local s = serde.get("string")

        it("decodes to the raw bytes", function()
            assert.equals("a\0b\255", s.decode("a\0b\255"))
            assert.equals("", s.decode(""))
            assert.equals("42", s.decode("42"))
        end)

        it("encodes strings, numbers and booleans with tostring", function()
            assert.equals("a\0b", s.encode("a\0b"))
            assert.equals("42", s.encode(42))
            assert.equals("-1.5", s.encode(-1.5))
            assert.equals("true", s.encode(true))
            assert.equals("false", s.encode(false))
            assert.equals("1234567890123456", s.encode(1234567890123456))
        end)

        it("raises naming string for other types", function()
            raises(function() s.encode({}) end,
                   "^string: cannot encode a table %(string, number or "
                   .. "boolean expected%)$")
            raises(function() s.encode(print) end, "^string: ")
        end)
    end)

    describe("bytes", function()
        local b = serde.get("bytes")

        it("passes bytes through both ways", function()
            local all = {}
            for i = 0, 255 do
                all[#all + 1] = string.char(i)
            end
            all = table.concat(all)
            assert.equals(all, b.decode(all))
            assert.equals(all, b.encode(all))
            assert.equals("", b.encode(""))
        end)

        it("raises naming bytes for anything but a string", function()
            raises(function() b.encode(1) end,
                   "^bytes: cannot encode a number %(string expected%)$")
            raises(function() b.encode(true) end, "^bytes: ")
            raises(function() b.encode({}) end, "^bytes: ")
        end)
    end)
end)
