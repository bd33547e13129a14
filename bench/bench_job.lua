--- Job throughput of `tide run --drain`, each figure beside a baseline
--- measured in the same run on the same messages (DESIGN.md section 9).
---
---   pass-through: bench/jobs/pass.lua, local -> local, string serde,
---                 ctx:send(out, msg.key, msg.value);
---   json:         bench/jobs/json.lua, json serde in and out, the decoded
---                 value sent back unchanged.
---
--- The tide figure is the wall time of the whole `tide run --drain`
--- process (start, reading, process(), durable outputs, checkpoint, exit);
--- nothing is subtracted. The time of the same run on an empty input is
--- printed beside it, as the fixed cost of a run.
---
--- The baseline is a raw LuaJIT loop in this process over the same
--- messages held in memory (a tide_rec_t array pointing into C memory):
--- per message, ffi.string of key and value (json: then cjson decode and
--- encode of the value), and a push of the result through the tide.log
--- binding to a stream opened as the local system opens it (fsync per
--- flush), flushed once at the end. So the ratio shows what the runner,
--- the reader and the serdes add around the same log work.
---
--- Usage: luajit bench/bench_job.lua TIDE_BIN DIR [MESSAGES [PARTITIONS]]
--- (bench/run.sh sets package.path and TIDE_LIB, and pins it to one
--- core). A temporary folder is made in DIR and removed after. Each side
--- runs BENCH_RUNS times (default 5), the two alternating, and each figure
--- is the median of its runs with their spread (min-max); a ratio is
--- taken run by run, then summarised alike (bench/stats.lua).
local bench_dir = arg[0]:match("^(.*)/[^/]*$") or "."
package.path = bench_dir .. "/?.lua;" .. package.path

local ffi = require("ffi")
local tlog = require("tide.log")
local cjson = require("cjson")
local stats = require("stats")

local ffi_string, ffi_copy, ffi_cast = ffi.string, ffi.copy, ffi.cast
local str_format, str_rep = string.format, string.rep

ffi.cdef [[
char *mkdtemp(char *template);
void *malloc(size_t size);
void free(void *p);
]]

local RUNS = stats.runs("bench_job")
local KEYS = 10000                  -- distinct keys, "user-00000".."user-09999"
local VAL_LEN = 100

local tide_bin, base = arg[1], arg[2]
local n = tonumber(arg[3] or 2000000)
local nparts = tonumber(arg[4] or 1)
if not tide_bin or not base or not n or n < 1 or not nparts then
    io.stderr:write("usage: luajit bench/bench_job.lua TIDE_BIN DIR "
                    .. "[MESSAGES [PARTITIONS]]\n")
    os.exit(2)
end
local jobs_dir = bench_dir .. "/jobs"

local util = require("util")
local now, sh, quote = util.now, util.sh, util.quote

local function die(fmt, ...)
    io.stderr:write("bench_job: ", str_format(fmt, ...), "\n")
    os.exit(1)
end



