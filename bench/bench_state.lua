--- State throughput of `tide run --drain`, each figure beside a baseline
--- measured in the same run on the same keys (issue 4, "Speed"; DESIGN.md
--- section 9). The job is bench/jobs/incr.lua: string serde,
--- ctx.stores.counts:incr(msg.key, 1) per message, nothing sent; its store
--- is RocksDB behind the write cache, changelogged.
---
---   hot keys:  HOT messages over 10,000 distinct keys, in key rotation;
---   many keys: MANY messages over MANY_KEYS keys, each picked at random
---              (xorshift64*, bench_store's generator and key format), so
---              most keys are new to the store;
---   restore:   after the many-keys run, the job's stores/ folder is
---              deleted and `tide run --drain` runs again with no new
---              input: it rebuilds the store from the changelog. The
---              figures are those of its restore log line. Beside them:
---              the keys in the state and their bytes, so that one sees
---              whether the restore replayed the state or its history
---              (job changelogs roll at 16 MiB and are compacted, so it
---              should replay about one record a key plus the segments
---              not compacted yet).
---
--- The tide figure is the wall time of the whole `tide run --drain`
--- process (start, reading, process(), changelog, commit, exit); nothing
--- is subtracted. The same run on an empty input is timed as the fixed
--- cost of a run.
---
--- Baselines:
---   hot/many: a raw loop in this process, through the FFI straight into
---             librocksdb, over the same keys in the same order: per
---             message rocksdb_get, parse the counter, +1, format,
---             rocksdb_put (WAL off), in a RocksDB opened with the options
---             of bench_store's raw loop (those a store uses). No write
---             cache, no changelog, no serde, no runner. The raw loop is
---             slow, so hot keys runs it over a fifth of the messages, and
---             both stop after BUDGET seconds (it says so).
---   restore:  a raw sequential read (1 MiB read()s through io.open) of
---             the changelog's segment files (*.log) just after the
---             restore (warm page cache, like the restore itself).
---
--- Usage: luajit bench/bench_state.lua TIDE_BIN DIR [HOT [MANY [MANY_KEYS]]]
--- (defaults 2,000,000, 10,000,000 and MANY). bench/run.sh sets
--- package.path and TIDE_LIB. A temporary folder is made in DIR and
--- removed after. Every part runs BENCH_RUNS times (default 5), tide and
--- its baseline in turn, the one going first alternating; each figure is
--- the median of its runs with their spread (min-max), and a ratio is
--- taken run by run, then summarised alike (bench/stats.lua).
local bench_dir = arg[0]:match("^(.*)/[^/]*$") or "."
package.path = bench_dir .. "/?.lua;" .. package.path

local ffi = require("ffi")
local tlog = require("tide.log")
local stats = require("stats")

local ffi_string, ffi_copy, ffi_cast = ffi.string, ffi.copy, ffi.cast
local str_format = string.format

ffi.cdef [[
char *mkdtemp(char *template);
void *malloc(size_t size);
void free(void *p);

typedef struct rocksdb_t rocksdb_t;
typedef struct rocksdb_options_t rocksdb_options_t;
typedef struct rocksdb_block_based_table_options_t
    rocksdb_block_based_table_options_t;
typedef struct rocksdb_cache_t rocksdb_cache_t;
typedef struct rocksdb_filterpolicy_t rocksdb_filterpolicy_t;
typedef struct rocksdb_readoptions_t rocksdb_readoptions_t;
typedef struct rocksdb_writeoptions_t rocksdb_writeoptions_t;
rocksdb_options_t *rocksdb_options_create(void);
void rocksdb_options_destroy(rocksdb_options_t *);
void rocksdb_options_set_create_if_missing(rocksdb_options_t *, unsigned char);
void rocksdb_options_increase_parallelism(rocksdb_options_t *, int);
void rocksdb_options_set_write_buffer_size(rocksdb_options_t *, size_t);
void rocksdb_options_set_compression(rocksdb_options_t *, int);
void rocksdb_options_set_memtable_prefix_bloom_size_ratio(
    rocksdb_options_t *, double);
void rocksdb_options_set_memtable_whole_key_filtering(rocksdb_options_t *,
                                                      unsigned char);
rocksdb_block_based_table_options_t *rocksdb_block_based_options_create(void);
void rocksdb_block_based_options_destroy(
    rocksdb_block_based_table_options_t *);
void rocksdb_block_based_options_set_block_cache(
    rocksdb_block_based_table_options_t *, rocksdb_cache_t *);
void rocksdb_block_based_options_set_filter_policy(
    rocksdb_block_based_table_options_t *, rocksdb_filterpolicy_t *);
void rocksdb_options_set_block_based_table_factory(
    rocksdb_options_t *, rocksdb_block_based_table_options_t *);
rocksdb_cache_t *rocksdb_cache_create_lru(size_t);
void rocksdb_cache_destroy(rocksdb_cache_t *);
rocksdb_filterpolicy_t *rocksdb_filterpolicy_create_bloom_full(double);
rocksdb_t *rocksdb_open(const rocksdb_options_t *, const char *, char **);
void rocksdb_close(rocksdb_t *);
rocksdb_readoptions_t *rocksdb_readoptions_create(void);
void rocksdb_readoptions_destroy(rocksdb_readoptions_t *);
rocksdb_writeoptions_t *rocksdb_writeoptions_create(void);
void rocksdb_writeoptions_destroy(rocksdb_writeoptions_t *);
void rocksdb_writeoptions_disable_WAL(rocksdb_writeoptions_t *, int);
char *rocksdb_get(rocksdb_t *, const rocksdb_readoptions_t *, const char *,
                  size_t, size_t *, char **);
void rocksdb_put(rocksdb_t *, const rocksdb_writeoptions_t *, const char *,
                 size_t, const char *, size_t, char **);
void rocksdb_free(void *);
]]

local HOT_KEYS = 10000
local KLEN = 14                     -- "key-%010d", as bench_store
local VALUE = "1"                   -- the job ignores values
local RUNS = stats.runs("bench_state")
local BUDGET = 30.0                 -- seconds, for each raw loop

local tide_bin, base = arg[1], arg[2]
local n_hot = tonumber(arg[3] or 2000000)
local n_many = tonumber(arg[4] or 10000000)
local many_keys = tonumber(arg[5] or n_many)
if not tide_bin or not base or not n_hot or not n_many or not many_keys
   or n_hot < 1 or n_many < 1 or many_keys < 1 then
    io.stderr:write("usage: luajit bench/bench_state.lua TIDE_BIN DIR "
                    .. "[HOT [MANY [MANY_KEYS]]]\n")
    os.exit(2)
end
local job_file = bench_dir .. "/jobs/incr.lua"
local JOB, STORE = "bench-incr", "counts"
local IN = JOB .. "-in"
local CHANGELOG = JOB .. "-" .. STORE .. "-changelog"

local rdb = ffi.load("rocksdb")

local util = require("util")
local now, sh, quote = util.now, util.sh, util.quote

local dir


local function cleanup()
    if dir then
        sh("rm -rf " .. quote(dir))
    end
end

local function die(fmt, ...)
    io.stderr:write("bench_state: ", str_format(fmt, ...), "\n")
    cleanup()
    os.exit(1)
end

local tmpl = ffi.new("char[?]", #base + 32)
ffi_copy(tmpl, base .. "/tide-bench-state-XXXXXX")
if ffi.C.mkdtemp(tmpl) == nil then
    die("cannot make a folder in %s", base)
end
dir = ffi_string(tmpl)

local function read_file(path)
    local f = io.open(path, "rb")
    if not f then
        return ""
    end
    local s = f:read("*a")
    f:close()
    return s
end

-- ---- the messages ----------------------------------------------------------

-- Writes n messages to the input stream (1 partition, fsync none: this is
-- set-up), the key of message i being "key-%010d" of key_of(i); returns
-- the keys, KLEN bytes each, in one malloc'd buffer (free it).
local function make_input(n, key_of)
    sh("rm -rf " .. quote(dir .. "/streams/" .. IN))
    local log, err = tlog.open(dir, IN, { mode = "create", partitions = 1,
                                          fsync = "none" })
    if not log then
        die("%s", err)
    end
    local keys = ffi_cast("char *", ffi.C.malloc(n * KLEN))
    if keys == nil then
        die("out of memory")
    end
    for i = 0, n - 1 do
        local k = str_format("key-%010d", key_of(i))
        local ok, perr = log:push(k, VALUE, 0)
        if not ok then
            die("%s", perr)
        end
        ffi_copy(keys + i * KLEN, k, KLEN)
    end
    local ok, ferr = log:flush()
    if not ok then
        die("%s", ferr)
    end
    log:close()
    return keys
end

-- bench_store's xorshift64*, so that many keys picks the same keys.
local function random_keys(nkeys)
    local st = ffi.new("uint64_t", 88172645463325252ULL)
    local mod = ffi.new("uint64_t", nkeys)
    return function()
        st = bit.bxor(st, bit.rshift(st, 12))
        st = bit.bxor(st, bit.lshift(st, 25))
        st = bit.bxor(st, bit.rshift(st, 27))
        return tonumber((st * 2685821657736338717ULL) % mod)
    end
end

-- ---- the raw baseline --------------------------------------------------------

local errp = ffi.new("char *[1]")
local vlenp = ffi.new("size_t[1]")

local function check(what)
    if errp[0] ~= nil then
        die("%s: %s", what, ffi_string(errp[0]))
    end
end

-- rocksdb_get + parse + 1 + format + rocksdb_put over keys[0..n-1];
-- returns ops done and seconds (it stops after BUDGET seconds).
local function raw_loop(keys, n)
    local path = dir .. "/raw-db"
    sh("rm -rf " .. quote(path))
    local o = rdb.rocksdb_options_create()
    rdb.rocksdb_options_set_create_if_missing(o, 1)
    rdb.rocksdb_options_increase_parallelism(o, 2)
    rdb.rocksdb_options_set_write_buffer_size(o, 64 * 1024 * 1024)
    rdb.rocksdb_options_set_compression(o, 4)          -- rocksdb_lz4
    rdb.rocksdb_options_set_memtable_prefix_bloom_size_ratio(o, 0.02)
    rdb.rocksdb_options_set_memtable_whole_key_filtering(o, 1)
    local t = rdb.rocksdb_block_based_options_create()
    local cache = rdb.rocksdb_cache_create_lru(512 * 1024 * 1024)
    rdb.rocksdb_block_based_options_set_block_cache(t, cache)
    rdb.rocksdb_block_based_options_set_filter_policy(
        t, rdb.rocksdb_filterpolicy_create_bloom_full(10))
    rdb.rocksdb_options_set_block_based_table_factory(o, t)
    errp[0] = nil
    local db = rdb.rocksdb_open(o, path, errp)
    check("rocksdb_open")
    local ro = rdb.rocksdb_readoptions_create()
    local wo = rdb.rocksdb_writeoptions_create()
    rdb.rocksdb_writeoptions_disable_WAL(wo, 1)
    local buf = ffi.new("char[32]")
    local get, put, free = rdb.rocksdb_get, rdb.rocksdb_put, rdb.rocksdb_free
    local t0 = now()
    local done = n
    for i = 0, n - 1 do
        local k = keys + i * KLEN
        local v = get(db, ro, k, KLEN, vlenp, errp)
        if errp[0] ~= nil then
            check("rocksdb_get")
        end
        local c = 0
        if v ~= nil then
            for j = 0, tonumber(vlenp[0]) - 1 do
                c = c * 10 + (v[j] - 48)
            end
            free(v)
        end
        c = c + 1
        local p = 32
        repeat
            p = p - 1
            buf[p] = 48 + c % 10
            c = (c - c % 10) / 10
        until c == 0
        put(db, wo, k, KLEN, buf + p, 32 - p, errp)
        if errp[0] ~= nil then
            check("rocksdb_put")
        end
        if i % 100000 == 99999 and now() - t0 > BUDGET then
            done = i + 1
            break
        end
    end
    local secs = now() - t0
    rdb.rocksdb_close(db)
    rdb.rocksdb_readoptions_destroy(ro)
    rdb.rocksdb_writeoptions_destroy(wo)
    rdb.rocksdb_block_based_options_destroy(t)
    rdb.rocksdb_options_destroy(o)
    rdb.rocksdb_cache_destroy(cache)
    sh("rm -rf " .. quote(path))
    return done, secs
end

-- ---- tide run ----------------------------------------------------------------

-- Runs the job with --drain; `fresh` first deletes its checkpoint, stores
-- and changelog. Returns the wall time and the run's stderr.
local function tide_run(fresh)
    if fresh then
        sh(str_format("rm -rf %s %s", quote(dir .. "/jobs/" .. JOB),
                      quote(dir .. "/streams/" .. CHANGELOG)))
    end
    local logf = dir .. "/run.log"
    local cmd = str_format("%s run %s --drain --data-dir %s 2>%s",
                           quote(tide_bin), quote(job_file), quote(dir),
                           quote(logf))
    local t0 = now()
    local ok = sh(cmd)
    local t = now() - t0
    local text = read_file(logf)
    if not ok then
        die("%s failed:\n%s", cmd, text)
    end
    return t, text
end

-- The count of the last progress line (the final one).
local function processed(text)
    local last
    for c in text:gmatch("(%d+) messages processed") do
        last = c
    end
    return tonumber(last)
end

-- Sum of the counters in the store (tide state dump), checked against n.
-- Returns the number of keys and the bytes of their keys and values.
local function check_sum(n)
    local f = assert(io.popen(str_format(
        "%s state dump %s %s --data-dir %s 2>&1", quote(tide_bin),
        quote(job_file), STORE, quote(dir))))
    local sum, keys, bytes = 0, 0, 0
    for line in f:lines() do
        local k, v = line:match("^(.-)\t(%d+)$")
        local c = tonumber(v)
        if not c then
            f:close()
            die("tide state dump: %s", line)
        end
        sum, keys, bytes = sum + c, keys + 1, bytes + #k + #v
    end
    f:close()
    if sum ~= n then
        die("the store counts %d messages over %d keys, %d expected", sum,
            keys, n)
    end
    return keys, bytes
end

-- The segment files (*.log) of the changelog's partition 0.
local function segment_files()
    local pdir = dir .. "/streams/" .. CHANGELOG .. "/0"
    local files = {}
    local ls = assert(io.popen("ls " .. quote(pdir)))
    for name in ls:lines() do
        if name:match("%.log$") then
            files[#files + 1] = pdir .. "/" .. name
        end
    end
    ls:close()
    return files
end

-- The bytes of the changelog's segment files.
local function changelog_bytes()
    local total = 0
    for _, path in ipairs(segment_files()) do
        local f = assert(io.open(path, "rb"))
        total = total + f:seek("end")
        f:close()
    end
    return total
end

-- Reads every segment file of the changelog with 1 MiB reads; returns
-- bytes and seconds.
local function raw_read()
    local files = segment_files()
    local t0 = now()
    local total = 0
    for _, path in ipairs(files) do
        local f = assert(io.open(path, "rb"))
        while true do
            local chunk = f:read(1048576)
            if not chunk then
                break
            end
            total = total + #chunk
        end
        f:close()
    end
    return total, now() - t0
end

-- ---- the runs ----------------------------------------------------------------

-- Fixed cost: the job over an empty input.
make_input(0, nil)
local te = {}
for round = 1, RUNS do
    te[round] = tide_run(true) * 1000
end

-- Runs one round of a part: the tide run and the raw loop over the same
-- keys, the one going first alternating. Returns the tide run's time and
-- stderr, the raw loop's ops and seconds.
local function round_of(round, keys, n, n_raw, what)
    local ops, secs
    if round % 2 == 0 then
        ops, secs = raw_loop(keys, n_raw)
    end
    local t, text = tide_run(true)
    if processed(text) ~= n then
        die("%s: %s messages processed, %d expected", what,
            tostring(processed(text)), n)
    end
    if round % 2 == 1 then
        ops, secs = raw_loop(keys, n_raw)
    end
    collectgarbage()
    return t, text, ops, secs
end

-- Hot keys.
local keys = make_input(n_hot, function(i) return i % HOT_KEYS end)
local n_raw_hot = math.max(1, math.floor(n_hot / 5))
local hot = { tide = {}, raw = {}, ratio = {} }
local raw_stopped = false
for round = 1, RUNS do
    local t, _, ops, secs = round_of(round, keys, n_hot, n_raw_hot,
                                     "hot keys")
    hot.tide[round], hot.raw[round] = n_hot / t / 1e6, ops / secs / 1e6
    hot.ratio[round] = hot.tide[round] / hot.raw[round]
    raw_stopped = raw_stopped or ops < n_raw_hot
end
local hot_distinct = check_sum(n_hot)
ffi.C.free(keys)

-- Many keys, and the restore of its state: no local store, the same
-- checkpoint, no new input. The raw loop's deleted RocksDB leaves dirty
-- pages behind; sync first, so that their write-back does not land
-- inside the restore's time.
keys = make_input(n_many, random_keys(many_keys))
local many = { tide = {}, raw = {}, ratio = {}, ops = {} }
local rest = { mbs = {}, raw = {}, ratio = {}, recs = {}, mb = {},
               recs_s = {}, run = {}, cl_mb = {}, written = {} }
local many_distinct, state_bytes
for round = 1, RUNS do
    local t, _, ops, secs = round_of(round, keys, n_many, n_many,
                                     "many keys")
    many.tide[round], many.raw[round] = n_many / t / 1e6, ops / secs / 1e6
    many.ratio[round] = many.tide[round] / many.raw[round]
    many.ops[round] = ops
    raw_stopped = raw_stopped or ops < n_many

    sh("rm -rf " .. quote(dir .. "/jobs/" .. JOB .. "/stores"))
    sh("sync")
    local tr, text_r = tide_run(false)
    -- Changelog offsets start at 0: the checkpoint's offset is the
    -- number of records the many-keys run wrote to it.
    local written, recs, mb, mbs = text_r:match(
        "rebuilt from the changelog to checkpoint offset (%d+), replayed "
        .. "(%d+) changelog records %(([%d.]+) MB, (%d+) MB/s%)")
    recs, mb, mbs = tonumber(recs), tonumber(mb), tonumber(mbs)
    if not recs then
        die("no restore line in the restore run's log:\n%s", text_r)
    end
    local raw_b, raw_t = raw_read()
    rest.mbs[round], rest.raw[round] = mbs, raw_b / raw_t / 1e6
    rest.ratio[round] = mbs / rest.raw[round]
    rest.recs[round], rest.mb[round] = recs, mb
    rest.written[round] = tonumber(written)
    rest.recs_s[round] = recs / (mb / mbs) / 1e6
    rest.run[round], rest.cl_mb[round] = tr, changelog_bytes() / 1e6
    if round == 1 then
        -- The restored state is checked once: it is the same every round.
        many_distinct, state_bytes = check_sum(n_many)
    end
end
ffi.C.free(keys)
cleanup()

local M = "M msg/s"
print(str_format("state: `tide run --drain` of bench/jobs/incr.lua (incr per "
                 .. "message, string serde, RocksDB + write cache + "
                 .. "changelog), 1 partition, 14-byte keys; runs: %d, the "
                 .. "sides alternating; ratio = tide/baseline, run by run",
                 RUNS))
print(str_format("  tide: whole-process wall time; the same run on an empty "
                 .. "input takes %s", stats.fmt(te, 0, "ms")))
print("  baseline: raw rocksdb_get + parse/+1/format + rocksdb_put (WAL off) "
      .. "per message, same keys and order, from LuaJIT's FFI")
print(str_format("%-10s %d msgs over %d keys: tide %s   raw get+put (%d ops) "
                 .. "%s   ratio %s", "hot keys", n_hot, hot_distinct,
                 stats.fmt(hot.tide, 2, M), n_raw_hot,
                 stats.fmt(hot.raw, 3, "M ops/s"),
                 stats.fmt_ratio(hot.ratio, 1)))
print(str_format("%-10s %d msgs over %d keys: tide %s   raw get+put (%.0f "
                 .. "ops, median) %s   ratio %s", "many keys", n_many,
                 many_distinct, stats.fmt(many.tide, 3, M),
                 stats.median(many.ops), stats.fmt(many.raw, 3, "M ops/s"),
                 stats.fmt_ratio(many.ratio, 2)))
if raw_stopped then
    print(str_format("%-10s a raw loop stopped at its %.0f s budget: its rate "
                     .. "is over the ops it did", "", BUDGET))
end
print(str_format("%-10s tide %s   raw read() of the segments %s   ratio %s",
                 "restore", stats.fmt(rest.mbs, 0, "MB/s"),
                 stats.fmt(rest.raw, 0, "MB/s"),
                 stats.fmt_ratio(rest.ratio, 2)))
local rec_med = stats.median(rest.recs)
print(str_format("%-10s replayed %s, %s, of the %.0f records written, for a "
                 .. "state of %d keys (%.1f MB of keys and values): %.2f "
                 .. "changelog records a key", "",
                 stats.fmt(rest.recs, 0, "changelog records"),
                 stats.fmt(rest.mb, 1, "MB"), stats.median(rest.written),
                 many_distinct, state_bytes / 1e6, rec_med / many_distinct))
print(str_format("%-10s %s (from the log line); whole restore run %s; "
                 .. "changelog on disk %s", "",
                 stats.fmt(rest.recs_s, 2, "M records/s"),
                 stats.fmt(rest.run, 1, "s"),
                 stats.fmt(rest.cl_mb, 1, "MB")))
