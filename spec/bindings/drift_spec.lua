-- Drift checks between the C header, the generated cdef, the loaded
-- library and the rockspec.
local base = require("tide.base")

local ROOT = os.getenv("TIDE_SOURCE_DIR") or "."

local function read_file(path)
    local f = assert(io.open(ROOT .. "/" .. path, "rb"))
    local s = f:read("*a")
    f:close()
    return s
end

-- The rule of cmake/gencdef.lua: the header minus its '#' lines.
local function cdef_from_header(text)
    local out = {}
    if text:sub(-1) ~= "\n" then
        text = text .. "\n"                -- io.lines yields a last partial line
    end
    for line in text:gmatch("(.-)\n") do
        if not line:match("^%s*#") then
            out[#out + 1] = line
        end
    end
    return table.concat(out, "\n") .. "\n"
end

-- Names of the functions the cdef declares (comments removed first, so
-- that prose mentioning "tide_log_free(...)" does not count).
local function declared_functions(cdef)
    local code = cdef:gsub("/%*.-%*/", " ")
    local names, seen = {}, {}
    for name in code:gmatch("[%s%*](tide_[%w_]+)%s*%(") do
        if not seen[name] then
            seen[name] = true
            names[#names + 1] = name
        end
    end
    table.sort(names)
    return names
end

local function load_rockspec(path)
    local env = {}
    local chunk = assert(loadfile(ROOT .. "/" .. path))
    setfenv(chunk, env)
    chunk()
    return env
end

local function lua_files(...)
    local out = {}
    for _, folder in ipairs({ ... }) do
        local p = io.popen("cd '" .. ROOT .. "' && find " .. folder
                           .. " -name '*.lua' -type f 2>/dev/null")
        for line in p:lines() do
            out[#out + 1] = (line:gsub("^%./", ""))
        end
        p:close()
    end
    table.sort(out)
    return out
end

describe("drift", function()
    describe("bindings/tide/cdef.lua", function()
        it("equals core/include/tide.h minus its '#' lines", function()
            local want = cdef_from_header(read_file("core/include/tide.h"))
            local got = require("tide.cdef")
            assert.equals(want, got)
        end)

        it("is the file cmake/gencdef.lua writes", function()
            local want = "-- GENERATED from core/include/tide.h by 'make cdef'; "
                         .. "never edit.\nreturn [==[\n"
                         .. cdef_from_header(read_file("core/include/tide.h"))
                         .. "]==]\n"
            assert.equals(want, read_file("bindings/tide/cdef.lua"))
        end)
    end)

    describe("libtide", function()
        it("exports every function the cdef declares", function()
            local names = declared_functions(require("tide.cdef"))
            assert.is_true(#names >= 10, "found only " .. #names .. " names")
            local missing = {}
            for _, name in ipairs(names) do
                local ok = pcall(function() return base.lib[name] end)
                if not ok then
                    missing[#missing + 1] = name
                end
            end
            assert.same({}, missing)
        end)
    end)

    describe("rockspec/tide-scm-1.rockspec", function()
        local spec = load_rockspec("rockspec/tide-scm-1.rockspec")

        it("names package tide, version scm-1, cmake build", function()
            assert.equals("tide", spec.package)
            assert.equals("scm-1", spec.version)
            assert.equals("cmake", spec.build.type)
            assert.same({ "lua >= 5.1" }, spec.dependencies)
        end)

        it("lists every .lua file under bindings/ and lua/", function()
            local listed = {}
            for _, path in pairs(spec.build.install.lua) do
                listed[path] = true
            end
            local missing = {}
            for _, path in ipairs(lua_files("bindings", "lua")) do
                if not listed[path] then
                    missing[#missing + 1] = path
                end
            end
            assert.same({}, missing)
        end)

        it("maps each module name to its file, and each file exists", function()
            for mod, path in pairs(spec.build.install.lua) do
                local rel = path:match("^bindings/(.*)%.lua$")
                            or path:match("^lua/(.*)%.lua$")
                assert.is_string(rel, path .. " is outside bindings/ and lua/")
                assert.equals((rel:gsub("/", ".")), mod)
                assert.is_truthy(io.open(ROOT .. "/" .. path), path)
            end
        end)
    end)
end)
