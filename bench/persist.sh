#!/usr/bin/env bash
# Benchmark 4 (issue 5): consumer persist rate against a raw bulk insert
# into the same store, in one run.
#
#   bench/persist.sh
#
#   1. streaming: BENCH_CONVS conversations are put in the store (not
#      timed), BENCH_CONSUMERS chat-consumers join their group on an empty
#      topic, then chat-bench-produce writes BENCH_COUNT message envelopes
#      (BENCH_BODY bytes of body) across those conversations. The rate is
#      BENCH_COUNT / the time from the first produce until the consumers
#      have stored every message (their batch log lines say when; the
#      store is counted once at the end): the consumer's whole path (poll,
#      decode, check, seq, ordered bulk inserts in commands of 100, lazy
#      last_seq updates, Kafka commits; its live routing finds nobody
#      online), on two cores it shares with the producer and the broker
#      while the messages arrive.
#   2. backlog: the same again into a database and topic of its own, but
#      produced before the consumers start (a consumer draining a
#      backlog, as after a restart): the rate is BENCH_COUNT / the time
#      from the start of the consumers' first batch to the end of their
#      last (their batch lines give both), so neither the producer nor the
#      group join is in it.
#   3. the reference: chat-bench-insert, a bare mongo-c-driver ordered bulk
#      insert of the same number of documents of the same shape (the fields
#      the consumer stores) in commands of 100 with the consumer's write
#      concern, into a fresh database on the same FerretDB.
#      The consumers are stopped before it (a clean stop writes the
#      last_seq of every conversation; the time it took is printed), so
#      that the reference has the store to itself.
# Prints the rates and both ratios (the target is >= 70%).
# Settings: BENCH_COUNT (100000), BENCH_CONVS (1000), BENCH_BODY (100),
# BENCH_CONSUMERS (1), BENCH_CONSUMER_ARGS (more chat-consumer options).
# Results: $BENCH_DIR/results/persist-raw.json and persist.txt.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

COUNT=${BENCH_COUNT:-100000}
CONVS=${BENCH_CONVS:-1000}
BODY=${BENCH_BODY:-100}
NCONS=${BENCH_CONSUMERS:-1}
OUT=$BENCH_RESULTS/persist
PY=$BENCH_REPO/.local/venv/bin/python
[ -x "$PY" ] || bdie "the Python venv with pymongo is missing: run scripts/deps.sh"
export BENCH_TOPIC=bench.persist BENCH_DB=bench BENCH_GROUP=bench-persist
MONGO=mongodb://127.0.0.1:$BENCH_MONGO_PORT
trap bench_finish EXIT
trap "exit 130" INT TERM

bench_build
bench_stack_up "$BENCH_TOPIC"
bench_warm_broker

{
  echo "== persist: chat-consumer vs a bare mongo-c-driver bulk insert, same store"
  bench_machine
  echo "command: bench/persist.sh   ($COUNT messages over $CONVS conversations, body $BODY B, $NCONS consumer(s))"
} | tee "$OUT.txt"

# put_convs DB: the conversations (two members each) in database DB.
put_convs() {
  blog "putting $CONVS conversations in database $1"
  "$PY" - "$MONGO/$1" "$CONVS" <<'EOF'
import sys, time, pymongo
db = pymongo.MongoClient(sys.argv[1]).get_default_database()
n = int(sys.argv[2]); now = int(time.time() * 1000)
db.members.insert_many([{"_id": f"bench.c{k}/bench.u{k}{s}", "conv": f"bench.c{k}", "user": f"bench.u{k}{s}",
                         "delivered_seq": 0, "read_seq": 0} for k in range(n) for s in "ab"])
db.conversations.insert_many([{"_id": f"bench.c{k}", "kind": "group", "members": [f"bench.u{k}a", f"bench.u{k}b"],
                               "owner": f"bench.u{k}a", "created_ts": now, "last_seq": 0} for k in range(n)])
EOF
}

# start_consumers PREFIX: BENCH_CONSUMERS consumers PREFIX1..N on
# $BENCH_TOPIC/$BENCH_GROUP/$BENCH_DB, fresh logs; sets names and logs.
start_consumers() {
  names=() logs=()
  for i in $(seq 1 "$NCONS"); do
    : >"$BENCH_LOGS/$1$i.log"
    # shellcheck disable=SC2086 # BENCH_CONSUMER_ARGS is a list of options
    bench_consumer "$1$i" --log-level debug ${BENCH_CONSUMER_ARGS:-}
    names+=("$1$i")
    logs+=("$BENCH_LOGS/$1$i.log")
  done
}

# stop_consumers: a clean stop of those start_consumers started; sets
# stop_s and stats.
stop_consumers() {
  local stopped n
  stopped=$(date +%s.%N)
  for n in "${names[@]}"; do bench_stop_pid "$(eval "echo \$BENCH_PID_$n")"; done
  stop_s=$(awk -v a="$stopped" -v b="$(date +%s.%N)" 'BEGIN { printf "%.3f", b - a }')
  stats=$(for log in "${logs[@]}"; do grep -h "stats:" "$log" | tail -1; done | sed 's/.*stats: //' || true)
}

