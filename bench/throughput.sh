#!/usr/bin/env bash
# Benchmark 2 (issue 5): the highest sustained end-to-end 1:1 rate with zero
# loss, and latency at a fixed rate.
#
#   bench/throughput.sh [RATE ...]       (default: 50 100 200 500 1000 2000 5000 10000 20000 50000)
#
# Two gateways and two consumers on a private stack; chat-loadgen with
# BENCH_CONNS connections (default 200: 100 pairs, the two users of a
# pair always on different gateways, so every message crosses them) sends
# at each RATE in turn for BENCH_WARMUP_S + BENCH_DURATION_S seconds. A rate
# is *sustained* when every acknowledged message arrived exactly once, the
# load generator sent at least 95% of the rate, the drain after the last
# send took under BENCH_DRAIN_OK_S (default 5) seconds, and the p99
# send -> receive latency stayed under BENCH_P99_OK_MS (default 1000): a
# pipeline that falls behind shows a growing backlog and latency, not loss.
# The ramp stops at the first rate that is not sustained. Then one run at BENCH_LAT_RATE (default
# 10000) reports send -> receive latency.
#
# All runs share one set of users (--run-id), so the conversations are
# created once. Settings: BENCH_CONNS, BENCH_CONSUMERS (2), BENCH_DURATION_S (20), BENCH_WARMUP_S
# (5), BENCH_BATCH_MAX (consumer --batch-max, 500, its default; see docs/performance.md on
# FerretDB), BENCH_CONSUMER_ARGS and BENCH_GATEWAY_ARGS (more chat-consumer and
# chat-gateway options), BENCH_LAT_RATE,
# BENCH_SKIP_RAMP=1, BENCH_SKIP_LAT=1, BENCH_WARM_S and BENCH_WARM_RATE (the
# broker's warm-up before the first rate, bench/lib.sh). Each line ends with
# the CPU seconds the broker's JIT compiler used during that run, and a
# second line gives each program's CPU (bench/cpu-threads.py --line).
# Results: $BENCH_DIR/results/throughput-<rate>.json and throughput.txt.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

RATES=("$@")
[ ${#RATES[@]} -gt 0 ] || RATES=(50 100 200 500 1000 2000 5000 10000 20000 50000)
CONNS=${BENCH_CONNS:-200}
DURATION=${BENCH_DURATION_S:-20}
WARMUP=${BENCH_WARMUP_S:-5}
BATCH_MAX=${BENCH_BATCH_MAX:-500}
LAT_RATE=${BENCH_LAT_RATE:-10000}
DRAIN_OK=${BENCH_DRAIN_OK_S:-5}
P99_OK=${BENCH_P99_OK_MS:-1000}
RUN_ID=tp$(date +%s)
OUT=$BENCH_RESULTS/throughput
trap bench_finish EXIT
trap "exit 130" INT TERM

bench_build
bench_stack_up
# shellcheck disable=SC2086 # BENCH_GATEWAY_ARGS is a list of options
bench_gateway gw1 "$BENCH_GW_PORT" ${BENCH_GATEWAY_ARGS:-}
# shellcheck disable=SC2086
bench_gateway gw2 "$((BENCH_GW_PORT + 1))" ${BENCH_GATEWAY_ARGS:-}
NCONS=${BENCH_CONSUMERS:-2}
cons=()
for i in $(seq 1 "$NCONS"); do
  # shellcheck disable=SC2086 # BENCH_CONSUMER_ARGS is a list of options
  bench_consumer "c$i" --batch-max "$BATCH_MAX" ${BENCH_CONSUMER_ARGS:-}
  cons+=("c$i")
done
bench_consumers_settled "${cons[@]}"

# One round of warm-up traffic: this benchmark's own, 8 s at
# BENCH_WARM_RATE (default 1000) messages/s on users of their own.
warm_round() {
  "$BENCH_BUILD/bench/chat-loadgen" --gateways "127.0.0.1:$BENCH_GW_PORT,127.0.0.1:$((BENCH_GW_PORT + 1))" \
    --jwt-secret "$BENCH_SECRET" --conns "$CONNS" --run-id "w$RUN_ID" --rate "${BENCH_WARM_RATE:-1000}" \
    --window 64 --warmup 0 --duration 8 --drain 60 --body-size 100 >/dev/null 2>>"$BENCH_LOGS/throughput-warm.err"
}
bench_warm_broker warm_round

# run RATE: one chat-loadgen run; prints its summary line; returns 0 when
# the rate was sustained.
run() {
  local rate=$1 rc=0
  blog "rate $rate/s: $CONNS connections, ${WARMUP}s warm-up + ${DURATION}s measured"
  # Each program's CPU over the measured seconds (but the last two).
  (sleep "$WARMUP" && python3 "$BENCH_REPO/bench/cpu-threads.py" --line "$((DURATION > 4 ? DURATION - 2 : 2))" \
    >"$OUT-$rate.cpu" 2>/dev/null) &
  local sampler=$!
  "$BENCH_BUILD/bench/chat-loadgen" --gateways "127.0.0.1:$BENCH_GW_PORT,127.0.0.1:$((BENCH_GW_PORT + 1))" \
    --jwt-secret "$BENCH_SECRET" --conns "$CONNS" --run-id "$RUN_ID" --rate "$rate" --window 64 \
    --warmup "$WARMUP" --duration "$DURATION" --drain 120 --ack-timeout 120 --body-size 100 \
    --json "$OUT-$rate.json" >"$OUT-$rate.txt" 2>"$BENCH_LOGS/throughput-$rate.err" || rc=$?
  wait "$sampler" || true
  python3 - "$OUT-$rate.json" "$rate" "$rc" "$DRAIN_OK" "$P99_OK" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1])); rate = int(sys.argv[2]); rc = int(sys.argv[3]); drain_ok = float(sys.argv[4])
