#!/usr/bin/env bash
# Benchmark 4 (issue 5): consumer persist rate against a raw bulk insert
# into the same store, in one run.
#
#   bench/persist.sh
#
#   1. the consumer: BENCH_CONVS conversations are put in the store (not
#      timed), one chat-consumer joins its group on an empty topic, then
#      chat-bench-produce writes BENCH_COUNT message envelopes (BENCH_BODY
#      bytes of body) across those conversations. The rate is BENCH_COUNT /
#      the time from the first produce until the consumers have stored
#      every message (their batch log lines say when; the store is counted
#      once at the end):
#      the consumer's whole path (poll, decode, check, seq, ordered bulk
#      inserts in commands of 100, last_seq updates, Kafka commit; its
#      live routing finds nobody online).
#   2. the reference: chat-bench-insert, a bare mongo-c-driver ordered bulk
#      insert of the same number of documents of the same shape (the fields
#      the consumer stores) in commands of 100 with the consumer's write
#      concern, into a fresh database on the same FerretDB.
#      The consumers are stopped first (a clean stop writes the last_seq
#      of every conversation; the time it took is printed), so that the
#      reference has the store to itself.
# Prints the rates and the ratio (the target is >= 70%).
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

{
  echo "== persist: chat-consumer vs a bare mongo-c-driver bulk insert, same store"
  bench_machine
  echo "command: bench/persist.sh   ($COUNT messages over $CONVS conversations, body $BODY B, $NCONS consumer(s), FerretDB $("$BENCH_REPO/scripts/stack.sh" status 2>/dev/null | grep -o 'ferretdb[^,]*' | head -1 || true))"
} | tee "$OUT.txt"

blog "putting $CONVS conversations in the store"
"$PY" - "$MONGO/$BENCH_DB" "$CONVS" <<'EOF'
import sys, time, pymongo
db = pymongo.MongoClient(sys.argv[1]).get_default_database()
n = int(sys.argv[2]); now = int(time.time() * 1000)
db.members.insert_many([{"_id": f"bench.c{k}/bench.u{k}{s}", "conv": f"bench.c{k}", "user": f"bench.u{k}{s}",
                         "delivered_seq": 0, "read_seq": 0} for k in range(n) for s in "ab"])
db.conversations.insert_many([{"_id": f"bench.c{k}", "kind": "group", "members": [f"bench.u{k}a", f"bench.u{k}b"],
                               "owner": f"bench.u{k}a", "created_ts": now, "last_seq": 0} for k in range(n)])
EOF
# shellcheck disable=SC2086 # BENCH_CONSUMER_ARGS is a list of options
for i in $(seq 1 "$NCONS"); do
  : >"$BENCH_LOGS/p$i.log"
  bench_consumer "p$i" --log-level debug ${BENCH_CONSUMER_ARGS:-}
done
names=() logs=()
for i in $(seq 1 "$NCONS"); do names+=("p$i"); logs+=("$BENCH_LOGS/p$i.log"); done
bench_consumers_settled "${names[@]}"

blog "producing $COUNT envelopes; timing until the store holds them all"
t0=$(date +%s.%N)
"$BENCH_BUILD/bench/chat-bench-produce" --kafka-brokers "$BENCH_BROKERS" --topic "$BENCH_TOPIC" \
  --create-topic=false --count "$COUNT" --size "$BODY" --convs "$CONVS" --conv-prefix bench \
  >"$OUT-produce.txt" 2>&1 || { cat "$OUT-produce.txt"; bdie "chat-bench-produce failed"; }
# The end is read from the consumers' own batch lines (--log-level debug
# prints one per batch with its time), not by asking the store: on FerretDB
# a count scans the collection, and polling it would slow the very writes
# it times. The store is counted once at the end.
consumer_s=$("$PY" - "$MONGO/$BENCH_DB" "$COUNT" "$t0" "${logs[@]}" <<'EOF'
import datetime, re, sys, time, pymongo
want, t0, logs = int(sys.argv[2]), float(sys.argv[3]), sys.argv[4:]
line = re.compile(r"^(\S+) chat-consumer debug .* batch \d+: (\d+) events applied")
last, since = -1, time.time()
while True:
    done, end = 0, 0.0
    for log in logs:
        for m in map(line.match, open(log, errors="replace")):
            if m:
                done += int(m.group(2))
                ts = datetime.datetime.fromisoformat(m.group(1).replace("Z", "+00:00")).timestamp()
                end = max(end, ts)
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
print(f"{end - t0:.3f}")
EOF
)
consumer_rate=$(awk -v n="$COUNT" -v s="$consumer_s" 'BEGIN { printf "%.0f", n / s }')
stopped=$(date +%s.%N)
for i in $(seq 1 "$NCONS"); do bench_stop_pid "$(eval "echo \$BENCH_PID_p$i")"; done
stop_s=$(awk -v a="$stopped" -v b="$(date +%s.%N)" 'BEGIN { printf "%.3f", b - a }')
stats=$(for log in "${logs[@]}"; do grep -h "stats:" "$log" | tail -1; done | sed 's/.*stats: //' || true)

blog "raw bulk insert of $COUNT documents"
"$BENCH_BUILD/bench/chat-bench-insert" --mongo-uri "$MONGO/benchraw" --count "$COUNT" --size "$BODY" \
  --convs "$CONVS" --batch 100 --json "$OUT-raw.json" >"$OUT-raw.txt" 2>&1 ||
  { cat "$OUT-raw.txt"; bdie "chat-bench-insert failed"; }
raw_rate=$(python3 -c "import json; print(f\"{json.load(open('$OUT-raw.json'))['docs_per_s']:.0f}\")")
{
  echo "consumer: $COUNT messages stored in $consumer_s s from the first produce: $consumer_rate messages/s"
  echo "          then stopped in $stop_s s (writing every conversation's last_seq)"
  [ -z "$stats" ] || echo "          (consumer stats: $stats)"
  echo "raw:      $raw_rate documents/s ($(grep -v WARNING "$OUT-raw.txt" | tail -1))"
  awk -v c="$consumer_rate" -v r="$raw_rate" 'BEGIN {
    printf "ratio:    %.0f%% of the raw bulk insert rate (target >= 70%%)\n", 100 * c / r }'
} | tee -a "$OUT.txt"
