-- Runs busted under LuaJIT (Debian's /usr/bin/busted runs under Lua 5.2,
-- which has no ffi). Usage: luajit spec/run.lua [busted args] spec_file...
-- The search path comes from the root .busted file.
require("busted.runner")({ standalone = false })
