--- Entry point of `require "tide"`: the release and ABI versions, and the
--- modules, each loaded on first use so that requiring tide stays cheap.
local base = require("tide.base")

local require, rawset, setmetatable = require, rawset, setmetatable

local _M = {
    version = base.version(),                 -- e.g. "0.1.0"
    abi = base.ABI_VERSION,                   -- base refuses any other libtide
}

-- Field name -> module. A metatable only for the lazy loading: the API
-- is the plain fields, e.g. require("tide").log is require("tide.log").
local MODULES = {
    log  = "tide.log",
    loop = "tide.loop",
    fs   = "tide.fs",
}

return setmetatable(_M, {
    __index = function(t, k)
        local name = MODULES[k]
        if name == nil then
            return nil
        end
        local m = require(name)
        rawset(t, k, m)
        return m
    end,
})
