--- A job's checkpoint kept in its Kafka consumer group (docs/kafka.md
--- "Checkpoints"), for jobs whose first input is a kafka: stream. A save
--- commits, in one OffsetCommit request, every task's input offsets on
--- Kafka topics, and puts the task's whole entry (input and changelog
--- offsets, as JSON) in the metadata of its partition of the first input.
--- `kafka-consumer-groups --describe --group JOB` then shows the job's
--- offsets and lag, and a process with an empty data dir resumes from the
--- group. The local checkpoint file is written after, as a copy for
--- `tide state dump`.
local checkpoint = require("tide.checkpoint")
local system = require("tide.system")
local kafka_sys = require("tide.system.kafka")
local kafka = require("tide.kafka")

local pairs, ipairs, tostring = pairs, ipairs, tostring
local str_format, concat = string.format, table.concat
local setmetatable = setmetatable

local _M = {}
local Ckpt = {}
Ckpt.__index = Ckpt

--- The kafka input that names tasks: the job's first input that is not
--- broadcast, when it is a kafka: stream; else nil.
function _M.lead_input(job)
    for _, inp in ipairs(job.inputs or {}) do
        if not inp.broadcast then
            return inp.system == "kafka" and inp or nil
        end
    end
    return nil
end

--- Wraps the file checkpoint `file` (tide.checkpoint) of `job` in `env`.
function _M.new(file, env, job)
    return setmetatable({ file = file, env = env, job = job,
                          lead = _M.lead_input(job),
                          path = file.path }, Ckpt)
end

-- The group's committed metadata of partition p of the lead input (the
-- task's entry as JSON), false when it has none, or nil and an error. A
-- cluster that has just started, or a coordinator moving, answers after
-- a while: waited for up to `wait_s` seconds.
function Ckpt:fetch(c, p, wait_s, timeout_ms)
    local deadline = os.time() + wait_s
    local off, meta, cerr, code
    while true do
        off, meta, cerr, code = c:committed(self.lead.name, p, timeout_ms)
        if not cerr or code ~= kafka.EAGAIN or os.time() >= deadline then
            break
        end
        require("tide.fs").sleep_ms(500)
    end
    if cerr then
        return nil, str_format("reading the checkpoint of job '%s' from its "
                               .. "Kafka group: %s", self.job.name, cerr)
    end
    return off ~= nil and meta ~= nil and meta:sub(1, 1) == "{" and meta
end

local function decode(self, parts)
    local text = str_format('{"version":1,"job":%s,"tasks":{%s}}',
                            require("cjson").encode(self.job.name),
                            concat(parts, ","))
    return checkpoint.decode(text, str_format("Kafka group '%s'",
                                              self.job.name), self.job.name)
end

--- Loads the tasks from the group (see tide.checkpoint's load for the
--- shape). A task the group has nothing for is absent.
function Ckpt:load()
    local c, err = kafka_sys.client(self.env)
    if not c then
        return nil, err
    end
    local s
    s, err = system.open(self.env, self.lead.spec)
    if not s then
        return nil, err
    end
    local parts, any = {}, false
    local n = s:count()
    for p = 0, n - 1 do
        local meta
        meta, err = self:fetch(c, p, 60)
        if meta == nil then
            return nil, err
        end
        if meta then
            parts[#parts + 1] = str_format('"%d":%s', p, meta)
            any = true
        else
            -- Not committed yet: it starts from the beginning, as a task
            -- of a file checkpoint with no offsets does.
            parts[#parts + 1] = str_format('"%d":{"inputs":{},'
                                           .. '"changelogs":{}}', p)
        end
    end
    if not any then
        parts = {}
    end
    return decode(self, parts)
end

--- The entry of task p as the group has it now, asked once within
--- `timeout_ms` (for a standby, which must not hold its worker up): the
--- entry, false when the group has none, or nil and an error.
function Ckpt:load_one(p, timeout_ms)
    local c, err = kafka_sys.client(self.env)
    if not c then
        return nil, err
    end
    local meta
    meta, err = self:fetch(c, p, 0, timeout_ms)
    if not meta then
        return meta, err
    end
    local tasks
    tasks, err = decode(self, { str_format('"%d":%s', p, meta) })
    if not tasks then
        return nil, err
    end
    return tasks[p] or false
end

--- The entry of task p as the group has it now, or nil when it has
--- none; or nil and an error.
function Ckpt:load_task(p)
    local tasks, err = self:load()
    if not tasks then
        return nil, err
    end
    return tasks[p]
end

--- The offsets a commit of `tasks` (only those in `only`, when given)
--- sends to the group: every task's offsets of its kafka inputs, with
--- its whole entry (input and changelog offsets, JSON) in the metadata
--- of its partition of the lead input `lead_name`. A task with no offset
--- there yet is left out.
function _M.offset_list(lead_name, tasks, only)
    local list = {}
    local lead_key = "kafka:" .. lead_name
    for p, t in pairs(tasks) do
        local lead_off = t.inputs and t.inputs[lead_key]
        if lead_off and (not only or only[p]) then
            local meta = str_format('{"inputs":%s,"changelogs":%s}',
                                    checkpoint.offsets_json(t.inputs),
                                    checkpoint.offsets_json(t.changelogs))
            list[#list + 1] = { topic = lead_name, partition = p,
                                offset = lead_off, metadata = meta }
            for key, off in pairs(t.inputs) do
                local topic = key:match("^kafka:(.*)$")
                if topic and key ~= lead_key and not topic:find("#", 1, true)
                    then
                    list[#list + 1] = { topic = topic, partition = p,
                                        offset = off }
                end
            end
        end
    end
    return list
end

--- Commits `tasks` to the group (only those in `only`, when given: the
--- tasks this commit is about), then writes the local copy.
function Ckpt:save(tasks, only)
    local c, err = kafka_sys.client(self.env)
    if not c then
        return nil, err
    end
    local list = _M.offset_list(self.lead.name, tasks, only)
    local ok, code
    -- Outside the group (--drain), a commit refused while the group still
    -- has a member (a killed process's, until its session times out) or
    -- while its coordinator moves is tried again, for a minute at most.
    -- In the group, the caller defers it to the next commit instead.
    local deadline = os.time() + (self.in_group and 0 or 60)
    while true do
        ok, err, code = c:commit(list)
        if ok or code ~= kafka.EAGAIN or os.time() >= deadline then
            break
        end
        require("tide.fs").sleep_ms(500)
    end
    if not ok then
        return nil, str_format("cannot commit the checkpoint to Kafka group "
                               .. "'%s': %s", self.job.name, tostring(err)),
               code == kafka.EAGAIN
    end
    return self.file:save(tasks)
end

return _M
