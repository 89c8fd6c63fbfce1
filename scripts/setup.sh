#!/usr/bin/env bash
# Install everything Galley needs from nothing: Node packages, the engine's Python
# environment (cached outside the clone), and the built renderer and control plane.
# Safe to run again; each step skips work that is already done.
set -euo pipefail
cd "$(dirname "$0")/.."

node_major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
if [ "$node_major" -lt 20 ]; then
  echo "error: Galley needs Node.js 20 or newer (found: $(node --version 2>/dev/null || echo none))." >&2
  exit 1
fi

# Electron's binary and Playwright's browsers are not downloaded: tests drive the system
# Chromium, and packaging fetches Electron where the network allows it.
export ELECTRON_SKIP_BINARY_DOWNLOAD=${ELECTRON_SKIP_BINARY_DOWNLOAD:-1}
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1

echo "==> Node packages"
if [ -f package-lock.json ]; then
  npm ci --no-audit --no-fund
else
  npm install --no-audit --no-fund
fi

echo "==> Engine Python environment"
bash scripts/setup-python.sh

echo "==> Build"
npm run build
echo "Setup complete."
