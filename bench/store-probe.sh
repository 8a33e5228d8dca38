#!/usr/bin/env bash
# The store's cost per operation as a collection grows, on a fresh private
# FerretDB (bench/store-probe.py says what is timed).
#
#   bench/store-probe.sh [N ...]            (default 1000 10000 100000)
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
PY=$BENCH_REPO/.local/venv/bin/python
[ -x "$PY" ] || bdie "the Python venv with pymongo is missing: run scripts/deps.sh"
trap bench_finish EXIT
trap "exit 130" INT TERM
bench_stack_up
{
  echo "== store probe: one operation at a time, as the collection grows"
  bench_machine
  echo "command: bench/store-probe.sh $*"
  "$PY" "$BENCH_REPO/bench/store-probe.py" "mongodb://127.0.0.1:$BENCH_MONGO_PORT/probe" "$@"
} | tee "$BENCH_RESULTS/store-probe.txt"
