#!/usr/bin/env python3
"""Does the order of a batch's inserts change how fast the store takes them?

    bench/insert-order.py ferretdb URI SOURCE_DB [ROUNDS [ORDER...]]
    bench/insert-order.py sqlite FILE.sqlite [ROUNDS [ORDER...]]

Reads the messages a consumer stored (after bench/persist.sh: database
benchb on the benchmark stack's FerretDB, mongodb://127.0.0.1:27128, or
its file /tmp/chat-bench/stack/ferretdb/benchb.sqlite), and inserts the
very same documents again in several orders, 100 to a statement or
ordered bulk as the consumer does, timing each. The orders are made from
each document's conv and seq, not from the order it was stored in. ROUNDS
(default 3) rounds, every other one in reverse order of ORDERs, so that a
drift of the machine falls on each alike. The orders:

  produced   round robin over the conversations, one seq of each in turn:
             the order chat-bench-produce makes them, and the order
             chat-bench-insert (the reference of bench/persist.sh) inserts
  polled     produced, split by partition as librdkafka's default
             partitioner does (CRC32 of the conversation, 12 partitions),
             then runs of 3,000 of one partition at a time: the order the
             consumer's polls return them (fetches of about 1 MiB), so the
             order it inserted them in before it sorted
  sorted500  polled, then each run of 500 (the consumer's batch) sorted by
             {conv, seq}: what the consumer does now
  shuffled   produced, but the conversations in a new random order each
             round of seqs
  by_id      sorted by _id (time, then random)

ferretdb: through FerretDB with pymongo, each order into a fresh database
exp_<order> with the consumer's unique {conv, seq} index (dropped at the
end). The documents are encoded once, before any clock starts. 
sqlite: straight into SQLite with Python's sqlite3, in tables made as
FerretDB 1.24 makes them (one JSON text column, a unique index on
_id and one on {conv, seq} as expressions, WAL), one transaction of one
100-row INSERT per bulk as FerretDB's InsertAll runs it, without FerretDB.
Writes its scratch files next to FILE's copy in a temporary directory.

Prints documents per second for each order and round, then the mean of
each order. See docs/performance.md, "Inserts in index order"."""

import json
import os
import random
import sqlite3
import sys
import tempfile
import time
import zlib

BULK = 100
BATCH = 500
PARTITIONS = 12
POLL_RUN = 3000


def conv_num(conv):
    return int(conv.rsplit(".c", 1)[1]) if ".c" in conv else 0


def orders_of(keys):
    """keys[i] = (conv, seq, _id) of the i-th document. Returns the orders
    as lists of indexes into keys."""
    by_conv = {}
    for i in sorted(range(len(keys)), key=lambda i: (keys[i][0], keys[i][1])):
        by_conv.setdefault(keys[i][0], []).append(i)
    convs = sorted(by_conv, key=conv_num)
    rng = random.Random(1)

    def round_robin(conv_order):
        out, k = [], 0
        while len(out) < len(keys):
            for c in conv_order(k):
                if k < len(by_conv[c]):
                    out.append(by_conv[c][k])
            k += 1
        return out

    produced = round_robin(lambda k: convs)
    parts = [[] for _ in range(PARTITIONS)]
    for i in produced:
        parts[zlib.crc32(keys[i][0].encode()) % PARTITIONS].append(i)
    polled, off = [], 0
    while len(polled) < len(keys):
        for part in parts:
            polled += part[off:off + POLL_RUN]
        off += POLL_RUN
    sorted500 = []
    for off in range(0, len(polled), BATCH):
        sorted500 += sorted(polled[off:off + BATCH], key=lambda i: (keys[i][0], keys[i][1]))
    return {
        "produced": produced,
        "polled": polled,
        "sorted500": sorted500,
        "shuffled": round_robin(lambda k: rng.sample(convs, len(convs))),
        "by_id": sorted(range(len(keys)), key=lambda i: keys[i][2]),
    }


