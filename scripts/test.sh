#!/usr/bin/env bash
# Runs every test of the project against the real services, and ends with one
# line `N passed, N failed` (`, N skipped` when any were skipped). This is the
# README's second command and exactly what CI runs (.ci/run).
#
#   1. scripts/deps.sh (quick when everything is installed)
#   2. a sanitizer build in build-test (ASan + UBSan; -Werror when CI=true)
#   3. clang-format --dry-run --Werror on lib/ gateway/ consumer/ tests/
#      (counted as one test, "format")
#   4. a separate, freshly wiped test stack (.local/test-stack: Kafka 29092,
#      Redis 26379, FerretDB 27028), never the dev stack
#   5. meson test: suites unit, headers and integration (those that exist)
#   6. pytest tests/e2e: two gateways and two consumers from build-test
#   7. the test stack is stopped whatever happens (trap)
#
# The total counts every TAP line of every meson test (a test that crashed or
# printed no TAP counts once), every pytest test case and the format check;
# scripts/summary.py does the adding up. Exit status: 0 only if nothing failed.
#
# Environment: CI=true turns on -Werror; CHAT_BUILD_DIR (default build-test);
# CHAT_TEST_TIMEOUT_MULTIPLIER for meson test (default 3, sanitizers are
# slow); PYTEST_ADDOPTS passes options to pytest (e.g. -k live).
set -uo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO" || exit 1

BUILD=${CHAT_BUILD_DIR:-build-test}
LOGS=$REPO/.local/test-logs
RESULTS=$LOGS/results.tsv
VENV=$REPO/.local/venv
START=$SECONDS

# The test stack: its own directory and ports, so it never touches the dev
# stack (.local/stack, 19092/16379/27018) that may be running beside it.
export CHAT_STACK_DIR=$REPO/.local/test-stack
export CHAT_KAFKA_PORT=29092 # controller: 29093
export CHAT_REDIS_PORT=26379
export CHAT_MONGO_PORT=27028
# What the tests and the programs they start connect to.
export CHAT_KAFKA_BROKERS=127.0.0.1:29092
export CHAT_REDIS_HOST=127.0.0.1
export CHAT_MONGO_URI=mongodb://127.0.0.1:27028/chat
export CHAT_BUILD_DIR=$BUILD
export CHAT_TEST_LOGS=$LOGS
# cmocka prints TAP when asked, so each of its cases is counted.
export CMOCKA_MESSAGE_OUTPUT=${CMOCKA_MESSAGE_OUTPUT:-TAP}

step() { printf '\n==> [%4ss] %s\n' "$((SECONDS - START))" "$*"; }
record() { printf '%s\t%s\t%s\n' "$1" "$2" "${3:-}" >>"$RESULTS"; }

python_bin() {
  if [ -x "$VENV/bin/python" ]; then echo "$VENV/bin/python"; else echo python3; fi
}