local tmpl = ffi.new("char[?]", #base + 32)
ffi_copy(tmpl, base .. "/tide-bench-job-XXXXXX")
if ffi.C.mkdtemp(tmpl) == nil then
    die("cannot make a folder in %s", base)
end
local dir = ffi_string(tmpl)

local function cleanup()
    sh("rm -rf " .. quote(dir))
end

-- ---- the messages ------------------------------------------------------------

local function pass_value(i)
    local head = str_format("%010d ", i)
    return head .. str_rep("x", VAL_LEN - #head)
end

-- A page view of exactly VAL_LEN bytes.
local function json_value(i)
    local v = str_format('{"user":"u%05d","url":"/products/%06d","ts":%d,'
                         .. '"bot":false,"ua":"', i % KEYS, (i * 7) % 100000,
                         1700000000000 + i)
    return v .. str_rep("M", VAL_LEN - #v - 2) .. '"}'
end

local function key(i)
    return str_format("user-%05d", i % KEYS)
end

-- Writes the messages to stream `name` (fsync none: this is set-up) and
-- returns them as a tide_rec_t array pointing into one C buffer, and the
-- buffer; free both with ffi.C.free.
--
-- Both are malloc'd rather than ffi.new'd on purpose: LuaJIT counts
-- ffi.new memory in its heap, and a heap of a few hundred MB puts off
-- every GC cycle until millions of strings are alive, when interning a
-- new string gets slow (values of one shape share a hash in LuaJIT's
-- sparse string hash). That made the baseline 2-3 times slower.
local function make_input(name, value_of)
    local log, err = tlog.open(dir, name, { mode = "create",
                                            partitions = nparts,
                                            fsync = "none" })
    if not log then
        die("%s", err)
    end
    local buf = ffi_cast("char *", ffi.C.malloc(n * (10 + VAL_LEN)))
    local recs = ffi_cast("tide_rec_t *",
                          ffi.C.malloc(n * ffi.sizeof("tide_rec_t")))
    if buf == nil or recs == nil then
        die("out of memory")
    end
    local pos = 0
    for i = 0, n - 1 do
        local k, v = key(i), value_of(i)
        assert(#k == 10 and #v == VAL_LEN)
        local ok, perr = log:push(k, v)
        if not ok then
            die("%s", perr)
        end
        local r = recs[i]
        ffi_copy(buf + pos, k, #k)
        r.key, r.klen = buf + pos, #k
        pos = pos + #k
        ffi_copy(buf + pos, v, #v)
        r.val, r.vlen = buf + pos, #v
        pos = pos + #v
    end
    local ok, ferr = log:flush()
    if not ok then
        die("%s", ferr)
    end
    log:close()
    return recs, buf
end

-- ---- the baselines ---------------------------------------------------------

local function open_out(name)
    sh("rm -rf " .. quote(dir .. "/streams/" .. name))
    local log, err = tlog.open(dir, name, { mode = "create",
                                            partitions = nparts,
                                            fsync = "batch" })
    if not log then
        die("%s", err)
    end
    return log
end

local function raw_pass(recs)
    local out = open_out("raw-out")
    local t0 = now()
    for i = 0, n - 1 do
        local r = recs[i]
        local k = ffi_string(r.key, r.klen)
        local v = ffi_string(r.val, r.vlen)
        out:push(k, v)
    end
    assert(out:flush())
    local t = now() - t0
    out:close()
    return t
end

local function raw_json(recs)
    local decode, encode = cjson.decode, cjson.encode
    local out = open_out("raw-out")
    local t0 = now()
    for i = 0, n - 1 do
        local r = recs[i]
        local k = ffi_string(r.key, r.klen)
        local v = encode(decode(ffi_string(r.val, r.vlen)))
        out:push(k, v)
    end
    assert(out:flush())
    local t = now() - t0
    out:close()
    return t
end

-- A codec alone on the same values (no ffi.string, no log): the most a
-- job that decodes and encodes every message can reach with it. The json
-- serde uses tide's codec (tide.json); lua-cjson is shown beside it.
local function codec_only(recs, codec)
    local decode, encode = codec.decode, codec.encode
    local vals = {}
    for i = 0, 9999 do
        local r = recs[i % n]
        vals[i + 1] = ffi_string(r.val, r.vlen)
    end
    local t0 = now()
    local out
    for i = 0, n - 1 do
        out = encode(decode(vals[i % 10000 + 1]))
    end
    local t = now() - t0
    assert(#out > 0)
    return t
end

-- ---- tide run --------------------------------------------------------------

-- Runs job `name` over its input from the beginning; returns the wall
-- time of the process.
local function tide_run(name, expect)
    sh(str_format("rm -rf %s %s", quote(dir .. "/streams/" .. name .. "-out"),
                  quote(dir .. "/jobs/" .. name)))
    local cmd = str_format("%s run %s --drain --data-dir %s 2>%s",
                           quote(tide_bin), quote(jobs_dir .. "/"
                           .. name:gsub("^bench%-", "") .. ".lua"),
                           quote(dir), quote(dir .. "/run.log"))
    local t0 = now()
    local ok = sh(cmd)
    local t = now() - t0
    if not ok then
        local f = io.open(dir .. "/run.log")
        local text = f and f:read("*a") or ""
        cleanup()
        die("%s failed:\n%s", cmd, text)
    end
    local out = assert(tlog.open(dir, name .. "-out"))
    local got = 0
    for p = 0, nparts - 1 do
        local s, e = out:range(p)
        got = got + (e - s)
    end
    out:close()
    if got ~= expect then
        cleanup()
        die("%s wrote %d messages, %d expected", name, got, expect)
    end
    return t
end

-- Runs the tide side and the baseline RUNS times each, alternating
-- which goes first; returns the rates of each side (M msg/s) and the
-- ratios tide/baseline, run by run.
local function compare(job, baseline, recs)
    local rt, rb, ratio = {}, {}, {}
    for round = 1, RUNS do
        local tb
        if round % 2 == 0 then
            tb = baseline(recs)
        end
        local tt = tide_run(job, n)
        if round % 2 == 1 then
            tb = baseline(recs)
        end
        rt[round], rb[round], ratio[round] = n / tt / 1e6, n / tb / 1e6,
                                             tb / tt
        collectgarbage()
    end
    return rt, rb, ratio
end

local empty = open_out("bench-empty-in")
empty:close()
local te = {}
for round = 1, RUNS do
    te[round] = tide_run("bench-empty", 0) * 1000
end

local recs, buf = make_input("bench-pass-in", pass_value)
local tp, bp, pratio = compare("bench-pass", raw_pass, recs)
ffi.C.free(recs)
ffi.C.free(buf)
recs, buf = make_input("bench-json-in", json_value)
local tj, bj, jratio = compare("bench-json", raw_json, recs)
local cj, tc = {}, {}
for round = 1, RUNS do
    cj[round] = n / codec_only(recs, cjson) / 1e6
    tc[round] = n / codec_only(recs, require("tide.json")) / 1e6
end
ffi.C.free(recs)
ffi.C.free(buf)
cleanup()

print(str_format("job: %d messages over %d partition%s, 10-byte keys "
                 .. "(%d distinct), %d-byte values, one core; runs: %d, the "
                 .. "sides alternating; ratio = tide/baseline, run by run",
                 n, nparts, nparts == 1 and "" or "s", KEYS, VAL_LEN, RUNS))
print(str_format("  tide: whole `tide run --drain` wall time; the same run "
                 .. "on an empty input takes %s", stats.fmt(te, 0, "ms")))
print("  baseline: raw LuaJIT loop: ffi.string key+value per message, in "
      .. "memory,")
print("            [json: + cjson decode+encode,] + tide.log push, one "
      .. "durable flush at the end")
print(str_format("%-13s tide %s   raw loop %s   ratio %s", "pass-through",
                 stats.fmt(tp, 2, "M msg/s"), stats.fmt(bp, 2, "M msg/s"),
                 stats.fmt_ratio(pratio, 2)))
print(str_format("%-13s tide %s   raw loop + cjson %s   ratio %s", "json",
                 stats.fmt(tj, 2, "M msg/s"), stats.fmt(bj, 2, "M msg/s"),
                 stats.fmt_ratio(jratio, 2)))
print(str_format("%-13s tide.json codec only %s (decode+encode alone, no "
                 .. "log: the json serde's ceiling)", "",
                 stats.fmt(tc, 2, "M msg/s")))
print(str_format("%-13s cjson only %s (the same with lua-cjson)", "",
                 stats.fmt(cj, 2, "M msg/s")))
