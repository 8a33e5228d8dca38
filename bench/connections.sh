#!/usr/bin/env bash
# Benchmark 1 (issue 5): how many idle authenticated WebSocket connections
# one host holds, and what each costs.
#
#   bench/connections.sh [CONNS] [HOLD_S]      (defaults 100000 and 60)
#
# One gateway port served by --workers processes (SO_REUSEPORT; each
# process may hold 20,000 open files), chat-loadgen --idle opening CONNS
# connections from several processes and loopback source addresses, each
# authenticated with its own token and registered in Redis presence, then
# holding them HOLD_S seconds while the gateway pings them (heartbeat 20 s)
# and they answer. Reports, measured inside the hold:
#   * gateway resident memory per connection: (RSS while holding - RSS
#     before the first connection) / connections, all worker processes;
#   * kernel memory in sockets per connection: TCP buffer pages from
#     /proc/net/sockstat plus the socket slab caches from /proc/slabinfo,
#     both ends of each loopback connection together (the client's socket
#     is on this host too, so a server alone would use about half);
#   * gateway CPU while idle: CPU seconds over the hold / its length.
# Exit status: chat-loadgen's (0 when every connection was held).
# Results: $BENCH_DIR/results/connections.json (chat-loadgen's) and
# connections.txt (this summary).
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

CONNS=${1:-${BENCH_CONNS:-100000}}
HOLD=${2:-${BENCH_HOLD_S:-60}}
WORKERS=${BENCH_GW_WORKERS:-$(((CONNS + 17999) / 18000))}
PORT=$BENCH_GW_PORT
OUT=$BENCH_RESULTS/connections
trap bench_finish EXIT
trap "exit 130" INT TERM

bench_build
bench_stack_up
bench_gateway gw1 "$PORT" --workers "$WORKERS" --idle-timeout-s 120
sleep 3
rss0=$(bench_rss_kib "$BENCH_PID_gw1")
read -r tcp0 slab0 <<<"$(bench_kernel_sock_kib)"
blog "gateway: $WORKERS workers on port $PORT, RSS $((rss0 / 1024)) MiB before any connection"

blog "opening $CONNS connections and holding them ${HOLD}s"
"$BENCH_BUILD/bench/chat-loadgen" --gateways "127.0.0.1:$PORT" --jwt-secret "$BENCH_SECRET" \
  --conns "$CONNS" --idle --warmup 0 --duration "$HOLD" --connect-timeout 120 \
  --connect-concurrency 1024 --json "$OUT.json" >"$OUT.loadgen.txt" 2>"$BENCH_LOGS/connections-loadgen.err" &
lg=$!

# The hold starts when the load generator says "run".
until grep -q '\] run ' "$BENCH_LOGS/connections-loadgen.err" 2>/dev/null; do
  kill -0 "$lg" 2>/dev/null || break
  sleep 0.5
done
sleep 2
t0=$(date +%s.%N)
cpu0=$(bench_cpu_ticks "$BENCH_PID_gw1")
sample_s=$((HOLD > 12 ? HOLD - 8 : HOLD / 2))
sleep "$sample_s"
t1=$(date +%s.%N)
cpu1=$(bench_cpu_ticks "$BENCH_PID_gw1")
rss1=$(bench_rss_kib "$BENCH_PID_gw1")
read -r tcp1 slab1 <<<"$(bench_kernel_sock_kib)"
socks=$(awk '/^TCP:/ {print $3}' /proc/net/sockstat)
rc=0
wait "$lg" || rc=$?

held=$(python3 -c "import json; print(json.load(open('$OUT.json'))['counts']['conns_opened'])" 2>/dev/null || echo 0)
hz=$(getconf CLK_TCK)
{
  echo "== connections: $CONNS idle authenticated WebSocket connections held ${HOLD}s"
  bench_machine
  echo "command: bench/connections.sh $CONNS $HOLD   (gateway --workers $WORKERS, heartbeat 20 s)"
  echo "held:              $held of $CONNS (chat-loadgen exit $rc; $socks TCP sockets in use on the host)"
  python3 - "$OUT.json" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
h = r["latency"]["connect_to_hello"]; t = r["times"]; c = r["counts"]
print(f"connect:           {t['connect_s']:.1f} s for all (connect -> hello p50 {h['p50_us']/1000:.0f} ms, p99 {h['p99_us']/1000:.0f} ms); "
      f"server pings answered {c['pings_received']}; unexpected closes {c['closes_unexpected']}")
EOF
  awk -v r0="$rss0" -v r1="$rss1" -v n="$held" 'BEGIN {
    printf "gateway RSS:       %.1f MiB before, %.1f MiB holding: %.2f KiB per connection (user space)\n",
      r0 / 1024, r1 / 1024, (n > 0 ? (r1 - r0) / n : 0) }'
  awk -v a="$tcp0" -v b="$tcp1" -v s0="$slab0" -v s1="$slab1" -v n="$held" 'BEGIN {
    printf "kernel sockets:    %.1f MiB TCP buffers + %.1f MiB socket slabs more: %.2f KiB per connection, both ends\n",
      (b - a) / 1024, (s1 - s0) / 1024, (n > 0 ? ((b - a) + (s1 - s0)) / n : 0) }'
  awk -v c0="$cpu0" -v c1="$cpu1" -v t0="$t0" -v t1="$t1" -v hz="$hz" 'BEGIN {
    printf "gateway idle CPU:  %.2f CPU s over %.0f s = %.1f%% of one core (all workers)\n",
      (c1 - c0) / hz, t1 - t0, 100 * (c1 - c0) / hz / (t1 - t0) }'
} | tee "$OUT.txt"
exit "$rc"
