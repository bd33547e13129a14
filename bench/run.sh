#!/bin/sh
# Runs every benchmark against the plain build ('make bench' builds it
# first). Each prints its figures beside a baseline from the same run, as
# the median of BENCH_RUNS runs (default 5) with their spread (min-max);
# ratios are taken run by run. docs/bench.md says what each part measures,
# how long it takes and why its sizes are what they are.
#
#   BUILD=dir        the build to measure (default build)
#   BENCH_RUNS=n     runs of every part (default 5; 5 or more to publish)
#   BENCH_QUICK=1    tiny sizes: checks that every bench runs, in about a
#                    minute; its figures mean nothing
#
# Scratch files go under $BUILD/bench-tmp and are removed by each bench.
set -e
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
BUILD=$(cd "$BUILD" && pwd)
TMP=$BUILD/bench-tmp
BENCH_RUNS=${BENCH_RUNS:-5}
export BENCH_RUNS
mkdir -p "$TMP"

# Sizes: records (log), messages (job), store hot ops / many keys /
# restore records, state hot messages / many messages / many keys, saves
# (reload), messages (workers), paced seconds per rate (latency), keys in
# the moved task's store (move). Each can be set from the environment, e.g. STATE_MANY=10000000
# for the many-keys size that docs/bench.md compares with.
if [ "${BENCH_QUICK:-0}" = 1 ]; then
    : "${LOG_RECS:=100000}" "${JOB_MSGS:=100000}"
    : "${STORE_HOT:=100000}" "${STORE_MANY:=100000}" "${STORE_RESTORE:=100000}"
    : "${STATE_HOT:=100000}" "${STATE_MANY:=600000}" "${STATE_KEYS:=200000}"
    : "${RELOADS:=5}"
    : "${WORKERS_MSGS:=100000}" "${LAT_SECS:=1}" "${MOVE_KEYS:=100000}"
else
    : "${LOG_RECS:=2000000}" "${JOB_MSGS:=2000000}"
    : "${STORE_HOT:=2000000}" "${STORE_MANY:=1000000}"
    : "${STORE_RESTORE:=1000000}"
    : "${STATE_HOT:=2000000}" "${STATE_MANY:=5000000}" "${STATE_KEYS:=1000000}"
    : "${RELOADS:=10}"
    : "${WORKERS_MSGS:=2000000}" "${LAT_SECS:=5}" "${MOVE_KEYS:=1000000}"
fi

export TIDE_LIB="$BUILD/libtide.so"
export LUA_PATH="./bindings/?.lua;./lua/?.lua;;"

START=$(date +%s)
part() {
    echo "-- $1: $(($(date +%s) - START)) s in; load average" \
         "$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo unknown)"
}

echo "tide bench: runs of every part: $BENCH_RUNS, on $(nproc 2>/dev/null ||
    echo '?') cores, $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "figures: median (median of N, min-max); ratio = tide/baseline, taken" \
     "run by run"

part log
"$BUILD/bench_log" "$TMP" "$LOG_RECS"

# tide run --drain on a pass-through and a JSON job, pinned to one core
# (with taskset when there is one), beside raw LuaJIT loops.
part job
PIN=""
command -v taskset >/dev/null 2>&1 && PIN="taskset -c 0"
$PIN luajit bench/bench_job.lua "$BUILD/tide" "$TMP" "$JOB_MSGS"

# Store level (C): hot keys, many keys and restore through tide_store_*
# beside raw RocksDB get+put and raw read(). Arguments: DIR HOT_OPS
# MANY_KEYS RESTORE_RECS, smaller than its defaults to keep 'make bench'
# within its time.
part store
"$BUILD/bench_store" "$TMP" "$STORE_HOT" "$STORE_MANY" "$STORE_RESTORE"

# tide run --drain of a keyed incr job (hot keys, many keys, restore from
# the changelog) beside raw RocksDB get+put over the same keys and a raw
# read of the changelog. Not pinned: RocksDB's background threads share
# the cores on both sides. Many keys: 5 M messages over 1 M keys picked
# at random, so that the changelog holds about 5 records a key and the
# restore shows whether compaction brought it down to the state.
part state
luajit bench/bench_state.lua "$BUILD/tide" "$TMP" "$STATE_HOT" \
    "$STATE_MANY" "$STATE_KEYS"

# Hot reload: pause around a swap and save-to-live time, one per save.
part reload
luajit bench/bench_reload.lua "$BUILD/tide" "$TMP" "$RELOADS"

# --workers 2 beside --workers 1 on pass-through, JSON and incr, 4
# partitions. Not pinned: the second worker is meant to take the second
# core.
part workers
luajit bench/bench_workers.lua "$BUILD/tide" "$TMP" "$WORKERS_MSGS"

# The same --workers 2 runs with --http on and /metrics scraped every
# second, beside them with it off.
part http
luajit bench/bench_workers.lua "$BUILD/tide" "$TMP" "$WORKERS_MSGS" http

# End to end: paced writer -> pass-through job -> follower, p50/p99/max at
# 10 K and 100 K msgs/s, beside the writer read directly.
part latency
"$BUILD/bench_latency" "$BUILD/tide" bench/jobs/lat.lua "$TMP" "$LAT_SECS"

# tide move of a task with MOVE_KEYS keys, beside a start that restores
# the same store from its changelog alone.
part move
luajit bench/bench_move.lua "$BUILD/tide" "$TMP" "$MOVE_KEYS"

# Kafka (bench/bench_kafka.lua, its own broker): pass-through and keyed
# count beside a raw librdkafka loop, kcat and Kafka Streams, at-least-once
# and exactly-once; restore of a changelog topic; the move of a SIGKILLed
# process's tasks. Sizes: messages, restore keys, messages before the
# rebalance runs. BENCH_QUICK runs it once: its rebalance waits out two
# session timeouts whatever the size.
part kafka
if [ "${BENCH_QUICK:-0}" = 1 ]; then
    : "${KAFKA_MSGS:=20000}" "${KAFKA_RESTORE_KEYS:=20000}"
    : "${KAFKA_RB_MSGS:=2000}" "${KAFKA_RUNS:=1}"
else
    : "${KAFKA_MSGS:=500000}" "${KAFKA_RESTORE_KEYS:=1000000}"
    : "${KAFKA_RB_MSGS:=20000}" "${KAFKA_RUNS:=$BENCH_RUNS}"
fi
BENCH_RUNS=$KAFKA_RUNS luajit bench/bench_kafka.lua "$BUILD/tide" \
    "$BUILD/bench_kafka" "$TMP" "$KAFKA_MSGS" "$KAFKA_RESTORE_KEYS" \
    "$KAFKA_RB_MSGS"

part done
rmdir "$TMP" 2>/dev/null || true
