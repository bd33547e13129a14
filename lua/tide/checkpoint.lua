--- A job's checkpoint: per task, the offset of the next message to process
--- on each input. Kept in <data-dir>/jobs/<job>/checkpoint.json, replaced
--- atomically and durably; in memory when there is no data dir (tests).
local cjson = require("cjson.safe")

local type, pairs, ipairs, tostring, tonumber = type, pairs, ipairs, tostring, tonumber
local str_format = string.format
local concat = table.concat
local io_open = io.open

local _M = {}
local mt = { __index = _M }

local VERSION = 1

--- Returns a checkpoint store for `job` in `env` (env.data_dir or none).
---@param env table
---@param job_name string
---@return table
function _M.new(env, job_name)
    local self = { job = job_name, saved = nil }
    if env.data_dir then
        self.path = str_format("%s/jobs/%s/checkpoint.json", env.data_dir,
                               job_name)
    end
    return setmetatable(self, mt)
end

--- Returns the saved offsets as { [partition] = { inputs = { [input] =
--- offset }, changelogs = { [store] = offset } } } (empty when nothing was
--- saved yet), or nil and an error when the file cannot be trusted.
---@return table|nil tasks, string|nil err
function _M:load()
    if not self.path then
        return self.saved or {}
    end
    local f = io_open(self.path, "rb")
    if not f then
        return {}
    end
    local text = f:read("*a")
    f:close()
    local fix = "; restore it from a backup, or delete it to reprocess every "
                .. "input from the beginning"
    local doc, err = cjson.decode(text)
    if type(doc) ~= "table" then
        return nil, str_format("%s: corrupt checkpoint (%s)%s", self.path,
                               err or "not an object", fix)
    end
    if doc.version ~= VERSION or doc.job ~= self.job
        or type(doc.tasks) ~= "table" then
        return nil, str_format("%s: not a version %d checkpoint of job '%s'%s",
                               self.path, VERSION, self.job, fix)
    end
    local tasks = {}
    for p, t in pairs(doc.tasks) do
        local part = tonumber(p)
        if not part or type(t) ~= "table" or type(t.inputs) ~= "table"
            or (t.changelogs ~= nil and type(t.changelogs) ~= "table") then
            return nil, str_format("%s: bad entry for task '%s'%s", self.path,
                                   tostring(p), fix)
        end
        local entry = { inputs = {}, changelogs = {} }
        for _, what in ipairs({ "inputs", "changelogs" }) do
            for name, off in pairs(t[what] or {}) do
                if type(off) ~= "number" or off < 0 or off % 1 ~= 0 then
                    return nil, str_format("%s: bad offset for task %s %s "
                                           .. "'%s'%s", self.path, p,
                                           what == "inputs" and "input"
                                           or "changelog of store", name, fix)
                end
                entry[what][name] = off
            end
        end
        tasks[part] = entry
    end
    return tasks
end

--- Saves { [partition] = { inputs = {...}, changelogs = {...} } }
--- atomically.
---@param tasks table
---@return boolean|nil ok, string|nil err
function _M:save(tasks)
    if not self.path then
        local copy = {}
        for p, t in pairs(tasks) do
            copy[p] = { inputs = {}, changelogs = {} }
            for _, what in ipairs({ "inputs", "changelogs" }) do
                for k, v in pairs(t[what] or {}) do
                    copy[p][what][k] = v
                end
            end
        end
        self.saved = copy
        return true
    end
    -- Written by hand: cjson prints numbers with 14 significant digits,
    -- and offsets need all of theirs.
    local function offsets(t)
        local list = {}
        for name, off in pairs(t or {}) do
            list[#list + 1] = str_format("%s:%.0f", cjson.encode(name), off)
        end
        return concat(list, ",")
    end
    local parts = {}
    for p, t in pairs(tasks) do
        parts[#parts + 1] = str_format('"%d":{"inputs":{%s},"changelogs":{%s}}',
                                       p, offsets(t.inputs),
                                       offsets(t.changelogs))
    end
    local text = str_format('{"version":%d,"job":%s,"tasks":{%s}}\n', VERSION,
                            cjson.encode(self.job), concat(parts, ","))
    local ok, err = require("tide.fs").write_atomic(self.path, text)
    if not ok then
        return nil, str_format("cannot write checkpoint %s: %s", self.path,
                               err)
    end
    return true
end

return _M
