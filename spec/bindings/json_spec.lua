-- Specs for the json codec (bindings/tide/json.lua, core/src/serde/json.c),
-- most of them differential: lua-cjson is an independent JSON reader and
-- writer, so each side must read what the other writes, to the same values,
-- and both must refuse the same broken texts.
local json = require("tide.json")
local cjson = require("cjson").new()
cjson.decode_max_depth(1000)
cjson.encode_max_depth(1000)
cjson.encode_sparse_array(true)

local random, floor = math.random, math.floor
local char, concat, str_format = string.char, table.concat, string.format

-- Deep equality that treats every NaN-free number by value and null by
-- identity; tables by their keys both ways.
local function same(a, b)
    if type(a) ~= type(b) then
        return false
    end
    if type(a) ~= "table" then
        return a == b
    end
    for k, v in pairs(a) do
        if not same(v, b[k]) then
            return false
        end
    end
    for k in pairs(b) do
        if a[k] == nil then
            return false
        end
    end
    return true
end

local function rand_string()
    local n = random(0, 24)
    local t = {}
    for i = 1, n do
        local r = random()
        if r < 0.6 then
            t[i] = char(random(32, 126))            -- printable, '"' and '\'
        elseif r < 0.75 then
            t[i] = char(random(0, 31))              -- control bytes
        elseif r < 0.9 then
            t[i] = "\u{e9}\u{4e2d}\u{1f600}"        -- UTF-8, 2 to 4 bytes
        else
            t[i] = ({ '"', "\\", "/", "\127" })[random(1, 4)]
        end
    end
    return concat(t)
end

-- Numbers that JSON carries exactly in both codecs: integers of any size
-- up to 2^53 and fractions with few digits.
local function rand_number()
    local r = random()
    if r < 0.4 then
        return random(-1000, 1000)
    elseif r < 0.6 then
        return random(0, 2 ^ 31) * random(0, 2 ^ 21)   -- up to 2^52
    elseif r < 0.8 then
        return random(-100000, 100000) / 8
    else
        local x = (random() - 0.5) * 10 ^ random(-20, 20)
        return tonumber(str_format("%.6g", x))
    end
end

local function rand_value(depth)
    local r = random()
    if depth > 3 or r < 0.3 then
        return rand_string()
    elseif r < 0.5 then
        return rand_number()
    elseif r < 0.55 then
        return random() < 0.5
    elseif r < 0.6 then
        return json.null
    elseif r < 0.8 then
        local t = {}
        for i = 1, random(1, 6) do
            t[i] = rand_value(depth + 1)
        end
        return t
    else
        local t = {}
        for _ = 1, random(0, 6) do              -- {} now and then
            t[rand_string() .. "k"] = rand_value(depth + 1)
        end
        return t
    end
end

