# Shared by the benchmark scripts in bench/ (sourced, not run). Each
# benchmark gets a private stack (its own Kafka, Redis and FerretDB on ports
# of its own under $BENCH_DIR), a release build, and gateways and consumers
# it starts and stops itself, so that nothing else on the machine (the dev
# stack, a test run) assigns seqs to its events or shares its store.
#
# Settings (environment):
#   BENCH_DIR          where the stack, logs and results go (default /tmp/chat-bench)
#   BENCH_BUILD_DIR    release build used (default <repo>/build-bench; configured
#                      and built if missing)
#   BENCH_KAFKA_PORT, BENCH_REDIS_PORT, BENCH_MONGO_PORT   (29192, 26479, 27128)
#   BENCH_GW_PORT      first gateway port; the second is +1 (28081)
#                      Every default is below the kernel's ephemeral range
#                      (32768-60999): a port in it can be taken by any
#                      outgoing connection, and a gateway then fails to bind.
#   BENCH_KEEP_STACK=1 leave the stack running at the end
#   BENCH_WARM_S       longest broker warm-up after the stack starts (default
#                      120; 0 skips it): bench_warm_broker
#   BENCH_STORE        FerretDB's backend: sqlite (default, as the tests and the
#                      dev stack) or postgresql (a private PostgreSQL cluster on
#                      BENCH_PG_PORT, default 26128; scripts/stack.sh)
#   BENCH_GATEWAY_MONGO_OPTIONS  URI options for the gateways' store client
#                      (say socketTimeoutMS=3600000; default none). The
#                      consumers keep their own bounded timeouts.
set -euo pipefail

BENCH_REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH_DIR=${BENCH_DIR:-/tmp/chat-bench}
BENCH_BUILD=${BENCH_BUILD_DIR:-$BENCH_REPO/build-bench}
BENCH_KAFKA_PORT=${BENCH_KAFKA_PORT:-29192}
BENCH_REDIS_PORT=${BENCH_REDIS_PORT:-26479}
BENCH_MONGO_PORT=${BENCH_MONGO_PORT:-27128}
BENCH_GW_PORT=${BENCH_GW_PORT:-28081}
BENCH_STORE=${BENCH_STORE:-sqlite}
BENCH_PG_PORT=${BENCH_PG_PORT:-26128}
BENCH_BROKERS=127.0.0.1:$BENCH_KAFKA_PORT
BENCH_SECRET=bench-secret-0123456789abcdef0123
BENCH_RESULTS=$BENCH_DIR/results
BENCH_LOGS=$BENCH_DIR/logs
BENCH_PIDS=()
mkdir -p "$BENCH_RESULTS" "$BENCH_LOGS"
# One benchmark at a time per BENCH_DIR: a second one would wipe the stack
# under the first (it happened: the first then counted its messages as
# missing). The file names the running script; a dead one does not count.
if [ -f "$BENCH_DIR/running" ]; then
  bench_other=$(cat "$BENCH_DIR/running" 2>/dev/null || true)
  if [ -n "$bench_other" ] && [ "$bench_other" != "$$" ] && kill -0 "$bench_other" 2>/dev/null; then
    printf '[bench] error: benchmark pid %s is running on %s\n' "$bench_other" "$BENCH_DIR" >&2
    exit 1
  fi
fi
echo $$ >"$BENCH_DIR/running"

blog() { printf '[bench %s] %s\n' "$(date '+%T')" "$*" >&2; }
bdie() { printf '[bench] error: %s\n' "$*" >&2; exit 1; }

# The machine, once per benchmark: figures mean little without it.
bench_machine() {
  local model
  model=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
  echo "machine: $(hostname), $(nproc) CPUs ($model), $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo), $(uname -sr)"
  echo "date:    $(date -u '+%Y-%m-%d %H:%M UTC'); load average $(cut -d' ' -f1-3 /proc/loadavg); open files per process $(ulimit -Hn)"
  echo "store:   FerretDB 1.24 over $BENCH_STORE (BENCH_STORE)"
  echo "commit:  $(git -C "$BENCH_REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)$(git -C "$BENCH_REPO" diff --quiet 2>/dev/null || echo ' (with local changes)')"
}

