"""Run sessions on a disk that fills up: a real full file system (a small tmpfs).

Each child process runs in its own user and mount namespace (``unshare -rm``, the
``small_disk`` fixture) with a tmpfs mounted over a folder, works there until writes fail, and
prints what a user would see as JSON.
"""

import json
import re
import sys

import pytest

from labsession.runs import scan_runs

SCRIPT = r'''
from labsession.runs import session


@session
def main(recover: bool = False) -> int:
    """Print, fill the disk, and fail there, or free the space and print again."""
    print("before the disk is full")
    big = CONFIG["SDIR_RUN"] / "big.bin"
    fill(big)
    for i in range(3):  # each longer than a page: at most a part of the first one fits
        print(f"while full {i}", "." * 70_000)
    if not recover:
        open(CONFIG["SDIR_RUN"] / "result.txt", "w").write("x" * 100_000)  # raises ENOSPC
    os.unlink(big)
    print("after the space came back")
    return 0


if __name__ == "__main__":
    main()
'''


def _run_script(small_disk, *args):
    (small_disk.folder.parent / "fill_disk.py").write_text(small_disk.FILL + SCRIPT)
    # The script is copied onto the small disk so that its runs (fill_disk_out/) are there too.
    driver = (
        "import shutil, subprocess, sys; "
        "shutil.copy(sys.argv[1], 'fill_disk.py'); "
        "done = subprocess.run([sys.executable, 'fill_disk.py', *sys.argv[2:]], "
        "capture_output=True, text=True); "
        "shutil.copytree('fill_disk_out', sys.argv[1] + '.out', ignore="
        "shutil.ignore_patterns('big.bin')); "
        "print(done.stderr, file=sys.stderr); "
        "sys.exit(done.returncode)"
    )
    script = str(small_disk.folder.parent / "fill_disk.py")
    proc = small_disk.run("2m", [sys.executable, "-c", driver, script, *args], timeout=60)
    return proc, small_disk.folder.parent / "fill_disk.py.out"


@pytest.mark.slow
def test_a_run_that_fails_on_a_full_disk_ends_as_an_error_with_its_traceback_once(small_disk):
    proc, out = _run_script(small_disk)
    assert proc.returncode == 1, proc.stderr[-3000:]
    (record,) = scan_runs(out)
    # Not left RUNNING (an "interrupted" run to its user): the status folder tells the end.
    assert record.status == "error"
    assert record.path.parent.name == "FINISHED_ERROR"
    # The script's own error, shown once, and nothing of labsession's failing to log it.
    assert proc.stderr.count("Traceback") == 1, proc.stderr[-3000:]
    assert "OSError: [Errno 28] No space left on device" in proc.stderr
    assert "Logging error" not in proc.stderr
    # The user is told what the run's record lacks and why.
    assert "cannot write" in proc.stderr
    assert "stdout.log (No space left on device)" in proc.stderr
    assert f"run {record.session_id}: its end (status error, exit status 1" in proc.stderr
    assert "line(s) of output are missing from" in proc.stderr
    # What was written before the disk filled is kept.
    stdout_log = (record.path / "logs" / "stdout.log").read_text()
    assert stdout_log.startswith("before the disk is full\n")
    assert "3 line(s) of output are missing from" in proc.stderr


@pytest.mark.slow
def test_a_log_that_fell_behind_says_how_many_lines_it_misses(small_disk):
    proc, out = _run_script(small_disk, "--recover")
    assert proc.returncode == 0, proc.stderr[-3000:]
    (record,) = scan_runs(out)
    assert record.status == "success"
    assert record.exit_code == 0  # space was back for the record of the end
    stdout_log = (record.path / "logs" / "stdout.log").read_text()
    # The part of the first long line that fitted, if any, then the note on its own line.
    assert re.fullmatch(
        r"before the disk is full\n(while full 0 \.*\n)?"
        r"\[labsession: 3 line\(s\) of output could not be written to this log here "
        r"\(No space left on device\)\]\n"
        r"after the space came back\n",
        stdout_log,
    ), stdout_log[:200] + " ... " + stdout_log[-300:]
    assert proc.stderr.count("cannot write") == 1  # one warning, not one per line
    assert "missing from" not in proc.stderr  # the log said it itself
    assert "Traceback" not in proc.stderr


