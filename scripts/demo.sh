#!/bin/sh
# make demo: page views into the embedded log, the bot filter job over
# them, then the page-view counter (state in RocksDB, changelogged) over
# the cleaned stream, each with --drain. A fresh data dir under build/.
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
$TIDE run jobs/bot_filter.lua --drain 2>"$TIDE_DATA_DIR/bot.log" \
    || { cat "$TIDE_DATA_DIR/bot.log"; exit 1; }
grep -v "warn dead-lettered" "$TIDE_DATA_DIR/bot.log" | sed -E 's/^[^ ]* /      /; s/( [a-z_]+=[^ ]+)+$//'

end=$(date +%s%3N)
echo "      took $((end - start)) ms for $N events"
echo
echo "== 3. what came out"
count() { $TIDE consume "$1" -e -f 'x\n' | wc -l; }
in=$(count pageviews); desk=$(count pageviews-desktop)
mob=$(count pageviews-mobile); dead=$(count bot-filter-dead-letters)
printf '   %8d events in (pageviews)\n' "$in"
printf '   %8d bots dropped (user agents of crawlers)\n' \
    "$((in - desk - mob - dead))"
printf '   %8d desktop views  -> pageviews-desktop\n' "$desk"
printf '   %8d mobile views   -> pageviews-mobile\n' "$mob"
printf '   %8d broken lines   -> bot-filter-dead-letters (not JSON)\n' "$dead"
echo
echo "   first mobile event:"
$TIDE consume pageviews-mobile -p 0 -c 1 -f '   %k %s\n'
echo "   a dead letter, with the error in its headers:"
$TIDE consume bot-filter-dead-letters -e -c 1 -f '   %k %s\n   %h\n'
echo
echo "== 4. tide run jobs/pageview_counts.lua --drain -c inputs.1=pageviews-desktop"
echo "      (counts desktop views per URL in a RocksDB store, changelogged;"
echo "       it re-keys views by URL through its own stream pageview-urls)"
start=$(date +%s%3N)
$TIDE run jobs/pageview_counts.lua --drain -c inputs.1=pageviews-desktop \
    2>"$TIDE_DATA_DIR/count.log" || { cat "$TIDE_DATA_DIR/count.log"; exit 1; }
grep -E "processed|stopped" "$TIDE_DATA_DIR/count.log" | sed -E 's/^[^ ]* /      /; s/( [a-z_]+=[^ ]+)+$//'
end=$(date +%s%3N)
echo "      took $((end - start)) ms"
echo
echo "   top 5 desktop URLs, from tide state dump jobs/pageview_counts.lua counts:"
$TIDE state dump jobs/pageview_counts.lua counts -c inputs.1=pageviews-desktop \
    >"$TIDE_DATA_DIR/dump.txt" || exit 1
sort -t "$TAB" -k2 -nr "$TIDE_DATA_DIR/dump.txt" | head -5 \
    | awk -F "$TAB" '{ printf "   %8d  %s\n", $2, $1 }'
echo
echo "== 5. the store survives losing its local copy: delete it and rerun"
rm -rf "$TIDE_DATA_DIR/jobs/pageview-counts/stores"
$TIDE run jobs/pageview_counts.lua --drain -c inputs.1=pageviews-desktop \
    2>"$TIDE_DATA_DIR/count2.log" || { cat "$TIDE_DATA_DIR/count2.log"; exit 1; }
grep "task 0:" "$TIDE_DATA_DIR/count2.log" | sed -E 's/^[^ ]* /      /; s/( [a-z_]+=[^ ]+)+$//'
echo "   same top URL after the rebuild:"
$TIDE state dump jobs/pageview_counts.lua counts -c inputs.1=pageviews-desktop \
    >"$TIDE_DATA_DIR/dump.txt" || exit 1
sort -t "$TAB" -k2 -nr "$TIDE_DATA_DIR/dump.txt" | head -1 \
    | awk -F "$TAB" '{ printf "   %8d  %s\n", $2, $1 }'
echo
echo "Data is in $TIDE_DATA_DIR (TIDE_DATA_DIR=$TIDE_DATA_DIR $TIDE streams list)."