describe("tide.json", function()
    it("gives the values cjson gives, both ways, over generated values",
       function()
        math.randomseed(1234)
        for i = 1, 3000 do
            local v = rand_value(0)
            local ours = assert(json.encode(v))
            local back = json.decode(ours)
            assert(same(v, back), "round trip " .. i .. ": " .. ours)
            assert(same(v, cjson.decode(ours)), "cjson reads ours " .. i)
            local theirs = cjson.encode(v)
            assert(same(cjson.decode(theirs), json.decode(theirs)),
                   "we read cjson's " .. i .. ": " .. theirs)
        end
    end)

    it("refuses exactly the broken texts cjson refuses", function()
        math.randomseed(99)
        -- No NUL: cjson stops reading at one (it takes "1\0x" for 1);
        -- the codec refuses what follows a value, NUL or not (below).
        local noise = { "", ",", "]", "}", "[", "{", ":", '"', "\\", "0",
                        "-", ".", "e", "x", " ", "\1", "nul", "tru", "1e",
                        "01", "\\u12", "\\ud800" }
        local refused = 0
        for i = 1, 5000 do
            local text = cjson.encode(rand_value(2))
            local at = random(1, #text + 1)
            local cut = random(0, 2)
            text = text:sub(1, at - 1) .. noise[random(1, #noise)]
                   .. text:sub(at + cut)
            local ok_c, v_c = pcall(cjson.decode, text)
            local v, err, pos = json.decode(text)
            if ok_c then
                assert(v ~= nil, "refused what cjson reads " .. i .. ": "
                                 .. str_format("%q: %s", text, tostring(err)))
                assert(same(v_c, v), "differs from cjson " .. i .. ": "
                                     .. str_format("%q", text))
            else
                refused = refused + 1
                assert(v == nil, "read what cjson refuses " .. i .. ": "
                                 .. str_format("%q (%s)", text, v_c))
                assert.matches(" at character %d+$", err)
                assert(pos >= 1 and pos <= #text + 1)
            end
        end
        assert(refused > 1000, "the mutations broke only " .. refused)
        local v, err = json.decode("1\0x")
        assert.is_nil(v)
        assert.equals("expected the end of the input at character 2", err)
    end)

    it("reads empty objects and arrays at any depth", function()
        assert.is_true(same({}, json.decode("{}")))
        assert.is_true(same({}, json.decode("[]")))
        assert.is_true(same({ a = {}, b = { {}, {} } },
                            json.decode('{"a":{},"b":[[],{}]}')))
    end)

    it("reads wide and deep documents past the stack's chunking", function()
        -- Objects and arrays of more than 32 members, nested 300 deep with
        -- 31 members waiting at each level (past the pending budget).
        local wide = {}
        for i = 1, 5000 do
            wide[i] = { i, tostring(i), { k = i } }
        end
        local obj = {}
        for i = 1, 300 do
            obj["key" .. i] = i
        end
        for _, v in ipairs({ wide, obj }) do
            local text = cjson.encode(v)
            assert.is_true(same(v, json.decode(text)))
            assert.is_true(same(v, json.decode(json.encode(v))))
        end
        -- Nested 300 deep with 31 members waiting before "z" at every
        -- level (written by hand: cjson's order follows the table's).
        local deep, parts, tail = {}, {}, {}
        local node = deep
        for _ = 1, 300 do
            for j = 1, 31 do
                node["m" .. j] = j
                parts[#parts + 1] = str_format('"m%d":%d,', j, j)
            end
            node.z = {}
            node = node.z
            parts[#parts + 1] = '"z":{'
            tail[#tail + 1] = "}"
        end
        local text = "{" .. concat(parts) .. "}" .. concat(tail)
        assert.is_true(same(deep, json.decode(text)))
    end)

    it("nests up to 1000 levels and no further, both ways", function()
        local ok = string.rep("[", 1000) .. string.rep("]", 1000)
        assert.is_table(json.decode(ok))
        local v, err = json.decode("[" .. ok .. "]")
        assert.is_nil(v)
        assert.matches("nesting deeper than 1000 at character 1001", err, 1,
                       true)
        local t = {}
        local node = t
        for _ = 1, 999 do
            node[1] = {}
            node = node[1]
        end
        assert.is_string(json.encode(t))
        node[1] = {}
        v, err = json.encode(t)
        assert.is_nil(v)
        assert.equals("nesting deeper than 1000 (a cycle?)", err)
        local cycle = {}
        cycle[1] = cycle
        assert.is_nil(json.encode(cycle))
    end)

    it("decodes escapes, surrogate pairs and raw bytes", function()
        assert.equals('a"b\\c/d\b\f\n\r\t',
                      json.decode('"a\\"b\\\\c\\/d\\b\\f\\n\\r\\t"'))
        assert.equals("\u{e9}\u{4e2d}\u{1f600}",
                      json.decode('"\\u00e9\\u4E2D\\ud83d\\ude00"'))
        assert.equals("\0", json.decode('"\\u0000"'))
        assert.equals("\1\255", json.decode('"\1\255"'))
        for _, bad in ipairs({ '"\\ud800"', '"\\ud800\\u0041"', '"\\udc00"',
                               '"\\u12"', '"\\x41"', '"abc' }) do
            local v, err = json.decode(bad)
            assert.is_nil(v)
            assert.is_string(err)
        end
    end)

    it("writes only the escapes JSON needs", function()
        assert.equals('"/a\\"b\\\\c\\n\\u0001\127\u{e9}"',
                      json.encode("/a\"b\\c\n\1\127\u{e9}"))
        local all = {}
        for i = 0, 255 do
            all[#all + 1] = char(i)
        end
        all = concat(all)
        assert.equals(all, json.decode(json.encode(all)))
        assert.equals(all, cjson.decode(json.encode(all)))
    end)

    it("writes numbers in full or with 14 digits, and exactly past 1e14",
       function()
        local cases = {
            { 0, "0" }, { -0.0, "-0" }, { 42, "42" }, { -7, "-7" },
            { 0.1, "0.1" }, { 1 / 3, "0.33333333333333" },
            { 1e-7, "1e-07" }, { 123456789012345, "123456789012345" },
            { 999999999999999, "999999999999999" },
            { 2 ^ 53, "9007199254740992" },
            { -2 ^ 62, "-4611686018427387904" },
            { 1e15 + 0.5, "1000000000000000.5" },
            { 2 ^ 63, "9.223372036854776e+18" },
            { 1e300, "1e+300" },
        }
        for _, c in ipairs(cases) do
            assert.equals(c[2], json.encode(c[1]))
            if c[1] ~= 1 / 3 then                -- 14 digits lose the rest
                assert.equals(c[1], json.decode(c[2]))
            end
        end
        for _, bad in ipairs({ 0 / 0, math.huge, -math.huge }) do
            local s, err = json.encode(bad)
            assert.is_nil(s)
            assert.equals("NaN and infinities are not JSON", err)
        end
        -- A number written in a locale with a decimal comma would be
        -- broken JSON; the codec writes and reads in the C locale.
        if os.setlocale("de_DE.UTF-8", "numeric") then
            local ok, s = pcall(json.encode, 2.5)
            local d = json.decode("2.5")
            os.setlocale("C", "numeric")
            assert.is_true(ok)
            assert.equals("2.5", s)
            assert.equals(2.5, d)
        end
    end)

    it("writes non-integers below 1e14 as C's %.14g does", function()
        -- The codec writes short decimals itself; C's snprintf (which
        -- cjson used) is the reference. LuaJIT's string.format is not: it
        -- rounds exact ties differently.
        local ffi = require("ffi")
        pcall(ffi.cdef, "int snprintf(char *s, size_t n, const char *f, ...);")
        local buf = ffi.new("char[64]")
        local r = random
        math.randomseed(7)
        local checked = 0
        for _ = 1, 100000 do
            local c, v = r(1, 4)
            if c == 1 then
                v = r(-10 ^ 7, 10 ^ 7) / 10 ^ r(1, 8)
            elseif c == 2 then
                v = (r() - 0.5) * 10 ^ r(-6, 15)
            elseif c == 3 then
                v = tonumber(str_format("%." .. r(1, 14) .. "g",
                                        (r() - 0.5) * 10 ^ r(-5, 14)))
            else
                v = r(0, 2 ^ 30) * 2 ^ -r(1, 30)
            end
            if v ~= floor(v) and math.abs(v) < 1e14 then
                ffi.C.snprintf(buf, 64, "%.14g", ffi.new("double", v))
                assert.equals(ffi.string(buf), json.encode(v))
                checked = checked + 1
            end
        end
        assert.is_true(checked > 80000)
    end)

    it("writes numbers just below 1e14 so that they read back", function()
        for _, v in ipairs({ 99999999999999.5, -99999999999999.98,
                             99999999999999.99 }) do
            local s = json.encode(v)
            assert.not_matches("e", s)
            assert.equals(v, json.decode(s))
            assert.equals(s, json.encode(json.decode(s)))
        end
    end)

    it("stays right when a finalizer calls it during a call", function()
        -- A GC step inside the codec's lua_pushlstring may run a Lua
        -- finalizer; one that uses the codec must not overwrite the outer
        -- call's buffer. The finalizer's texts have the outer ones' sizes,
        -- so that a shared buffer would give "b"s where "a"s belong.
        local a, b = string.rep("a", 1000), string.rep("b", 1000)
        local want_a = '["' .. a .. '"]'
        local esc_a = '"' .. string.rep("a\\t", 500) .. '"'
        local esc_b = '"' .. string.rep("b\\t", 500) .. '"'
        local tabs_a = string.rep("a\t", 500)
        local ran = 0
        local function arm()
            local p = newproxy(true)
            getmetatable(p).__gc = function()
                ran = ran + 1
                json.encode({ b })
                json.decode(esc_b)
            end
        end
        local wrong = 0               -- no assert in the loop: its garbage
        for _ = 1, 20000 do           -- would take most of the GC steps
            arm()
            if json.encode({ a }) ~= want_a then
                wrong = wrong + 1
            end
            arm()
            if json.decode(esc_a) ~= tabs_a then
                wrong = wrong + 1
            end
        end
        assert.equals(0, wrong)
        assert.is_true(ran > 1000)
        collectgarbage()
        assert.equals(want_a, json.encode({ a }))
    end)

    it("reads numbers strictly", function()
        assert.equals(-0.0, json.decode("-0"))
        assert.equals(1 / -0.0, 1 / json.decode("-0"))
        assert.equals(12345678901234567890,
                      json.decode("12345678901234567890"))
        assert.equals(1.5e-300, json.decode("1.5e-300"))
        assert.equals(2e10, json.decode("2E+10"))
        assert.equals(17, json.decode("017"))        -- as cjson reads it
        assert.equals(-1.5, json.decode("-01.5"))
        assert.equals(1, json.decode("1."))
        assert.equals(-0.5, json.decode("-.5"))
        assert.equals(14, json.decode("+14"))
        for _, bad in ipairs({ "-", "-.", ".5", "+-1", "1e", "1e+",
                               "0x10", "nan", "inf", "-inf", "1.5.5" }) do
            assert.is_nil(json.decode(bad), bad)
        end
    end)

    it("writes tables as arrays, sparse arrays and objects", function()
        assert.equals("{}", json.encode({}))
        assert.equals("[1,2,3]", json.encode({ 1, 2, 3 }))
        assert.equals("[1,null,3]", json.encode({ 1, nil, 3 }))
        local sparse = json.encode({ [1] = "a", [50] = "b" })
        assert.is_true(same({ ["1"] = "a", ["50"] = "b" },
                            json.decode(sparse)))
        assert.equals('{"1.5":true}', json.encode({ [1.5] = true }))
        assert.equals('{"-1":true}', json.encode({ [-1] = true }))
        local s, err = json.encode({ [true] = 1 })
        assert.is_nil(s)
        assert.matches("neither a string nor a number", err, 1, true)
        for _, bad in ipairs({ print, coroutine.create(print),
                               io.stdout }) do
            s, err = json.encode({ x = bad })
            assert.is_nil(s)
            assert.matches("is not JSON$", err)
        end
    end)

    it("reads and writes a 3 MB string, then small ones again", function()
        local big = string.rep("x\n", 1024 * 1024)
        local text = assert(json.encode(big))
        assert.equals(2 * 1024 * 1024 + 2 + 1024 * 1024, #text)
        assert.equals(big, json.decode(text))
        assert.equals('"x"', json.encode("x"))
        assert.equals("x", json.decode('"x"'))
    end)
end)