bench_build() {
  if [ ! -f "$BENCH_BUILD/build.ninja" ]; then
    blog "configuring $BENCH_BUILD (release, no sanitizers, no tests)"
    meson setup "$BENCH_BUILD" --buildtype=release -Db_sanitize=none -Dtests=false \
      >"$BENCH_LOGS/build.log" 2>&1 || { tail -20 "$BENCH_LOGS/build.log"; bdie "meson setup failed"; }
  fi
  ninja -C "$BENCH_BUILD" >>"$BENCH_LOGS/build.log" 2>&1 || { tail -20 "$BENCH_LOGS/build.log"; bdie "build failed"; }
}

# bench_stack_up [TOPIC]: a fresh private stack (wiped first), with TOPIC
# (default bench.events) and its dead-letter topic created.
bench_stack_env() {
  export CHAT_STACK_DIR=$BENCH_DIR/stack CHAT_KAFKA_PORT=$BENCH_KAFKA_PORT \
    CHAT_REDIS_PORT=$BENCH_REDIS_PORT CHAT_MONGO_PORT=$BENCH_MONGO_PORT \
    CHAT_STORE_BACKEND=$BENCH_STORE CHAT_PG_PORT=$BENCH_PG_PORT
}
bench_stack_up() {
  bench_stack_env
  blog "fresh private stack under $CHAT_STACK_DIR"
  "$BENCH_REPO/scripts/stack.sh" wipe >"$BENCH_LOGS/stack.log" 2>&1 || true
  bench_topic "${1:-bench.events}"
}
# bench_topic NAME: creates NAME and NAME.dlq (12 partitions) if missing.
bench_topic() {
  bench_stack_env
  CHAT_TOPIC=$1 CHAT_DLQ_TOPIC=$1.dlq "$BENCH_REPO/scripts/stack.sh" up >>"$BENCH_LOGS/stack.log" 2>&1 ||
    { tail -20 "$BENCH_LOGS/stack.log"; bdie "the stack did not start"; }
}
# The private stack's broker (the JVM's pid).
bench_broker_pid() {
  bench_stack_env
  cat "$CHAT_STACK_DIR/run/kafka.pid"
}
# CPU seconds used so far by the broker JVM's JIT compiler threads.
bench_jit_cpu_s() {
  local pid=$1 hz t sum=0 v
  hz=$(getconf CLK_TCK)
  for t in /proc/"$pid"/task/*; do
    grep -q 'Compiler' "$t/comm" 2>/dev/null || continue
    v=$(awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "$t/stat" 2>/dev/null || echo 0)
    sum=$((sum + ${v:-0}))
  done
  awk -v s="$sum" -v hz="$hz" 'BEGIN { printf "%.2f", s / hz }'
}

# bench_warm_broker [FN]: a freshly started broker spends its first minute
# or two of traffic compiling itself (its JIT compiler threads took 0.4 of
# the two cores for the first 70 s of a 2,500 msg/s run, beside 0.45 for all
# of its request handling), which a broker in production has long done.
# Before anything is timed, run traffic until the compiler threads stay
# quiet (under 5% of a core over two rounds in a row), at least 30 s and
# at most BENCH_WARM_S. FN makes one round of traffic, a few seconds of the
# benchmark's own kind (the JIT compiles what the traffic exercises: bursts
# from a bare producer left it compiling again once gateways and consumers
# ran); by default, bursts of chat-bench-produce read by a kcat group.
bench_warm_default_round() {
  for _ in 1 2 3 4 5; do
    "$BENCH_BUILD/bench/chat-bench-produce" --kafka-brokers "$BENCH_BROKERS" --topic bench.warm \
      --count 5000 --convs 1000 >/dev/null 2>&1 || return 1
    sleep 0.5
  done
}
bench_warm_broker() {
  local max=${BENCH_WARM_S:-120} round=${1:-bench_warm_default_round} pid start quiet=0 t0 before now used secs kc=
  [ "$max" -gt 0 ] || return 0
  pid=$(bench_broker_pid)
  blog "warming the broker up with $round (until its JIT compiler is quiet; at most ${max} s)"
  if [ "$round" = bench_warm_default_round ]; then
    kcat -b "$BENCH_BROKERS" -G bench-warm -q -o beginning bench.warm >/dev/null 2>&1 &
    kc=$!
  fi
  start=$SECONDS
  while [ $((SECONDS - start)) -lt "$max" ]; do
    t0=$(date +%s.%N)
    before=$(bench_jit_cpu_s "$pid")
    if ! "$round"; then
      blog "  a warm-up round failed ($round); going on without a warm broker"
      break
    fi
    now=$(bench_jit_cpu_s "$pid")
    read -r used secs < <(awk -v a="$before" -v b="$now" -v t0="$t0" -v t1="$(date +%s.%N)" \
      'BEGIN { printf "%.2f %.1f\n", b - a, t1 - t0 }')
    blog "  warm-up round: JIT compiler $used CPU s in $secs s"
    if awk -v u="$used" -v s="$secs" 'BEGIN { exit !(u < 0.05 * s) }'; then quiet=$((quiet + 1)); else quiet=0; fi
    [ $quiet -lt 2 ] || [ $((SECONDS - start)) -lt 30 ] || break
  done
  if [ -n "$kc" ]; then kill "$kc" 2>/dev/null || true; wait "$kc" 2>/dev/null || true; fi
  BENCH_JIT_MARK=$(bench_jit_cpu_s "$pid")
  blog "broker warmed for $((SECONDS - start)) s; its JIT compiler used $BENCH_JIT_MARK CPU s so far"
}
# Sets BENCH_JIT_USED: the broker's JIT compiler CPU seconds since the
# warm-up or the previous call (not in a subshell: it moves the mark).
bench_jit_since() {
  local now
  now=$(bench_jit_cpu_s "$(bench_broker_pid)")
  BENCH_JIT_USED=$(awk -v a="${BENCH_JIT_MARK:-0}" -v b="$now" 'BEGIN { printf "%.1f", b - a }')
  BENCH_JIT_MARK=$now
}

bench_stack_down() {
  bench_stack_env
  if [ "${BENCH_KEEP_STACK:-0}" != 1 ]; then "$BENCH_REPO/scripts/stack.sh" down >>"$BENCH_LOGS/stack.log" 2>&1 || true; fi
}

# bench_gateway NAME PORT [options...]: starts a gateway (its --workers
# processes share PORT) on the private stack; options override the
# defaults below. Limits that would throttle a benchmark on purpose are
# raised: the per-connection send rate, the connection accept rate, and the
# membership cache is kept for the whole run.
bench_gateway() {
  local name=$1 port=$2
  shift 2
  setsid "$BENCH_BUILD/gateway/chat-gateway" --port "$port" --gateway-id "$name" \
    --jwt-secret "$BENCH_SECRET" --kafka-brokers "$BENCH_BROKERS" --topic "${BENCH_TOPIC:-bench.events}" \
    --redis-port "$BENCH_REDIS_PORT" --mongo-uri "mongodb://127.0.0.1:$BENCH_MONGO_PORT/${BENCH_DB:-bench}${BENCH_GATEWAY_MONGO_OPTIONS:+?$BENCH_GATEWAY_MONGO_OPTIONS}" \
    --member-cache-s 3600 --msg-rate 100000 --msg-burst 100000 --conn-rate 100000 \
    --conn-burst 100000 --backlog 65535 --log-level warn "$@" \
    >>"$BENCH_LOGS/$name.log" 2>&1 </dev/null &
  BENCH_PIDS+=($!)
  eval "BENCH_PID_$name=$!"
  local deadline=$((SECONDS + 30))
  until python3 -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:$port/v1/health', timeout=1)" 2>/dev/null; do
    [ $SECONDS -lt $deadline ] || { tail -20 "$BENCH_LOGS/$name.log"; bdie "gateway $name did not answer on $port"; }
    sleep 0.2
  done
}

# bench_consumer NAME [options...]: a consumer on the private stack;
# options override the defaults below. Over SQLite it inserts over one
# connection (--store-lanes 1): SQLite has one writer, and a second lane
# only waits for it (docs/operations.md, store_lanes).
bench_consumer() {
  local name=$1 lanes=2
  shift
  [ "$BENCH_STORE" = sqlite ] && lanes=1
  setsid "$BENCH_BUILD/consumer/chat-consumer" --consumer-id "$name" --kafka-brokers "$BENCH_BROKERS" \
    --topic "${BENCH_TOPIC:-bench.events}" --dlq-topic "${BENCH_TOPIC:-bench.events}.dlq" \
    --group "${BENCH_GROUP:-bench-consumers}" --redis-port "$BENCH_REDIS_PORT" \
    --mongo-uri "mongodb://127.0.0.1:$BENCH_MONGO_PORT/${BENCH_DB:-bench}" --store-lanes "$lanes" \
    --log-level info "$@" \
    >>"$BENCH_LOGS/$name.log" 2>&1 </dev/null &
  BENCH_PIDS+=($!)
  eval "BENCH_PID_$name=$!"
}

# Waits until the consumer log NAME says it was assigned partitions, so
# that a run does not start during the group's first rebalance.
bench_consumers_settled() {
  local deadline=$((SECONDS + 60)) n
  for n in "$@"; do
    until grep -qi 'assigned' "$BENCH_LOGS/$n.log" 2>/dev/null; do
      [ $SECONDS -lt $deadline ] || { blog "consumer $n: no assignment seen in 60 s"; break; }
      sleep 0.5
    done
  done
  sleep "${BENCH_SETTLE_S:-5}"
}

# bench_reap PID SECONDS: waits up to SECONDS for PID (a session leader
# already sent SIGTERM) to stop, then SIGKILLs its session and says so.
# Reaped here, so that the shell does not print the kill as a failure.
bench_reap() {
  local _
  for _ in $(seq 1 $(($2 * 5))); do kill -0 "$1" 2>/dev/null || break; sleep 0.2; done
  if kill -0 "$1" 2>/dev/null; then
    blog "pid $1 ($(ps -o args= -p "$1" 2>/dev/null | cut -c1-60)) still stopping after $2 s: killed"
    kill -KILL -- "-$1" 2>/dev/null || true
  fi
  wait "$1" 2>/dev/null || true
}

# bench_stop_all: SIGTERM to everything the benchmark started, then up to
# 60 s each for a clean stop. A consumer first writes every lagging
# last_seq: about 14 s per 1,000 conversations on FerretDB, and minutes
# after a large storm (thousands lagging, each update a scan of the
# conversations); killing it then is safe, the stack is discarded.
bench_stop_all() {
  local pid
  for pid in "${BENCH_PIDS[@]}"; do kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${BENCH_PIDS[@]}"; do bench_reap "$pid" 60; done
  BENCH_PIDS=()
}

# bench_stop_pid PID: SIGTERM to the session PID leads, waits up to 120 s
# for a clean stop, then SIGKILL.
bench_stop_pid() {
  kill -TERM -- "-$1" 2>/dev/null || kill -TERM "$1" 2>/dev/null || return 0
  bench_reap "$1" 120
}

# The processes of a gateway: its parent and its workers (same session).
bench_tree_pids() {
  ps -o pid= -s "$1" 2>/dev/null | tr -s ' \n' ' '
}
# bench_sum_pids FILE AWK PID...: the sum over those processes of what AWK
# prints from /proc/<pid>/FILE (0 for one that is gone).
bench_sum_pids() {
  local file=$1 prog=$2 sum=0 p v
  shift 2
  for p in "$@"; do
    v=$(awk "$prog" "/proc/$p/$file" 2>/dev/null || echo 0)
    sum=$((sum + ${v:-0}))
  done
  echo "$sum"
}
# bench_sum_proc PID FILE AWK: the same over a gateway's processes.
bench_sum_proc() {
  # shellcheck disable=SC2046 # a list of pids
  bench_sum_pids "$2" "$3" $(bench_tree_pids "$1")
}
# Resident memory of those processes together, KiB.
bench_rss_kib() { bench_sum_proc "$1" status '/^VmRSS/ {print $2}'; }
# CPU time of those processes together, clock ticks (utime + stime).
bench_cpu_ticks() { bench_sum_proc "$1" stat '{print $14 + $15}'; }
# CPU time of the processes PID..., clock ticks.
bench_pid_ticks() { bench_sum_pids stat '{print $14 + $15}' "$@"; }
# Kernel memory in sockets: TCP buffer pages (sockstat) and the slab caches
# that hold socket structures, KiB.
bench_kernel_sock_kib() {
  local pages slab
  pages=$(awk '/^TCP:/ {for (i = 1; i < NF; i++) if ($i == "mem") print $(i + 1)}' /proc/net/sockstat)
  slab=$(awk '/^(TCP|tcp_bind_bucket|sock_inode_cache|request_sock_TCP|inet_peer|eventpoll_epi|eventpoll_pwq) / {s += $3 * $4} END {printf "%d", s / 1024}' /proc/slabinfo 2>/dev/null || echo 0)
  echo "$((pages * 4)) $slab"
}

bench_finish() {
  bench_stop_all
  bench_stack_down
}
