"""What one store operation costs as a collection grows: the evidence for
where the store, not the code, sets the limit (docs/performance.md).

    bench/store-probe.sh [SIZES...]      (a private FerretDB; or, against any store:
    .local/venv/bin/python bench/store-probe.py mongodb://HOST:PORT/probe [SIZES...])

For each size N (default 1000 10000 100000) it fills a fresh collection with
N message-shaped documents (the consumer's fields, 1,000 conversations, the
consumer's indexes) and times, each as the median of several runs:

* find one by _id (the gateway's membership check, a conversation load);
* update one by _id with $max (the consumer's last_seq write, per
  conversation per batch), alone and as 32 in one ordered bulk;
* find by conv with seq > n sorted by seq, limit 50, one batch (a history
  page, and a sync page before syncs were read in rounds);
* a sync round's page query for 64 connections (gateway/gw-sync.c): the
  64 ranges start alike, so one band {$or: [{seq: (n, n + 51], conv: {$in:
  the 64}}]}, sorted by conv and seq. With PROBE_SHAPES=1 a second line
  compares it with its worst case, a band per connection (no two ranges
  start within a page of each other), the shape rounds had before (one
  $or clause per conversation, {conv, seq in (n, n + 51]}, after a conv
  $in), that $or alone, the clauses as as many queries (these two only
  for rounds of 64 or fewer: minutes a query above), and a read of the
  whole collection;
  PROBE_ROUND=K times rounds of K connections instead of 64 (with
  PROBE_CONVS conversations, default 1000, at least K);
* find by a non-_id field with limit 1 (a member lookup by user);
* count by _id (an aggregation);
* insert 100 documents in one ordered bulk.

Write concern majority, as the consumer uses. On MongoDB each of these is an
index lookup whose cost does not grow with N.
"""

import os
import random
import statistics
import sys
import time

import pymongo
from pymongo import UpdateOne, WriteConcern

uri = sys.argv[1] if len(sys.argv) > 1 else "mongodb://127.0.0.1:27128/probe"
sizes = [int(x) for x in sys.argv[2:]] or [1000, 10000, 100000]
client = pymongo.MongoClient(uri, serverSelectionTimeoutMS=10000)
db = client.get_default_database("probe")
ROUND = int(os.environ.get("PROBE_ROUND", "64"))
CONVS = max(int(os.environ.get("PROBE_CONVS", "1000")), ROUND)


def doc(i, seq):
    return {"_id": f"m{i:012d}", "conv": f"c{i % CONVS}", "seq": seq, "from": f"u{i % CONVS}a",
            "dev": "c-1", "cid": str(i), "ts": 1700000000000 + i, "body": "x" * 100}


def median_ms(fn, runs):
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


print(f"store: {uri}  ({client.server_info().get('ferretdbVersion', 'MongoDB ' + client.server_info()['version'])})")
print(f"{'N':>8} {'find _id':>9} {'upd _id':>8} {'32 upd':>8} {'sync pg':>8} {f'round {ROUND}':>10} {'by user':>8} {'count':>8} {'ins 100':>8}   (ms, median)")
for n in sizes:
    coll = db.get_collection("probe", write_concern=WriteConcern(w="majority"))
    coll.drop()
    coll.create_index([("conv", 1), ("seq", 1)], unique=True)
    seqs = [0] * CONVS
    batch = []
    for i in range(n):
        seqs[i % CONVS] += 1
        batch.append(doc(i, seqs[i % CONVS]))
        if len(batch) == 5000:
            coll.insert_many(batch, ordered=False)
            batch = []
    if batch:
        coll.insert_many(batch, ordered=False)
    runs = 9 if n <= 10000 else 3
    rid = lambda: f"m{random.randrange(n):012d}"  # noqa: E731
    find_id = median_ms(lambda: coll.find_one({"_id": rid()}, {"_id": 1}), runs)
    upd = median_ms(lambda: coll.update_one({"_id": rid()}, {"$max": {"ts": 1}}), runs)
    upd32 = median_ms(lambda: coll.bulk_write([UpdateOne({"_id": rid()}, {"$max": {"ts": 1}}) for _ in range(32)], ordered=True), max(3, runs // 3))
    sync = median_ms(lambda: db.command("find", "probe", filter={"conv": f"c{random.randrange(CONVS)}", "seq": {"$gt": 1}},
                                        sort={"seq": 1}, limit=50, singleBatch=True), runs)
    def clauses(convs):
        return [{"conv": f"c{c}", "seq": {"$gt": 1, "$lte": 52}} for c in convs]

    def band(convs):
        return {"$or": [{"seq": {"$gt": 1, "$lte": 52}, "conv": {"$in": [f"c{c}" for c in convs]}}]}

    def round_query(shape="band"):
        convs = random.sample(range(CONVS), ROUND)
        if shape == "band":
            f = band(convs)
        elif shape == "apart":  # no two ranges start alike: a band each
            f = {"$or": [{"seq": {"$gt": 52 * i, "$lte": 52 * i + 52}, "conv": {"$in": [f"c{c}"]}} for i, c in enumerate(convs)]}
        else:
            f = {"conv": {"$in": [f"c{c}" for c in convs]}} if shape == "in+or" else {}
            f["$or"] = clauses(convs)
        return list(coll.find(f, sort=[("conv", 1), ("seq", 1)]))

    round_ms = median_ms(round_query, runs)
    if os.environ.get("PROBE_SHAPES") == "1":
        # Above 64 connections the old shapes take minutes a query: one run
        # each, and not the $or alone or one query per conversation.
        slow = 1 if ROUND > 64 else runs
        apart = median_ms(lambda: round_query("apart"), runs)
        in_or = median_ms(lambda: round_query("in+or"), slow)
        line = f"{n:>8} round {ROUND}: band {round_ms:.1f} ms; a band each {apart:.1f}; clauses after $in {in_or:.1f}"
        if ROUND <= 64:
            alone = median_ms(lambda: round_query("or"), runs)
            each = median_ms(lambda: [list(coll.find(c, sort=[("seq", 1)])) for c in clauses(random.sample(range(CONVS), ROUND))], max(1, runs // 3))
            line += f"; $or alone {alone:.1f}; {ROUND} queries {each:.1f}"
        whole = median_ms(lambda: sum(1 for _ in coll.find({}, {"_id": 1})), runs)
        print(f"{line}; whole collection {whole:.1f}", flush=True)
    by_user = median_ms(lambda: db.command("find", "probe", filter={"from": f"u{random.randrange(CONVS)}a"}, limit=1, singleBatch=True), runs)
    count = median_ms(lambda: coll.count_documents({"_id": rid()}), runs)
    base = n
    ins = median_ms(lambda: coll.insert_many([doc(base + random.randrange(10**9) * 1000 + k, 10**6 + random.randrange(10**9)) for k in range(100)], ordered=True), max(3, runs // 3))
    print(f"{n:>8} {find_id:>9.1f} {upd:>8.1f} {upd32:>8.1f} {sync:>8.1f} {round_ms:>10.1f} {by_user:>8.1f} {count:>8.1f} {ins:>8.1f}", flush=True)
coll.drop()
