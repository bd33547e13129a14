--- The json serde's codec (core/src/serde/json.c): a Lua C module inside
--- libtide rather than an FFI surface, because only the Lua C API builds
--- tables without a call per field. The tide binary preloads it; from a
--- plain luajit it is loaded with package.loadlib from the same libtide
--- that base.lua opened.
---
--- decode(s) returns a value, or nil, "what at character N", N.
--- encode(v) returns a string, or nil, "what". null is lightuserdata NULL
--- (equal to cjson.null). lua/tide/serde.lua documents the values.
local base = require("tide.base")

local package_loadlib, package_preload = package.loadlib, package.preload
local error, tostring = error, tostring
local str_format = string.format

local open = package_preload["tide.json.codec"]
if open == nil then
    local path = base.lib_path
    local err
    if path == nil then
        err = "the tide binary did not preload tide.json.codec"
    else
        open, err = package_loadlib(path, "luaopen_tide_json_codec")
    end
    if open == nil then
        error(str_format("tide: cannot load the json codec from '%s': %s; "
                         .. "rebuild libtide (cmake --build build)",
                         tostring(path), tostring(err)), 2)
    end
end

return open()
