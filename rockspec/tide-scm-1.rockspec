-- LuaRocks spec for tide's Lua side: the FFI bindings (bindings/tide/) and
-- the runtime (lua/tide/). Every .lua file under those folders is listed in
-- build.modules; spec/bindings/drift_spec.lua checks it. The C library
-- (libtide.so) is built with CMake for now; the bindings find it through
-- TIDE_LIB or the system library path.
rockspec_format = "3.0"
package = "tide"
version = "scm-1"

source = {
   -- Placeholder: `luarocks make` builds from the working tree and never
   -- fetches this.
   url = "git+file:///path/to/tide.git",
   branch = "main",
}

description = {
   summary = "Stream processor in the spirit of Apache Samza, with LuaJIT jobs",
   detailed = [[
tide runs Lua jobs over partitioned, replayable streams with local state
that is snapshotted, changelogged and restored. These are its LuaJIT FFI
bindings to libtide and its Lua runtime.
]],
}

dependencies = {
   "lua >= 5.1",
}

build = {
   type = "builtin",
   modules = {
      ["tide.base"] = "bindings/tide/base.lua",
      ["tide.cdef"] = "bindings/tide/cdef.lua",
      ["tide.log"]  = "bindings/tide/log.lua",
   },
}
