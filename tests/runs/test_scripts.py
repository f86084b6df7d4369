"""Real scripts in real subprocesses: one succeeds, one raises, one is killed with SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest

from labsession.runs import SessionManager, is_run_id, session

from .conftest import run_script, script_env, wait_for, write_script

OK_SCRIPT = '''
from labsession.runs import session

@session(verbose=True)
def main(n_trials: int = 3, label: str = "x", shuffle: bool = False) -> int:
    """Simulate trials.

    Parameters
    ----------
    n_trials
        How many trials to simulate.
    """
    print(f"\\x1b[32mtrials {n_trials} {label} {shuffle}\\x1b[0m")
    logger.info("mean %.3f", rngg("trials").normal(size=n_trials).mean())
    fig, ax = plt.subplots()
    ax.plot([0, 1], color=COLORS["blue"])
    fig.savefig(CONFIG["SDIR_RUN"] / "trials.png")
    return 0 if n_trials > 0 else 3

if __name__ == "__main__":
    main()
'''

RAISE_SCRIPT = """
from labsession.runs import session

@session
def main(threshold: float = 0.5):
    print("about to fail")
    raise ValueError(f"threshold {threshold} is out of range")

if __name__ == "__main__":
    main()
"""

KILL_SCRIPT = """
import time
from labsession.runs import session

@session
def main():
    print("before the kill")
    (CONFIG["SDIR_RUN"] / "ready").write_text("ok")
    while True:
        time.sleep(0.05)

if __name__ == "__main__":
    main()
