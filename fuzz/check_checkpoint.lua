--- Fuzz check for lua/tide/checkpoint.lua decode(text, path, job) (run by
--- fuzz_checkpoint.c). Contract: it never raises; it returns the tasks
--- ({ [partition] = { inputs = { [name] = offset }, changelogs = {...} } },
--- partitions and offsets whole numbers >= 0), or nil and one line that
--- names the file. Anything else raises "FINDING: ...".
local checkpoint = require("tide.checkpoint")

local type, pairs, pcall, tostring = type, pairs, pcall, tostring
local str_format, find = string.format, string.find
local floor, huge = math.floor, math.huge

local PATH, JOB = "fuzz/checkpoint.json", "job"

local function finding(fmt, ...)
    error("FINDING: " .. str_format(fmt, ...), 0)
end

local function whole(n)
    return type(n) == "number" and n >= 0 and n < huge and floor(n) == n
end

local function check_offsets(p, what, t)
    if type(t) ~= "table" then
        finding("task %s: %s is a %s", tostring(p), what, type(t))
    end
    for name, off in pairs(t) do
        if type(name) ~= "string" then
            finding("task %s: a %s name in %s", tostring(p), type(name), what)
        end
        if not whole(off) then
            finding("task %s: %s '%s' has offset %s", tostring(p), what, name,
                    tostring(off))
        end
    end
end

return function(data)
    if type(checkpoint.decode) ~= "function" then
        finding("tide.checkpoint has no decode(text, path, job)")
    end
    local res = { pcall(checkpoint.decode, data, PATH, JOB) }
    if not res[1] then
        finding("decode raised: %s", tostring(res[2]))
    end
    local tasks, err = res[2], res[3]
    if tasks == nil then
        if type(err) ~= "string" or err == "" then
            finding("decode returned nil and a %s", type(err))
        end
        if not find(err, PATH, 1, true) then
            finding("the error does not name the file: %s", err)
        end
        if find(err, "\n", 1, true) then
            finding("the error is more than one line: %s", err)
        end
        return
    end
    if type(tasks) ~= "table" then
        finding("decode returned a %s", type(tasks))
    end
    if err ~= nil then
        finding("decode returned tasks and an error: %s", tostring(err))
    end
    for p, t in pairs(tasks) do
        if not whole(p) then
            finding("a task numbered %s", tostring(p))
        end
        if type(t) ~= "table" then
            finding("task %s is a %s", tostring(p), type(t))
        end
        check_offsets(p, "inputs", t.inputs)
        if t.changelogs ~= nil then
            check_offsets(p, "changelogs", t.changelogs)
        end
    end
end
