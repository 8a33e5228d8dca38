#!/usr/bin/env bash
# Waits until a consumer group has committed every event of its topic on
# the benchmark stack's broker, that is, until its consumers have stored
# everything produced so far (they commit a batch once it is written).
# The reconnect storm runs it (chat-loadgen --storm-settle) between the
# last missed message and the reconnect order, so that the storm measures
# the syncs and not the consumers catching up.
#
#   bench/settled.sh GROUP TOPIC [TIMEOUT_S]      (default 3600 s)
#
# Needs the stack's environment (CHAT_STACK_DIR, CHAT_KAFKA_PORT), which
# bench/lib.sh exports. Exit 0 once the lag is 0, 1 after TIMEOUT_S.
set -euo pipefail
GROUP=${1:?usage: settled.sh GROUP TOPIC [TIMEOUT_S]}
TOPIC=${2:?usage: settled.sh GROUP TOPIC [TIMEOUT_S]}
TIMEOUT=${3:-3600}
STACK=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/scripts/stack.sh
deadline=$((SECONDS + TIMEOUT))
# Each look starts a JVM (about 2 s of CPU), hence one every 15 s.
while true; do
  lag=$(CHAT_TOPIC=$TOPIC "$STACK" lag "$GROUP" 2>/dev/null || echo '?')
  printf '[settled %s] group %s: %s events not yet stored\n' "$(date '+%T')" "$GROUP" "$lag" >&2
  [ "$lag" != 0 ] || exit 0
  [ $SECONDS -lt $deadline ] || { echo "[settled] still not stored after ${TIMEOUT}s" >&2; exit 1; }
  sleep 15
done
