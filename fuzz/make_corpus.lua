--- Writes the seed corpora in fuzz/corpus/<target>/ from files that tide
--- itself makes: segments and indexes written by the log, checkpoints
--- saved by tide.checkpoint, header blocks from tide.headers, JSON from
--- the codec. Run from the checkout, with a plain build's library:
---
---   TIDE_LIB=build/libtide.so luajit fuzz/make_corpus.lua   (make fuzz-corpus)
---
--- The seeds are committed; run this again when a file format changes.
package.path = "./bindings/?.lua;./lua/?.lua;" .. package.path

local log = require("tide.log")
local json = require("tide.json")
local headers = require("tide.headers")
local checkpoint = require("tide.checkpoint")

local str_format, char, rep = string.format, string.char, string.rep
local floor = math.floor

local OUT = "fuzz/corpus"
local SEP = "#SPLIT#"

-- Flags and settings of fuzz_log.c's 12-byte head.
local F_SEG0, F_IDX0, F_SEG1, F_IDX1 = 1, 2, 4, 8
local F_CONF, F_STABLE, F_COMPACT = 16, 32, 64
local SEG_SETTING = { [4096] = 0, [8192] = 1, [65536] = 2 }

local function sh(cmd)
    local f = assert(io.popen(cmd))
    local out = f:read("*a")
    f:close()
    return out
end

local function read(path)
    local f = io.open(path, "rb")
    if not f then
        return nil
    end
    local s = f:read("*a")
    f:close()
    return s
end

local function write(target, name, data)
    sh(str_format("mkdir -p %s/%s", OUT, target))
    local f = assert(io.open(str_format("%s/%s/%s", OUT, target, name), "wb"))
    f:write(data)
    f:close()
end

local function u16(n)
    return char(n % 256, floor(n / 256) % 256)
end

local function u32(n)
    return char(n % 256, floor(n / 256) % 256, floor(n / 65536) % 256,
                floor(n / 16777216) % 256)
end

local tmp = sh("mktemp -d"):gsub("%s+$", "")

