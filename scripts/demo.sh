#!/bin/sh
# make demo: page views into the embedded log and back out, using only the
# tide CLI. Runs in a fresh data dir under build/.
set -eu
cd "$(dirname "$0")/.."
TIDE=./build/tide
export TIDE_DATA_DIR=./build/demo-data
N=${DEMO_EVENTS:-200000}

rm -rf "$TIDE_DATA_DIR"
echo "== generating $N page-view events (Zipf URLs, 5,000 users, ~8% bots)"
echo "== tide produce pageviews --partitions 4 -K <TAB>   (key = user id)"
start=$(date +%s%3N)
luajit scripts/gen_pageviews.lua "$N" | $TIDE produce pageviews --partitions 4 -K "$(printf '\t')"
end=$(date +%s%3N)
echo "   written durably in $((end - start)) ms (generation included)"
echo
$TIDE streams describe pageviews
echo
echo "== the first two events of partition 0:"
$TIDE consume pageviews -p 0 -c 2 -f '   offset %o key %k  %s\n'
echo
echo "== top 5 URLs, read back with tide consume -e:"
$TIDE consume pageviews -e -f '%s\n' | sed 's/.*"url":"\([^"]*\)".*/\1/' \
    | sort | uniq -c | sort -rn | head -5
echo
echo "Data is in $TIDE_DATA_DIR; try: TIDE_DATA_DIR=$TIDE_DATA_DIR $TIDE consume pageviews -o -3 -e"
