-- Installs the rock into a temporary tree (luarocks make, no network) and
-- checks that a plain luajit, with only that tree on its paths and no
-- TIDE_LIB, can `require "tide"`: the bindings find libtide as the C
-- module 'tide.libtide'.
local base = require("tide.base")

local ROOT = os.getenv("TIDE_SOURCE_DIR") or "."

local function sh_quote(s)
    return "'" .. s:gsub("'", "'\\''") .. "'"
end

-- Runs a shell command and returns its exit status and its output.
local function run(cmd)
    local p = assert(io.popen(cmd .. " 2>&1; echo \"exit=$?\""))
    local out = p:read("*a")
    p:close()
    local code = tonumber(out:match("exit=(%d+)\n?$"))
    return code, (out:gsub("exit=%d+\n?$", ""))
end

local function read_file(path)
    local f = io.open(path, "rb")
    if not f then
        return ""
    end
    local s = f:read("*a")
    f:close()
    return s
end

-- Subprocesses run without the sanitizer preload of the ASan build (the
-- rock is a plain build) and without the spec's TIDE_LIB.
local CLEAN_ENV = "env -u LD_PRELOAD -u ASAN_OPTIONS -u TIDE_LIB "

describe("rockspec/tide-scm-1.rockspec", function()
    local tmp

    setup(function()
        local d = os.tmpname()
        os.remove(d)
        tmp = d
        assert(os.execute("mkdir -p " .. sh_quote(tmp .. "/src")) == 0)
    end)

    teardown(function()
        assert(tmp:match("^/tmp/"), "refusing to remove " .. tmp)
        os.execute("rm -rf " .. sh_quote(tmp))
    end)

    it("installs a tree from which plain luajit can require \"tide\"",
       function()
        -- luarocks make builds in the current folder (build.luarocks/):
        -- build a copy, so the working tree stays clean and parallel runs
        -- of this spec do not share a build folder.
        local code, out = run("cd " .. sh_quote(ROOT) .. " && cp -R "
                              .. "CMakeLists.txt cmake core bindings lua "
                              .. "rockspec " .. sh_quote(tmp .. "/src"))
        assert.equals(0, code, out)

        local log = tmp .. "/luarocks.log"
        code = run("cd " .. sh_quote(tmp .. "/src") .. " && " .. CLEAN_ENV
                   .. "CMAKE_BUILD_PARALLEL_LEVEL=2 luarocks --lua-version=5.1"
                   .. " make --deps-mode=none --tree=" .. sh_quote(tmp .. "/tree")
                   .. " rockspec/tide-scm-1.rockspec > " .. sh_quote(log))
        assert.equals(0, code, "luarocks make failed:\n" .. read_file(log))

        local paths
        code, paths = run(CLEAN_ENV .. "luarocks --lua-version=5.1 path --tree="
                          .. sh_quote(tmp .. "/tree"))
        assert.equals(0, code, paths)
        local lua_path = paths:match("LUA_PATH='([^']*)'")
        local lua_cpath = paths:match("LUA_CPATH='([^']*)'")
        assert.is_string(lua_path, paths)
        assert.is_string(lua_cpath, paths)

        -- From the tree, not from the working tree: run in the temporary
        -- folder, where './?.lua' finds nothing.
        local script = 'local t = require "tide"; print(t.version); '
                       .. 'print(package.searchpath("tide.base", '
                       .. 'package.path)); print(package.searchpath('
                       .. '"tide.libtide", package.cpath)); '
                       .. 'print(t.loop.now() > 0, t.abi); '
                       -- the json codec, a Lua C module inside libtide
                       .. 'local j = require("tide.serde").get("json"); '
                       .. 'print(j.encode(j.decode(\'{"a":[1,2]}\')))'
        code, out = run("cd " .. sh_quote(tmp) .. " && " .. CLEAN_ENV
                        .. "LUA_PATH=" .. sh_quote(lua_path)
                        .. " LUA_CPATH=" .. sh_quote(lua_cpath)
                        .. " luajit -e " .. sh_quote(script))
        assert.equals(0, code, out)
        local version, base_path, lib_path, rest, json =
            out:match("^([^\n]*)\n([^\n]*)\n([^\n]*)\n([^\n]*)\n"
                      .. "([^\n]*)\n$")
        assert.equals(base.version(), version, out)
        assert.equals(tmp .. "/tree/share/lua/5.1/tide/base.lua", base_path)
        assert.equals(tmp .. "/tree/lib/lua/5.1/tide/libtide.so", lib_path)
        assert.equals("true\t" .. base.ABI_VERSION, rest)
        assert.equals('{"a":[1,2]}', json)
    end)
end)
