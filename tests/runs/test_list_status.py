"""The status ``runs list`` gives a run left in ``RUNNING/``: running or interrupted.

Real processes and run folders: a run killed with SIGKILL, its PID then taken by another process;
a killed run not yet reaped by its parent (a zombie).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from labsession.runs import SessionManager, archive_session_dir
from labsession.runs._scan import pid_alive, scan_runs

from .conftest import script_env, wait_for, write_script

linux_only = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="process start times are read from /proc"
)

_NS_LAST_PID = Path("/proc/sys/kernel/ns_last_pid")


def _run_dir(folder: Path, name: str, **config) -> Path:
    run = folder / name
    (run / "CONFIGS").mkdir(parents=True)
    (run / "CONFIGS" / "CONFIG.json").write_text(json.dumps(config))
    return run


def _sleeper() -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.kill()
    proc.wait(timeout=30)


def _status(out: Path) -> dict[str, str]:
    return {r.session_id[-4:]: r.status for r in scan_runs(out)}


@linux_only
def test_a_run_whose_pid_a_later_process_holds_is_interrupted(tmp_path):
    """A PID is reused once its run died: the process holding it now started after the run."""
    out = tmp_path / "fit_out" / "RUNNING"
    host = socket.gethostname()
    before = dt.datetime.now() - dt.timedelta(seconds=5)
    proc = _sleeper()
    try:
        after = dt.datetime.now() + dt.timedelta(seconds=1)
        for name, started in (("reus", before), ("live", after)):
            _run_dir(
                out,
                f"2026Y-01M-01D-00h00m01s_{name}",
                PID=proc.pid,
                HOST=host,
                START_DATETIME=started.isoformat(),
            )
        assert pid_alive(proc.pid)  # some process has the PID: the old check said "running"
        assert _status(out.parent) == {"reus": "interrupted", "live": "running"}
    finally:
        _stop(proc)


@linux_only
def test_a_killed_runs_reused_pid_shows_interrupted(tmp_path):
    """A real run killed with SIGKILL; its very PID is then given to a new process."""
    if not os.access(_NS_LAST_PID, os.W_OK):
        pytest.skip(f"{_NS_LAST_PID} is not writable (needs root in the PID namespace)")
    script = write_script(
        tmp_path,
        "victim.py",
        """
        import os
        import signal

        from labsession.runs import session


        @session
        def main():
            print("working", flush=True)
            os.kill(os.getpid(), signal.SIGKILL)


        if __name__ == "__main__":
            main()
        """,
    )
    victim = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        env=script_env(),
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert victim.returncode == -signal.SIGKILL, victim.stderr
    (run,) = (tmp_path / "victim_out" / "RUNNING").iterdir()
    config = json.loads((run / "CONFIGS" / "CONFIG.json").read_text())
    pid = config["PID"]
    assert _status(tmp_path / "victim_out") == {run.name[-4:]: "interrupted"}
    started = dt.datetime.fromisoformat(config["START_DATETIME"])
    # the process taking the PID starts clearly later than the run did
    wait_for(lambda: dt.datetime.now() > started + dt.timedelta(seconds=1), timeout=10)
    reused = None
    for _ in range(50):  # another process may take the PID first: try again
        _NS_LAST_PID.write_text(str(pid - 1))
        proc = _sleeper()
        if proc.pid == pid:
            reused = proc
            break
        _stop(proc)
    if reused is None:
        pytest.skip(f"PID {pid} could not be given to a new process")
    try:
        assert pid_alive(pid)  # the PID is in use again
        records = SessionManager().list_sessions(tmp_path / "victim_out")
        assert records[run.name].status == "interrupted"
        assert records[run.name].pid == pid
    finally:
        _stop(reused)


@linux_only
def test_a_killed_run_not_yet_reaped_is_interrupted(tmp_path):
    """A run killed while its parent has not waited for it yet (a zombie) is dead."""
    script = write_script(
        tmp_path,
        "victim.py",
        """
        import os
        import signal

        from labsession.runs import session


        @session
        def main():
            os.kill(os.getpid(), signal.SIGKILL)


        if __name__ == "__main__":
            main()
        """,
    )
    proc = subprocess.Popen(
        [sys.executable, str(script)],
        cwd=tmp_path,
        env=script_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    stat = Path(f"/proc/{proc.pid}/stat")
    try:
        # not proc.poll(): that would reap it
        wait_for(
            lambda: stat.read_bytes().rpartition(b")")[2].split()[0] == b"Z",
            timeout=120,
            what="the run to be killed",
        )
        (run,) = (tmp_path / "victim_out" / "RUNNING").iterdir()
        assert _status(tmp_path / "victim_out") == {run.name[-4:]: "interrupted"}
    finally:
        proc.kill()
        proc.wait(timeout=30)


def test_a_live_run_of_this_host_is_running(tmp_path):
    """The run's own process, started before the run's recorded start, still counts."""
    started = dt.datetime.now()
    _run_dir(
        tmp_path / "RUNNING",
        "2026Y-01M-01D-00h00m01s_self",
        PID=os.getpid(),
        HOST=socket.gethostname(),
        START_DATETIME=started.isoformat(),
    )
    assert _status(tmp_path) == {"self": "running"}


SCITEX_LIKE_RUN = """
import os
import sys
import time
from pathlib import Path

