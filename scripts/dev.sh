#!/usr/bin/env bash
# Runs the whole system locally: the README's first command.
#
#   scripts/dev.sh [up]   install what is missing (scripts/deps.sh), build
#                         ./build (debugoptimized, no sanitizers), start the
#                         dev stack (Kafka, Redis, FerretDB), two gateways and
#                         two consumers in the background, run a short demo
#                         conversation, and print how to use it all
#   scripts/dev.sh status what runs, where, and whether it answers
#   scripts/dev.sh logs   the last lines of every program's log
#   scripts/dev.sh down   stop the gateways, the consumers and the stack
#                         (data is kept; `scripts/stack.sh wipe` deletes it)
#
# Every command is idempotent: `up` starts only what is not running, and
# restarts a program whose binary was rebuilt since it started.
#
# Environment (defaults in brackets):
#   CHAT_DEV_DIR         logs, pid files, jwt-secret      [<repo>/.local/dev]
#   CHAT_DEV_BUILD_DIR   the build directory              [<repo>/build]
#   CHAT_DEV_GW1_PORT    first gateway's port             [8081]
#   CHAT_DEV_GW2_PORT    second gateway's port            [8082]
#   CHAT_DEV_DEMO        0 skips the demo conversation    [1]
#   CHAT_STACK_DIR, CHAT_KAFKA_PORT (19092), CHAT_REDIS_PORT (16379),
#   CHAT_MONGO_PORT (27018): the stack's, see scripts/stack.sh
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"
DEV_DIR=${CHAT_DEV_DIR:-$REPO/.local/dev}
BUILD=${CHAT_DEV_BUILD_DIR:-$REPO/build}
GW1_PORT=${CHAT_DEV_GW1_PORT:-8081}
GW2_PORT=${CHAT_DEV_GW2_PORT:-8082}
KAFKA_PORT=${CHAT_KAFKA_PORT:-19092}
REDIS_PORT=${CHAT_REDIS_PORT:-16379}
MONGO_PORT=${CHAT_MONGO_PORT:-27018}
BROKERS=127.0.0.1:$KAFKA_PORT
MONGO_URI=mongodb://127.0.0.1:$MONGO_PORT/chat
GROUP=chat-consumers
# FerretDB over SQLite has one writer: a consumer's second insert lane only
# waits for it (docs/operations.md, store_lanes).
case ${CHAT_STORE_BACKEND:-sqlite} in sqlite) STORE_LANES=1 ;; *) STORE_LANES=2 ;; esac
GATEWAY_BIN=$BUILD/gateway/chat-gateway
CONSUMER_BIN=$BUILD/consumer/chat-consumer
PROGRAMS=(gw1 gw2 c1 c2)

log() { printf '[dev] %s\n' "$*" >&2; }
die() { printf '[dev] error: %s\n' "$*" >&2; exit 1; }

pid_alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
rel() { printf '%s' "${1#"$REPO"/}"; }

gw_port() { case $1 in gw1) echo "$GW1_PORT" ;; gw2) echo "$GW2_PORT" ;; esac; }
binary_of() { case $1 in gw*) echo "$GATEWAY_BIN" ;; c*) echo "$CONSUMER_BIN" ;; esac; }

# Sets ARGV to the command line of program $1.
set_argv() {
  case $1 in
    gw*)
      ARGV=("$GATEWAY_BIN" --port "$(gw_port "$1")" --gateway-id "$1"
        --jwt-secret "$(cat "$DEV_DIR/jwt-secret")" --kafka-brokers "$BROKERS"
        --redis-host 127.0.0.1 --redis-port "$REDIS_PORT" --mongo-uri "$MONGO_URI")
      ;;
    c*)
      ARGV=("$CONSUMER_BIN" --consumer-id "$1" --kafka-brokers "$BROKERS"
        --redis-host 127.0.0.1 --redis-port "$REDIS_PORT" --mongo-uri "$MONGO_URI"
        --group "$GROUP" --store-lanes "$STORE_LANES")
      ;;
  esac
}