"""


def _only_run(folder):
    runs = [p for p in folder.iterdir() if is_run_id(p.name)]
    assert len(runs) == 1, runs
    return runs[0]


def test_script_that_succeeds(tmp_path):
    script = write_script(tmp_path, "simulate.py", OK_SCRIPT)
    done = run_script(script, "--n-trials", "5", "--label", "pilot", "--shuffle")
    assert done.returncode == 0, done.stderr
    assert "\x1b[32mtrials 5 pilot True" in done.stdout  # the terminal keeps its colours
    out = tmp_path / "simulate_out"
    assert not (out / "RUNNING").exists()
    run = _only_run(out / "FINISHED_SUCCESS")
    assert (run / "logs" / "stdout.log").read_text() == "trials 5 pilot True\n"
    assert "mean" in (run / "logs" / "stderr.log").read_text()
    assert (run / "trials.png").stat().st_size > 0
    config = json.loads((run / "CONFIGS" / "CONFIG.json").read_text())
    assert config["ARGS"] == {"n_trials": 5, "label": "pilot", "shuffle": True}
    assert json.loads((run / "CONFIGS" / "args.json").read_text()) == config["ARGS"]
    assert config["STATUS"] == "success"
    assert config["EXIT_STATUS"] == 0
    assert config["ID"] == run.name
    assert "--n-trials 5" in config["COMMAND_LINE"]


def test_return_code_is_the_exit_code(tmp_path):
    script = write_script(tmp_path, "simulate.py", OK_SCRIPT)
    done = run_script(script, "--n-trials", "0")
    assert done.returncode == 3
    run = _only_run(tmp_path / "simulate_out" / "FINISHED_ERROR")
    assert json.loads((run / "CONFIGS" / "CONFIG.json").read_text())["EXIT_STATUS"] == 3


def test_script_that_raises(tmp_path):
    script = write_script(tmp_path, "fails.py", RAISE_SCRIPT)
    done = run_script(script, "--threshold", "2")
    assert done.returncode == 1
    assert done.stderr.count("ValueError: threshold 2.0 is out of range") == 1
    run = _only_run(tmp_path / "fails_out" / "FINISHED_ERROR")
    stderr_log = (run / "logs" / "stderr.log").read_text()
    assert "Traceback (most recent call last)" in stderr_log
    assert stderr_log.count("ValueError: threshold 2.0 is out of range") == 1
    assert (run / "logs" / "stdout.log").read_text() == "about to fail\n"
    config = json.loads((run / "CONFIGS" / "CONFIG.json").read_text())
    assert (config["STATUS"], config["EXIT_STATUS"]) == ("error", 1)


def test_script_killed_while_running_is_found(tmp_path):
    script = write_script(tmp_path, "stuck.py", KILL_SCRIPT)
    proc = subprocess.Popen(
        [sys.executable, str(script)],
        cwd=tmp_path,
        env=script_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        running = tmp_path / "stuck_out" / "RUNNING"
        wait_for(
            lambda: running.is_dir() and any((p / "ready").exists() for p in running.iterdir()),
            timeout=60,
            what="the script to reach its loop",
        )
        assert SessionManager().list_sessions(tmp_path / "stuck_out")  # listed while alive
        live = next(iter(SessionManager().list_sessions(tmp_path / "stuck_out").values()))
        assert live.status == "running"
        assert live.pid == proc.pid
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    run = _only_run(running)
    records = SessionManager().list_sessions(tmp_path / "stuck_out")
    record = records[run.name]
    assert record.status == "interrupted"
    assert record.path == run
    assert record.pid == proc.pid
    assert record.end_time is None
    assert (run / "logs" / "stdout.log").read_text() == "before the kill\n"  # no line lost


def test_help_starts_no_run(tmp_path):
    script = write_script(tmp_path, "simulate.py", OK_SCRIPT)
    done = run_script(script, "--help")
    assert done.returncode == 0
    assert "Simulate trials." in done.stdout
    assert "How many trials to simulate." in done.stdout
    assert "--shuffle, --no-shuffle" in done.stdout
    assert not (tmp_path / "simulate_out").exists()


def test_bad_argument_starts_no_run(tmp_path):
    script = write_script(tmp_path, "simulate.py", OK_SCRIPT)
    done = run_script(script, "--n-trials", "many")
    assert done.returncode == 2
    assert "invalid int value" in done.stderr
    assert not (tmp_path / "simulate_out").exists()


@pytest.mark.parametrize("mode", ["call", "run"])
def test_plain_call_and_run(tmp_path, mode):
    body = """
    import sys
    from labsession.runs import run, session

    @session
    def main(k: int = 1) -> int:
        print("k", k)
        return k

    if __name__ == "__main__":
        if sys.argv[1] == "call":
            print("plain", main(k=4))
        else:
            sys.exit(run(main, parse_args=["--k", "5"]))
    """
    script = write_script(tmp_path, "api.py", body)
    done = run_script(script, mode)
    if mode == "call":
        assert done.returncode == 0
        assert "plain 4" in done.stdout
        assert not (tmp_path / "api_out").exists()
    else:
        assert done.returncode == 5
        run = _only_run(tmp_path / "api_out" / "FINISHED_ERROR")
        assert (run / "logs" / "stdout.log").read_text() == "k 5\n"


RETURNS_SCRIPT = '''
import sys
import numpy as np
from labsession.runs import session

@session
def main(kind: str = "numpy-zero") -> int:
    """Return what ``kind`` names."""
    if kind == "numpy-zero":
        return np.int64(0)
    if kind == "numpy-true":
        return np.bool_(True)
    if kind == "exit-message":
        sys.exit("the input folder is empty")
    if kind == "exit-numpy":
        sys.exit(np.int64(4))
    if kind == "exit-512":
        sys.exit(512)
    if kind == "exit-error":
        try:
            open("missing.csv")
        except OSError as error:
            sys.exit(error)  # Python prints the error and exits with 1
    if kind == "array-in-config":
        CONFIG["weights"] = np.array([1.0, 2.0, 3.0])  # failed the end's record: left RUNNING
        return 0
    return 256

if __name__ == "__main__":
    main()
'''


@pytest.mark.parametrize(
    ("kind", "code", "status", "recorded"),
    [
        ("numpy-zero", 0, "FINISHED_SUCCESS", 0),  # np.int64(0) was recorded as an error
        ("numpy-true", 1, "FINISHED_ERROR", 1),
        ("exit-numpy", 4, "FINISHED_ERROR", 4),  # Python would print it and exit with 1
        ("too-large", 1, "FINISHED_ERROR", 256),  # the process exited with 0: a success
        ("exit-512", 1, "FINISHED_ERROR", 512),
        ("exit-message", 1, "FINISHED_ERROR", 1),
        ("exit-error", 1, "FINISHED_ERROR", 1),
        ("array-in-config", 0, "FINISHED_SUCCESS", 0),
    ],
)
def test_recorded_status_and_process_exit_code_agree(tmp_path, kind, code, status, recorded):
    script = write_script(tmp_path, "returns.py", RETURNS_SCRIPT)
    done = run_script(script, "--kind", kind)
    assert done.returncode == code, done.stderr
    run = _only_run(tmp_path / "returns_out" / status)
    assert json.loads((run / "CONFIGS" / "CONFIG.json").read_text())["EXIT_STATUS"] == recorded
    if kind == "exit-message":  # shown once on the terminal, and kept in the run's log
        assert done.stderr.count("the input folder is empty") == 1
        assert (run / "logs" / "stderr.log").read_text() == "the input folder is empty\n"
    if kind == "exit-error":  # was shown nowhere once the exit status was replaced
        message = "[Errno 2] No such file or directory: 'missing.csv'"
        assert done.stderr.count(message) == 1
        assert (run / "logs" / "stderr.log").read_text() == message + "\n"
    if kind == "array-in-config":
        config = json.loads((run / "CONFIGS" / "CONFIG.json").read_text())
        assert config["weights"] == [1.0, 2.0, 3.0]


LOGGING_SCRIPT = """
import logging, sys
from labsession.runs import session

