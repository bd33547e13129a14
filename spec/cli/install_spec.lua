-- End to end: an installed tide (what `make install PREFIX=...` does:
-- `cmake --install BUILD --prefix PREFIX`) works from its prefix alone,
-- after the prefix is moved, and a job's busted spec runs outside the
-- repo against it. The installed binary must take its Lua runtime from
-- the prefix, not from the source tree it was built from.
local h = require("cli.helper")

local fmt = string.format
local BUILD = os.getenv("TIDE_BUILD_DIR")
local SRC = os.getenv("TIDE_SOURCE_DIR")

-- A job that sends, for each message, where its worker found tide.cli.
local WHERE_JOB = [[
return {
  name = "where",
  inputs = { "in" },
  outputs = { "out" },
  process = function(msg, ctx)
    ctx:send("out", msg.key, package.searchpath("tide.cli", package.path))
  end,
}
]]

local JOB_SPEC = [[
local testing = require("tide.testing")
describe("the where job", function()
  it("sends one record per input, in the test kit", function()
    local res = assert(testing.run(dofile("where.lua"), {
      inputs = { ["in"] = { { key = "a", value = "x" },
                            { key = "b", value = "y" } } } }))
    assert.equals(2, #res.outputs.out)
  end)
end)
]]

describe("an installed tide", function()
  local work
  before_each(function() work = h.tmpdir() end)
  after_each(function() h.rmdir(work) end)

  it("runs from its prefix after the prefix is moved, not from the source "
     .. "tree", function()
    assert.truthy(BUILD and SRC, "TIDE_BUILD_DIR and TIDE_SOURCE_DIR")
    local r = h.run(fmt("cmake --install %s --prefix %s", h.q(BUILD),
                        h.q(work .. "/p1")))
    assert.equals(0, r.code, r.err)
    assert.equals(0, os.execute(fmt("mv %s %s", h.q(work .. "/p1"),
                                    h.q(work .. "/p2"))))
    local prefix = work .. "/p2"
    local bin = prefix .. "/bin/tide"
    h.write_file(work .. "/where.lua", WHERE_JOB)
    local data = work .. "/data"
    r = h.run(fmt("%s --data-dir %s produce in -K : --partitions 2",
                  h.q(bin), h.q(data)), { stdin = "k1:v\nk2:v\n" })
    assert.equals(0, r.code, r.err)
    r = h.run(fmt("%s --data-dir %s run %s --drain --workers 2", h.q(bin),
                  h.q(data), h.q(work .. "/where.lua")))
    assert.equals(0, r.code, r.err)
    r = h.run(fmt("%s --data-dir %s consume out -e", h.q(bin), h.q(data)))
    assert.equals(0, r.code, r.err)
    local lines = h.lines(r.out)
    assert.equals(2, #lines)
    for _, l in ipairs(lines) do
      -- Each worker found the runtime in the moved prefix.
      assert.equals(prefix .. "/share/lua/5.1/tide/cli.lua", l)
    end
  end)

  it("runs a job's busted spec outside the repo with LUA_PATH and LUA_CPATH "
     .. "on the prefix", function()
    local r = h.run(fmt("cmake --install %s --prefix %s", h.q(BUILD),
                        h.q(work .. "/p")))
    assert.equals(0, r.code, r.err)
    local prefix = work .. "/p"
    local proj = work .. "/myjob"
    assert.equals(0, os.execute("mkdir " .. h.q(proj)))
    h.write_file(proj .. "/where.lua", WHERE_JOB)
    h.write_file(proj .. "/where_spec.lua", JOB_SPEC)
    -- As README says: busted under LuaJIT, the prefix's modules and
    -- libtide.so on the paths; no TIDE_LIB, nothing from the repo.
    r = h.run(fmt("cd %s && env -u TIDE_LIB LUA_PATH=%s LUA_CPATH=%s "
                  .. "busted --lua=luajit where_spec.lua", h.q(proj),
                  h.q(prefix .. "/share/lua/5.1/?.lua;;"),
                  h.q(prefix .. "/lib/lua/5.1/?.so;;")))
    assert.equals(0, r.code, r.out .. r.err)
    assert.matches("1 success / 0 failures", r.out, 1, true)
  end)
end)
