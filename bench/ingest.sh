#!/usr/bin/env bash
# Benchmark 3 (issue 5): gateway ingest against librdkafka's own limit.
#
#   bench/ingest.sh
#
# In one run, on one private stack (same broker, same topic settings):
#   1. the gateway: chat-loadgen --ingest-only sends messages as fast as
#      BENCH_CONNS connections with BENCH_WINDOW unanswered each allow, to
#      BENCH_GATEWAYS gateway processes (default 1), with no consumer
#      running; the rate counted is messages *acknowledged* (`sent`, which
#      the gateway answers once Kafka has acknowledged the event) per
#      second in the measured seconds. It includes the WebSocket frames,
#      JSON parsing and checks, the envelope, the produce and the answer.
#   2. the reference: chat-bench-produce, a bare librdkafka producer with
#      the gateway's own producer settings (acks=all, idempotence, linger
#      2 ms, batch 10,000) producing the same number of envelopes of the same
#      size, pre-encoded, as fast as librdkafka takes them, to a topic of
#      the same partition count. It is what rdkafka_performance measures
#      (Debian's librdkafka-dev ships that example's source without the
#      internal headers it needs, so it cannot be built here).
# Prints both rates and their ratio (the target is >= 80%).
# Settings: BENCH_CONNS (1000), BENCH_WINDOW (16), BENCH_DURATION_S (20),
# BENCH_WARMUP_S (5), BENCH_BODY (100), BENCH_GATEWAYS (1), BENCH_GATEWAY_ARGS
# (more chat-gateway options).
# Results: $BENCH_DIR/results/ingest-{gateway,raw}.json and ingest.txt.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

CONNS=${BENCH_CONNS:-1000}
WINDOW=${BENCH_WINDOW:-16}
DURATION=${BENCH_DURATION_S:-20}
WARMUP=${BENCH_WARMUP_S:-5}
BODY=${BENCH_BODY:-100}
NGW=${BENCH_GATEWAYS:-1}
OUT=$BENCH_RESULTS/ingest
export BENCH_TOPIC=bench.ingest
trap bench_finish EXIT
trap "exit 130" INT TERM

bench_build
bench_stack_up "$BENCH_TOPIC"
bench_warm_broker
bench_topic bench.ingest.raw
gws=()
for i in $(seq 1 "$NGW"); do
  # shellcheck disable=SC2086 # BENCH_GATEWAY_ARGS is a list of options
  bench_gateway "gw$i" "$((BENCH_GW_PORT + i - 1))" ${BENCH_GATEWAY_ARGS:-}
  gws+=("127.0.0.1:$((BENCH_GW_PORT + i - 1))")
done

{
  echo "== ingest: gateway (WebSocket in, Kafka acknowledged) vs a bare librdkafka producer"
  bench_machine
  echo "command: bench/ingest.sh   ($NGW gateway process(es), $CONNS connections, window $WINDOW, body $BODY B, ${WARMUP}s + ${DURATION}s)"
} | tee "$OUT.txt"

blog "gateway ingest: $CONNS connections, as fast as the window allows"
rc=0
"$BENCH_BUILD/bench/chat-loadgen" --gateways "$(IFS=,; echo "${gws[*]}")" --jwt-secret "$BENCH_SECRET" \
  --conns "$CONNS" --ingest-only --rate 0 --window "$WINDOW" --body-size "$BODY" \
  --warmup "$WARMUP" --duration "$DURATION" --drain 30 --json "$OUT-gateway.json" \
  >"$OUT-gateway.txt" 2>"$BENCH_LOGS/ingest-loadgen.err" &
lg=$!
# The gateways' CPU over the measured seconds (after the warm-up).
until grep -q '\] run ' "$BENCH_LOGS/ingest-loadgen.err" 2>/dev/null; do
  kill -0 "$lg" 2>/dev/null || break
  sleep 0.2
