#!/bin/sh
# Runs every benchmark against the plain build ('make bench' builds it
# first). Each prints its figures beside a baseline from the same run.
# Scratch files go under build/bench-tmp and are removed by each bench.
set -e
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
TMP=$BUILD/bench-tmp
mkdir -p "$TMP"

"$BUILD/bench_log" "$TMP"

# tide run --drain on a pass-through and a JSON job, pinned to one core
# (with taskset when there is one), beside raw LuaJIT loops.
PIN=""
command -v taskset >/dev/null 2>&1 && PIN="taskset -c 0"
TIDE_LIB="$BUILD/libtide.so" LUA_PATH="./bindings/?.lua;./lua/?.lua;;" \
    $PIN luajit bench/bench_job.lua "$BUILD/tide" "$TMP"

# Store level (C): hot keys, many keys and restore through tide_store_*
# beside raw RocksDB get+put and raw read(). Arguments: DIR HOT_OPS
# MANY_KEYS RESTORE_RECS, smaller than its defaults to keep 'make bench'
# within a few minutes.
"$BUILD/bench_store" "$TMP" 2000000 1000000 1000000

# tide run --drain of a keyed incr job (hot keys, many keys, restore from
# the changelog) beside raw RocksDB get+put over the same keys and a raw
# read of the changelog. Not pinned: RocksDB's background threads share
# the cores on both sides. Arguments: HOT msgs, MANY msgs (as many keys
# picked at random): 10 M, the size of issue 4's target, about 40 s of
# the job and 2 minutes of the whole bench on the machine kind.
TIDE_LIB="$BUILD/libtide.so" LUA_PATH="./bindings/?.lua;./lua/?.lua;;" \
    luajit bench/bench_state.lua "$BUILD/tide" "$TMP" 2000000 10000000

# Hot reload: pause around a swap and save-to-live time, 10 saves.
TIDE_LIB="$BUILD/libtide.so" LUA_PATH="./bindings/?.lua;./lua/?.lua;;" \
    luajit bench/bench_reload.lua "$(pwd)/$BUILD/tide" "$(pwd)/$TMP" 10

rmdir "$TMP" 2>/dev/null || true
