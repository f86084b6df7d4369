from __future__ import annotations

import datetime as dt
import json
import logging
import os
import socket
import subprocess
import sys
import time

import pytest

from labsession.runs import archive_existing, restore_existing

from .conftest import make_run_dirs

SUMMARY_KEYS = {
    "scanned",
    "candidates",
    "resumed",
    "skipped",
    "failed",
    "bytes_in",
    "bytes_out",
    "temp_removed",
    "errors",
}


def _contents(folder):
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_dry_run_changes_nothing(tmp_path):
    runs = make_run_dirs(tmp_path, 5)
    (tmp_path / "not-a-run").mkdir()
    summary = archive_existing(tmp_path, track_bytes=True, progress=False)
    assert set(summary) == SUMMARY_KEYS | {"archived"}
    assert (summary["scanned"], summary["candidates"], summary["archived"]) == (6, 5, 0)
    assert summary["bytes_in"] == sum(sum(len(b) for b in _contents(r).values()) for r in runs)
    assert all(r.is_dir() for r in runs)
    assert not list(tmp_path.glob("*.tar.gz"))


def test_bulk_archive_and_restore_continue_past_a_failure(tmp_path):
    runs = make_run_dirs(tmp_path, 24)
    before = {r.name: _contents(r) for r in runs}
    bad = runs[7]
    os.symlink("/etc/hostname", bad / "link")  # a link out of the run: this one fails
    summary = archive_existing(tmp_path, dry_run=False, jobs=2, track_bytes=True, progress=False)
    assert summary["candidates"] == 24
    assert (summary["archived"], summary["failed"]) == (23, 1)
    assert summary["errors"][0]["path"] == str(bad)
    assert "symbolic link" in summary["errors"][0]["error"]
    assert (bad / "result.csv").is_file()  # the failing source is untouched
    assert summary["bytes_out"] > 0
    # the bytes of the files packed, as a dry run counts them (folders are not data)
    packed = [r for r in runs if r != bad]
    assert summary["bytes_in"] == sum(sum(len(b) for b in before[r.name].values()) for r in packed)
    assert sorted(p.name for p in tmp_path.glob("*.tar.gz")) == sorted(
        f"{r.name}.tar.gz" for r in runs if r != bad
    )

    # a corrupt archive among the good ones
    corrupt = tmp_path / f"{runs[3].name}.tar.gz"
    corrupt.write_bytes(corrupt.read_bytes()[:40])
    restored = restore_existing(
        tmp_path, dry_run=False, jobs=2, remove_archive=True, track_bytes=True, progress=False
    )
    assert set(restored) == SUMMARY_KEYS | {"restored"}
    assert (restored["candidates"], restored["restored"], restored["failed"]) == (23, 22, 1)
    assert restored["errors"][0]["path"] == str(corrupt)
    assert corrupt.exists()  # kept: it was not restored
    assert restored["bytes_out"] == sum(
        sum(len(b) for b in c.values())
        for name, c in before.items()
        if name not in (bad.name, runs[3].name)
    )
    for run in runs:
        if run not in (bad, runs[3]):
            assert _contents(run) == before[run.name]
            assert not (tmp_path / f"{run.name}.tar.gz").exists()


def test_filters_and_caps(tmp_path):
    runs = make_run_dirs(tmp_path, 6)
    old = time.time() - 10 * 86400
    for run in runs[:3]:
        os.utime(run, (old, old))
    assert archive_existing(tmp_path, older_than_days=5, progress=False)["candidates"] == 3
    assert archive_existing(tmp_path, pattern="t004", progress=False)["candidates"] == 1
    assert archive_existing(tmp_path, max_dirs=2, progress=False)["candidates"] == 2

    done = archive_existing(tmp_path, dry_run=False, older_than_days=5, jobs=1, progress=False)
    assert done["archived"] == 3
    assert [r.exists() for r in runs] == [False] * 3 + [True] * 3

    # an archive beside its folder is a stopped call's: a candidate, to be checked and finished
    (tmp_path / f"{runs[4].name}.tar.gz").write_bytes(b"x")
    again = archive_existing(tmp_path, progress=False)
    assert (again["candidates"], again["resumed"], again["skipped"]) == (3, 1, 0)
    (tmp_path / f"{runs[4].name}.tar.gz").unlink()

    dest = tmp_path / "restored"
    back = restore_existing(
        tmp_path, pattern="*t00[01]*.tar.gz", dest_root=dest, dry_run=False, progress=False
    )
    assert back["restored"] == 2
    assert sorted(p.name for p in dest.iterdir()) == [runs[0].name, runs[1].name]
    skip = restore_existing(tmp_path, dest_root=dest, progress=False)
    assert skip["skipped"] == 2


