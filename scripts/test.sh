#!/usr/bin/env bash
# Install labsession with its test dependencies into .venv and run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e ".[test]"
# Optional: LABSESSION_TEST_EXTRA_PACKAGES="torch==2.13.0" also tests the flowreg_torch backend.
if [ -n "${LABSESSION_TEST_EXTRA_PACKAGES:-}" ]; then
    # shellcheck disable=SC2086
    .venv/bin/python -m pip install -q $LABSESSION_TEST_EXTRA_PACKAGES
fi
.venv/bin/python -m ruff check .
.venv/bin/python -m ruff format --check .
exec .venv/bin/python -m pytest "$@"