done
sleep "$WARMUP"
gw_cpu() { local s=0 i; for i in $(seq 1 "$NGW"); do s=$((s + $(bench_cpu_ticks "$(eval echo "\$BENCH_PID_gw$i")"))); done; echo "$s"; }
# The whole machine's busy ticks (all CPUs, /proc/stat: all but idle and
# iowait), to show what the load generator and the broker leave over.
busy() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9 }' /proc/stat; }
# The load generator's and the broker's CPU too, per message below: what
# the two cores must hold for the gateway path at a given rate.
kpid=$(bench_broker_pid)
# shellcheck disable=SC2046 # a list of pids
lg_ticks() { bench_pid_ticks "$lg" $(pgrep -P "$lg" || true); }
c0=$(gw_cpu)
m0=$(busy)
l0=$(lg_ticks)
k0=$(bench_pid_ticks "$kpid")
t0=$(date +%s.%N)
sleep $((DURATION - 1))
c1=$(gw_cpu)
m1=$(busy)
l1=$(lg_ticks)
k1=$(bench_pid_ticks "$kpid")
t1=$(date +%s.%N)
wait "$lg" || rc=$?
[ "$rc" = 0 ] || { tail -30 "$OUT-gateway.txt"; bdie "chat-loadgen failed ($rc)"; }
gw_cores=$(awk -v a="$c0" -v b="$c1" -v t0="$t0" -v t1="$t1" -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%.2f", (b - a) / hz / (t1 - t0) }')
busy_cores=$(awk -v a="$m0" -v b="$m1" -v t0="$t0" -v t1="$t1" -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%.2f", (b - a) / hz / (t1 - t0) }')
read -r gw_rate gw_count gw_p50 gw_p99 <<<"$(python3 - "$OUT-gateway.json" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1])); l = r["latency"]["send_to_sent"]; t = r["times"]
print(f"{r['rates']['acked_per_s']:.0f} {r['counts']['acked_in_window']} {l['p50_us']/1000:.1f} {l['p99_us']/1000:.1f}")
EOF
)"
# The same number of messages as the gateway acknowledged in its measured
# seconds, at least 200,000 so that the reference runs long enough to time.
count=$((gw_count > 200000 ? gw_count : 200000))
blog "raw librdkafka producer: $count envelopes of a $BODY-byte body"
TIMEFORMAT='%U %S'
rk0=$(bench_pid_ticks "$kpid")
raw_cpu=$( { time "$BENCH_BUILD/bench/chat-bench-produce" --kafka-brokers "$BENCH_BROKERS" --topic bench.ingest.raw \
  --create-topic=false --count "$count" --size "$BODY" --json "$OUT-raw.json" >"$OUT-raw.txt" 2>&1; } 2>&1) ||
  { cat "$OUT-raw.txt"; bdie "chat-bench-produce failed"; }
rk1=$(bench_pid_ticks "$kpid")
read -r raw_rate raw_s <<<"$(python3 -c "import json; r = json.load(open('$OUT-raw.json')); print(f\"{r['msgs_per_s']:.0f} {r['seconds']:.3f}\")")"
raw_cores=$(awk -v c="$raw_cpu" -v s="$raw_s" 'BEGIN { split(c, a, " "); printf "%.2f", (a[1] + a[2]) / s }')
{
  echo "gateway:  $gw_rate messages/s acknowledged, using $gw_cores CPU cores (send -> sent p50 $gw_p50 ms, p99 $gw_p99 ms)"
  echo "machine:  $busy_cores of $(nproc) cores busy meanwhile (the gateway's $gw_cores; the rest is the load generator, the broker and the kernel)"
  echo "raw:      $raw_rate messages/s, using $raw_cores CPU cores ($(tail -1 "$OUT-raw.txt"))"
  awk -v g="$gw_rate" -v r="$raw_rate" -v gc="$gw_cores" -v rc="$raw_cores" 'BEGIN {
    printf "ratio:    %.0f%% of the raw producer rate (target >= 80%%); per CPU core used: %.0f vs %.0f messages/s, %.0f%%\n",
      100 * g / r, g / gc, r / rc, 100 * (g / gc) / (r / rc) }'
  # Per message, in CPU microseconds (CPU time over messages): the gateway
  # run's three programs and the bare run's two. At 80 % of the bare rate
  # the gateway path needs, on one host, its per-message costs times that
  # rate; the second figure takes the broker's cost from the bare run,
  # where its batches are the largest.
  awk -v g="$gw_rate" -v r="$raw_rate" -v gc="$gw_cores" -v rc="$raw_cores" -v n="$(nproc)" \
    -v l="$((l1 - l0))" -v k="$((k1 - k0))" -v t="$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')" \
    -v rk="$((rk1 - rk0))" -v rs="$raw_s" -v hz="$(getconf CLK_TCK)" 'BEGIN {
    gu = gc * 1e6 / g; lu = l / hz / t * 1e6 / g; ku = k / hz / t * 1e6 / g
    pu = rc * 1e6 / r; rku = rk / hz / rs * 1e6 / r; T = 0.8 * r
    printf "cpu/msg:  gateway run: gateway %.2f us, load generator %.2f us, broker %.2f us; bare run: producer %.2f us, broker %.2f us\n", gu, lu, ku, pu, rku
    printf "at 80%%:   %.0f messages/s would take %.2f cores at the gateway run'"'"'s costs per message, %.2f with the broker as cheap as for the bare producer; the machine has %d\n",
      T, T * (gu + lu + ku) / 1e6, T * (gu + lu + rku) / 1e6, n }'
} | tee -a "$OUT.txt"
