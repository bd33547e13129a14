-- LuaRocks spec for tide's Lua side: libtide (the C core), its FFI bindings
-- (bindings/tide/) and the runtime (lua/). CMake builds the core and its
-- install rules put libtide.so where package.cpath finds it as the C
-- module 'tide.libtide' (lib/lua/5.1/tide/libtide.so in the tree) and the
-- Lua files under share/lua/5.1; bindings/tide/base.lua looks there when
-- TIDE_LIB is unset. build.install.lua lists every Lua module once more,
-- for LuaRocks' own manifest; spec/bindings/drift_spec.lua checks that it
-- names every .lua file under bindings/ and lua/, so add new modules here.
-- The dashboard's page (lua/tide/web/: HTML, CSS, JS) is not a module:
-- CMake's install rules put it beside tide/dashboard.lua in $(LUADIR).
--
--   luarocks --lua-version=5.1 make --deps-mode=none rockspec/tide-scm-1.rockspec
--
-- needs the Debian packages listed in README's "Dependencies" (pkg-config finds
-- luajit, librdkafka, librocksdb and libuv) and no network.
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
that is snapshotted, changelogged and restored. This rock holds its C core
(libtide), the LuaJIT FFI bindings to it and its Lua runtime.
]],
}

dependencies = {
   "lua >= 5.1",
}

build = {
   type = "cmake",
   variables = {
      CMAKE_BUILD_TYPE = "Release",
      CMAKE_INSTALL_PREFIX = "$(PREFIX)",
      TIDE_INSTALL_LMOD = "$(LUADIR)",
      TIDE_INSTALL_CMOD = "$(LIBDIR)",
      -- The library only: no binary, no tests, so that a rock builds fast.
      TIDE_BUILD_CLI = "OFF",
      TIDE_BUILD_TESTS = "OFF",
   },
   install = {
      lua = {
         ["tide"]                   = "lua/tide.lua",
         ["tide.base"]              = "bindings/tide/base.lua",
         ["tide.cdef"]              = "bindings/tide/cdef.lua",
         ["tide.fs"]                = "bindings/tide/fs.lua",
         ["tide.json"]              = "bindings/tide/json.lua",
         ["tide.log"]               = "bindings/tide/log.lua",
         ["tide.loop"]              = "bindings/tide/loop.lua",
         ["tide.http"]              = "bindings/tide/http.lua",
         ["tide.notify"]            = "bindings/tide/notify.lua",
         ["tide.proc"]              = "bindings/tide/proc.lua",
         ["tide.state"]             = "lua/tide/state.lua",
         ["tide.store"]             = "bindings/tide/store.lua",
         ["tide.checkpoint"]        = "lua/tide/checkpoint.lua",
         ["tide.cli"]               = "lua/tide/cli.lua",
         ["tide.headers"]           = "lua/tide/headers.lua",
         ["tide.job"]               = "lua/tide/job.lua",
         ["tide.partition"]         = "lua/tide/partition.lua",
         ["tide.reload"]            = "lua/tide/reload.lua",
         ["tide.runner"]            = "lua/tide/runner.lua",
         ["tide.serde"]             = "lua/tide/serde.lua",
         ["tide.system"]            = "lua/tide/system.lua",
         ["tide.system.local"]      = "lua/tide/system/local.lua",
         ["tide.system.mem"]        = "lua/tide/system/mem.lua",
         ["tide.testing"]           = "lua/tide/testing.lua",
         ["tide.chooser"]           = "lua/tide/chooser.lua",
         ["tide.ops"]               = "lua/tide/ops.lua",
         ["tide.standby"]           = "lua/tide/standby.lua",
         ["tide.timers"]            = "lua/tide/timers.lua",
         ["tide.windows"]           = "lua/tide/windows.lua",
         ["tide.joins"]             = "lua/tide/joins.lua",
         ["tide.logging"]           = "lua/tide/logging.lua",
         ["tide.tables"]            = "lua/tide/tables.lua",
         ["tide.ctx"]               = "lua/tide/ctx.lua",
         ["tide.supervisor"]        = "lua/tide/supervisor.lua",
         ["tide.task"]              = "lua/tide/task.lua",
         ["tide.topology"]          = "lua/tide/topology.lua",
         ["tide.wire"]              = "lua/tide/wire.lua",
         ["tide.worker"]            = "lua/tide/worker.lua",
         ["tide.metrics"]           = "lua/tide/metrics.lua",
         ["tide.dashboard"]         = "lua/tide/dashboard.lua",
         ["tide.control"]           = "lua/tide/control.lua",
         ["tide.versions"]          = "lua/tide/versions.lua",
         ["tide.watchdog"]          = "lua/tide/watchdog.lua",
         ["tide.worker_proc"]       = "lua/tide/worker_proc.lua",
         ["tide.inspect"]           = "lua/tide/inspect.lua",
         ["tide.kafka"]             = "bindings/tide/kafka.lua",
         ["tide.system.kafka"]      = "lua/tide/system/kafka.lua",
         ["tide.checkpoint_kafka"]  = "lua/tide/checkpoint_kafka.lua",
         ["tide.group"]             = "lua/tide/group.lua",
         ["tide.lineedit"]          = "bindings/tide/lineedit.lua",
         ["tide.repl"]              = "lua/tide/repl.lua",
         ["tide.repl.attach"]       = "lua/tide/repl/attach.lua",
         ["tide.repl.complete"]     = "lua/tide/repl/complete.lua",
         ["tide.repl.pretty"]       = "lua/tide/repl/pretty.lua",
         ["tide.repl.proto"]        = "lua/tide/repl/proto.lua",
      },
   },
}
