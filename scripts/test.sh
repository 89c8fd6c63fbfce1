#!/usr/bin/env bash
# Run every test suite: typecheck, Python lint, engine tests (pytest), control plane and
# renderer tests (vitest), and the end-to-end tests in Chromium against `galley serve`.
# Expects `npm run setup` to have run.
set -euo pipefail
cd "$(dirname "$0")/.."

chromium=${GALLEY_CHROMIUM:-/usr/bin/chromium}
if [ ! -x "$chromium" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "==> Installing Debian's Chromium for the end-to-end tests"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    echo "error: the end-to-end tests need Chromium at $chromium." >&2
    echo "Install it (Debian: sudo apt-get install chromium) or set GALLEY_CHROMIUM." >&2
    exit 1
  fi
fi

export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
status=0
run() {
  echo
  echo "==> $*"
  if ! "$@"; then
    echo "FAILED: $*" >&2
    status=1
  fi
}

run npm run typecheck
run npm run lint:py
run npm run test:py
run npm run test:unit
run npm run test:e2e
exit $status
