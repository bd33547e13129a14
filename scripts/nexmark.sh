#!/bin/sh
# Nexmark on tide (docs/nexmark.md).
#   scripts/nexmark.sh check   generate, produce, run every query with
#                              --drain --final, compare with the oracle
#   scripts/nexmark.sh crash   the same, each query SIGKILLed
#                              $NEXMARK_KILLS times (default 10) at random
#                              moments and restarted, then --drain --final
# One line per query ("q7: 26 windows, match"); exit 1 on any mismatch.
# Environment: NEXMARK_EVENTS (20000), NEXMARK_SEED (42), NEXMARK_RATE
# (events per second of event time, 200), NEXMARK_DISORDER_MS (2000: the
# most an event is moved back), NEXMARK_DISORDER_SHARE (0.1),
# NEXMARK_PARTITIONS (4), NEXMARK_QUERIES ("q1 q2 q3 q5 q7 q8 q11"),
# NEXMARK_KILLS (10), NEXMARK_KILL_MAX_MS (longest wait before a kill,
# 1500), NEXMARK_WORKERS (2), NEXMARK_JOBS (the folder of the query
# files, jobs/nexmark), NEXMARK_OOO_MS (the jobs' max_out_of_orderness;
# default the disorder bound: less makes records late), NEXMARK_DIR (work dir; default a fresh one
# under build/, removed unless NEXMARK_KEEP=1), TIDE (build/tide).
set -eu
cd "$(dirname "$0")/.."
mode=${1:-check}
case $mode in check|crash) ;; *) echo "usage: $0 check|crash" >&2; exit 2;; esac
TIDE=${TIDE:-$PWD/build/tide}
EVENTS=${NEXMARK_EVENTS:-20000}
SEED=${NEXMARK_SEED:-42}
RATE=${NEXMARK_RATE:-200}
BOUND=${NEXMARK_DISORDER_MS:-2000}
SHARE=${NEXMARK_DISORDER_SHARE:-0.1}
PARTS=${NEXMARK_PARTITIONS:-4}
QUERIES=${NEXMARK_QUERIES:-q1 q2 q3 q5 q7 q8 q11}
KILLS=${NEXMARK_KILLS:-10}
KILL_MAX_MS=${NEXMARK_KILL_MAX_MS:-1500}
WORKERS=${NEXMARK_WORKERS:-2}
JOBS=${NEXMARK_JOBS:-jobs/nexmark}
if [ -n "${NEXMARK_DIR:-}" ]; then
    work=$NEXMARK_DIR; rm -rf "$work"; mkdir -p "$work"
else
    mkdir -p build; work=$(mktemp -d "$PWD/build/nexmark.XXXXXX")
fi
data=$work/data
started=""
cleanup() {
    # only what this script started, by pid
    for p in $started; do kill -9 "$p" 2>/dev/null || true; done
    [ "${NEXMARK_KEEP:-0}" = 1 ] || rm -rf "$work"
}
trap cleanup EXIT INT TERM
TAB=$(printf '\t')

luajit scripts/nexmark/gen.lua "$work" "$EVENTS" "$SEED" "$RATE" "$BOUND" \
    "$SHARE"
luajit scripts/nexmark/oracle.lua "$work"
# persons by id, auctions by seller, bids by bidder; bids-all: every bid
# in one partition, for the queries that aggregate over all of them
mkdir -p "$data"
"$TIDE" produce persons "$work/persons.tsv" -K "$TAB" --partitions "$PARTS" \
    --data-dir "$data"
"$TIDE" produce auctions "$work/auctions.tsv" -K "$TAB" --partitions "$PARTS" \
    --data-dir "$data"
"$TIDE" produce bids "$work/bids.tsv" -K "$TAB" --partitions "$PARTS" \
    --data-dir "$data"
"$TIDE" produce bids-all "$work/bids.tsv" -K "$TAB" --partitions 1 \
    --data-dir "$data"

# Milliseconds to sleep before kill number $1: random in [50, KILL_MAX_MS].
rand_ms() {
    awk -v s="$SEED$1" -v m="$KILL_MAX_MS" \
        'BEGIN { srand(s); printf "%d", 50 + rand() * (m - 50) }'
}

status=0
for q in $QUERIES; do
    job=$JOBS/$q.lua
    log=$work/$q.log
    ooo="-c max_out_of_orderness=${NEXMARK_OOO_MS:-$BOUND}ms"
    [ "$q" = q1 ] || [ "$q" = q2 ] || [ "$q" = q3 ] && ooo=""
    cmp=exact
    if [ "$mode" = crash ]; then
        cmp=atleast
        k=1
        while [ "$k" -le "$KILLS" ]; do
            # shellcheck disable=SC2086
            # commits every 200 ms, so that kills land between checkpoints
            "$TIDE" run "$job" --workers "$WORKERS" $ooo \
                -c commit_interval=200ms --data-dir "$data" \
                >>"$log" 2>&1 &
            pid=$!
            started="$started $pid"
            ms=$(rand_ms "$q$k")
            sleep "$(awk -v m="$ms" 'BEGIN { printf "%.3f", m / 1000 }')"
            kill -9 "$pid" 2>/dev/null || true
            wait "$pid" 2>/dev/null || true
            k=$((k + 1))
        done
        # what the killed runs emitted (compared with the rest below)
        before=$("$TIDE" consume "nexmark-$q" -e -q -f 'x\n' \
                     --data-dir "$data" 2>/dev/null | wc -l) || before=0
    fi
    # shellcheck disable=SC2086
    if ! "$TIDE" run "$job" --drain --final $ooo --data-dir "$data" \
            >>"$log" 2>&1; then
        echo "$q: tide run failed:"; tail -20 "$log"; status=1; continue
    fi
    "$TIDE" consume "nexmark-$q" -e -q -f '%k\t%s\n' --data-dir "$data" \
        >"$work/$q.out"
    luajit scripts/nexmark/compare.lua "$q" "$work/expected/$q.txt" \
        "$work/$q.out" "$cmp" ${before:-} || status=1
done
exit $status
