from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import tarfile
import threading

import pytest

from labsession.runs import SessionManager
from labsession.runs._manager import pid_alive, split_archive_name


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait(timeout=30)
    return proc.pid


def _run_dir(folder, name, **config):
    run = folder / name
    (run / "CONFIGS").mkdir(parents=True)
    (run / "CONFIGS" / "CONFIG.json").write_text(json.dumps(config))
    return run


def test_registry_lifecycle():
    manager = SessionManager()
    manager.create_session("2026Y-01M-01D-00h00m00s_aaaa", {"ID": "x"})
    manager.create_session("2026Y-01M-01D-00h00m01s_bbbb")
    assert set(manager.get_active_sessions()) == {
        "2026Y-01M-01D-00h00m00s_aaaa",
        "2026Y-01M-01D-00h00m01s_bbbb",
    }
    closed = manager.close_session("2026Y-01M-01D-00h00m00s_aaaa", status="error", exit_code=1)
    assert (closed.status, closed.final_status, closed.exit_code) == ("closed", "error", 1)
    assert closed.end_time is not None
    assert set(manager.get_active_sessions()) == {"2026Y-01M-01D-00h00m01s_bbbb"}
    assert len(manager.list_sessions()) == 2
    # scitex-session's API: {} for an unknown ID, closing one is a no-op, a new one replaces
    assert manager.get_session("missing") == {}
    assert manager.close_session("missing") == {}
    manager.create_session("2026Y-01M-01D-00h00m01s_bbbb", {"ID": "again"})
    assert manager.get_session("2026Y-01M-01D-00h00m01s_bbbb")["config"] == {"ID": "again"}


def test_registry_is_thread_safe():
    manager = SessionManager()
    barrier = threading.Barrier(8)

    def work(t):
        barrier.wait()
        for i in range(200):
            sid = f"2026Y-01M-01D-00h00m00s_{t}{i:04d}"
            manager.create_session(sid)
            manager.get_active_sessions()
            manager.close_session(sid, exit_code=i % 2)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    sessions = manager.list_sessions()
    assert len(sessions) == 1600
    assert not manager.get_active_sessions()
    assert sum(r.exit_code for r in sessions.values()) == 800


def test_lists_runs_found_on_disk(tmp_path):
    out = tmp_path / "fit_out"
    dead = _dead_pid()
    alive = _run_dir(out / "RUNNING", "2026Y-01M-01D-00h00m03s_live", PID=1, HOST=None)
    # PID 1 exists in every container; a run of this host with it counts as running
    alive_cfg = json.loads((alive / "CONFIGS" / "CONFIG.json").read_text())
    assert pid_alive(alive_cfg["PID"])
    host = socket.gethostname()
    _run_dir(out / "RUNNING", "2026Y-01M-01D-00h00m04s_dead", PID=dead, HOST=host)
    _run_dir(out / "RUNNING", "2026Y-01M-01D-00h00m05s_away", PID=dead, HOST="another-node")
    _run_dir(
        out / "FINISHED_SUCCESS",
        "2026Y-01M-01D-00h00m01s_done",
        PID=5,
        EXIT_STATUS=0,
        START_DATETIME="2026-01-01T00:00:01",
        END_DATETIME="2026-01-01T00:01:00",
    )
    _run_dir(out / "FINISHED_ERROR", "2026Y-01M-01D-00h00m02s_fail", EXIT_STATUS=1)
    (out / "FINISHED_SUCCESS" / "2026Y-01M-01D-00h00m00s_arch.tar.gz").write_bytes(b"x")
    (out / "FINISHED_SUCCESS" / "notes.txt").write_text("not a run")
    (out / "FINISHED_SUCCESS" / "figures").mkdir()
    records = SessionManager().list_sessions(out)
    status = {sid[-4:]: r.status for sid, r in records.items()}
    assert status == {
        "arch": "success",
        "done": "success",
        "fail": "error",
        "live": "running",
        "dead": "interrupted",
        "away": "running",  # another host's process cannot be probed from here
    }
    assert list(records) == sorted(records)
    assert records["2026Y-01M-01D-00h00m00s_arch"].archived
    done = records["2026Y-01M-01D-00h00m01s_done"]
    assert (done.exit_code, done.end_time.minute) == (0, 1)
    assert records["2026Y-01M-01D-00h00m04s_dead"].to_dict()["pid"] == dead
    # a single status folder works as root too
    assert set(SessionManager().list_sessions(out / "FINISHED_ERROR")) == {
        "2026Y-01M-01D-00h00m02s_fail"
    }


def test_list_missing_root_names_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        SessionManager().list_sessions(tmp_path / "nowhere")


def test_split_archive_name():
    assert split_archive_name("2026Y-01M-01D-00h00m00s_abcd.tar.xz") == (
        "2026Y-01M-01D-00h00m00s_abcd",
        "tar.xz",
    )
    assert split_archive_name("data.tar.gz") is None


def test_archived_runs_are_listed_with_their_exit_status_pid_and_times(tmp_path):
    from labsession.runs import archive_session_dir

    out = tmp_path / "fit_out" / "FINISHED_ERROR"
    run = _run_dir(
        out,
        "2026Y-01M-01D-00h00m02s_fail",
        EXIT_STATUS=3,
        PID=4321,
        HOST="node7",
        END_DATETIME="2026-01-01T00:05:00",
    )
    (run / "logs").mkdir()
    (run / "logs" / "stdout.log").write_text("output\n")
    archive_session_dir(run)
    # one whose CONFIG.json lies behind 17 MiB of data (packed by another tool, in name
    # order; labsession puts CONFIGS/ first): not looked for that far
    late = _run_dir(out, "2026Y-01M-01D-00h00m03s_late", EXIT_STATUS=0, PID=99)
    with open(late / "AAA_big.bin", "wb") as f:  # sorts before CONFIGS/
        f.write(bytes(17 << 20))
    with tarfile.open(out / f"{late.name}.tar.gz", "w:gz", compresslevel=1) as tf:
        tf.add(late, arcname=late.name, filter=lambda info: info)
    shutil.rmtree(late)

    records = SessionManager().list_sessions(tmp_path / "fit_out")
    record = records["2026Y-01M-01D-00h00m02s_fail"]
    assert record.archived
    assert (record.status, record.exit_code, record.pid, record.host) == ("error", 3, 4321, "node7")
    assert record.end_time.minute == 5
    late_record = records["2026Y-01M-01D-00h00m03s_late"]
    assert late_record.archived
    assert (late_record.exit_code, late_record.pid) == (None, None)