BULK = r"""
import hashlib, json, sys
from pathlib import Path

from labsession.runs import archive_existing, restore_existing

runs = Path("runs")
for i in range(40):
    run = runs / f"2026Y-01M-01D-00h00m{i:02d}s_b{i:04d}"
    (run / "logs").mkdir(parents=True)
    for j, name in enumerate(["a.txt", "logs/stdout.log", "b.bin"]):
        (run / name).write_bytes(f"run {i} file {j}\n".encode() * (30 + 40 * j))


def contents(folder):
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


made = {run.name: contents(run) for run in runs.iterdir()}


def check(summary):
    # Every run is there once, whole: as its folder, or as an archive with no folder beside it.
    kept = {}
    for name, files in made.items():
        folder, archive = runs / name, runs / f"{name}.tar.gz"
        if folder.exists():
            kept[name] = "folder" if contents(folder) == files else "changed"
        else:
            kept[name] = "archive" if archive.is_file() else "lost"
    names = {run.name for run in runs.iterdir()}
    expected = set(made) | {f"{name}.tar.gz" for name in made}
    return {
        "summary": {k: v for k, v in summary.items() if k != "errors"},
        "errors": [e["error"] for e in summary["errors"]],
        "kept": kept,
        "strays": sorted(names - expected),
    }


fill("filler", leave=int(sys.argv[1]))
result = {"archive": check(archive_existing(runs, dry_run=False, progress=False, jobs=2))}
os.unlink("filler")
done = archive_existing(runs, dry_run=False, progress=False, jobs=2)
result["archived_after"] = done["archived"] + done["resumed"]
fill("filler", leave=int(sys.argv[2]))
summary = restore_existing(runs, dry_run=False, progress=False, jobs=2, remove_archive=True)
result["restore"] = check(summary)
print(json.dumps(result))
"""


@pytest.mark.slow
def test_bulk_archive_and_restore_on_a_full_disk_lose_nothing(small_disk):
    # About 10 runs' archives fit when archiving; 4 runs' files when restoring.
    child = [sys.executable, "-c", small_disk.FILL + BULK, "12000", "20000"]
    proc = small_disk.run("2m", child, timeout=90)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    for step, archived_state in (("archive", "archive"), ("restore", "folder")):
        result = out[step]
        kept = result["kept"]
        assert set(kept.values()) <= {"folder", "archive"}, (step, kept)
        assert result["strays"] == [], (step, result["strays"])  # no temporary file is left
        summary = result["summary"]
        # Some runs went through, the others failed for the space, each named once.
        done = summary["archived" if step == "archive" else "restored"]
        assert 0 < done < 40, (step, summary)
        assert summary["failed"] == 40 - done, (step, summary)
        assert sum(state == archived_state for state in kept.values()) == done, (step, kept)
        assert len(result["errors"]) == summary["failed"]
        assert all(
            "No space left on device" in error or "free in" in error for error in result["errors"]
        ), result["errors"]
    assert out["archived_after"] == 40 - out["archive"]["summary"]["archived"]


TAIL = r"""
import io, os
from labsession.runs._tee import Tee

warnings = io.StringIO()
tee = Tee(io.StringIO(), "log.txt", warn_to=warnings)
tee.write("first\n")
fill("filler")
for i in range(3):
    tee.write(f"last {i} " + "y" * 70_000 + "\n")
os.unlink("filler")  # space is back before the close
tee.close()
print(open("log.txt").read()[-200:])
print("WARNINGS", warnings.getvalue())
"""


def test_lines_lost_just_before_the_close_are_noted_in_the_log(small_disk):
    # The note was written only before a later line: a log ending on lost lines ended on a
    # line cut short, with no note, although the close could have written it.
    proc = small_disk.run("2m", [sys.executable, "-c", small_disk.FILL + TAIL], timeout=60)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (
        proc.stdout.split("WARNINGS")[0]
        .rstrip()
        .endswith(
            "[labsession: 3 line(s) of output could not be written to this log here "
            "(No space left on device)]"
        )
    ), proc.stdout[-600:]
    assert "missing from" not in proc.stdout  # the log said it itself
