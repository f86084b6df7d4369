"""``docs/cli.md`` is what ``scripts/gen_cli_docs.py`` generates from the typer app now."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _generate() -> str:
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_cli_docs.py"), "-o", "-"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return done.stdout


def test_cli_reference_is_current():
    fresh = _generate()
    current = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    assert current == fresh, "docs/cli.md is stale: run python scripts/gen_cli_docs.py"


@pytest.mark.timeout(300)
def test_cli_reference_covers_every_command_and_option():
    """Every command of the program has a section, every option a row (checked via --help)."""
    fresh = _generate()
    commands = [
        "info",
        "plot",
        "record",
        "gui",
        "synth",
        "demo",
        "motion compensate",
        "motion run",
        "motion status",
        "motion submit",
        "runs list",
        "runs archive",
        "runs restore",
    ]
    for command in commands:
        assert f"## labsession {command}\n" in fresh, command
        section = fresh.split(f"## labsession {command}\n", 1)[1].split("\n## ", 1)[0]
        done = subprocess.run(
            [sys.executable, "-m", "labsession", *command.split(), "--help"],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
            env={"COLUMNS": "200", "PATH": "/usr/bin:/bin", "TERM": "dumb"},
        )
        # The first word of each row of the help's tables: the option (or the argument).
        options = set(re.findall(r"^\W+?(--[a-z][\w-]*)", done.stdout, flags=re.MULTILINE))
        options -= {"--help"}
        assert options, done.stdout
        for option in options:
            assert f"`{option}`" in section, (command, option)
