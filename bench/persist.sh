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
#      the time from the first produce until the store holds every message:
#      the consumer's whole path (poll, decode, check, seq, ordered bulk
#      inserts in commands of 100, last_seq updates, Kafka commit; its
#      live routing finds nobody online).
#   2. the reference: chat-bench-insert, a bare mongo-c-driver ordered bulk
#      insert of the same number of documents of the same shape (the fields
#      the consumer stores) in commands of 100 with the consumer's write
#      concern, into a fresh database on the same FerretDB.
#   3. the same writes: chat-bench-insert --last-seq-every 500, the raw
#      inserts plus what the consumer must also write per batch of 500 (one
#      $max last_seq update per conversation in it), with nothing else of
#      the consumer's (no Kafka, no decoding, no checks).
# Prints the rates and the ratios (the target is >= 70% of 2).
# Settings: BENCH_COUNT (20000), BENCH_CONVS (1000), BENCH_BODY (100),
# BENCH_CONSUMERS (1).
# Results: $BENCH_DIR/results/persist-raw.json and persist.txt.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

COUNT=${BENCH_COUNT:-20000}
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
for i in $(seq 1 "$NCONS"); do bench_consumer "p$i"; done
names=()
for i in $(seq 1 "$NCONS"); do names+=("p$i"); done
bench_consumers_settled "${names[@]}"

blog "producing $COUNT envelopes; timing until the store holds them all"
t0=$(date +%s.%N)
"$BENCH_BUILD/bench/chat-bench-produce" --kafka-brokers "$BENCH_BROKERS" --topic "$BENCH_TOPIC" \
  --create-topic=false --count "$COUNT" --size "$BODY" --convs "$CONVS" --conv-prefix bench \
  >"$OUT-produce.txt" 2>&1 || { cat "$OUT-produce.txt"; bdie "chat-bench-produce failed"; }
consumer_s=$("$PY" - "$MONGO/$BENCH_DB" "$COUNT" "$t0" <<'EOF'
import sys, time, pymongo
db = pymongo.MongoClient(sys.argv[1]).get_default_database()
want, t0 = int(sys.argv[2]), float(sys.argv[3])
last, since = -1, time.time()
while True:
    n = db.messages.estimated_document_count()
    if n >= want:
        break
    if n != last:
        last, since = n, time.time()
    elif time.time() - since > 120:
        sys.exit(f"the store stopped growing at {n} of {want} messages")
    time.sleep(0.1)
print(f"{time.time() - t0:.3f}")
EOF
)
consumer_rate=$(awk -v n="$COUNT" -v s="$consumer_s" 'BEGIN { printf "%.0f", n / s }')
stats=$(grep -h "stats:" "$BENCH_LOGS"/p*.log | tail -"$NCONS" | sed 's/.*stats: //' || true)

blog "raw bulk insert of $COUNT documents"
"$BENCH_BUILD/bench/chat-bench-insert" --mongo-uri "$MONGO/benchraw" --count "$COUNT" --size "$BODY" \
  --convs "$CONVS" --batch 100 --json "$OUT-raw.json" >"$OUT-raw.txt" 2>&1 ||
  { cat "$OUT-raw.txt"; bdie "chat-bench-insert failed"; }
raw_rate=$(python3 -c "import json; print(f\"{json.load(open('$OUT-raw.json'))['docs_per_s']:.0f}\")")
blog "raw bulk insert of $COUNT documents with the consumer's last_seq updates"
"$BENCH_BUILD/bench/chat-bench-insert" --mongo-uri "$MONGO/benchraw2" --count "$COUNT" --size "$BODY" \
  --convs "$CONVS" --batch 100 --last-seq-every 500 --json "$OUT-raw-same.json" >"$OUT-raw-same.txt" 2>&1 ||
  { cat "$OUT-raw-same.txt"; bdie "chat-bench-insert --last-seq-every failed"; }
same_rate=$(python3 -c "import json; print(f\"{json.load(open('$OUT-raw-same.json'))['docs_per_s']:.0f}\")")
{
  echo "consumer: $COUNT messages stored in $consumer_s s from the first produce: $consumer_rate messages/s"
  [ -z "$stats" ] || echo "          (consumer stats: $stats)"
  echo "raw:      $raw_rate documents/s ($(grep -v WARNING "$OUT-raw.txt" | tail -1))"
  echo "same:     $same_rate documents/s ($(grep -v WARNING "$OUT-raw-same.txt" | tail -1))"
  awk -v c="$consumer_rate" -v r="$raw_rate" -v s="$same_rate" 'BEGIN {
    printf "ratio:    %.0f%% of the raw bulk insert rate (target >= 70%%); %.0f%% of raw code doing the same writes\n", 100 * c / r, 100 * c / s }'
} | tee -a "$OUT.txt"
