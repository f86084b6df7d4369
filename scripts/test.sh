#!/usr/bin/env bash
# Install labsession with its test dependencies into .venv and run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    echo "creating .venv with $("$PYTHON" --version 2>&1)..."
    "$PYTHON" -m venv .venv
fi
echo "installing labsession and its test dependencies into .venv (2-5 minutes on a fresh machine, about 20 s once installed)..."
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e ".[test]"
# Optional: LABSESSION_TEST_EXTRA_PACKAGES="torch==2.13.0" also tests the flowreg_torch backend.
if [ -n "${LABSESSION_TEST_EXTRA_PACKAGES:-}" ]; then
    echo "installing $LABSESSION_TEST_EXTRA_PACKAGES..."
    # shellcheck disable=SC2086
    .venv/bin/python -m pip install -q $LABSESSION_TEST_EXTRA_PACKAGES
fi
echo "checking style (ruff, a few seconds)..."
.venv/bin/python -m ruff check .
.venv/bin/python -m ruff format --check .
echo "running the test suite (about 13 minutes on 2 cores)..."
exec .venv/bin/python -m pytest "$@"
