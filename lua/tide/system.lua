--- Streams by spec: parses "[system:]name" and opens the stream through
--- its system module (tide.system.local, tide.system.mem). The interface
--- every system provides is in docs/runtime.md ("System interface").
local type, error, require, tostring, tonumber = type, error, require, tostring, tonumber
local str_find, str_sub = string.find, string.sub

local ffi_string = require("ffi").string

local _M = {}

--- Name of the system a spec without "system:" uses.
_M.DEFAULT = "local"

-- Systems that can be opened, and their modules.
local MODULES = {
    ["local"] = "tide.system.local",
    mem = "tide.system.mem",
    kafka = "tide.system.kafka",
}
local KNOWN = "local, mem, kafka"
local NOT_BUILT = {}

--- Returns the system name and the stream name of `spec` ("[system:]name";
--- the system defaults to "local"), or nil and an error for an empty
--- name, an unknown system or one not built yet.
---@param spec string
---@return string|nil system, string name_or_err
function _M.parse(spec)
    if type(spec) ~= "string" then
        return nil, "bad stream '" .. tostring(spec)
                    .. "': string \"[system:]name\" expected, got " .. type(spec)
    end
    local system, name = _M.DEFAULT, spec
    local colon = str_find(spec, ":", 1, true)
    if colon then
        system, name = str_sub(spec, 1, colon - 1), str_sub(spec, colon + 1)
        if NOT_BUILT[system] then
            return nil, "system '" .. system .. "' is not built yet (stream '"
                        .. spec .. "'); use local or mem"
        end
        if not MODULES[system] then
            return nil, "unknown system '" .. system .. "' in stream '" .. spec
                        .. "' (known: " .. KNOWN .. ")"
        end
    end
    if name == "" then
        return nil, "bad stream '" .. spec .. "': empty stream name"
    end
    return system, name
end

--- Opens the stream `spec` ("[system:]name") through its system: returns
--- the stream object, or nil and a one-line error. `env` and `opts` are
--- those of the system interface: env = { data_dir = ..., mem = ... },
--- opts = { create = bool, partitions = n }.
---@param env table
---@param spec string
---@param opts table|nil
---@return table|nil stream, string|nil err
function _M.open(env, spec, opts)
    if type(env) ~= "table" then
        error("bad env: table expected, got " .. type(env), 2)
    end
    if opts ~= nil and type(opts) ~= "table" then
        error("bad options: table expected, got " .. type(opts), 2)
    end
    local system, name = _M.parse(spec)
    if not system then
        return nil, name
    end
    return require(MODULES[system]).open(env, name, opts)
end

--- Returns a msg table (docs/runtime.md "Reader object") made from
--- record `r` (a tide_rec_t) of partition `p` of stream `name`: fresh
--- strings of its bytes, so nothing points into the C buffer.
function _M.msg_of(r, p, name)
    local key, value, hdrs
    if r.key ~= nil then
        key = ffi_string(r.key, r.klen)
    end
    if r.val ~= nil then
        value = ffi_string(r.val, r.vlen)
    end
    if r.hlen ~= 0 and r.hdrs ~= nil then
        hdrs = ffi_string(r.hdrs, r.hlen)
    end
    return {
        key = key, value = value, offset = tonumber(r.offset),
        timestamp = tonumber(r.ts), partition = p, stream = name,
        headers = hdrs,
    }
end

--- The env that systems open streams in for `job`: its data dir, a
--- registry of mem streams, and the job's Kafka settings (job.kafka:
--- librdkafka properties; its consumer group is the job's name).
function _M.env(job, data_dir)
    return { data_dir = data_dir, mem = {},
             kafka = job and job.kafka and { conf = job.kafka,
                                              group = job.name } or nil }
end

return _M
