#!/usr/bin/env bash
# Runs the browser test of the web client against a running gateway.
#
#   CHAT_WEB_URL=http://127.0.0.1:18081 tests/browser/run.sh [node --test options]
#
# Installs Debian's Chromium if it is missing (never a browser download of
# Playwright's own), the node packages with `npm ci`, and runs the tests with
# node's test runner, printing TAP. Exits non-zero on any failure.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cd "$here"

if [ -z "${CHAT_WEB_URL:-}" ]; then
  echo "run.sh: set CHAT_WEB_URL to the gateway's base URL (e.g. http://127.0.0.1:18081)" >&2
  exit 2
fi

chromium=${CHROMIUM:-/usr/bin/chromium}
if ! dpkg-query -W -f='${Status}' chromium 2>/dev/null | grep -q 'install ok installed' || [ ! -x "$chromium" ]; then
  echo "# installing Debian's chromium" >&2
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq >&2
  $sudo apt-get install -y -qq chromium >&2
fi

if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "run.sh: node and npm are needed (apt-get install -y nodejs npm)" >&2
  exit 2
fi

node_major=$(node -p 'process.versions.node.split(".")[0]')
if [ "$node_major" -lt 20 ]; then
  echo "run.sh: node 20 or newer is needed (playwright-core and node --test); this is $(node --version)" >&2
  exit 2
fi

# Never let Playwright fetch a browser of its own.
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1

# npm ci: exactly the lock file's tree; the npm cache keeps it quick.
npm ci --no-audit --no-fund --prefer-offline --loglevel=error >&2

export CHAT_WEB_URL CHROMIUM="$chromium"
exec node --test --test-reporter=tap --test-concurrency=1 "$@" ./*.test.mjs
