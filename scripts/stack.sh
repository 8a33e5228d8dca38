#!/usr/bin/env bash
# Starts, stops and checks the real local stack on loopback: Apache Kafka
# (one KRaft node, broker + controller), Redis and FerretDB (MongoDB wire
# protocol over SQLite; or over a private PostgreSQL cluster, for measuring
# the store, with CHAT_STORE_BACKEND=postgresql).
#
#   scripts/stack.sh install   fetch Kafka's jars and build FerretDB (cached)
#   scripts/stack.sh up        install if needed, start all three, wait ready,
#                              create the topics
#   scripts/stack.sh down      stop all three (data is kept)
#   scripts/stack.sh status    say what runs and whether it answers
#   scripts/stack.sh wipe      down, then delete data and logs
#   scripts/stack.sh lag GROUP print how many events of the topic consumer
#                              group GROUP has not yet committed (its
#                              consumers commit once a batch is stored)
#
# Every command is idempotent. Settings come from the environment:
#   CHAT_STACK_DIR     data, logs and pid files  (default: <repo>/.local/stack)
#   CHAT_CACHE_DIR     fetched jars and binaries (default: ~/.cache/chat-backend)
#   CHAT_KAFKA_PORT    broker port               (default 19092; controller +1)
#   CHAT_REDIS_PORT    Redis port                (default 16379)
#   CHAT_MONGO_PORT    FerretDB port             (default 27018)
#   CHAT_PARTITIONS    partitions of chat.events (default 12)
#   CHAT_TOPIC         event topic               (default chat.events)
#   CHAT_DLQ_TOPIC     dead-letter topic         (default chat.events.dlq)
#   CHAT_STORE_BACKEND FerretDB's backend: sqlite (default) or postgresql (a
#                      cluster of its own under CHAT_STACK_DIR, made with the
#                      machine's PostgreSQL server binaries, run as the
#                      postgres user when started as root)
#   CHAT_PG_PORT       that cluster's port       (default CHAT_MONGO_PORT - 1000)
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
STACK_DIR=${CHAT_STACK_DIR:-$REPO/.local/stack}
CACHE_DIR=${CHAT_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/chat-backend}
KAFKA_PORT=${CHAT_KAFKA_PORT:-19092}
CTRL_PORT=$((KAFKA_PORT + 1))
REDIS_PORT=${CHAT_REDIS_PORT:-16379}
MONGO_PORT=${CHAT_MONGO_PORT:-27018}
PARTITIONS=${CHAT_PARTITIONS:-12}
TOPIC=${CHAT_TOPIC:-chat.events}
DLQ_TOPIC=${CHAT_DLQ_TOPIC:-chat.events.dlq}
KAFKA_VERSION=3.9.1
FERRETDB_VERSION=v1.24.2
STORE_BACKEND=${CHAT_STORE_BACKEND:-sqlite}
PG_PORT=${CHAT_PG_PORT:-$((MONGO_PORT - 1000))}
case "$STORE_BACKEND" in sqlite | postgresql) ;; *) echo "[stack] error: CHAT_STORE_BACKEND must be sqlite or postgresql" >&2; exit 1 ;; esac

KAFKA_LIBS=$CACHE_DIR/kafka-$KAFKA_VERSION/libs
FERRETDB_BIN=$CACHE_DIR/ferretdb-$FERRETDB_VERSION/ferretdb

log() { printf '[stack] %s\n' "$*" >&2; }
die() { printf '[stack] error: %s\n' "$*" >&2; exit 1; }

pid_alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# wait_for SECONDS DESCRIPTION COMMAND...: polls COMMAND until it succeeds.
wait_for() {
  local secs=$1 what=$2
  shift 2
  local deadline=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    if [ $SECONDS -ge $deadline ]; then
      die "$what did not become ready within ${secs}s (logs: $STACK_DIR/logs)"
    fi
    sleep 0.3
  done
}

install_kafka() {
  if [ -f "$KAFKA_LIBS/.complete" ]; then return; fi
  command -v mvn >/dev/null || die "mvn (Maven) is required to fetch Kafka's jars"
  log "fetching Apache Kafka $KAFKA_VERSION jars from Maven Central (once)"
  rm -rf "$KAFKA_LIBS"
  mkdir -p "$KAFKA_LIBS"
  mvn -q -B -f "$REPO/scripts/kafka/pom.xml" dependency:copy-dependencies \
    -Dkafka.version="$KAFKA_VERSION" -DincludeScope=runtime \
    -DoutputDirectory="$KAFKA_LIBS" >&2
  touch "$KAFKA_LIBS/.complete"
}

