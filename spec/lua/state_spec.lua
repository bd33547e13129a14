-- tide.state driven in-process on a real data dir: the restore paths around
-- a job's first checkpoint, where a run that was killed between two commit
-- steps leaves snapshots, changelog records or no 'stable' file behind.
-- Each test plays the runs of the crash one step at a time, so the order
-- of the steps is exact rather than left to a random SIGKILL.
local tlog = require("tide.log")
local jobmod = require("tide.job")
local state = require("tide.state")
local helper = require("helper")

local KEYS = 200
local PAD = ("v"):rep(40)

local function key(i)
    return string.format("k%04d-%s", i, PAD)
end

local function make_job()
    local job = assert(jobmod.validate({
        name = "st",
        inputs = { "in" },
        stores = { counts = {} },
        process = function() end,
    }, "state_spec"))
    return job
end

-- Runs "one life" of the job: opens its state at checkpoint `ckpt`, lets
-- `body(stores)` write, then performs the commit steps named in `steps`
-- (drain, flush, snapshot) and closes everything, as a kill right after
-- the last named step would leave it (a kill loses nothing more: the log
-- and RocksDB are closed without any further commit step).
local function life(dir, ckpt, body, steps)
    local env = { data_dir = dir }
    local logs = {}
    local st = assert(state.open(make_job(), env, 1, ckpt or {},
                                 function(_, m) logs[#logs + 1] = m end))
    local stores = st:stores(0)
    if body then
        body(stores.counts)
    end
    local offs
    steps = steps or {}
    if steps.drain then
        assert(st:drain())
    end
    if steps.flush then
        for _, cl in ipairs(st:changelogs()) do
            assert(cl:flush())
        end
    end
    if steps.snapshot then
        offs = assert(st:snapshot())
    end
    st:close()
    for _, cl in ipairs(st:changelogs()) do
        cl:close()
    end
    return offs, logs
end

local function incr_all(s, n)
    for i = 1, KEYS do
        s:incr(key(i), n)
        state.apply(s)
    end
end

-- Appends filler records under one key so that every record written so
-- far lies in a closed segment, then applies compaction, as the cleaner
-- of a later run would when its segment rolls.
local function roll_and_clean(dir)
    local cl = assert(tlog.open(dir, "st-counts-changelog"))
    for i = 1, 200 do
        assert(cl:push("filler", ("f"):rep(60) .. i, 0))
    end
    assert(cl:flush())
    assert(cl:clean(0))
    local start, end_ = cl:range(0)
    cl:close()
    return start, end_
end

local function make_changelog(dir)
    local cl = assert(tlog.open(dir, "st-counts-changelog", {
        mode = "create", partitions = 1, compact = true,
        segment_bytes = 4096 }))
    cl:close()
end

describe("tide.state restore around the first checkpoint", function()
    local dir

    before_each(function()
        dir = helper.tmpdir(true)
        make_changelog(dir)
    end)
    after_each(function() helper.rmrf(dir) end)

    it("starts empty without a checkpoint, even when a killed run's "
       .. "snapshot matches the changelog's first offset", function()
        -- Run A: counts every key once, drains, flushes, snapshots, and
        -- is killed before checkpoint.json.
        local offs = life(dir, nil, function(s) incr_all(s, 1) end,
                          { drain = true, flush = true, snapshot = true })
        local a_snap = offs[0].counts
        assert.equals(KEYS, a_snap)
        -- Run B: no checkpoint, so it rolls A's writes back (tombstones)
        -- and is killed after making them durable.
        life(dir, nil, nil, { drain = true, flush = true })
        -- A cleaner drops A's records, superseded by B's tombstones.
        local start = roll_and_clean(dir)
        -- Run C, still without a checkpoint, must start empty: it will
        -- reprocess every input from offset 0.
        local seen = {}
        life(dir, nil, function(s)
            for i = 1, KEYS do
                seen[#seen + 1] = s:get(key(i))
            end
        end)
        assert.equals(0, #seen, "keys restored from a run that never "
                      .. "committed (the changelog starts at " .. start
                      .. ", A's snapshot is at " .. a_snap .. ")")
    end)

    it("keeps committed changelog records when a run was killed before "
       .. "its 'stable' writes", function()
        -- Run A: counts every key once and commits (checkpoint written),
        -- but is killed before State:committed() sets the stable offset.
        local offs = life(dir, nil, function(s) incr_all(s, 1) end,
                          { drain = true, flush = true, snapshot = true })
        local ckpt = { [0] = { inputs = { ["in"] = KEYS },
                               changelogs = { counts = offs[0].counts } } }
        -- Run B resumes from that checkpoint, counts every key again and
        -- makes its changelog durable, then is killed before its commit.
        life(dir, ckpt, function(s) incr_all(s, 1) end,
             { drain = true, flush = true })
        -- A cleaner runs; then the local snapshots are lost (a new
        -- machine): run C rebuilds from the changelog alone.
        roll_and_clean(dir)
        helper.rmrf(dir .. "/jobs/st/stores")
        local got = {}
        life(dir, ckpt, function(s)
            for i = 1, KEYS do
                got[i] = s:get(key(i))
            end
        end)
        for i = 1, KEYS do
            assert.equals("1", got[i], "key " .. i)
        end
    end)

    it("does not compact past the checkpoint while a job has the "
       .. "changelog open", function()
        local offs = life(dir, nil, function(s) incr_all(s, 1) end,
                          { drain = true, flush = true, snapshot = true })
        local ckpt = { [0] = { inputs = { ["in"] = KEYS },
                               changelogs = { counts = offs[0].counts } } }
        life(dir, ckpt, nil, {})
        local f = assert(io.open(dir .. "/streams/st-counts-changelog/0/"
                                 .. "stable", "rb"))
        assert.equals(tostring(offs[0].counts), f:read("*l"))
        f:close()
    end)

    it("creates changelogs with 16 MiB segments, so that compaction keeps "
       .. "up with them", function()
        helper.rmrf(dir .. "/streams")
        life(dir, nil, function(s) incr_all(s, 1) end)
        local conf = helper.read_file(dir .. "/streams/st-counts-changelog/"
                                      .. "stream.conf")
        assert.matches("\nsegment_bytes=16777216\n", conf)
        assert.matches("\ncompact=1\n", conf)
    end)
end)

-- A standby copy (docs/kafka.md "Standby replicas") in a second data dir
-- that shares the owner's changelog (its streams/ is a link to the
-- owner's), as a second machine shares a Kafka changelog topic.
describe("tide.state standby copies", function()
    local dir, other

    before_each(function()
        dir = helper.tmpdir(true)
        other = helper.tmpdir(true)
        make_changelog(dir)
        assert(os.execute(string.format("ln -s '%s/streams' '%s/streams'",
                                        dir, other)) == 0)
    end)
    after_each(function()
        helper.rmrf(dir)
        helper.rmrf(other)
    end)

    -- The owner's commit: drain, flush, snapshot, committed. Returns the
    -- task's changelog offsets.
    local function commit(st)
        assert(st:drain())
        for _, cl in ipairs(st:changelogs()) do
            assert(cl:flush())
        end
        local offs = assert(st:snapshot())
        st:committed(offs)
        return offs[0]
    end

    local function close(st)
        st:close()
        for _, cl in ipairs(st:changelogs()) do
            cl:close()
        end
    end

    it("follows the owner's checkpoints in pieces, and a takeover replays "
       .. "only what came after the last one", function()
        local owner = assert(state.open(make_job(), { data_dir = dir }, 1,
                                        {}, function() end))
        incr_all(owner:stores(0).counts, 1)
        local c1 = commit(owner)
        assert.equals(KEYS, c1.counts)

        local logs = {}
        local sb = assert(state.open(make_job(), { data_dir = other }, 1, {},
                                     function(_, m) logs[#logs + 1] = m end,
                                     false, {}))
        assert(sb:add_standby(0, { changelogs = c1 }))
        assert.same({ counts = 0 }, sb:standby_offsets(0))
        -- At most 60 records a step: four steps to the checkpoint.
        local steps, total, caught = 0, 0, false
        while not caught do
            local n
            n, caught = assert(sb:advance_standby(0, c1, 60))
            total, steps = total + n, steps + 1
        end
        assert.equals(KEYS, total)
        assert.equals(4, steps)
        assert.same({ counts = KEYS }, sb:standby_offsets(0))

        -- The owner goes on: a commit, then writes past it that no
        -- checkpoint covers. The copy takes the commit, not the rest.
        incr_all(owner:stores(0).counts, 2)
        local c2 = commit(owner)
        incr_all(owner:stores(0).counts, 100)
        assert(owner:drain())
        for _, cl in ipairs(owner:changelogs()) do
            assert(cl:flush())
        end
        local n = assert(sb:advance_standby(0, c2))
        assert.equals(KEYS, n)
        assert.equals(0, (assert(sb:advance_standby(0, c2))))
        close(owner)
        sb:remove_standby(0)

        -- The owner dies; the standby's data dir takes the task over at
        -- checkpoint c2: it starts from its own snapshot, nothing left.
        local t = assert(sb:add_task(0, { changelogs = c2 }))
        assert.truthy(t)
        local s = sb:stores(0).counts
        for i = 1, KEYS do
            assert.equals("3", s:get(key(i)), "key " .. i)
        end
        local line = logs[#logs]
        assert.matches("from local snapshot at offset " .. c2.counts, line,
                       1, true)
        assert.matches("replayed 0 changelog records", line, 1, true)
        close(sb)
    end)

    it("refuses to go back: a checkpoint below the copy means offsets "
       .. "were reset", function()
        local owner = assert(state.open(make_job(), { data_dir = dir }, 1,
                                        {}, function() end))
        incr_all(owner:stores(0).counts, 1)
        local c1 = commit(owner)
        close(owner)
        local sb = assert(state.open(make_job(), { data_dir = other }, 1, {},
                                     function() end, false, {}))
        assert(sb:add_standby(0, { changelogs = c1 }))
        assert(sb:advance_standby(0, c1))
        local ok, err = sb:advance_standby(0, { counts = 10 })
        assert.is_nil(ok)
        assert.matches("changelog offset 10 is below the standby's " .. KEYS,
                       err, 1, true)
        -- Opened again at that checkpoint, it drops its later snapshot.
        sb:remove_standby(0)
        assert(sb:add_standby(0, { changelogs = { counts = 10 } }))
        assert.same({ counts = 0 }, sb:standby_offsets(0))
        close(sb)
    end)
end)