TORN_DOWN=0
teardown() {
  [ "$TORN_DOWN" = 1 ] && return
  TORN_DOWN=1
  # Programs the e2e suite started, if pytest died before stopping them.
  local pidf pid
  for pidf in "$LOGS"/*.pid; do
    [ -f "$pidf" ] || continue
    pid=$(cat "$pidf")
    if kill -0 "$pid" 2>/dev/null; then
      kill -TERM "$pid" 2>/dev/null
      sleep 1
      kill -KILL "$pid" 2>/dev/null
    fi
    rm -f "$pidf"
  done
  step "stopping the test stack"
  scripts/stack.sh down || true
}
trap teardown EXIT
trap 'echo "[test] interrupted" >&2; exit 130' INT TERM

summarize() {
  step "summary (logs: ${LOGS#"$REPO"/}/)"
  local args=(--results "$RESULTS")
  [ -f "$BUILD/meson-logs/testlog.json" ] && [ "${RAN_MESON:-0}" = 1 ] &&
    args+=(--meson-log "$BUILD/meson-logs/testlog.json")
  [ "${RAN_PYTEST:-0}" = 1 ] &&
    args+=(--junit "$LOGS/pytest-junit.xml" --junit-required
      --junit-log "${LOGS#"$REPO"/}/pytest.log, service logs in ${LOGS#"$REPO"/}/")
  "$(python_bin)" scripts/summary.py "${args[@]}"
}

finish() {
  local rc
  teardown
  summarize
  rc=$?
  exit $rc
}

rm -rf "$LOGS"
mkdir -p "$LOGS"
: >"$RESULTS"

# 1. Dependencies.
step "dependencies (scripts/deps.sh)"
if ! scripts/deps.sh; then
  record "deps (scripts/deps.sh)" fail
  finish
fi

# 2. The sanitizer build. The options are applied again only when they change,
# so a second run goes straight to ninja.
step "sanitizer build in $BUILD"
WERROR=false
[ "${CI:-}" = true ] && WERROR=true
OPTS=(-Dbuildtype=debug -Db_sanitize=address,undefined -Dwerror_strict=$WERROR)
BUILD_OK=1
if [ ! -f "$BUILD/build.ninja" ]; then
  rm -rf "$BUILD"
  meson setup "$BUILD" "${OPTS[@]}" >"$LOGS/build.log" 2>&1 || BUILD_OK=0
elif [ "$(cat "$BUILD/.chat-test-options" 2>/dev/null)" != "${OPTS[*]}" ]; then
  meson configure "$BUILD" "${OPTS[@]}" >"$LOGS/build.log" 2>&1 || BUILD_OK=0
fi
if [ $BUILD_OK = 1 ]; then
  echo "${OPTS[*]}" >"$BUILD/.chat-test-options"
  meson compile -C "$BUILD" >>"$LOGS/build.log" 2>&1 || BUILD_OK=0
fi
if [ $BUILD_OK = 1 ]; then
  tail -n 1 "$LOGS/build.log"
else
  # The errors, not the configure chatter around them.
  grep -E -A4 'error:|^FAILED|ERROR:' "$LOGS/build.log" | grep -v '^cc ' | head -n 40 ||
    tail -n 40 "$LOGS/build.log"
  rm -f "$BUILD/.chat-test-options"
  record "build ($BUILD)" fail "${LOGS#"$REPO"/}/build.log"
  # Whatever binaries an earlier build left are not what is being tested.
  export CHAT_BUILD_FAILED="see ${LOGS#"$REPO"/}/build.log"
fi

# 3. Formatting, as one test.
step "clang-format check"
mapfile -t SOURCES < <(find lib gateway consumer tests -name node_modules -prune -o \
  -type f \( -name '*.c' -o -name '*.h' \) -print 2>/dev/null | sort)
if [ ${#SOURCES[@]} -eq 0 ] || clang-format --dry-run --Werror "${SOURCES[@]}" >"$LOGS/format.log" 2>&1; then
  echo "${#SOURCES[@]} files formatted as .clang-format says"
  record format pass
else
  grep -o '^[^:]*\.[ch]:' "$LOGS/format.log" | sort -u | sed 's/:$//; s/^/  needs clang-format -i: /'
  record format fail "${LOGS#"$REPO"/}/format.log"
fi

# 4. A fresh test stack.
step "test stack (${CHAT_STACK_DIR#"$REPO"/}: kafka 29092, redis 26379, ferretdb 27028)"
STACK_OK=1
scripts/stack.sh wipe && scripts/stack.sh up || STACK_OK=0
if [ $STACK_OK = 0 ]; then
  record "test stack (scripts/stack.sh up)" fail "${CHAT_STACK_DIR#"$REPO"/}/logs/"
fi

# 5. meson's suites, only those that exist (tests land suite by suite).
RAN_MESON=0
if [ $BUILD_OK = 1 ]; then
  step "meson test (unit, headers, integration)"
  mapfile -t SUITES < <(meson introspect --tests "$BUILD" 2>/dev/null | "$(python_bin)" -c '
import json, sys
have = {s.split(":", 1)[-1] for t in json.load(sys.stdin) for s in t["suite"]}
for s in ("unit", "headers", "integration"):
    print(s if s in have else "-" + s)
')
  SUITE_ARGS=()
  for s in "${SUITES[@]}"; do
    case $s in
      -*) echo "suite ${s#-}: no tests yet" ;;
      *) SUITE_ARGS+=(--suite "$s") ;;
    esac
  done
  if [ ${#SUITE_ARGS[@]} -gt 0 ]; then
    rm -f "$BUILD/meson-logs/testlog.json"
    meson test -C "$BUILD" --no-rebuild --print-errorlogs \
      --timeout-multiplier "${CHAT_TEST_TIMEOUT_MULTIPLIER:-3}" "${SUITE_ARGS[@]}" 2>&1 |
      tee "$LOGS/meson-test.log" | grep -v '^ *[0-9]*/[0-9]* .* OK ' || true
    RAN_MESON=1
    if [ ! -f "$BUILD/meson-logs/testlog.json" ]; then
      record "meson test (no testlog.json)" fail "${LOGS#"$REPO"/}/meson-test.log"
      RAN_MESON=0
    fi
  fi
fi

# 6. End to end, against the real stack.
step "end-to-end tests (pytest tests/e2e)"
RAN_PYTEST=1
"$VENV/bin/python" -m pytest tests/e2e -p no:cacheprovider -rfE \
  --junitxml="$LOGS/pytest-junit.xml" 2>&1 | tee "$LOGS/pytest.log"
PYTEST_RC=${PIPESTATUS[0]}
# 1 means tests failed, and the JUnit file names them; anything else
# (no tests collected, a usage error, an internal error, an interruption)
# is a failed run that the JUnit file may not show.
if [ "$PYTEST_RC" != 0 ] && [ "$PYTEST_RC" != 1 ]; then
  record "e2e: pytest exited with status $PYTEST_RC" fail "${LOGS#"$REPO"/}/pytest.log"
fi
# The programs under test ran with ASan/UBSan: a report in their logs is a bug
# even when every test passed (leaks show only at exit).
SAN_LOGS=$(grep -l -E 'ERROR: AddressSanitizer|ERROR: LeakSanitizer|runtime error:' \
  "$LOGS"/*.log 2>/dev/null | grep -v -E '/(pytest|build|meson-test|format|browser)\.log$' || true)
if [ -n "$SAN_LOGS" ]; then
  echo "sanitizer reports in: $SAN_LOGS"
  record "e2e: sanitizer reports in service logs" fail "$(echo "$SAN_LOGS" | sed "s|$REPO/||" | tr '\n' ' ')"
fi

finish