# What a live scitex-session run (0.3.1) holds: its logs, the first lines of stdout.log naming
# its PID but no host, and no CONFIGS/ until close.
run_id = "2026Y-01M-01D-00h00m01s_sxLv"
logs = Path(sys.argv[1]) / "RUNNING" / run_id / "logs"
logs.mkdir(parents=True)
(logs / "stderr.log").write_text("")
with open(logs / "stdout.log", "w") as out:
    out.write(f"\\n{'=' * 40}\\nSciTeX v0.3.1 | {run_id} (PID: {os.getpid()})\\n\\n")
    out.write(f"/lab/scripts/fit.py\\n\\nArguments: None\\n{'=' * 40}\\n")
    out.flush()
    time.sleep(120)
"""


def test_a_live_run_without_a_recorded_pid_is_running(tmp_path):
    """A live scitex-session run records no PID before it closes: it cannot be probed."""
    out = tmp_path / "sx_out"
    proc = subprocess.Popen([sys.executable, "-c", SCITEX_LIKE_RUN, str(out)])
    try:
        log = out / "RUNNING" / "2026Y-01M-01D-00h00m01s_sxLv" / "logs" / "stdout.log"
        wait_for(lambda: log.is_file() and log.stat().st_size > 0, what="the run to start")
        result = subprocess.run(
            [sys.executable, "-m", "labsession", "runs", "list", str(out), "--json"],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        rows = json.loads(result.stdout)
        assert [(r["status"], r["pid"]) for r in rows] == [("running", None)]
        assert proc.poll() is None  # the run is alive indeed
    finally:
        _stop(proc)
    # Still "running" once its process is gone. The PID in its log is not probed: without the
    # host that wrote it, a live run on another node or in a container would read as dead.
    assert _status(out) == {"sxLv": "running"}


def _labsession(*args: str, cwd: Path) -> list[dict]:
    result = subprocess.run(
        [sys.executable, "-m", "labsession", *args, "--json"],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_a_status_folder_given_as_dot_or_dotdot_keeps_its_status(tmp_path, monkeypatch):
    """``runs list .`` inside ``RUNNING/`` read the folder's name as "" (status "unknown")."""
    out = tmp_path / "fit_out"
    dead = _run_dir(
        out / "RUNNING",
        "2026Y-01M-01D-00h00m01s_dead",
        PID=2**22 + 1,
        HOST=socket.gethostname(),
        START_DATETIME="2026-01-01T00:00:01.5",
    )  # above the largest PID Linux hands out, so no process has it
    _run_dir(out / "FINISHED_SUCCESS", "2026Y-01M-01D-00h00m02s_done", EXIT_STATUS=0)
    (dead / "logs").mkdir()
    (tmp_path / "latest").symlink_to(out / "RUNNING", target_is_directory=True)
    for cwd, root, expected in (
        (tmp_path, "latest", {"dead": "interrupted"}),
        (out / "RUNNING", ".", {"dead": "interrupted"}),
        (dead / "logs", "../..", {"dead": "interrupted"}),
        (out / "FINISHED_SUCCESS" / "2026Y-01M-01D-00h00m02s_done", "..", {"done": "success"}),
    ):
        rows = _labsession("runs", "list", root, cwd=cwd)
        assert {r["session_id"][-4:]: r["status"] for r in rows} == expected, (cwd, root)
    monkeypatch.chdir(out / "RUNNING")
    assert {sid[-4:]: r.status for sid, r in SessionManager().list_sessions(".").items()} == {
        "dead": "interrupted"
    }


def test_an_interrupted_run_archived_from_running_stays_interrupted(tmp_path):
    """``runs archive RUNNING --no-dry-run`` (for interrupted runs) left an archive that
    ``runs list`` called ``running``: an archive is never probed, and its run never closed."""
    out = tmp_path / "fit_out"
    _run_dir(
        out / "RUNNING",
        "2026Y-01M-01D-00h00m01s_dead",
        PID=2**22 + 1,  # above the largest PID Linux hands out, so no process has it
        HOST=socket.gethostname(),
        START_DATETIME="2026-01-01T00:00:01.5",
    )
    assert _status(out) == {"dead": "interrupted"}
    result = subprocess.run(
        [sys.executable, "-m", "labsession", "runs", "archive", "RUNNING", "--no-dry-run"],
        cwd=out,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert [p.name for p in (out / "RUNNING").iterdir()] == ["2026Y-01M-01D-00h00m01s_dead.tar.gz"]
    rows = _labsession("runs", "list", str(out), cwd=tmp_path)
    assert [(r["status"], r["archived"]) for r in rows] == [("interrupted", True)]
    # Even one packed by hand while its process lived: nothing writes to an archive.
    live = _run_dir(
        out / "RUNNING",
        "2026Y-01M-01D-00h00m02s_self",
        PID=os.getpid(),
        HOST=socket.gethostname(),
        START_DATETIME=dt.datetime.now().isoformat(),
    )
    assert _status(out)["self"] == "running"
    archive_session_dir(live)
    assert _status(out) == {"dead": "interrupted", "self": "interrupted"}
