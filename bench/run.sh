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

rmdir "$TMP" 2>/dev/null || true