build() {
  if [ ! -f "$BUILD/build.ninja" ]; then
    log "configuring $(rel "$BUILD") (debugoptimized, no sanitizers)"
    meson setup "$BUILD" -Dbuildtype=debugoptimized -Db_sanitize=none >"$DEV_DIR/build.log" 2>&1 ||
      { tail -n 30 "$DEV_DIR/build.log" >&2; die "meson setup failed (log: $(rel "$DEV_DIR")/build.log)"; }
  fi
  log "building $(rel "$BUILD")"
  meson compile -C "$BUILD" >"$DEV_DIR/build.log" 2>&1 ||
    { tail -n 30 "$DEV_DIR/build.log" >&2; die "the build failed (log: $(rel "$DEV_DIR")/build.log)"; }
}

stop_one() {
  local name=$1 pidf=$DEV_DIR/$1.pid pid i
  if ! pid_alive "$pidf"; then rm -f "$pidf"; return; fi
  pid=$(cat "$pidf")
  log "stopping $name (pid $pid)"
  kill -TERM "$pid" 2>/dev/null || true
  for i in $(seq 1 50); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.2
  done
  kill -KILL "$pid" 2>/dev/null || true
  rm -f "$pidf"
}

start_one() {
  local name=$1 pidf=$DEV_DIR/$1.pid bin
  bin=$(binary_of "$name")
  if pid_alive "$pidf"; then
    if [ "$bin" -nt "$pidf" ]; then
      log "restarting $name: its binary was rebuilt"
      stop_one "$name"
    else
      log "$name already running (pid $(cat "$pidf"))"
      return
    fi
  fi
  [ -x "$bin" ] || die "$(rel "$bin") was not built (does $(basename "$(dirname "$bin")")/ have its program yet?)"
  case $name in gw*) ! port_open "$(gw_port "$name")" || die "port $(gw_port "$name") for $name is taken by another process" ;; esac
  local shown
  set_argv "$name"
  shown="${ARGV[*]}"
  log "starting $name: $(rel "${shown/--jwt-secret * --kafka/--jwt-secret ... --kafka}")"
  printf '=== %s start\n' "$(date '+%F %T')" >>"$DEV_DIR/$name.log"
  # The web client's files, wherever the program is started from (an
  # environment variable, so a gateway without that option ignores it).
  CHAT_WEB_ROOT=${CHAT_WEB_ROOT:-$REPO/gateway/web} \
    setsid nohup "${ARGV[@]}" >>"$DEV_DIR/$name.log" 2>&1 </dev/null &
  echo $! >"$pidf"
}

health() {
  curl_json "http://127.0.0.1:$1/v1/health"
}

# Prints the body of a GET, empty on failure (bash and python only: no curl
# on a fresh machine).
curl_json() {
  python3 - "$1" <<'EOF' 2>/dev/null
import sys, urllib.request
try:
    with urllib.request.urlopen(sys.argv[1], timeout=2) as r:
        print(r.read().decode())
except Exception:
    pass
EOF
}

wait_healthy() {
  local name=$1 port deadline=$((SECONDS + 30))
  port=$(gw_port "$name")
  until health "$port" | grep -q '"ok"'; do
    if ! pid_alive "$DEV_DIR/$name.pid"; then
      tail -n 20 "$DEV_DIR/$name.log" >&2
      die "$name exited at start (log: $(rel "$DEV_DIR")/$name.log)"
    fi
    [ $SECONDS -lt $deadline ] || die "$name does not answer /v1/health on port $port (log: $(rel "$DEV_DIR")/$name.log)"
    sleep 0.3
  done
}

