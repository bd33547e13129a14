-- Specs for lua/tide/repl/pretty.lua: the REPL's pretty-printer.
local ffi = require("ffi")
local pretty = require("tide.repl.pretty")

local fmt = pretty.format
local E = "\226\128\166"                                        -- "…"
local NOTE = "(pretty.format(v, {max_lines = 0}) shows all)"

local function lines(...)
    return table.concat({ ... }, "\n")
end

-- A function whose debug info says fn.lua, defined on line 2.
local fn = loadstring("\nreturn function() end", "=fn.lua")()

describe("tide.repl.pretty", function()
    describe("format()", function()
        describe("numbers", function()
            it("prints integral values without .0", function()
                assert.equals("123", fmt(123))
                assert.equals("-3", fmt(-3))
                assert.equals("0", fmt(0))
                assert.equals("9007199254740991", fmt(2^53 - 1))
            end)

            it("prints floats in their shortest round-tripping form", function()
                assert.equals("0.1", fmt(0.1))
                assert.equals("1e+300", fmt(1e300))
                assert.equals("1.5", fmt(1.5))
                assert.equals("0.30000000000000004", fmt(0.1 + 0.2))
                assert.equals("0.3333333333333333", fmt(1 / 3))
                assert.equals("1e-300", fmt(1e-300))
                assert.equals(1 / 3, tonumber(fmt(1 / 3)))
            end)

            it("prints -0.0, nan and the infinities", function()
                assert.equals("-0", fmt(-0.0))
                assert.equals("nan", fmt(0 / 0))
                assert.equals("inf", fmt(1 / 0))
                assert.equals("-inf", fmt(-1 / 0))
            end)
        end)

        describe("strings", function()
            it("quotes and escapes control bytes readably", function()
                assert.equals([["a\nb\tc\r\000\001\127\"\\"]],
                              fmt("a\nb\tc\r\0\1\127\"\\"))
            end)

            it("keeps UTF-8 text and escapes bytes that are not UTF-8",
               function()
                assert.equals('"héllo ✓"', fmt("héllo ✓"))
                assert.equals([["\255\192a\226\130"]],
                              fmt("\255\192a\226\130"))
            end)

            it("escapes C1 controls and bidi overrides", function()
                assert.equals([["\194\155x\226\128\174y"]],
                              fmt("\194\155x\226\128\174y"))
            end)

            it("shows max_string bytes, then the full size", function()
                local s = string.rep("ab", 150)
                assert.equals('"' .. string.rep("ab", 100) .. '"' .. E
                              .. " (300 bytes)", fmt(s))
                assert.equals('"abcd"' .. E .. " (10 bytes)",
                              fmt("abcdefghij", { max_string = 4 }))
                assert.equals('"' .. s .. '"', fmt(s, { max_string = 0 }))
                assert.equals('"abcdefghij"',
                              fmt("abcdefghij", { max_string = 10 }))
            end)

            it("never cuts a UTF-8 character in half", function()
                assert.equals('"a"' .. E .. " (5 bytes)",
                              fmt("aéé", { max_string = 2 }))
                assert.equals('"aé"' .. E .. " (5 bytes)",
                              fmt("aéé", { max_string = 3 }))
            end)
        end)

        describe("other values", function()
            it("prints nil and booleans", function()
                assert.equals("nil", fmt(nil))
                assert.equals("true", fmt(true))
                assert.equals("false", fmt(false))
            end)

            it("prints functions by their file and line", function()
                assert.equals("function: fn.lua:2", fmt(fn))
                assert.matches("^function: builtin#%d+$", fmt(print))
            end)

            it("prints cdata with its type", function()
                assert.equals("cdata<int64_t>: 5LL", fmt(ffi.new("int64_t", 5)))
                assert.equals("cdata<uint64_t>: 7ULL",
                              fmt(ffi.new("uint64_t", 7)))
                assert.matches("^cdata<int %[2%]>: 0x%x+$",
                               fmt(ffi.new("int[2]")))
            end)

            it("prints userdata and threads by tostring", function()
                assert.matches("^file %(0x%x+%)$", fmt(io.stdout))
                assert.matches("^thread: 0x%x+$",
                               fmt(coroutine.create(print)))
            end)
        end)

        describe("tables", function()
            it("prints {} and short tables on one line", function()
                assert.equals("{}", fmt({}))
                assert.equals("{ 1, 2, 3 }", fmt({ 1, 2, 3 }))
                assert.equals('{ a = 1, b = "x" }', fmt({ b = "x", a = 1 }))
            end)

            it("prints the array part first, then sorted keys", function()
                local t = { 1, 2, [10] = 5, [-1] = 6, [1.5] = 7, z = 1,
                            a = 2, B = 3, [true] = 8, [false] = 9 }
                assert.equals("{ 1, 2, [-1] = 6, [1.5] = 7, [10] = 5, B = 3,"
                              .. " a = 2, z = 1, [false] = 9, [true] = 8 }",
                              fmt(t, { width = 200 }))
            end)

            it("prints keys past a hole in brackets", function()
                assert.equals("{ 1, 2, [4] = 4 }", fmt({ 1, 2, nil, 4 }))
            end)

            it("brackets keys that are not identifiers", function()
                local t = { ["x y"] = 1, ["end"] = 2, [""] = 3, _ok9 = 4,
                            ["9a"] = 5, ["a\n"] = 6 }
                assert.equals('{ [""] = 3, ["9a"] = 5, _ok9 = 4, '
                              .. '["a\\n"] = 6, ["end"] = 2, ["x y"] = 1 }',
                              fmt(t))
            end)

            it("prints a table that does not fit one field per line, nested",
               function()
                local t = {
                    name = "orders",
                    inputs = { "kafka:orders", "kafka:refunds" },
                    stores = { totals = { serde = "json", changelog = true } },
                    1,
                }
                assert.equals(lines(
                    "{",
                    "  1,",
                    '  inputs = { "kafka:orders", "kafka:refunds" },',
                    '  name = "orders",',
                    '  stores = { totals = { changelog = true, serde = "json" } },',
                    "}"), fmt(t))
                assert.equals(lines(
                    "{",
                    "  1,",
                    "  inputs = {",
                    '    "kafka:orders",',
                    '    "kafka:refunds",',
                    "  },",
                    '  name = "orders",',
                    "  stores = {",
                    "    totals = {",
                    "      changelog = true,",
                    '      serde = "json",',
                    "    },",
                    "  },",
                    "}"), fmt(t, { width = 30 }))
            end)

            it("fits a field's one-line form within width, indent included",
               function()
                -- "  a = { 1, 2 }," is 15 columns.
                local t = { a = { 1, 2 }, b = string.rep("x", 20) }
                assert.equals(lines("{", "  a = { 1, 2 },",
                                    '  b = "xxxxxxxxxxxxxxxxxxxx",', "}"),
                              fmt(t, { width = 15 }))
                assert.equals(lines("{", "  a = {", "    1,", "    2,", "  },",
                                    '  b = "xxxxxxxxxxxxxxxxxxxx",', "}"),
                              fmt(t, { width = 14 }))
            end)

            it("prints tables deeper than max_depth as {…}", function()
                local t = { a = { b = { c = { 1 } }, e = {} } }
                assert.equals("{ a = { b = {" .. E .. "}, e = {} } }",
                              fmt(t, { max_depth = 2 }))
                assert.equals("{ a = { b = { c = { 1 } }, e = {} } }",
                              fmt(t, { max_depth = 4 }))
                assert.equals("{ a = { b = { c = {" .. E .. "} }, e = {} } }",
                              fmt(t, { max_depth = 3 }))
            end)

            it("cuts at depth 6 by default", function()
                local t = { { { { { { { 1 } } } } } } }
                assert.equals("{ { { { { { {" .. E .. "} } } } } } }", fmt(t))
            end)
        end)

        describe("cycles and repeated tables", function()
            it("numbers only tables referenced again", function()
                local t = { a = 1 }
                t.self = t
                assert.equals("<table 1> { a = 1, self = <cycle: table 1> }",
                              fmt(t))
                local shared = { x = 1 }
                assert.equals("{ <table 1> { x = 1 }, <table 1>, { <table 1> } }",
                              fmt({ shared, shared, { shared } }))
                assert.equals("{ { x = 1 }, { x = 1 } }",
                              fmt({ { x = 1 }, { x = 1 } }))
            end)

            it("numbers tables in the order they first appear", function()
                local a, b = { "a" }, { "b" }
                a[2] = a
                assert.equals("{ <table 1> { \"b\" }, <table 2> { \"a\", "
                              .. "<cycle: table 2> }, <table 1> }",
                              fmt({ b, a, b }, { width = 200 }))
            end)

            it("marks cycles through other tables, one field per line",
               function()
                local t = {}
                t[1] = t
                t.x = { t, y = t }
                assert.equals(lines(
                    "<table 1> {",
                    "  <cycle: table 1>,",
                    "  x = {",
                    "    <cycle: table 1>,",
                    "    y = <cycle: table 1>,",
                    "  },",
                    "}"), fmt(t, { width = 20 }))
            end)

            it("forgets numbers given during a one-line try that failed",
               function()
                local s = { 1 }
                local t = { a = { s, string.rep("x", 80) }, b = { 2 } }
                assert.equals(lines(
                    "{",
                    "  a = {",
                    "    { 1 },",
                    '    "' .. string.rep("x", 80) .. '",',
                    "  },",
                    "  b = { 2 },",
                    "}"), fmt(t))
            end)
        end)

        describe("metamethods", function()
            it("prints a table through __tostring and __pretty", function()
                local mt = { __tostring = function() return "<point 1,2>" end }
                assert.equals("{ p = <point 1,2> }",
                              fmt({ p = setmetatable({}, mt) }))
                local both = setmetatable({}, {
                    __tostring = function() return "tostring" end,
                    __pretty = function() return "pretty" end,
                })
                assert.equals("pretty", fmt(both))
            end)

            it("calls a metamethod once per table printed", function()
                local calls = 0
                local p = setmetatable({}, { __tostring = function()
                    calls = calls + 1
                    return "p"
                end })
                -- The one-line try of the whole table fails, the one of
                -- its first field succeeds: p is printed once.
                local y = string.rep("y", 20)
                assert.equals(lines("{", '  { p, "x" },', '  "' .. y .. '",',
                                    "}"),
                              fmt({ { p, "x" }, y }, { width = 16 }))
                assert.equals(1, calls)
            end)

            it("finds metamethods behind __metatable", function()
                local t = setmetatable({}, {
                    __metatable = false,
                    __pretty = function() return "hidden" end,
                })
                assert.equals("hidden", fmt(t))
            end)

            it("reports a __tostring that raises or returns no string",
               function()
                local bad = setmetatable({}, {
                    __tostring = function() error("boom", 0) end,
                })
                assert.equals("<table: __tostring raised: boom>", fmt(bad))
                assert.equals("{ <table: __tostring raised: boom> }",
                              fmt({ bad }))
                local odd = setmetatable({}, {
                    __pretty = function() return {} end,
                })
                assert.equals("<table: __pretty returned table>", fmt(odd))
                local u = newproxy(true)
                getmetatable(u).__tostring = function() error("no", 0) end
                assert.equals("<userdata: __tostring raised: no>", fmt(u))
            end)

            it("prints a __pretty text of several lines as lines", function()
                local job = setmetatable({}, {
                    __pretty = function() return "job demo\ninputs: a" end,
                })
                assert.equals("job demo\ninputs: a", fmt(job))
                assert.equals(lines("{", "  job demo", "    inputs: a,", "  2,",
                                    "}"), fmt({ job, 2 }))
            end)

            it("ignores __index, __len and __pairs", function()
                local t = setmetatable({ 1, a = 2 }, {
                    __index = function() error("index") end,
                    __len = function() error("len") end,
                    __pairs = function() error("pairs") end,
                })
                assert.equals("{ 1, a = 2 }", fmt(t))
            end)
        end)

        describe("max_lines", function()
            local t = { a = 1, b = 2, c = 3, d = 4, e = 5 }

            it("cuts long output and says how many lines follow", function()
                assert.equals(lines("{", "  a = 1,", "  b = 2,",
                                    E .. " 4 more lines " .. NOTE),
                              fmt(t, { max_lines = 3, width = 10 }))
                assert.equals(lines("{", "  a = 1,", "  b = 2,", "  c = 3,",
                                    "  d = 4,", "  e = 5,",
                                    E .. " 1 more line " .. NOTE),
                              fmt(t, { max_lines = 6, width = 10 }))
            end)

            it("does not cut output of exactly max_lines", function()
                assert.equals(lines("{", "  a = 1,", "  b = 2,", "  c = 3,",
                                    "  d = 4,", "  e = 5,", "}"),
                              fmt(t, { max_lines = 7, width = 10 }))
            end)

            it("shows everything with max_lines = 0", function()
                local big = {}
                for i = 1, 100 do
                    big[i] = string.rep("x", 10)
                end
                local _, n = fmt(big, { max_lines = 0 }):gsub("\n", "")
                assert.equals(101, n)
                _, n = fmt(big):gsub("\n", "")
                assert.equals(40, n)
            end)

            it("counts the lines of nested tables past the cut", function()
                local v = { { 1, 2 }, { 3, 4 } }
                assert.equals(lines("{", E .. " 9 more lines " .. NOTE),
                              fmt(v, { max_lines = 1, width = 5 }))
                -- "  abc = { 1 }," is 14 columns: one line at width 14,
                -- three at 13, keys included.
                local k = { a = 1, abc = { 1 }, z = 1 }
                assert.equals(lines("{", E .. " 4 more lines " .. NOTE),
                              fmt(k, { max_lines = 1, width = 14 }))
                assert.equals(lines("{", E .. " 6 more lines " .. NOTE),
                              fmt(k, { max_lines = 1, width = 13 }))
            end)

            it("returns the first 40 lines of a 1e6-element table",
               function()
                local big = {}
                for i = 1, 1e6 do
                    big[i] = i
                end
                local want = { "{" }
                for i = 1, 39 do
                    want[#want + 1] = "  " .. i .. ","
                end
                want[#want + 1] = E .. " 999962 more lines " .. NOTE
                assert.equals(table.concat(want, "\n"), fmt(big))
            end)

            it("returns the first keys of a table of 2e5 keys", function()
                local big = {}
                for i = 1, 2e5 do
                    big["k" .. i] = i
                end
                assert.equals(lines("{", "  k1 = 1,", "  k10 = 10,",
                                    "  k100 = 100,", "  k1000 = 1000,",
                                    E .. " 199997 more lines " .. NOTE),
                              fmt(big, { max_lines = 5 }))
            end)

            it("gives a lower bound when counting would cost too much",
               function()
                -- 3000 tables past the cut are more than the printer
                -- walks to count (2000); each takes at least one line.
                local v = {}
                for i = 1, 3000 do
                    v[i] = { i }
                end
                local out = fmt(v)
                assert.equals(E .. " at least 2962 more lines " .. NOTE,
                              out:match("[^\n]*$"))
                assert.equals("  { 39 },", out:match("([^\n]*)\n[^\n]*$"))
            end)
        end)

        describe("never raises", function()
            it("on a nesting deeper than any limit", function()
                local d = {}
                local cur = d
                for _ = 1, 1e5 do
                    cur.n = {}
                    cur = cur.n
                end
                local out = fmt(d, { max_depth = 0, max_lines = 0 })
                assert.truthy(out:find("n = {" .. E .. "},", 1, true))
                local _, n = out:gsub("\n", "")
                assert.equals(200, n)
            end)

            it("on a __pretty that prints itself forever", function()
                local r
                r = setmetatable({}, { __pretty = function()
                    return pretty.format(r)
                end })
                -- The innermost call that overflows reports it; the
                -- calls above it print that report as the text.
                assert.matches("^<table: .*stack overflow>$", fmt(r))
            end)

            it("on every byte and odd keys", function()
                local all = {}
                for i = 0, 255 do
                    all[#all + 1] = string.char(i)
                end
                local t = { [table.concat(all)] = io.stdout,
                            [print] = coroutine.create(print),
                            [ffi.new("int64_t", 1)] = ffi.new("char[1]") }
                assert.matches("^{\n", fmt(t, { max_string = 0 }))
            end)

            it("but raises on bad opts", function()
                assert.has_error(function() fmt(1, 2) end,
                                 "bad opts: table expected, got number")
                assert.has_error(function() fmt(1, { maxlines = 2 }) end,
                                 "bad opts: unknown option 'maxlines'")
                assert.has_error(function() fmt(1, { width = 0 }) end,
                    "bad opts.width: positive integer expected, got 0")
                assert.has_error(function() fmt(1, { max_lines = -1 }) end,
                    "bad opts.max_lines: non-negative integer expected, got -1")
            end)
        end)
    end)

    describe("records()", function()
        local recs = {
            { key = "a", value = 1, partition = 0, offset = 3 },
            { key = "bbbb", value = { x = 1 }, partition = 1, offset = 10,
              extra = "z" },
        }

        it("prints a list of records as an aligned table", function()
            assert.equals(lines(
                "key   value      partition  offset  extra",
                "----  ---------  ---------  ------  -----",
                "a     1                  0       3",
                "bbbb  { x = 1 }          1      10  z"), pretty.records(recs))
        end)

        it("puts key, value, partition, offset, timestamp first", function()
            local r = { { zeta = 1, timestamp = 2, alpha = 3, offset = 4 } }
            assert.equals(lines("offset  timestamp  alpha  zeta",
                                "------  ---------  -----  ----",
                                "     4          2      3     1"),
                          pretty.records(r))
        end)

        it("cuts cells at max_cell columns", function()
            local r = { { name = string.rep("é", 50), n = { 1, 2, 3, 4 } } }
            assert.equals(lines(
                "n           name",
                "----------  ----------",
                "{ 1, 2, 3" .. E .. "  " .. string.rep("é", 9) .. E),
                pretty.records(r, { max_cell = 10 }))
        end)

        it("cuts cells at 40 columns by default and escapes them", function()
            local r = { { s = string.rep("x", 50) }, { s = "a\nb" } }
            assert.equals(lines("s",
                                string.rep("-", 40),
                                string.rep("x", 39) .. E,
                                "a\\nb"), pretty.records(r))
        end)

        it("shows max_rows rows, then the number of rows left", function()
            local r = {}
            for i = 1, 25 do
                r[i] = { key = "k" .. i }
            end
            local out = pretty.records(r)
            local _, n = out:gsub("\n", "")
            assert.equals(22, n)
            assert.equals(E .. " 5 more rows", out:match("[^\n]*$"))
            assert.equals(lines("key", "---", "k1", "k2",
                                E .. " 1 more row"),
                          pretty.records({ r[1], r[2], r[3] },
                                         { max_rows = 2 }))
        end)

        it("shows the first rows of a list of 1e6 records", function()
            local r, row = {}, { key = "k", offset = 1 }
            for i = 1, 1e6 do
                r[i] = row
            end
            local out = pretty.records(r)
            assert.equals(lines("key  offset", "---  ------", "k         1"),
                          out:match("^[^\n]*\n[^\n]*\n[^\n]*"))
            assert.equals(E .. " 999980 more rows", out:match("[^\n]*$"))
            local _, n = out:gsub("\n", "")
            assert.equals(22, n)
        end)

        it("leaves missing cells blank", function()
            assert.equals(lines("key  offset", "---  ------", "a",
                                "b         2"),
                          pretty.records({ { key = "a" },
                                           { key = "b", offset = 2 } }))
        end)

        it("returns nil when the value is not a list of records", function()
            assert.is_nil(pretty.records(1))
            assert.is_nil(pretty.records({}))
            assert.is_nil(pretty.records({ 1, 2 }))
            assert.is_nil(pretty.records({ { a = 1 }, 2 }))
            assert.is_nil(pretty.records({ { a = 1 }, x = 1 }))
            assert.is_nil(pretty.records({ { 1, 2 } }))
            assert.is_nil(pretty.records({ {} }))
            assert.is_nil(pretty.records({ { a = 1 }, { b = 1 }, { c = 1 } }))
            local mt = { __tostring = function() return "r" end }
            assert.is_nil(pretty.records({ setmetatable({ a = 1 }, mt) }))
            local wide = {}
            for i = 1, 17 do
                wide["c" .. i] = i
            end
            assert.is_nil(pretty.records({ wide }))
        end)
    end)

    describe("show()", function()
        it("prints records as a table and other values by format()",
           function()
            assert.equals(lines("key", "---", "a"),
                          pretty.show({ { key = "a" } }))
            assert.equals("{ 1, 2 }", pretty.show({ 1, 2 }))
            assert.equals('"x"', pretty.show("x"))
            assert.equals(lines("{", "  1,", E .. " 2 more lines " .. NOTE),
                          pretty.show({ 1, 2 }, { max_lines = 2, width = 4 }))
        end)
    end)
end)
