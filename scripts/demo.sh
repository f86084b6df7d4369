#!/usr/bin/env bash
# Install labsession into .venv and run its main demo on the embedded synthetic source.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    echo "creating .venv with $("$PYTHON" --version 2>&1)..."
    "$PYTHON" -m venv .venv
fi
echo "installing labsession into .venv (about 1 GB; 2-5 minutes on a fresh machine, about 20 s once installed)..."
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e .
echo "running the demo (about 45 s with the default options: 33 s of live recording, then training and replay)..."
exec .venv/bin/labsession demo "$@"
