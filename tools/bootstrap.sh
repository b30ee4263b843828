#!/usr/bin/env bash
# Create or refresh the project environment (.venv) from requirements.lock. Idempotent:
# does nothing (and says so) when .venv already matches the lock.
#   PYTHON=python3.11 tools/bootstrap.sh    # choose the interpreter (>= 3.11)
#   DRSL_VENV=/path/to/venv                 # choose where the environment lives
set -euo pipefail
cd "$(dirname "$0")/.."

VENV="${DRSL_VENV:-.venv}"
PYTHON="${PYTHON:-python3}"
UV_VERSION="0.13.8"

hash_file() {  # sha256 of the files that define the environment
  if command -v sha256sum >/dev/null 2>&1; then cat "$@" | sha256sum | cut -c1-16
  else cat "$@" | shasum -a 256 | cut -c1-16; fi
}
want="$(hash_file requirements.lock pyproject.toml)"
stamp="$VENV/.drsl-env"

if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -x "$VENV/bin/python" ]; then
  echo "[env] $VENV is up to date with requirements.lock ($want)"
  exit 0
fi

if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  echo "[env] error: $PYTHON is missing or older than Python 3.11 (config files need tomllib); set PYTHON=/path/to/python3.11+" >&2
  exit 1
fi

start=$(date +%s)
if [ ! -x "$VENV/bin/python" ]; then
  echo "[env] creating virtual environment $VENV with $("$PYTHON" --version 2>&1)"
  "$PYTHON" -m venv "$VENV"
fi
if [ ! -x "$VENV/bin/uv" ]; then
  echo "[env] installing uv $UV_VERSION (the installer) into $VENV"
  # PIP_FIND_LINKS= : ignore local wheel folders (a stray torch 2.13 wheel breaks torchvision)
  PIP_FIND_LINKS= "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "uv==$UV_VERSION"
fi
echo "[env] installing the exact pins of requirements.lock (first time: about a minute and ~6 GB on Linux, torch ships CUDA libraries)"
# uv reads no pip.conf: packages come from the registry by the lock's pins only
"$VENV/bin/uv" pip sync --quiet --python "$VENV/bin/python" requirements.lock
"$VENV/bin/uv" pip install --quiet --python "$VENV/bin/python" --no-deps -e .
"$VENV/bin/python" -c 'import torch, torchvision, drsl; print(f"[env] ready: drsl {drsl.__version__}, torch {torch.__version__}, torchvision {torchvision.__version__}")'
echo "$want" > "$stamp"
echo "[env] done in $(( $(date +%s) - start )) s"