if sys.argv[1:] == ["--bare"]:
    sys.argv.pop()
    logging.basicConfig(format="%(levelname)s %(message)s")  # the root level stays WARNING
else:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
log = logging.getLogger("analysis")

@session
def main() -> int:
    log.info("epoch 1 loss 0.5")
    return 0

if __name__ == "__main__":
    main()
"""


@pytest.mark.parametrize("bare", [False, True])
def test_a_script_that_set_up_logging_itself_logs_each_message_once(tmp_path, bare):
    script = write_script(tmp_path, "logs_itself.py", LOGGING_SCRIPT)
    done = run_script(script, *(["--bare"] if bare else []))
    assert done.returncode == 0, done.stderr
    assert done.stderr.count("epoch 1 loss 0.5") == 1
    assert "INFO epoch 1 loss 0.5" in done.stderr  # in the script's own format
    run = _only_run(tmp_path / "logs_itself_out" / "FINISHED_SUCCESS")
    assert (run / "logs" / "stderr.log").read_text().count("epoch 1 loss 0.5") == 1


VERIFY_SCRIPT = """
import os
from labsession.runs import session

@session(seed=42, archive_format="tar.gz")
def main() -> int:
    y = rngg("noise").normal(size=5)
    if os.environ.get("CHANGE"):
        y = y + 1e-9  # not what the earlier run computed
    rngg.verify(y, "y")
    return 0

if __name__ == "__main__":
    main()
"""


def test_verify_compares_with_an_earlier_archived_run(tmp_path):
    # Archived runs were skipped: archiving turned the check off without a word.
    script = write_script(tmp_path, "verified.py", VERIFY_SCRIPT)
    assert run_script(script).returncode == 0
    archives = list((tmp_path / "verified_out" / "FINISHED_SUCCESS").glob("*.tar.gz"))
    assert len(archives) == 1
    env = dict(os.environ, CHANGE="1")
    done = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert done.returncode == 1
    assert "ReproducibilityError" in done.stderr
    assert archives[0].name.removesuffix(".tar.gz") in done.stderr  # names the earlier run


RUN_SCRIPT = """
import sys
from labsession.runs import run

