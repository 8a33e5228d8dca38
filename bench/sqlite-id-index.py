#!/usr/bin/env python3
"""Shows why FerretDB 1.24 over SQLite scans for an `_id` lookup.

    bench/sqlite-id-index.py [FILE.sqlite] [LOOKUPS]

FerretDB creates each collection's unique `_id` index on the expression
_ferretdb_sjson->"_id" but looks a document up with
_ferretdb_sjson->'$._id' = ?, and SQLite uses an expression index only for
the same expression. For every collection table in FILE (default: the
benchmark stack's, /tmp/chat-bench/stack/ferretdb/bench.sqlite) this prints
SQLite's plan and the mean time of LOOKUPS (default 20) lookups of stored
ids with each expression. Opens the file read-only; a running FerretDB is
not disturbed. See docs/performance.md, "The store"."""

import sqlite3
import sys
import time

FERRETDB = "_ferretdb_sjson->'$._id'"  # metadata.IDColumn
INDEXED = '_ferretdb_sjson->"_id"'  # what registry.go indexes


def main():
    path = sys.argv[1] if len(sys.argv) > 1 else "/tmp/chat-bench/stack/ferretdb/bench.sqlite"
    lookups = int(sys.argv[2]) if len(sys.argv) > 2 else 20
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    tables = [r[0] for r in db.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE '\\_%' ESCAPE '\\'"
        " ORDER BY name")]
    print(f"{path}: SQLite {sqlite3.sqlite_version}, {lookups} lookups of stored ids each")
    for table in tables:
        count = db.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0]
        step = max(1, count // lookups)
        ids = [r[0] for r in db.execute(
            f'SELECT {FERRETDB} FROM "{table}" WHERE rowid % ? = 0 LIMIT ?', (step, lookups))]
        if not ids:
            print(f"{table}: empty")
            continue
        print(f"{table}: {count} documents")
        for name, expr in (("as FerretDB asks", FERRETDB), ("as it indexes", INDEXED)):
            q = f'SELECT _ferretdb_sjson FROM "{table}" WHERE {expr} = ?'
            plan = db.execute("EXPLAIN QUERY PLAN " + q, (ids[0],)).fetchall()[0][3]
            start = time.perf_counter()
            for i in ids:
                if len(db.execute(q, (i,)).fetchall()) != 1:
                    sys.exit(f"{table}: {i} not found with {expr}")
            ms = (time.perf_counter() - start) * 1000 / len(ids)
            print(f"  {name:17} WHERE {expr} = ?  {ms:9.3f} ms a lookup  ({plan})")


if __name__ == "__main__":
    main()