def run_ferretdb(uri, source, rounds, names):
    import pymongo
    from bson import encode
    from bson.raw_bson import RawBSONDocument

    client = pymongo.MongoClient(uri, w="majority")
    docs = list(client[source].messages.find({}).batch_size(10000))
    keys = [(d["conv"], d["seq"], d["_id"]) for d in docs]
    raw = [RawBSONDocument(encode(d)) for d in docs]
    orders = orders_of(keys)

    def insert(name):
        db = client[f"exp_{name}"]
        db.messages.drop()
        db.messages.create_index([("conv", 1), ("seq", 1)], unique=True, name="conv_seq")
        order = orders[name]
        t0 = time.monotonic()
        for off in range(0, len(order), BULK):
            db.messages.insert_many([raw[i] for i in order[off:off + BULK]], ordered=True)
        return time.monotonic() - t0

    print(f"{len(docs)} documents from {source}.messages through FerretDB ({uri})")
    measure(insert, names, rounds, len(docs))
    for name in names:
        client.drop_database(f"exp_{name}")


def run_sqlite(path, rounds, names):
    src = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    table = src.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE "
                        "'messages\\_%' ESCAPE '\\'").fetchone()[0]
    rows = [r[0] for r in src.execute(f'SELECT _ferretdb_sjson FROM "{table}"')]
    keys = []
    for r in rows:
        d = json.loads(r)
        keys.append((d["conv"], d["seq"], d["_id"]))
    orders = orders_of(keys)
    scratch = tempfile.mkdtemp(prefix="insert-order-")
    statement = "INSERT INTO m (_ferretdb_sjson) VALUES " + ", ".join(["(?)"] * BULK)

    def insert(name):
        file = os.path.join(scratch, f"{name}.sqlite")
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(file + suffix):
                os.remove(file + suffix)
        db = sqlite3.connect(file, isolation_level=None)
        db.execute("PRAGMA journal_mode = wal")
        db.execute("CREATE TABLE m (_ferretdb_sjson TEXT NOT NULL "
                   "CHECK(_ferretdb_sjson != '')) STRICT")
        db.execute('CREATE UNIQUE INDEX m__id_ ON m (_ferretdb_sjson->"_id")')
        db.execute('CREATE UNIQUE INDEX m_conv_seq ON m '
                   '(_ferretdb_sjson->"conv", _ferretdb_sjson->"seq")')
        order = orders[name]
        t0 = time.monotonic()
        for off in range(0, len(order), BULK):
            part = [rows[i] for i in order[off:off + BULK]]
            db.execute("BEGIN")
            if len(part) == BULK:
                db.execute(statement, part)
            else:
                db.execute("INSERT INTO m (_ferretdb_sjson) VALUES "
                           + ", ".join(["(?)"] * len(part)), part)
            db.execute("COMMIT")
        secs = time.monotonic() - t0
        db.close()
        return secs

    print(f"{len(rows)} documents from {path} ({table}) straight into SQLite "
          f"{sqlite3.sqlite_version}")
    measure(insert, names, rounds, len(rows))
    for name in os.listdir(scratch):
        os.remove(os.path.join(scratch, name))
    os.rmdir(scratch)


def measure(insert, names, rounds, count):
    rates = {name: [] for name in names}
    for r in range(rounds):
        for name in (names if r % 2 == 0 else names[::-1]):
            secs = insert(name)
            rates[name].append(count / secs)
            print(f"round {r + 1} {name:10s} {count / secs:8.0f} documents/s ({secs:.2f} s)",
                  flush=True)
    for name in names:
        print(f"mean     {name:10s} {sum(rates[name]) / len(rates[name]):8.0f} documents/s "
              f"over {rounds} round(s)")


def main():
    known = ["produced", "polled", "sorted500", "shuffled", "by_id"]
    if len(sys.argv) < 3 or sys.argv[1] not in ("ferretdb", "sqlite"):
        sys.exit(__doc__)
    mode = sys.argv[1]
    rest = sys.argv[3:] if mode == "sqlite" else sys.argv[4:]
    if mode == "ferretdb" and len(sys.argv) < 4:
        sys.exit(__doc__)
    rounds = int(rest[0]) if rest else 3
    names = rest[1:] or known
    for name in names:
        if name not in known:
            sys.exit(f"unknown order {name}: one of {', '.join(known)}")
    if mode == "ferretdb":
        run_ferretdb(sys.argv[2], sys.argv[3], rounds, names)
    else:
        run_sqlite(sys.argv[2], rounds, names)


if __name__ == "__main__":
    main()