def main():
    return 256

if __name__ == "__main__":
    code = run(main)
    print("run returned", code, file=sys.__stderr__)
    sys.exit(code)
"""


def test_run_returns_the_code_the_process_can_exit_with(tmp_path):
    # run() returned 256: sys.exit(run(main)) then exited with 0 for a FINISHED_ERROR run.
    script = write_script(tmp_path, "with_run.py", RUN_SCRIPT)
    done = run_script(script)
    assert done.returncode == 1, done.stderr
    assert "run returned 1" in done.stderr
    run = _only_run(tmp_path / "with_run_out" / "FINISHED_ERROR")
    assert json.loads((run / "CONFIGS" / "CONFIG.json").read_text())["EXIT_STATUS"] == 256


def test_an_unknown_archive_format_fails_before_any_run():
    with pytest.raises(ValueError, match="zip"):
        session(archive_format="zip")


SIGNAL_SCRIPT = """
import signal, time
from labsession.runs import session

def on_signal(signum, frame):
    print("got signal")

@session
def main() -> int:
    signal.signal(signal.SIGUSR1, on_signal)
    (CONFIG["SDIR_RUN"] / "ready").write_text("ok")
    end = time.monotonic() + 4
    while time.monotonic() < end:
        print("working on a line that the signal handler may interrupt")
    return 0

if __name__ == "__main__":
    main()
"""


def test_a_signal_handler_that_prints_never_hangs_the_run(tmp_path):
    # The tee held a lock while writing; a handler printing on the same thread waited for it
    # forever.
    script = write_script(tmp_path, "signals.py", SIGNAL_SCRIPT)
    proc = subprocess.Popen(
        [sys.executable, str(script)],
        cwd=tmp_path,
        env=script_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    running = tmp_path / "signals_out" / "RUNNING"
    wait_for(lambda: any(running.glob("*/ready")), what="the run to start")
    for _ in range(300):
        if proc.poll() is not None:
            break
        os.kill(proc.pid, signal.SIGUSR1)
    try:
        _, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
        proc.communicate()
    assert proc.returncode == 0, stderr[-2000:]
    run = _only_run(tmp_path / "signals_out" / "FINISHED_SUCCESS")
    assert "got signal" in (run / "logs" / "stdout.log").read_text()


@pytest.mark.parametrize("mistake", ["yaml", "seed"])
def test_a_config_mistake_is_one_line_and_starts_no_run(tmp_path, mistake):
    """A bad config/*.yaml or seed printed a long chained traceback through labsession; now one
    ``error:`` line naming the file or value, exit 2 as for a bad argument, and no run folder.
    ``run`` still raises the ConfigError for a caller to catch."""
    seed = "-1" if mistake == "seed" else "0"
    body = f"""
    import sys
    from labsession.errors import ConfigError
    from labsession.runs import run, session

    @session(seed={seed})
    def main() -> int:
        return 0

    if __name__ == "__main__":
        if sys.argv[1:] == ["run"]:
            try:
                run(main, parse_args=[], seed={seed})
            except ConfigError as exc:
                print("caught", type(exc).__name__)
        else:
            main()
    """
    script = write_script(tmp_path, "cfg.py", body)
    if mistake == "yaml":
        (tmp_path / "config").mkdir()
        (tmp_path / "config" / "paths.yaml").write_text("a: [1,\n")
        expected = "error: config/paths.yaml: not valid YAML ("
    else:
        expected = "error: seed must be an integer from 0 to 4294967295"
    done = run_script(script)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith(expected)
    assert done.stderr.count("\n") == 1, done.stderr  # no traceback
    assert done.stdout == ""
    caught = run_script(script, "run")
    assert caught.returncode == 0, caught.stderr
    assert caught.stdout == "caught ConfigError\n"
    assert not (tmp_path / "cfg_out").exists()