-- Makes a stream of one partition with `opts`, lets `fill(s)` write to it,
-- and packs the first two segments (with indexes) in fuzz_log's layout.
local function log_seed(name, opts, fill, extra)
    extra = extra or {}
    local dir = str_format("%s/%s", tmp, name)
    opts.mode, opts.partitions, opts.fsync = "create", 1, "none"
    local s = assert(log.open(dir, "s", opts))
    fill(s)
    assert(s:flush())
    s:close()
    local part = dir .. "/streams/s/0"
    local bases = {}
    for file in sh("ls -1 " .. part):gmatch("[^\n]+") do
        local base = file:match("^(%d+)%.log$")
        if base then
            bases[#bases + 1] = base
        end
    end
    table.sort(bases)
    local flags, secs = 0, {}
    local base_n = { 0, 0 }
    for k = 1, 2 do
        local b = bases[k]
        local seg = b and read(str_format("%s/%s.log", part, b))
        local idx = b and read(str_format("%s/%s.index", part, b))
        if seg then
            flags = flags + (k == 1 and F_SEG0 or F_SEG1)
            base_n[k] = tonumber(b)
        end
        if idx then
            flags = flags + (k == 1 and F_IDX0 or F_IDX1)
        end
        secs[#secs + 1] = seg or ""
        secs[#secs + 1] = idx or ""
    end
    local conf = read(dir .. "/streams/s/stream.conf")
    secs[5] = extra.conf and conf or ""
    if extra.conf then
        flags = flags + F_CONF
    end
    local stable = read(part .. "/stable")
    secs[6] = stable or ""
    if stable then
        flags = flags + F_STABLE
    end
    if opts.compact then
        flags = flags + F_COMPACT
    end
    local seg0 = secs[1]
    if extra.cut then
        secs[1] = seg0:sub(1, #seg0 - extra.cut)
    end
    local head = char(flags, SEG_SETTING[opts.segment_bytes or 65536] or 3)
                 .. u16(extra.read_at or 0) .. u32(base_n[1])
                 .. u32(base_n[2])
    write("log", name, head .. table.concat(secs, SEP))
end

local function hdrs(i)
    return headers.encode({ trace = "t" .. i, ["content-type"] = "json" })
end

log_seed("small", { segment_bytes = 65536 }, function(s)
    s:push("alice", "/home", 0, 1700000000000)
    s:push(nil, "no key", 0, 1700000000001)
    s:push("bob", nil, 0, 1700000000002)
    s:push("", "", 0, 1700000000003, hdrs(1))
    s:push("k\0bin", "v\0\255", 0, 1700000000004)
end, { read_at = 2 })

log_seed("torn-tail", { segment_bytes = 65536 }, function(s)
    for i = 1, 8 do
        s:push("key" .. i, "value " .. i, 0, 1700000000000 + i)
    end
end, { cut = 5 })

log_seed("with-conf", { segment_bytes = 8192 }, function(s)
    for i = 1, 4 do
        s:push("key" .. i, "value " .. i, 0, 1700000000000 + i)
    end
end, { conf = true, read_at = 3 })

log_seed("two-segments", { segment_bytes = 4096 }, function(s)
    for i = 1, 50 do
        s:push("key" .. i % 7, rep("v", 60) .. i, 0, 1700000000000 + i,
               i % 5 == 0 and hdrs(i) or nil)
    end
end, { read_at = 40 })

log_seed("indexed", { segment_bytes = 65536 }, function(s)
    for i = 1, 120 do
        s:push("key" .. i, rep("x", 80) .. i, 0, 1700000000000 + i)
    end
end, { read_at = 100 })

log_seed("compact", { segment_bytes = 4096, compact = true }, function(s)
    for i = 1, 60 do
        s:push("key" .. i % 5, i % 9 == 0 and nil or rep("c", 50) .. i, 0,
               1700000000000 + i)
    end
    assert(s:set_stable(0, 40))
end, { read_at = 10 })

log_seed("empty", { segment_bytes = 4096 }, function() end)

-- Checkpoints, saved by tide.checkpoint for job "job" (the name
-- fuzz/check_checkpoint.lua decodes them with).
local function checkpoint_seed(name, tasks)
    local dir = str_format("%s/cp-%s", tmp, name)
    sh(str_format("mkdir -p %s/jobs/job", dir))
    assert(checkpoint.new({ data_dir = dir }, "job"):save(tasks))
    write("checkpoint", name, assert(read(dir .. "/jobs/job/checkpoint.json")))
end

checkpoint_seed("one-task", { [0] = { inputs = { pageviews = 42 } } })
checkpoint_seed("two-tasks", {
    [0] = { inputs = { a = 0, b = 7 }, changelogs = { counts = 12 } },
    [1] = { inputs = { a = 9007199254740991, b = 3 },
            changelogs = { counts = 0, totals = 5 } },
})
checkpoint_seed("empty", {})
write("checkpoint", "other-job",
      '{"version":1,"job":"other","tasks":{"0":{"inputs":{"a":1}}}}\n')

-- Header blocks.
write("headers", "empty", headers.encode({}))
write("headers", "two", headers.encode({ trace = "abc", ["content-type"] =
                                         "application/json" }))
write("headers", "nil-value", headers.encode({ gone = false, ["k\0"] =
                                               "\255\0" }))
write("headers", "repeated", u32(2) .. u32(1) .. "a" .. u32(1) .. "1"
                             .. u32(1) .. "a" .. u32(0xffffffff))

-- JSON documents.
local docs = {
    object = '{"user":"alice","url":"/home","n":3,"ok":true,"t":null}',
    array = '[1,-2.5,1e300,0.1,123456789012345678,"\\u00e9\\ud83d\\ude00",[]]',
    nested = '{"a":{"b":{"c":[{"d":[1,[2,[3]]]}]}},"e":{}}',
    escapes = '"tab\\tnl\\nquote\\"back\\\\slash\\/\\b\\f\\r\\u0000"',
    numbers = '[0,-0,1.5e-7,99999999999999.5,1e14,-9007199254740993,3.14]',
    scalar = ' 42 ',
}
for name, text in pairs(docs) do
    write("json", name, text)
end
write("json", "encoded", assert(json.encode({ id = 7, tags = { "x", "y" },
                                              price = 19.99 })))

sh("rm -rf " .. tmp)
print("wrote the seed corpora under " .. OUT)