install_ferretdb() {
  if [ -x "$FERRETDB_BIN" ]; then return; fi
  command -v go >/dev/null || die "go is required to build FerretDB"
  log "building FerretDB $FERRETDB_VERSION from the Go module proxy (once)"
  local work src
  work=$(mktemp -d)
  (
    cd "$work"
    go mod init chat-ferretdb-build >/dev/null 2>&1
    # `go install pkg@version` asks the proxy for the module's version list,
    # which it refuses for this module; `go mod download` of the pinned
    # version does not.
    go mod download "github.com/FerretDB/FerretDB@$FERRETDB_VERSION" >&2
    src=$(go list -m -f '{{.Dir}}' "github.com/FerretDB/FerretDB@$FERRETDB_VERSION")
    cp -r "$src" ferretdb
    chmod -R u+w ferretdb
    cd ferretdb
    # A release build embeds its version; the module zip leaves it out.
    echo "$FERRETDB_VERSION" >build/version/version.txt
    mkdir -p "$(dirname "$FERRETDB_BIN")"
    go build -o "$FERRETDB_BIN.tmp" ./cmd/ferretdb >&2
    mv "$FERRETDB_BIN.tmp" "$FERRETDB_BIN"
  )
  rm -rf "$work"
}

cmd_install() {
  command -v redis-server >/dev/null || die "redis-server is missing (scripts/deps.sh installs it)"
  install_kafka
  install_ferretdb
}

kafka_java() {
  java -Xms256m -Xmx768m -XX:+UseG1GC -Djava.awt.headless=true \
    -Dlog4j.configuration="file:$STACK_DIR/kafka/log4j.properties" \
    -cp "$KAFKA_LIBS/*" "$@"
}

kafka_ready() {
  kcat -b "127.0.0.1:$KAFKA_PORT" -L -m 2 2>/dev/null | grep -q 'broker 1 at'
}

topic_ready() {
  local want=$1 topic=$2
  [ "$(kcat -b "127.0.0.1:$KAFKA_PORT" -L -t "$topic" -m 2 2>/dev/null |
    grep -c 'partition .*leader 1,')" -ge "$want" ]
}

start_kafka() {
  local dir=$STACK_DIR/kafka pidf=$STACK_DIR/run/kafka.pid
  if pid_alive "$pidf"; then log "kafka already running (pid $(cat "$pidf"))"; return; fi
  if port_open "$KAFKA_PORT"; then die "port $KAFKA_PORT is taken by another process"; fi
  mkdir -p "$dir/data"
  cat >"$dir/server.properties" <<EOF
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$CTRL_PORT
listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$CTRL_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$dir/data
num.partitions=$PARTITIONS
auto.create.topics.enable=false
offsets.topic.replication.factor=1
offsets.topic.num.partitions=6
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=4
min.insync.replicas=1
group.initial.rebalance.delay.ms=0
log.retention.hours=168
log.segment.bytes=268435456
num.network.threads=2
num.io.threads=4
EOF
  cat >"$dir/log4j.properties" <<EOF
log4j.rootLogger=WARN, file
log4j.logger.kafka=INFO
log4j.logger.org.apache.kafka=WARN
log4j.appender.file=org.apache.log4j.FileAppender
log4j.appender.file.File=$STACK_DIR/logs/kafka.log
log4j.appender.file.layout=org.apache.log4j.PatternLayout
log4j.appender.file.layout.ConversionPattern=[%d] %p %m (%c)%n
EOF
  if [ ! -f "$dir/data/meta.properties" ]; then
    log "formatting Kafka's KRaft storage"
    kafka_java kafka.tools.StorageTool format --ignore-formatted \
      -t "$(kafka_java kafka.tools.StorageTool random-uuid)" \
      -c "$dir/server.properties" >>"$STACK_DIR/logs/kafka-format.log" 2>&1
  fi
  log "starting kafka on 127.0.0.1:$KAFKA_PORT"
  nohup java -Xms256m -Xmx768m -XX:+UseG1GC -Djava.awt.headless=true \
    -Dlog4j.configuration="file:$dir/log4j.properties" \
    -cp "$KAFKA_LIBS/*" kafka.Kafka "$dir/server.properties" \
    >>"$STACK_DIR/logs/kafka.out" 2>&1 </dev/null &
  echo $! >"$pidf"
}

