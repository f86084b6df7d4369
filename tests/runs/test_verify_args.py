"""rngg.verify compares a run with earlier runs of the same seed *and* the same arguments."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from labsession.errors import ReproducibilityError
from labsession.runs import RandomStateManager, is_run_id
from labsession.runs._seeds import CHECKSUM_FILE, args_fingerprint

from .conftest import script_env, write_script

SCRIPT = """
import os
from labsession.runs import session

@session
def main(n: int = 3, label: str = "a") -> int:
    # DRAW_SHIFT stands for a code change that alters the random draw with the same arguments.
    data = rngg("data").normal(size=n) + float(os.environ.get("DRAW_SHIFT", "0"))
    rngg.verify(data, "data")
    print("verified", n, label)
    return 0

if __name__ == "__main__":
    main()
"""


def _run(script, *args, shift="0"):
    env = script_env()
    env["DRAW_SHIFT"] = shift
    return subprocess.run(
        [sys.executable, str(script), *args],
        cwd=script.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _args(run):
    return json.loads((run / "CONFIGS" / "args.json").read_text())


def _runs(folder):
    return sorted(p for p in folder.iterdir() if is_run_id(p.name)) if folder.is_dir() else []


def test_changed_arguments_record_their_own_reference(tmp_path):
    script = write_script(tmp_path, "draw.py", SCRIPT)
    success = tmp_path / "draw_out" / "FINISHED_SUCCESS"
    for args in (["--n", "3"], ["--n", "5"], ["--n", "3", "--label", "b"], ["--n", "3"]):
        done = _run(script, *args)
        assert done.returncode == 0, done.stderr
        assert "ReproducibilityError" not in done.stderr
    runs = _runs(success)
    assert len(runs) == 4
    stored = [json.loads((run / CHECKSUM_FILE).read_text()) for run in runs]
    for run, record in zip(runs, stored, strict=True):
        assert record["args_sha256"] == args_fingerprint(_args(run))
    n3 = [r for r, run in zip(stored, runs, strict=True) if _args(run) == {"n": 3, "label": "a"}]
    assert len(n3) == 2
    assert n3[0] == n3[1]
    assert len({s["args_sha256"] for s in stored}) == 3


def test_same_arguments_with_a_changed_draw_still_fail(tmp_path):
    script = write_script(tmp_path, "draw.py", SCRIPT)
    assert _run(script, "--n", "4").returncode == 0
    assert _run(script, "--n", "6").returncode == 0  # other arguments in between
    done = _run(script, "--n", "4", shift="1")
    assert done.returncode != 0
    assert "ReproducibilityError" in done.stderr
    runs = _runs(tmp_path / "draw_out" / "FINISHED_SUCCESS")
    (first,) = [r for r in runs if _args(r) == {"n": 4, "label": "a"}]
    assert f"'data' differs from {first}" in done.stderr
    assert "same seed 42 and arguments" in done.stderr
    assert len(_runs(tmp_path / "draw_out" / "FINISHED_ERROR")) == 1


def test_manager_compares_only_equal_arguments(tmp_path):
    a, b, c = (tmp_path / name for name in "abc")
    RandomStateManager(1, run_dir=a, args={"n": 3}).verify(np.zeros(3), "x")
    other = RandomStateManager(1, run_dir=b, history_dirs=[a], args={"n": 4})
    assert other.verify(np.ones(4), "x")  # new arguments: a new reference, no error
    same = RandomStateManager(1, run_dir=c, history_dirs=[b, a], args={"n": 3})
    with pytest.raises(ReproducibilityError, match=r"differs from .*/a: .*and arguments"):
        same.verify(np.ones(3), "x")


def test_records_without_arguments_are_not_compared_with_runs_that_have_them(tmp_path):
    # A checksum file written before arguments were recorded has no "args_sha256".
    old = tmp_path / "old"
    RandomStateManager(2, run_dir=old).verify(np.zeros(2), "x")
    assert json.loads((old / CHECKSUM_FILE).read_text())["args_sha256"] is None
    new = RandomStateManager(2, run_dir=tmp_path / "new", history_dirs=[old], args={"k": 1})
    assert new.verify(np.ones(2), "x")
