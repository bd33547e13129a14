--- Hot reload: versions of a job's code, and loading a new version that may
--- replace the running one (docs/design.md section 5). The swap itself, probation and
--- rollback are the runner's (lua/tide/runner.lua).
local job_mod = require("tide.job")
local partition = require("tide.partition")

local ipairs, pairs, tostring, type = ipairs, pairs, tostring, type
local str_format, concat, sort = string.format, table.concat, table.sort
local bit = require("bit")

local _M = {}

local read = job_mod.read_text

local function hash(path, modules, get)
    local text = get(path)
    if not text then
        return nil
    end
    local parts = { text }
    local names = {}
    for name in pairs(modules or {}) do
        if type(name) == "string" then
            names[#names + 1] = name
        end
    end
    sort(names)
    for _, name in ipairs(names) do
        parts[#parts + 1] = "\0" .. name .. "\0" .. (get(modules[name]) or "")
    end
    local all = concat(parts)
    -- Two murmur2 hashes with different prefixes: 64 bits, 16 hex digits
    -- shortened to 12.
    local a = partition.murmur2(all)
    local b = partition.murmur2("v" .. all)
    return (bit.tohex(a, 8) .. bit.tohex(b, 4))
end

--- Returns the version id of a job's code: a short hash of the job file and
--- of the modules it loaded from its folder, or nil when the job file
--- cannot be read.
---@param path string
---@param modules table|nil  name -> file, as job.modules
---@return string|nil
function _M.version(path, modules)
    return hash(path, modules, read)
end

--- Returns the version id of the code a job was loaded from (its
--- `sources`, file -> text): the id version() gives for those files.
---@param job table  a loaded job (path, modules, sources)
---@return string
function _M.version_of(job)
    if not job.path then
        return "none"                   -- a job table, not a file
    end
    local sources = job.sources or {}
    return hash(job.path, job.modules, function(file)
        return sources[file] or read(file)
    end) or "none"
end

-- A table input (tide.tables) is a store as well as an input: making an
-- input a table or not, versioned or not, or moving its store needs a
-- restart like any change of the inputs.
local function table_opts(s)
    if not s.table then
        return ""
    end
    return str_format(" table %s%s%s", s.store,
                      s.versioned and " versioned" or "",
                      s.history_ms and str_format(" history %.0fms",
                                                  s.history_ms) or "")
end

local function stream_list(list)
    local t = {}
    for i, s in ipairs(list) do
        t[i] = str_format("%s:%s(%s/%s%s)", s.system, s.name, s.serde.name,
                          s.key_serde.name, table_opts(s))
    end
    return concat(t, ", ")
end

local function store_list(list)
    local t = {}
    for i, s in ipairs(list or {}) do
        t[i] = str_format("%s(%s/%s,%s,%s)", s.name, s.serde.name,
                          s.key_serde.name, s.engine,
                          s.changelog and "changelog" or "no changelog")
    end
    return concat(t, ", ")
end

--- Loads the job file of the running `job` again and checks that the new
--- version may replace it: it compiles, is a valid job, and keeps name,
--- inputs, outputs and stores. Returns the new job, or nil, the reason and
--- its kind: "invalid" (does not load or validate) or "restart" (changes
--- what only a restart can change).
---@param job table        the running job (normalised)
---@param overrides table  the -c overrides the job was started with
---@param limit_ms number|nil  the time its top-level code may take
---@return table|nil job, string|nil why, string|nil kind
function _M.prepare(job, overrides, limit_ms)
    local names = {}
    for name in pairs(job.modules or {}) do
        if type(name) == "string" then
            names[#names + 1] = name
        end
    end
    local new, err = job_mod.load(job.path, overrides,
                                  { reload_modules = names,
                                    limit_ms = limit_ms })
    if not new then
        return nil, tostring(err), "invalid"
    end
    local checks = {
        { "name", tostring(job.name), tostring(new.name) },
        { "inputs", stream_list(job.inputs), stream_list(new.inputs) },
        { "outputs", stream_list(job.outputs), stream_list(new.outputs) },
        -- Before stores: timers live in a store of their own.
        { "on_timer", job.on_timer and "an on_timer()" or "no on_timer()",
          new.on_timer and "an on_timer()" or "no on_timer()" },
        { "stores", store_list(job.store_list), store_list(new.store_list) },
    }
    for _, c in ipairs(checks) do
        if c[2] ~= c[3] then
            return nil, str_format("restart needed: %s changed (running: "
                                   .. "%s; new: %s); stop the job and start "
                                   .. "it again to apply this version",
                                   c[1], c[2] ~= "" and c[2] or "none",
                                   c[3] ~= "" and c[3] or "none"),
                   "restart"
        end
    end
    return new
end

return _M
