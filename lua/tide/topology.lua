--- The streams of a job as a container opens them: its inputs (with their
--- partition count, which makes the tasks), outputs and dead-letter
--- stream; and the check of a saved checkpoint against them. The
--- supervisor opens one to plan the tasks, each worker one to run them.
local system = require("tide.system")
local checkpoint = require("tide.checkpoint")

local ipairs, tostring = ipairs, tostring
local str_format, concat = string.format, table.concat

local _M = {}
local Topology = {}
local mt = { __index = Topology }

local function fail_open(self, err)
    self:close()
    return nil, err
end

--- Opens the streams of `job` in `env`. Returns the topology, or nil and
--- one line. Fields: inputs (list, in the job's order: { spec, name,
--- key, stream, kdec, vdec, broadcast, bootstrap, priority, table (true
--- for a table input), count }),
--- nparts (tasks), outs (by spec and by name), out_list, dlq, dlq_name,
--- streams (every stream opened, to flush and close).
---@return table|nil topology, string|nil err
function _M.open(job, env)
    local self = setmetatable({ job = job, env = env, streams = {},
                                inputs = {}, outs = {} }, mt)
    -- An input that is also an output (a job that re-keys its own input,
    -- as pageview_counts does) is created like outputs are, once the other
    -- inputs have told the partition count. Broadcast inputs do not make
    -- tasks: their partition count is their own.
    local is_output = {}
    for _, o in ipairs(job.outputs) do
        is_output[o.system .. ":" .. o.name] = true
    end
    local order = {}
    for pass = 1, 3 do
        for i, inp in ipairs(job.inputs) do
            local own = is_output[inp.system .. ":" .. inp.name] == true
            local want = (pass == 1 and not own and not inp.broadcast)
                         or (pass == 2 and own and not inp.broadcast)
                         or (pass == 3 and inp.broadcast)
            if want then
                order[#order + 1] = i
            end
        end
    end
    local nparts, first
    for _, i in ipairs(order) do
        local inp = job.inputs[i]
        local own = is_output[inp.system .. ":" .. inp.name]
        local s, err = system.open(env, inp.spec, {
            create = own and nparts ~= nil, partitions = nparts })
        if not s then
            if own and not nparts then
                err = err .. "; it is also an output, but no other input "
                      .. "exists to take its partition count from"
            end
            return fail_open(self, str_format("input '%s': %s", inp.spec, err))
        end
        self.streams[#self.streams + 1] = s
        local n = s:count()
        if not inp.broadcast then
            if nparts and n ~= nparts then
                return fail_open(self, str_format(
                    "inputs must have equal partition counts (one task per "
                    .. "partition): '%s' has %d, '%s' has %d; or mark the "
                    .. "smaller one broadcast = true if every task needs "
                    .. "all of it", first, nparts, inp.spec, n))
            end
            nparts, first = n, first or inp.spec
        end
        self.inputs[i] = {
            spec = inp.spec, name = inp.name, stream = s, count = n,
            key = inp.system .. ":" .. inp.name,
            kdec = inp.key_serde.decode, vdec = inp.serde.decode,
            broadcast = inp.broadcast, bootstrap = inp.bootstrap,
            priority = inp.priority, table = inp.table,
        }
    end
    self.nparts = nparts

    local names = {}
    for _, o in ipairs(job.outputs) do
        local s, err = system.open(env, o.spec, { create = true,
                                                  partitions = nparts })
        if not s then
            return fail_open(self, str_format("output '%s': %s", o.spec, err))
        end
        self.streams[#self.streams + 1] = s
        local out = { spec = o.spec, stream = s, kenc = o.key_serde.encode,
                      venc = o.serde.encode }
        self.outs[o.spec] = out
        if self.outs[o.name] == nil then
            self.outs[o.name] = out
        end
        names[#names + 1] = o.spec
    end
    self.out_list = #names > 0 and concat(names, ", ") or "none"

    if job.on_error == "dead_letter" or job.dead_letters then
        local spec = _M.dead_letter_spec(job)
        local s, err = system.open(env, spec, { create = true,
                                                partitions = nparts })
        if not s then
            return fail_open(self, str_format("dead-letter stream '%s': %s",
                                              spec, err))
        end
        self.streams[#self.streams + 1] = s
        self.dlq = s
        self.dlq_name = spec
    end
    return self
end

--- The dead-letter stream of `job`: <system of its first input>:<name>-dead-letters.
function _M.dead_letter_spec(job)
    return job.inputs[1].system .. ":" .. job.name .. "-dead-letters"
end

--- Returns the input partitions task `p` reads: { input = index in
--- job.inputs, partition, key (its name in the checkpoint) }. A broadcast
--- input gives every task all of its partitions, each under its own key
--- "system:name#q".
function Topology:parts_of(p)
    local list = {}
    for i, inp in ipairs(self.inputs) do
        if inp.broadcast then
            for q = 0, inp.count - 1 do
                list[#list + 1] = { input = i, partition = q,
                                    key = str_format("%s#%d", inp.key, q) }
            end
        else
            list[#list + 1] = { input = i, partition = p, key = inp.key }
        end
    end
    return list
end

--- The names a checkpoint may give input offsets.
function Topology:checkpoint_keys()
    local keys = {}
    for _, part in ipairs(self:parts_of(0)) do
        keys[#keys + 1] = part.key
    end
    return keys
end

--- Checks a saved checkpoint (tasks table) against the job: tasks, input
--- names, and no offset past the end of its partition. Returns true, or
--- nil and one line naming the file and task.
function Topology:check(saved, path)
    local ok, err = checkpoint.check(saved, path, self.job.name, self.nparts,
                                     self:checkpoint_keys())
    if not ok then
        return nil, err
    end
    -- An offset past the end of its partition: the stream was deleted and
    -- made again, and new records below that offset would be skipped.
    for p = 0, self.nparts - 1 do
        for _, part in ipairs(self:parts_of(p)) do
            local off = saved[p] and saved[p].inputs[part.key]
            if off then
                local inp = self.inputs[part.input]
                local first, last = inp.stream:range(part.partition)
                if not first then
                    return nil, str_format("input '%s' partition %d: %s",
                                           inp.spec, part.partition,
                                           tostring(last))
                end
                if off > last then
                    return nil, str_format(
                        "%s: task %d resumes input '%s' at offset %.0f, but "
                        .. "its partition %d ends at offset %.0f: the stream "
                        .. "was deleted and made again, or its files lost; "
                        .. "delete the job's checkpoint.json and stores/ to "
                        .. "reprocess it from the beginning, or restore the "
                        .. "stream", path, p, part.key, off, part.partition,
                        last)
                end
            end
        end
    end
    return true
end

--- Closes every stream (flushing what is buffered).
function Topology:close()
    for _, s in ipairs(self.streams) do
        s:close()
    end
    self.streams = {}
end

return _M
