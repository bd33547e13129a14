#!/bin/sh
# Runs one libFuzzer target for a bounded time; 'make test' (CTest's
# fuzz/<target>) and 'make fuzz' call it. Exits non-zero when the target
# finds anything, and says where the input that did it was saved.
#
#   sh fuzz/run.sh FUZZER SEED_DIR OUT_DIR SECONDS [libFuzzer flags...]
#
# New inputs go to OUT_DIR/corpus, findings to OUT_DIR/crash-*: the seed
# corpus (fuzz/corpus/<target>, in git) is only read. Stderr is closed in
# the target (-close_fd_mask=2: the log prints a line per repaired tail);
# libFuzzer and the sanitizers still report on it.
set -eu
fuzzer=$1 seeds=$2 out=$3 seconds=$4
shift 4
# Scratch stream folders: in memory when /dev/shm is there (no disk
# syncs), else under OUT_DIR. Each run removes its own at exit.
if [ -z "${TIDE_TMP:-}" ]; then
    if [ -d /dev/shm ] && [ -w /dev/shm ]; then
        TIDE_TMP=/dev/shm
    else
        TIDE_TMP=$out/tmp
    fi
fi
export TIDE_TMP
mkdir -p "$out/corpus" "$TIDE_TMP"
name=$(basename "$fuzzer")
status=0
"$fuzzer" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
    -max_len=65536 -close_fd_mask=2 -print_final_stats=1 \
    -artifact_prefix="$out/" "$@" "$out/corpus" "$seeds" || status=$?
if [ "$status" -ne 0 ]; then
    echo "$name: FOUND A PROBLEM (exit $status). Inputs that show it:" >&2
    ls -1 "$out"/crash-* "$out"/leak-* "$out"/timeout-* "$out"/oom-* \
        2>/dev/null | sed 's/^/  /' >&2 || true
    echo "Reproduce with: $fuzzer <that file>" >&2
fi
exit "$status"