def test_missing_root_and_bad_format(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        archive_existing(tmp_path / "nowhere")
    (tmp_path / "file").write_text("")
    with pytest.raises(NotADirectoryError, match="not a folder"):
        restore_existing(tmp_path / "file")
    with pytest.raises(ValueError, match="zip7"):
        archive_existing(tmp_path, format="zip7")


def test_restore_existing_passes_max_bytes_and_keeps_refused_archives(tmp_path):
    runs = make_run_dirs(tmp_path, 2)
    (runs[0] / "big.bin").write_bytes(bytes(200_000))
    summary = archive_existing(tmp_path, dry_run=False, jobs=1, progress=False)
    assert summary["archived"] == 2
    summary = restore_existing(
        tmp_path, dry_run=False, jobs=1, progress=False, remove_archive=True, max_bytes=100_000
    )
    assert (summary["restored"], summary["failed"]) == (1, 1)
    assert runs[0].name in summary["errors"][0]["path"]
    assert "over the limit of 100000 bytes" in summary["errors"][0]["error"]
    assert (tmp_path / f"{runs[0].name}.tar.gz").is_file()  # kept
    assert not runs[0].exists()
    assert (runs[1] / "result.csv").is_file()


def _members(archive):
    import tarfile

    with tarfile.open(archive) as tar:
        return {
            m.name: (m.type, m.size, tar.extractfile(m).read() if m.isfile() else b"")
            for m in tar.getmembers()
        }


def test_bulk_archive_and_restore_on_a_dask_cluster_match_the_local_ones(tmp_path, caplog):
    from distributed import Client, LocalCluster

    local_root, dask_root = tmp_path / "local", tmp_path / "dask"
    local_runs = make_run_dirs(local_root, 12)
    dask_runs = make_run_dirs(dask_root, 12)
    before = {r.name: _contents(r) for r in dask_runs}
    local = archive_existing(local_root, dry_run=False, jobs=1, progress=False)
    assert local["archived"] == 12
    caplog.set_level(logging.DEBUG, logger="labsession.runs")
    with (
        LocalCluster(
            n_workers=1, threads_per_worker=2, processes=False, dashboard_address="127.0.0.1:0"
        ) as cluster,
        Client(cluster) as client,
    ):
        done = archive_existing(dask_root, dry_run=False, progress=False, client=client)
        assert (done["archived"], done["failed"]) == (12, 0)
        # the work ran on the cluster's worker threads, not in the calling thread
        packed_by = {r.threadName for r in caplog.records if r.getMessage().startswith("archived")}
        assert packed_by
        assert all("Dask" in name for name in packed_by), packed_by
        for run in local_runs:
            ours = dask_root / f"{run.name}.tar.gz"
            assert not (dask_root / run.name).exists()  # sources removed after verification
            assert _members(ours) == _members(local_root / f"{run.name}.tar.gz")
        back = restore_existing(
            dask_root, dry_run=False, remove_archive=True, progress=False, client=client
        )
    assert (back["restored"], back["failed"]) == (12, 0)
    assert {r.name: _contents(r) for r in dask_runs} == before
    assert not list(dask_root.glob("*.tar.gz"))


def test_pool_and_this_process_share_the_chunks(tmp_path, caplog):
    # 2 processes: this one takes chunks from the end while the worker starts; all verify
    runs = make_run_dirs(tmp_path, 40)
    before = {r.name: _contents(r) for r in runs}
    caplog.set_level(logging.DEBUG, logger="labsession.runs")
    done = archive_existing(tmp_path, dry_run=False, jobs=2, progress=False)
    assert (done["archived"], done["failed"]) == (40, 0)
    here = [r for r in caplog.records if r.getMessage().startswith("archived")]
    assert here
    assert str(runs[-1]) in here[0].getMessage()  # this process began with the last chunk
    assert not any(r.exists() for r in runs)
    back = restore_existing(tmp_path, dry_run=False, jobs=2, progress=False)
    assert (back["restored"], back["failed"]) == (40, 0)
    assert {r.name: _contents(r) for r in runs} == before


def test_a_call_without_a_bar_never_imports_rich(tmp_path):
    # progress=False is the scripted call: rich (~70 ms to import) stays out of it.
    make_run_dirs(tmp_path, 3)
    code = (
        "import sys; from labsession.runs import archive_existing, restore_existing; "
        f"a = archive_existing({str(tmp_path)!r}, dry_run=False, jobs=2, progress=False); "
        f"r = restore_existing({str(tmp_path)!r}, dry_run=False, jobs=1, progress=False); "
        "print(a['archived'], r['restored'], 'rich' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["3", "3", "False"]


def test_archiving_a_running_folder_skips_runs_whose_process_may_live(tmp_path):
    # Pointed at RUNNING/ to clean up interrupted runs, the call removed a live run's files.
    running = tmp_path / "analysis_out" / "RUNNING"
    live, dead, unknown, elsewhere = make_run_dirs(running, 4)
    ended = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    )
    started = (dt.datetime.now() - dt.timedelta(seconds=1)).isoformat()
    for run, pid, host in (
        (live, os.getpid(), socket.gethostname()),  # this process: alive, started before
        (dead, int(ended.stdout), socket.gethostname()),  # exited: interrupted
        (elsewhere, os.getpid(), "another-host"),  # cannot be probed from here
    ):
        record = {
            "ID": run.name,
            "PID": pid,
            "HOST": host,
            "START_DATETIME": started,
            "STATUS": "running",
        }
        (run / "CONFIGS" / "CONFIG.json").write_text(json.dumps(record))
    (unknown / "CONFIGS" / "CONFIG.json").unlink()  # as scitex-session's, until its close
    summary = archive_existing(running, dry_run=False, progress=False, jobs=1)
    assert (summary["archived"], summary["skipped"]) == (1, 3), summary
    assert not dead.exists()
    assert (running / f"{dead.name}.tar.gz").is_file()
    for run in (live, unknown, elsewhere):
        assert (run / "result.csv").is_file(), run
        assert not (running / f"{run.name}.tar.gz").exists()


LIVE_RUN = """
import sys, time
from pathlib import Path
from labsession.runs import session

@session
def main() -> int:
    (CONFIG["SDIR_RUN"] / "ready").write_text("ok")
    stop = Path(sys.argv[0]).with_name("stop")
    while not stop.exists():
        time.sleep(0.01)
    return 0

if __name__ == "__main__":
    main()
"""


@pytest.mark.parametrize("how", ["other time zone", "RUNNING is a link"])
def test_a_live_run_is_never_archived_from_its_running_folder(tmp_path, how):
    # A run started in another time zone looked hours old, its live PID taken for a reused
    # one; a RUNNING/ that is a link to a job's scratch was not seen as RUNNING/.
    script = tmp_path / "live.py"
    script.write_text(LIVE_RUN)
    env = dict(os.environ, TZ="America/New_York" if how == "other time zone" else "UTC")
    if how == "RUNNING is a link":
        (tmp_path / "scratch").mkdir()
        (tmp_path / "live_out").mkdir()
        (tmp_path / "live_out" / "RUNNING").symlink_to(tmp_path / "scratch")
    proc = subprocess.Popen([sys.executable, str(script)], cwd=tmp_path, env=env)
    try:
        running = tmp_path / "live_out" / "RUNNING"
        deadline = time.monotonic() + 60
        while not list(running.glob("*/ready")):
            assert time.monotonic() < deadline, "the run did not start"
            time.sleep(0.01)
        summary = archive_existing(running, dry_run=False, progress=False, jobs=1)
        assert (summary["archived"], summary["skipped"]) == (0, 1), summary
        assert not list(running.glob("*.tar.gz"))
    finally:
        (tmp_path / "stop").write_text("")
        assert proc.wait(timeout=60) == 0
    assert len(list((tmp_path / "live_out" / "FINISHED_SUCCESS").iterdir())) == 1