create_topics() {
  local t
  for t in "$TOPIC" "$DLQ_TOPIC"; do
    if topic_ready "$PARTITIONS" "$t"; then continue; fi
    log "creating topic $t ($PARTITIONS partitions)"
    kafka_java org.apache.kafka.tools.TopicCommand \
      --bootstrap-server "127.0.0.1:$KAFKA_PORT" --create --if-not-exists \
      --topic "$t" --partitions "$PARTITIONS" --replication-factor 1 \
      >>"$STACK_DIR/logs/kafka-topics.log" 2>&1
    wait_for 60 "topic $t" topic_ready "$PARTITIONS" "$t"
  done
}

start_redis() {
  local pidf=$STACK_DIR/run/redis.pid
  if pid_alive "$pidf"; then log "redis already running (pid $(cat "$pidf"))"; return; fi
  if port_open "$REDIS_PORT"; then die "port $REDIS_PORT is taken by another process"; fi
  mkdir -p "$STACK_DIR/redis"
  log "starting redis on 127.0.0.1:$REDIS_PORT"
  # Presence is soft state with TTLs: no persistence is wanted.
  redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --daemonize yes \
    --dir "$STACK_DIR/redis" --pidfile "$pidf" \
    --logfile "$STACK_DIR/logs/redis.log" --save '' --appendonly no \
    --maxclients 10000
}

