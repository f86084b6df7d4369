"""The user guide builds with ``mkdocs build --strict`` (as CI runs it), every page in the nav."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


def _nav_pages(nav: list) -> list[str]:
    pages = []
    for entry in nav:
        value = next(iter(entry.values())) if isinstance(entry, dict) else entry
        pages += _nav_pages(value) if isinstance(value, list) else [value]
    return pages


@pytest.mark.timeout(400)
def test_mkdocs_builds_strictly(tmp_path):
    """No warning at all: broken links or anchors, missing pictures, bad API references."""
    site = tmp_path / "site"
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", "mkdocs.yml", "-d", site],
        cwd=ROOT,  # snippets (the benchmarks page) are read relative to the repository root
        env=env,
        capture_output=True,
        text=True,
        timeout=360,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-6000:]
    for page in ("getting-started", "cli", "file-formats", "benchmarks", "migrating"):
        assert (site / page / "index.html").is_file(), page
    benchmarks = (site / "benchmarks" / "index.html").read_text(encoding="utf-8")
    assert "recording_throughput.py" in benchmarks  # benchmarks/README.md is included
    assert "--8&lt;--" not in benchmarks


def test_every_page_is_in_the_nav():
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))
    in_nav = _nav_pages(config["nav"])
    on_disk = sorted(p.name for p in (ROOT / "docs").glob("*.md"))
    assert sorted(in_nav) == on_disk
    assert in_nav[:2] == ["index.md", "getting-started.md"]