cmd_up() {
  mkdir -p "$DEV_DIR"
  "$REPO/scripts/deps.sh"
  build
  "$REPO/scripts/stack.sh" up
  if [ ! -s "$DEV_DIR/jwt-secret" ]; then
    (umask 077 && od -An -tx1 -N32 /dev/urandom | tr -d ' \n' >"$DEV_DIR/jwt-secret")
    log "wrote a new JWT secret to $(rel "$DEV_DIR")/jwt-secret"
  fi
  local p
  for p in "${PROGRAMS[@]}"; do start_one "$p"; done
  wait_healthy gw1
  wait_healthy gw2
  sleep 0.5
  for p in c1 c2; do
    pid_alive "$DEV_DIR/$p.pid" || { tail -n 20 "$DEV_DIR/$p.log" >&2; die "$p exited at start (log: $(rel "$DEV_DIR")/$p.log)"; }
  done
  local demo_rc=0
  if [ "${CHAT_DEV_DEMO:-1}" != 0 ]; then
    echo
    CHAT_DEV_DIR=$DEV_DIR "$REPO/.local/venv/bin/python" "$REPO/scripts/chat-cli.py" demo \
      --gateway "ws://127.0.0.1:$GW1_PORT" --gateway2 "ws://127.0.0.1:$GW2_PORT" || demo_rc=$?
  fi
  local web=""
  if curl_json "http://127.0.0.1:$GW1_PORT/" | grep -q -i '<html'; then
    web="
Or open http://127.0.0.1:$GW1_PORT/ in a browser: the web client."
  fi
  local cli="./scripts/chat-cli.py"
  local dd=""
  [ "$DEV_DIR" = "$REPO/.local/dev" ] || dd="CHAT_DEV_DIR=$DEV_DIR "
  cat <<EOF

The chat backend runs on this machine:

  gateways   ws://127.0.0.1:$GW1_PORT/v1/ws  (gw1)    ws://127.0.0.1:$GW2_PORT/v1/ws  (gw2)
             HTTP on the same ports: GET /v1/health, GET /metrics, POST /v1/conversations
  consumers  c1, c2 in Kafka group $GROUP
  kafka      127.0.0.1:$KAFKA_PORT (topic chat.events)
  redis      127.0.0.1:$REDIS_PORT
  mongodb    $MONGO_URI (FerretDB)
  logs       $(rel "$DEV_DIR")/{gw1,gw2,c1,c2}.log   stack: $(rel "${CHAT_STACK_DIR:-$REPO/.local/stack}")/logs/

Try it, in two terminals:

  ${dd}$cli --user alice --gateway ws://127.0.0.1:$GW1_PORT --to bob
  ${dd}$cli --user bob   --gateway ws://127.0.0.1:$GW2_PORT --to alice

and type.$web

A token for curl or your own client (HS256, secret in $(rel "$DEV_DIR")/jwt-secret):

  TOKEN=\$(${dd}$cli token alice)
  curl -s -H "Authorization: Bearer \$TOKEN" -d '{"members":["bob"]}' http://127.0.0.1:$GW1_PORT/v1/conversations

Status: ./scripts/dev.sh status    Stop: ./scripts/dev.sh down    Tests: ./scripts/test.sh
EOF
  [ $demo_rc = 0 ] || die "the demo conversation failed (logs: $(rel "$DEV_DIR")/)"
}

cmd_down() {
  local p
  for p in gw1 gw2 c1 c2; do stop_one "$p"; done
  "$REPO/scripts/stack.sh" down
}

cmd_status() {
  local p ok=0 h
  for p in "${PROGRAMS[@]}"; do
    if pid_alive "$DEV_DIR/$p.pid"; then
      case $p in
        gw*)
          h=$(health "$(gw_port "$p")")
          printf '%-9s up    pid %-7s port %s %s\n' "$p" "$(cat "$DEV_DIR/$p.pid")" "$(gw_port "$p")" "${h:-(no answer on /v1/health)}"
          [ -n "$h" ] || ok=1
          ;;
        *) printf '%-9s up    pid %s\n' "$p" "$(cat "$DEV_DIR/$p.pid")" ;;
      esac
    else
      printf '%-9s down\n' "$p"
      ok=1
    fi
  done
  "$REPO/scripts/stack.sh" status || ok=1
  return $ok
}

cmd_logs() {
  local p
  for p in "${PROGRAMS[@]}"; do
    [ -f "$DEV_DIR/$p.log" ] || continue
    printf '\n--- %s\n' "$(rel "$DEV_DIR")/$p.log"
    tail -n "${LINES_PER_LOG:-20}" "$DEV_DIR/$p.log"
  done
}

case "${1:-up}" in
  up) cmd_up ;;
  down) cmd_down ;;
  status) cmd_status ;;
  logs) cmd_logs ;;
  *) sed -n '2,27p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
