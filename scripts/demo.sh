#!/bin/sh
# make demo: page views into the embedded log, the bot filter job over
# them with --drain, and a short summary. A fresh data dir under build/.
set -eu
cd "$(dirname "$0")/.."
TIDE=./build/tide
export TIDE_DATA_DIR=./build/demo-data
N=${DEMO_EVENTS:-200000}
TAB=$(printf '\t')

rm -rf "$TIDE_DATA_DIR"
echo "== 1. $N page-view events (Zipf URLs, 5,000 users, ~8% bots) and 3 broken"
echo "      lines -> tide produce pageviews --partitions 4 -K <TAB>  (key: user)"
{ luajit scripts/gen_pageviews.lua "$N"
  printf 'u0001\t{"user":"u0001","url":\n'
  printf 'u0002\tnot json at all\n'
  printf 'u0003\t{"user":"u0003"\n'
} | $TIDE produce pageviews --partitions 4 -K "$TAB"
$TIDE streams describe pageviews | tail -5
echo
echo "== 2. tide run jobs/bot_filter.lua --drain"
echo "      (drops bots, adds device and section, routes desktop/mobile,"
echo "       dead-letters what is not JSON)"
start=$(date +%s%3N)
$TIDE run jobs/bot_filter.lua --drain 2>&1 | grep -v "warn dead-lettered" || true
end=$(date +%s%3N)
echo "      took $((end - start)) ms for $N events"
echo
echo "== 3. what came out"
for s in pageviews-desktop pageviews-mobile bot-filter-dead-letters; do
    printf '   %-26s %8s records\n' "$s" "$($TIDE consume $s -e -f 'x\n' | wc -l)"
done
echo
echo "   first mobile event:"
$TIDE consume pageviews-mobile -p 0 -c 1 -f '   %k %s\n'
echo "   a dead letter, with the error in its headers:"
$TIDE consume bot-filter-dead-letters -e -c 1 -f '   %k %s\n   %h\n'
echo
echo "   top sections on mobile:"
$TIDE consume pageviews-mobile -e -f '%s\n' | sed 's/.*"section":"\([^"]*\)".*/\1/' \
    | sort | uniq -c | sort -rn | head -3 | sed 's/^/   /'
echo
echo "Run it again and it resumes from its checkpoint (nothing left to do):"
$TIDE run jobs/bot_filter.lua --drain 2>&1 | grep processed || true
echo "Data is in $TIDE_DATA_DIR (TIDE_DATA_DIR=$TIDE_DATA_DIR $TIDE streams list)."
