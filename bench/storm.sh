#!/usr/bin/env bash
# Benchmark 5 (issue 5): a reconnect storm.
#
#   bench/storm.sh [CLIENTS] [MISSED]          (defaults 20000 and 50)
#
# 2 x CLIENTS connections in 1:1 pairs across two gateways, two consumers, on
# a private stack. After a short warm run, chat-loadgen drops one member of
# every pair (no close frame, like a phone losing its network), the other
# sends MISSED messages to each dropped member, and once all are
# acknowledged every dropped member reconnects at once and syncs
# ({"t":"sync","have":{conv: last seq}}). Reports the time from the
# reconnect order until every client has its `synced` and every missed
# message, errors and closes, and the gateways' peak resident memory.
# Before the order it waits until the consumers have stored every missed
# message (bench/settled.sh: their group's Kafka lag is 0), and prints how
# long that took: the syncs then read a store that has everything, as
# after any outage the store outlived, and the storm's time is the syncs'
# and not the consumers' (benchmark 4 measures those). BENCH_STORM_SETTLE=0
# orders the reconnect as soon as every missed message is acknowledged.
# Settings: BENCH_STORM_RATE (messages/s while the storm's side is away,
# default 2000), BENCH_STORM_TIMEOUT_S (1800), BENCH_BATCH_MAX (500),
# BENCH_STORM_SETTLE (1), BENCH_GATEWAY_MONGO_OPTIONS (URI options
# for the gateways' store client, say socketTimeoutMS=3600000).
# Results: $BENCH_DIR/results/storm.json and storm.txt.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

CLIENTS=${1:-${BENCH_STORM_CLIENTS:-20000}}
MISSED=${2:-${BENCH_STORM_MISSED:-50}}
RATE=${BENCH_STORM_RATE:-2000}
TIMEOUT=${BENCH_STORM_TIMEOUT_S:-1800}
BATCH_MAX=${BENCH_BATCH_MAX:-500}
CONNS=$((2 * CLIENTS))
OUT=$BENCH_RESULTS/storm
trap bench_finish EXIT
trap "exit 130" INT TERM

bench_build
bench_stack_up
bench_warm_broker
# Workers so that each process stays under the open-file limit.
WORKERS=$(((CLIENTS + 17999) / 18000))
bench_gateway gw1 "$BENCH_GW_PORT" --workers "$WORKERS"
bench_gateway gw2 "$((BENCH_GW_PORT + 1))" --workers "$WORKERS"
bench_consumer c1 --batch-max "$BATCH_MAX"
bench_consumer c2 --batch-max "$BATCH_MAX"
bench_consumers_settled c1 c2

{
  echo "== reconnect storm: $CLIENTS clients reconnect at once, $MISSED missed messages each"
  bench_machine
  echo "command: bench/storm.sh $CLIENTS $MISSED   ($CONNS connections in pairs over two gateways x $WORKERS workers, two consumers; missed messages sent at $RATE/s)"
} | tee "$OUT.txt"

# Peak gateway memory, sampled every second in the background.
peak_file=$BENCH_DIR/storm-peak
echo 0 >"$peak_file"
(
  peak=0
  while true; do
    r=$(($(bench_rss_kib "$BENCH_PID_gw1") + $(bench_rss_kib "$BENCH_PID_gw2")))
    if [ "$r" -gt "$peak" ]; then peak=$r; echo "$peak" >"$peak_file"; fi
    sleep 1
  done
) &
sampler=$!

settle=()
if [ "${BENCH_STORM_SETTLE:-1}" = 1 ]; then
  settle=(--storm-settle "'$BENCH_REPO/bench/settled.sh' '${BENCH_GROUP:-bench-consumers}' '${BENCH_TOPIC:-bench.events}' $TIMEOUT")
fi

rc=0
"$BENCH_BUILD/bench/chat-loadgen" "${settle[@]}" --gateways "127.0.0.1:$BENCH_GW_PORT,127.0.0.1:$((BENCH_GW_PORT + 1))" \
  --jwt-secret "$BENCH_SECRET" --conns "$CONNS" --rate "$RATE" --warmup 0 --duration 2 --drain 600 \
  --ack-timeout 600 --connect-timeout 300 --storm --storm-missed "$MISSED" \
  --storm-timeout "$TIMEOUT" --json "$OUT.json" >"$OUT.loadgen.txt" \
  2>"$BENCH_LOGS/storm-loadgen.err" || rc=$?
kill "$sampler" 2>/dev/null || true
peak=$(cat "$peak_file")
{
  python3 - "$OUT.json" "$rc" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1])); c = r["counts"]; t = r["times"]; l = r["latency"]
s, a = l["storm_to_synced"], l["storm_to_caught_up"]
if t.get("settle_s"):
    print(f"settle:  the consumers had stored every missed message {t['settle_s']:.1f} s after the last was acknowledged")
print(f"storm:   {c['storm_reconnected']} clients reconnected, {c['storm_acked']} missed messages acknowledged before; "
      f"all synced and caught up {t['storm_s']:.1f} s after the order"
      f"{' (UNFINISHED)' if c['storm_incomplete'] else ''}")
print(f"         order -> synced p50 {s['p50_us']/1e6:.2f} s, p99 {s['p99_us']/1e6:.2f} s, max {s['max_us']/1e6:.2f} s; "
      f"order -> every missed message in p50 {a['p50_us']/1e6:.2f} s, p99 {a['p99_us']/1e6:.2f} s, max {a['max_us']/1e6:.2f} s")
print(f"errors:  {c['error_frames']} error frames, {c['closes_unexpected']} unexpected closes, {c['conns_failed']} connections failed, "
      f"missing {c['missing']}, duplicated {c['duplicates']} (chat-loadgen exit {sys.argv[2]})")
EOF
  echo "memory:  gateways' peak RSS $((peak / 1024)) MiB in all (both gateways, all workers)"
} | tee -a "$OUT.txt"
exit "$rc"
