#!/usr/bin/env bash
# Create the engine's Python environment from engine/requirements.lock.
#
# The environment lives outside the clone, keyed by the lock file's hash, so a fresh clone
# (CI, a second checkout) reuses it instead of downloading torch again. engine/.venv is a
# link to it; the control plane starts Python from there unless GALLEY_PYTHON is set.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
lock="$root/engine/requirements.lock"
cache=${GALLEY_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/galley}
python=${GALLEY_BOOTSTRAP_PYTHON:-python3}

if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
  echo "error: $python is $("$python" --version 2>&1); Galley's engine needs Python 3.11 or newer." >&2
  echo "Install one and point GALLEY_BOOTSTRAP_PYTHON at it." >&2
  exit 1
fi

if ! command -v uv >/dev/null 2>&1; then
  echo "Installing uv (the Python package installer) for this user"
  "$python" -m pip install --quiet --user uv==0.13.8
  export PATH="$HOME/.local/bin:$PATH"
fi

key=$( (cat "$lock"; "$python" --version) | sha256sum | cut -c1-16)
venv="$cache/venvs/engine-$key"

if [ ! -x "$venv/bin/python" ] || [ ! -f "$venv/.complete" ]; then
  echo "Creating the engine environment in $venv (torch is large: the first install takes minutes)"
  rm -rf "$venv"
  mkdir -p "$cache/venvs"
  uv venv --quiet --python "$python" "$venv"
  VIRTUAL_ENV="$venv" uv pip install --quiet --requirement "$lock"
  touch "$venv/.complete"
else
  echo "Engine environment is up to date: $venv"
fi

ln -sfn "$venv" "$root/engine/.venv"
