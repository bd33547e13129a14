-- Writes bindings/tide/cdef.lua from core/include/tide.h: the header minus
-- its preprocessor ('#') lines, as a Lua string. Usage: luajit gencdef.lua IN OUT
local src, dst = arg[1], arg[2]
local out = {}
for line in assert(io.open(src)):lines() do
    if not line:match("^%s*#") then
        out[#out + 1] = line
    end
end
local f = assert(io.open(dst, "w"))
f:write("-- GENERATED from core/include/tide.h by 'make cdef'; never edit.\n",
        "return [==[\n", table.concat(out, "\n"), "\n]==]\n")
f:close()