# produce: BENCH_COUNT envelopes to $BENCH_TOPIC.
produce() {
  "$BENCH_BUILD/bench/chat-bench-produce" --kafka-brokers "$BENCH_BROKERS" --topic "$BENCH_TOPIC" \
    --create-topic=false --count "$COUNT" --size "$BODY" --convs "$CONVS" --conv-prefix bench \
    >"$OUT-produce.txt" 2>&1 || { cat "$OUT-produce.txt"; bdie "chat-bench-produce failed"; }
}

# stored_in START: waits until the consumers' batch lines (--log-level
# debug prints one per batch with its time) add up to BENCH_COUNT events,
# checks that $BENCH_DB holds them all, and prints the seconds from START
# (a time, or "first": the start of the first batch) to the end of the
# last batch. The end is read from those lines, not by asking the store:
# on FerretDB a count scans the collection, and polling it would slow the
# very writes it times.
stored_in() {
  "$PY" - "$MONGO/$BENCH_DB" "$COUNT" "$1" "${logs[@]}" <<'EOF'
import datetime, re, sys, time, pymongo
want, start, logs = int(sys.argv[2]), sys.argv[3], sys.argv[4:]
line = re.compile(r"^(\S+) chat-consumer debug .* batch \d+: (\d+) events applied in (\d+) ms")
last, since = -1, time.time()
while True:
    done, end, first = 0, 0.0, None
    for log in logs:
        for m in map(line.match, open(log, errors="replace")):
            if m:
                done += int(m.group(2))
                ts = datetime.datetime.fromisoformat(m.group(1).replace("Z", "+00:00")).timestamp()
                end = max(end, ts)
                began = ts - int(m.group(3)) / 1000
                first = began if first is None else min(first, began)
    if done >= want:
        break
    if done != last:
        last, since = done, time.time()
    elif time.time() - since > 120:
        sys.exit(f"the consumers stopped at {done} of {want} events")
    time.sleep(0.5)
stored = pymongo.MongoClient(sys.argv[1]).get_default_database().messages.count_documents({})
if stored != want:
    sys.exit(f"the store holds {stored} messages, not {want}")
print(f"{end - (first if start == 'first' else float(start)):.3f}")
EOF
}

# 1. streaming: the consumers wait on an empty topic; then the produce.
put_convs "$BENCH_DB"
start_consumers p
bench_consumers_settled "${names[@]}"
blog "streaming: producing $COUNT envelopes; timing until the store holds them all"
t0=$(date +%s.%N)
produce
stream_s=$(stored_in "$t0")
stream_rate=$(awk -v n="$COUNT" -v s="$stream_s" 'BEGIN { printf "%.0f", n / s }')
stop_consumers
stream_stop_s=$stop_s stream_stats=$stats

# 2. backlog: everything is in Kafka before the consumers start.
export BENCH_TOPIC=bench.persist-backlog BENCH_DB=benchb BENCH_GROUP=bench-persist-backlog
bench_topic "$BENCH_TOPIC"
put_convs "$BENCH_DB"
blog "backlog: producing $COUNT envelopes before the consumers start"
produce
start_consumers b
backlog_s=$(stored_in first)
backlog_rate=$(awk -v n="$COUNT" -v s="$backlog_s" 'BEGIN { printf "%.0f", n / s }')
stop_consumers

blog "raw bulk insert of $COUNT documents"
"$BENCH_BUILD/bench/chat-bench-insert" --mongo-uri "$MONGO/benchraw" --count "$COUNT" --size "$BODY" \
  --convs "$CONVS" --batch 100 --json "$OUT-raw.json" >"$OUT-raw.txt" 2>&1 ||
  { cat "$OUT-raw.txt"; bdie "chat-bench-insert failed"; }
raw_rate=$(python3 -c "import json; print(f\"{json.load(open('$OUT-raw.json'))['docs_per_s']:.0f}\")")
{
  echo "streaming: $COUNT messages stored in $stream_s s from the first produce: $stream_rate messages/s"
  echo "           then stopped in $stream_stop_s s (writing every conversation's last_seq)"
  [ -z "$stream_stats" ] || echo "           (consumer stats: $stream_stats)"
  echo "backlog:   $COUNT messages produced first, stored in $backlog_s s from the first batch: $backlog_rate messages/s"
  echo "           then stopped in $stop_s s"
  [ -z "$stats" ] || echo "           (consumer stats: $stats)"
  echo "raw:       $raw_rate documents/s ($(grep -v WARNING "$OUT-raw.txt" | tail -1))"
  awk -v c="$stream_rate" -v b="$backlog_rate" -v r="$raw_rate" 'BEGIN {
    printf "ratio:     streaming %.0f%%, backlog %.0f%% of the raw bulk insert rate (target >= 70%%)\n", 100 * c / r, 100 * b / r }'
} | tee -a "$OUT.txt"