p99_ok = float(sys.argv[5])
c, t, rt, l = r["counts"], r["times"], r["rates"], r["latency"]
rx, tx = l["send_to_receive"], l["send_to_sent"]
kept_up = rt["sent_per_s"] >= 0.95 * rate
ok = rc == 0 and kept_up and t["drain_s"] < drain_ok and rx["p99_us"] <= p99_ok * 1000
print(f"rate {rate:>6}/s: sent {rt['sent_per_s']:.0f}/s, delivered {rt['received_per_s']:.0f}/s; "
      f"missing {c['missing']}, duplicated {c['duplicates']}; drain {t['drain_s']:.1f} s; "
      f"send->sent p50 {tx['p50_us']/1000:.1f} ms p99 {tx['p99_us']/1000:.1f} ms; "
      f"send->receive p50 {rx['p50_us']/1000:.1f} ms p90 {rx['p90_us']/1000:.1f} ms "
      f"p99 {rx['p99_us']/1000:.1f} ms p99.9 {rx['p999_us']/1000:.1f} ms max {rx['max_us']/1000:.1f} ms "
      f"-> {'SUSTAINED' if ok else 'NOT SUSTAINED'} (loadgen exit {rc})")
sys.exit(0 if ok else 1)
EOF
}

{
  echo "== throughput and latency: 1:1 pairs across two gateways, $NCONS consumer(s) (--batch-max $BATCH_MAX)"
  bench_machine
  echo "command: bench/throughput.sh ${RATES[*]}   ($CONNS connections, ${WARMUP}s + ${DURATION}s per rate, body 100 B)"
} | tee "$OUT.txt"

# cpu_line RATE: that run's CPU per program (bench/cpu-threads.py --line).
cpu_line() {
  [ -s "$OUT-$1.cpu" ] && sed 's/^/             /' "$OUT-$1.cpu" | tee -a "$OUT.txt"
  return 0
}

best=0
if [ "${BENCH_SKIP_RAMP:-0}" != 1 ]; then
  for rate in "${RATES[@]}"; do
    ok=1
    line=$(run "$rate") || ok=0
    bench_jit_since
    echo "$line; broker JIT ${BENCH_JIT_USED} CPU s" | tee -a "$OUT.txt"
    cpu_line "$rate"
    [ $ok = 1 ] || break
    best=$rate
  done
  echo "highest sustained rate: $best messages/s (of the rates tried)" | tee -a "$OUT.txt"
fi
if [ "${BENCH_SKIP_LAT:-0}" != 1 ]; then
  echo "latency at $LAT_RATE messages/s:" | tee -a "$OUT.txt"
  line=$(run "$LAT_RATE") || true
  bench_jit_since
  echo "$line; broker JIT ${BENCH_JIT_USED} CPU s" | tee -a "$OUT.txt"
  cpu_line "$LAT_RATE"
fi
for c in "${cons[@]}"; do grep -h "stats:" "$BENCH_LOGS/$c.log" | tail -1 | sed "s/^/consumer $c: /"; done | tee -a "$OUT.txt"