# PostgreSQL's server binaries (Debian's postgresql package), for the
# postgresql backend only.
pg_bindir() {
  local d
  if command -v pg_config >/dev/null && [ -x "$(pg_config --bindir)/initdb" ]; then pg_config --bindir; return; fi
  for d in /usr/lib/postgresql/*/bin; do [ -x "$d/initdb" ] && { echo "$d"; return; }; done
  die "CHAT_STORE_BACKEND=postgresql needs PostgreSQL's server (Debian: postgresql)"
}
# Runs a PostgreSQL tool as the cluster's owner: PostgreSQL refuses root.
pg_run() {
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

start_postgres() {
  local dir=$STACK_DIR/postgres bin
  bin=$(pg_bindir)
  if pg_run "$bin/pg_ctl" -D "$dir/data" status >/dev/null 2>&1; then log "postgres already running"; return; fi
  if port_open "$PG_PORT"; then die "port $PG_PORT is taken by another process"; fi
  mkdir -p "$dir"
  [ "$(id -u)" -ne 0 ] || chown postgres "$dir" "$STACK_DIR/logs"
  if [ ! -f "$dir/data/PG_VERSION" ]; then
    log "initialising a PostgreSQL cluster in $dir"
    pg_run "$bin/initdb" -D "$dir/data" -A trust -U postgres >>"$STACK_DIR/logs/postgres-init.log" 2>&1
  fi
  log "starting postgres on 127.0.0.1:$PG_PORT"
  # Durable as a production store would be (fsync, synchronous commits).
  pg_run "$bin/pg_ctl" -D "$dir/data" -l "$STACK_DIR/logs/postgres.log" -w \
    -o "-p $PG_PORT -k $dir -c listen_addresses=127.0.0.1 -c shared_buffers=256MB -c max_connections=200" \
    start >/dev/null
  pg_run "$bin/psql" -h 127.0.0.1 -p "$PG_PORT" -U postgres -tAc \
    "select 1 from pg_database where datname = 'ferretdb'" | grep -q 1 ||
    pg_run "$bin/createdb" -h 127.0.0.1 -p "$PG_PORT" -U postgres ferretdb
}

start_ferretdb() {
  local pidf=$STACK_DIR/run/ferretdb.pid backend
  if pid_alive "$pidf"; then log "ferretdb already running (pid $(cat "$pidf"))"; return; fi
  if port_open "$MONGO_PORT"; then die "port $MONGO_PORT is taken by another process"; fi
  mkdir -p "$STACK_DIR/ferretdb"
  if [ "$STORE_BACKEND" = postgresql ]; then
    start_postgres
    backend=(--handler=postgresql --postgresql-url="postgres://postgres@127.0.0.1:$PG_PORT/ferretdb")
  else
    backend=(--handler=sqlite --sqlite-url="file:$STACK_DIR/ferretdb/")
  fi
  log "starting ferretdb ($STORE_BACKEND) on 127.0.0.1:$MONGO_PORT"
  nohup "$FERRETDB_BIN" "${backend[@]}" \
    --listen-addr="127.0.0.1:$MONGO_PORT" --debug-addr=- --state-dir="$STACK_DIR/ferretdb" \
    --telemetry=disable --log-level=warn \
    >>"$STACK_DIR/logs/ferretdb.log" 2>&1 </dev/null &
  echo $! >"$pidf"
}

cmd_up() {
  cmd_install
  mkdir -p "$STACK_DIR/run" "$STACK_DIR/logs"
  start_redis
  start_ferretdb
  start_kafka
  wait_for 20 "redis" redis-cli -p "$REDIS_PORT" ping
  wait_for 30 "ferretdb" port_open "$MONGO_PORT"
  wait_for 90 "kafka" kafka_ready
  create_topics
  log "up: kafka 127.0.0.1:$KAFKA_PORT  redis 127.0.0.1:$REDIS_PORT  mongodb://127.0.0.1:$MONGO_PORT"
}

stop_one() {
  local name=$1 pidf=$STACK_DIR/run/$1.pid pid i
  if ! pid_alive "$pidf"; then rm -f "$pidf"; return; fi
  pid=$(cat "$pidf")
  log "stopping $name (pid $pid)"
  kill "$pid" 2>/dev/null || true
  for i in $(seq 1 100); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.2
  done
  kill -9 "$pid" 2>/dev/null || true
  rm -f "$pidf"
}

stop_postgres() {
  [ -f "$STACK_DIR/postgres/data/PG_VERSION" ] || return 0
  local bin
  bin=$(pg_bindir)
  if pg_run "$bin/pg_ctl" -D "$STACK_DIR/postgres/data" status >/dev/null 2>&1; then
    log "stopping postgres"
    pg_run "$bin/pg_ctl" -D "$STACK_DIR/postgres/data" -m fast -w stop >/dev/null || true
  fi
}

cmd_down() {
  stop_one kafka
  stop_one ferretdb
  stop_postgres
  stop_one redis
}

cmd_status() {
  local ok=0
  if pid_alive "$STACK_DIR/run/kafka.pid" && kafka_ready; then
    echo "kafka     up    127.0.0.1:$KAFKA_PORT ($(kcat -b "127.0.0.1:$KAFKA_PORT" -L -t "$TOPIC" -m 2 2>/dev/null | grep -c 'partition ') partitions in $TOPIC)"
  else
    echo "kafka     down"; ok=1
  fi
  if redis-cli -p "$REDIS_PORT" ping 2>/dev/null | grep -q PONG; then
    echo "redis     up    127.0.0.1:$REDIS_PORT (PONG)"
  else
    echo "redis     down"; ok=1
  fi
  if pid_alive "$STACK_DIR/run/ferretdb.pid" && port_open "$MONGO_PORT"; then
    echo "ferretdb  up    mongodb://127.0.0.1:$MONGO_PORT ($STORE_BACKEND)"
  else
    echo "ferretdb  down"; ok=1
  fi
  return $ok
}

# The events of $TOPIC that GROUP has not committed yet, over all its
# partitions (a partition without a committed offset counts from 0).
cmd_lag() {
  local group=${1:?usage: stack.sh lag GROUP}
  kafka_java org.apache.kafka.tools.consumer.group.ConsumerGroupCommand \
    --bootstrap-server "127.0.0.1:$KAFKA_PORT" --describe --group "$group" 2>/dev/null |
    awk -v topic="$TOPIC" '$2 == topic && $3 ~ /^[0-9]+$/ && $5 ~ /^[0-9]+$/ {
        n++; lag += $5 - ($4 ~ /^[0-9]+$/ ? $4 : 0) }
      END { if (n == 0) exit 1; print lag }' ||
    die "no offsets of group $group on topic $TOPIC"
}

case "${1:-}" in
  install) cmd_install ;;
  up) cmd_up ;;
  down) cmd_down ;;
  status) cmd_status ;;
  wipe) cmd_down; rm -rf "$STACK_DIR" ;;
  lag) shift; cmd_lag "$@" ;;
  *) sed -n '2,30p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
