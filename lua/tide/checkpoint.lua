--- A job's checkpoint: per task, the offset of the next message to process
--- on each input. Kept in <data-dir>/jobs/<job>/checkpoint.json, replaced
--- atomically and durably; in memory when there is no data dir (tests).
local cjson = require("cjson.safe")

local type, pairs, ipairs, tostring, tonumber = type, pairs, ipairs, tostring, tonumber
local next = next
local str_format = string.format
local concat, sort = table.concat, table.sort
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

local FIX = "; restore it from a backup, or delete it to reprocess every "
            .. "input from the beginning"

-- Largest offset kept exactly by a double (2^53): an offset beyond it
-- cannot have been written by save().
local MAX_OFFSET = 9007199254740992

-- Returns a name read from the file as it may appear in a one-line error:
-- control bytes, quotes and backslashes escaped (\ddd), cut at 80 bytes.
local function shown(name)
    name = tostring(name)
    local cut = #name > 80
    if cut then
        name = name:sub(1, 80)
    end
    name = name:gsub("[%c'\\\128-\255]", function(c)
        return str_format("\\%03d", c:byte())
    end)
    return cut and name .. "..." or name
end

--- Parses the text of a checkpoint file of job `job_name`. Pure: no I/O,
--- and never raises, whatever the bytes; `path` only names the file in
--- errors. Checks the file's own shape (a version 1 object of this job,
--- tasks named by partition numbers, offsets whole and in range, input and
--- store names strings); whether the tasks and inputs exist in the job is
--- the runner's check.
---@param text string
---@param path string
---@param job_name string
---@return table|nil tasks, string|nil err
function _M.decode(text, path, job_name)
    if type(text) ~= "string" then
        return nil, str_format("%s: corrupt checkpoint (not text)%s",
                               tostring(path), FIX)
    end
    local doc, err = cjson.decode(text)
    if type(doc) ~= "table" then
        return nil, str_format("%s: corrupt checkpoint (%s)%s", path,
                               tostring(err or "not an object"), FIX)
    end
    if doc.version ~= VERSION or doc.job ~= job_name
        or type(doc.tasks) ~= "table" then
        return nil, str_format("%s: not a version %d checkpoint of job '%s'%s",
                               path, VERSION, tostring(job_name), FIX)
    end
    local tasks = {}
    for p, t in pairs(doc.tasks) do
        if type(p) ~= "string" then
            return nil, str_format("%s: \"tasks\" must be an object of "
                                   .. "partition numbers to tasks, not an "
                                   .. "array%s", path, FIX)
        end
        local part = p:match("^%d+$")
                     and #p <= 9 and tonumber(p)
        if not part then
            return nil, str_format("%s: bad task '%s' (tasks are named by "
                                   .. "their partition number)%s", path,
                                   shown(p), FIX)
        end
        if tasks[part] then
            return nil, str_format("%s: task %d appears twice%s", path, part,
                                   FIX)
        end
        if type(t) ~= "table" or type(t.inputs) ~= "table"
            or (t.changelogs ~= nil and type(t.changelogs) ~= "table") then
            return nil, str_format("%s: bad entry for task %d%s", path,
                                   part, FIX)
        end
        local entry = { inputs = {}, changelogs = {} }
        for _, what in ipairs({ "inputs", "changelogs" }) do
            local kind = what == "inputs" and "input" or "changelog of store"
            for name, off in pairs(t[what] or {}) do
                if type(name) ~= "string" then
                    return nil, str_format("%s: task %d: \"%s\" must be an "
                                           .. "object of %s names to offsets, "
                                           .. "not an array%s", path, part,
                                           what, what == "inputs"
                                           and "input" or "store", FIX)
                end
                if type(off) ~= "number" or off ~= off or off < 0
                    or off > MAX_OFFSET or off % 1 ~= 0 then
                    return nil, str_format("%s: task %d: bad offset for %s "
                                           .. "'%s' (a whole number from 0 to "
                                           .. "2^53 expected)%s", path, part,
                                           kind, shown(name), FIX)
                end
                entry[what][name] = off
            end
        end
        tasks[part] = entry
    end
    return tasks
end

--- Checks decoded `tasks` against the job that is to resume from them:
--- one task per partition, `nparts` of them, each naming only inputs in
--- `inputs` (a list of "system:name"). A checkpoint with no task is
--- nothing saved yet. Returns true, or nil and one line naming the file,
--- the task and what to do: nothing is guessed.
---@param tasks table
---@param path string
---@param job_name string
---@param nparts integer
---@param inputs string[]
---@return boolean|nil ok, string|nil err
function _M.check(tasks, path, job_name, nparts, inputs)
    if next(tasks) == nil then
        return true
    end
    local redo = "; if the job changed on purpose, delete the job's "
                 .. "checkpoint.json and stores/ to reprocess every input "
                 .. "from the beginning, else restore the job file (or "
                 .. "the checkpoint) that matches"
    local known = {}
    for _, key in ipairs(inputs) do
        known[key] = true
    end
    local parts = {}
    for p in pairs(tasks) do
        parts[#parts + 1] = p
    end
    sort(parts)
    for _, p in ipairs(parts) do
        if p >= nparts then
            return nil, str_format("%s: task %d does not exist: job '%s' has "
                                   .. "%d tasks (0 to %d, one per partition "
                                   .. "of its inputs)%s", path, p, job_name,
                                   nparts, nparts - 1, redo)
        end
        local names = {}
        for name in pairs(tasks[p].inputs) do
            names[#names + 1] = name
        end
        sort(names)
        for _, name in ipairs(names) do
            if not known[name] then
                return nil, str_format("%s: task %d has an offset for input "
                                       .. "'%s', which job '%s' does not "
                                       .. "read (inputs: %s)%s", path, p,
                                       shown(name), job_name,
                                       concat(inputs, ", "),
                                       redo)
            end
        end
    end
    for p = 0, nparts - 1 do
        if not tasks[p] then
            return nil, str_format("%s: task %d is missing, but job '%s' has "
                                   .. "%d tasks: the partition count of its "
                                   .. "inputs changed since the checkpoint%s",
                                   path, p, job_name, nparts, redo)
        end
    end
    return true
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
    local text, err = f:read("*a")
    f:close()
    if not text then
        return nil, str_format("%s: cannot read checkpoint: %s", self.path,
                               tostring(err))
    end
    return _M.decode(text, self.path, self.job)
end

--- Returns the JSON object of { [name] = offset }. Written by hand:
--- cjson prints numbers with 14 significant digits, and offsets need all
--- of theirs.
function _M.offsets_json(t)
    local list = {}
    for name, off in pairs(t or {}) do
        list[#list + 1] = str_format("%s:%.0f", cjson.encode(name), off)
    end
    return "{" .. concat(list, ",") .. "}"
end

--- The checkpoint of `job` in `env`: in its Kafka group when its tasks
--- follow a kafka: input (tide.checkpoint_kafka), else in the data dir.
function _M.for_job(env, job)
    local file = _M.new(env, job.name)
    local ck = require("tide.checkpoint_kafka")
    if env.data_dir and ck.lead_input(job) then
        return ck.new(file, env, job)
    end
    return file
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
    local parts = {}
    for p, t in pairs(tasks) do
        parts[#parts + 1] = str_format('"%d":{"inputs":%s,"changelogs":%s}',
                                       p, _M.offsets_json(t.inputs),
                                       _M.offsets_json(t.changelogs))
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
