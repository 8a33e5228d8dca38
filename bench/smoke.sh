#!/usr/bin/env bash
# A short chat-loadgen run for the test suite: a few hundred connections,
# a few seconds of messages across the given gateways, and a non-zero exit
# on any lost or duplicated message. It asserts nothing about speed: the
# drain and every timeout are generous, so a slow or busy machine only
# makes it take longer.
#
#   CHAT_LOADGEN_GATEWAYS  host:port[,host:port...] of running gateways (required;
#                          give two or more so that deliveries cross gateways)
#   CHAT_JWT_SECRET        the gateways' HS256 secret (required)
#   CHAT_BUILD_DIR         the meson build holding bench/chat-loadgen (default <repo>/build)
#   CHAT_LOADGEN_CONNS     connections, an even number (default 160)
#   CHAT_LOADGEN_JSON      also write the results to this file
#
# Extra arguments are passed to chat-loadgen. Exit status is chat-loadgen's:
# 0 all delivered exactly once, 1 loss or duplicates, 2 the run could not be
# done (nothing acknowledged, connections or conversations failing).
#
# 160 connections are 80 conversations: all consumers' batches together then
# never update more than 80 conversations at once, which stays clear of
# FerretDB 1.24's SQLite backend hanging when concurrent update commands
# hold about 100 statements in all (see docs/performance.md).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${CHAT_BUILD_DIR:-$REPO/build}
LOADGEN=$BUILD/bench/chat-loadgen

if [ -z "${CHAT_LOADGEN_GATEWAYS:-}" ]; then
  echo "smoke: set CHAT_LOADGEN_GATEWAYS to host:port[,host:port...]" >&2
  exit 2
fi
if [ -z "${CHAT_JWT_SECRET:-}" ]; then
  echo "smoke: set CHAT_JWT_SECRET to the gateways' secret" >&2
  exit 2
fi
if [ ! -x "$LOADGEN" ]; then
  echo "smoke: $LOADGEN is not built (CHAT_BUILD_DIR=$BUILD)" >&2
  exit 2
fi

args=(
  --gateways "$CHAT_LOADGEN_GATEWAYS"
  --conns "${CHAT_LOADGEN_CONNS:-160}"
  --procs 1
  --mode pairs
  --rate 80            # half a message per second per connection: far below any gateway limit
  --window 16
  --body-size 64
  --warmup 1
  --duration 3
  --drain 180          # generous: the verdict is about loss, never about time
  --ack-timeout 180
  --connect-timeout 60
  --connect-retries 20
  --receipts=false
  --storm=false
  --idle=false
  --progress=false
  --log-level warn
)
if [ -n "${CHAT_LOADGEN_JSON:-}" ]; then
  args+=(--json "$CHAT_LOADGEN_JSON")
fi

echo "smoke: $LOADGEN ${args[*]} $*" >&2
exec "$LOADGEN" "${args[@]}" "$@"
