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

rmdir "$TMP" 2>/dev/null || true
