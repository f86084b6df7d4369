import os
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.fixture
def myogestic_zip():
    return Path(__file__).parent.parent / "data" / "myogestic" / "sample.session.zip"


def run_cli(cwd: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 120):
    """``python -m labsession ARGS`` in a real subprocess in ``cwd``; output captured as text."""
    base = {k: v for k, v in os.environ.items() if k != "LABSESSION_DEBUG"}
    return subprocess.run(
        [sys.executable, "-m", "labsession", *args],
        cwd=cwd,
        env={**base, "COLUMNS": "200", **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def tree(folder: Path) -> list[str]:
    """Every path under ``folder`` (relative, sorted): what a command wrote shows as a change."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))
