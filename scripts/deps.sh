#!/usr/bin/env bash
# Installs everything the project needs on a Debian 12 machine, idempotently:
#
#   1. Debian packages (compilers, meson, the C client libraries, Redis, kcat,
#      and OpenJDK/Maven/Go only when java/mvn/go are not on the PATH). It
#      asks dpkg-query what is there and runs `apt-get update` + install only
#      when something is missing.
#   2. The local stack's own pieces: Kafka's jars from Maven Central and
#      FerretDB built from the Go module proxy (`scripts/stack.sh install`,
#      cached under ~/.cache/chat-backend).
#   3. A Python venv at .local/venv with the end-to-end suite's packages from
#      PyPI (tests/e2e/requirements.txt); pip keeps its usual ~/.cache/pip.
#
# When everything is already there it only checks, in a second or two.
# Environment: CHAT_VENV (default <repo>/.local/venv), CHAT_PYTHON (the
# interpreter that makes the venv, default python3).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${CHAT_VENV:-$REPO/.local/venv}
PYTHON=${CHAT_PYTHON:-python3}
REQS=$REPO/tests/e2e/requirements.txt

log() { printf '[deps] %s\n' "$*" >&2; }
die() { printf '[deps] error: %s\n' "$*" >&2; exit 1; }

PACKAGES=(
  build-essential pkg-config meson ninja-build
  librdkafka-dev libuv1-dev libwslay-dev libmongoc-dev libbson-dev
  libhiredis-dev libsodium-dev libjansson-dev libhttp-parser-dev
  libcmocka-dev libssl-dev clang-format
  redis-server redis-tools kcat
)
# The toolchains the stack needs are usually on the machine already (from
# other sources than Debian); bring in Debian's only when they are absent.
command -v java >/dev/null 2>&1 || PACKAGES+=(openjdk-17-jre-headless)
command -v mvn >/dev/null 2>&1 || PACKAGES+=(maven)
command -v go >/dev/null 2>&1 || PACKAGES+=(golang)
# `python3 -m venv` needs ensurepip, which Debian ships separately.
if ! "$PYTHON" -c 'import ensurepip, venv' >/dev/null 2>&1; then
  PACKAGES+=(python3-venv)
  PYTHON=/usr/bin/python3
fi

missing_packages() {
  local p status
  for p in "${PACKAGES[@]}"; do
    status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
    [ "$status" = "install ok installed" ] || printf '%s\n' "$p"
  done
}

install_debian() {
  local missing
  mapfile -t missing < <(missing_packages)
  [ ${#missing[@]} -eq 0 ] && return
  local sudo=()
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || die "not root and no sudo: install ${missing[*]} by hand"
    sudo=(sudo)
  fi
  log "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  "${sudo[@]}" apt-get update -qq >&2
  "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
  local after
  after=$(missing_packages)
  [ -z "$after" ] || die "still missing after apt-get: $after"
}

install_venv() {
  local stamp=$VENV/.requirements.sha256 want
  want=$(sha256sum "$REQS" | cut -d' ' -f1)
  if [ -x "$VENV/bin/python" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] &&
    "$VENV/bin/python" -c 'import pytest, websockets, pymongo, jsonschema' >/dev/null 2>&1; then
    return
  fi
  if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import sys' >/dev/null 2>&1; then
    log "creating the Python venv at ${VENV#"$REPO"/}"
    rm -rf "$VENV"
    mkdir -p "$(dirname "$VENV")"
    "$PYTHON" -m venv "$VENV"
  fi
  log "installing the end-to-end suite's Python packages from PyPI"
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check -r "$REQS" >&2
  printf '%s\n' "$want" >"$stamp"
}

install_debian
"$REPO/scripts/stack.sh" install
install_venv
