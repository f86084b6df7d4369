"""Run sessions behave as scitex-session's documented API (issue 20).

Each test states the scitex-session behaviour it checks (``scitex_session/_lifecycle/_start.py``,
``_close.py``, ``_config.py``, ``_manager.py``, ``_hooks.py``), then where labsession deliberately
differs.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import sys
import types

import pytest

import labsession.runs
from labsession.errors import SessionError
from labsession.runs import (
    SessionManager,
    close,
    get_session_manager,
    register_session_close_hook,
    register_session_start_hook,
    running2finished,
    start,
    start_run,
    unregister_session_close_hook,
    unregister_session_start_hook,
)

RUN_ID = "2026Y-05M-17D-14h23m05s_a1B2"


@pytest.fixture
def script(tmp_path):
    path = tmp_path / "analysis.py"
    path.write_text("# the script\n")
    return path


@pytest.fixture
def hook_calls():
    """Register recording start and close hooks for one test; remove them afterwards."""
    calls: dict[str, list[tuple]] = {"start": [], "close": []}

    def on_start(session_id, script_path, metadata):
        calls["start"].append((session_id, script_path, metadata))

    def on_close(status, exit_code):
        calls["close"].append((status, exit_code))

    register_session_start_hook(on_start)
    register_session_close_hook(on_close)
    yield calls
    unregister_session_start_hook(on_start)
    unregister_session_close_hook(on_close)


def _fake_run(out, name=RUN_ID):
    run = out / "RUNNING" / name
    (run / "logs").mkdir(parents=True)
    (run / "logs" / "stdout.log").write_text("hello\n")
    return run


# running2finished -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("exit_status", "folder"), [(0, "FINISHED_SUCCESS"), (1, "FINISHED_ERROR")]
)
def test_running2finished_needs_only_sdir_run(tmp_path, exit_status, folder):
    # scitex: the destination is SDIR_RUN with "RUNNING/" replaced; no SDIR_OUT is read
    run = _fake_run(tmp_path / "fit_out")
    config = running2finished({"SDIR_RUN": str(run) + "/"}, exit_status=exit_status)
    dest = tmp_path / "fit_out" / folder / RUN_ID
    assert config["SDIR_RUN"] == dest
    assert (dest / "logs" / "stdout.log").read_text() == "hello\n"
    assert not run.exists()
    assert not (tmp_path / "fit_out" / "RUNNING").exists()  # emptied RUNNING/ removed


def test_running2finished_ignores_a_stale_sdir_out(tmp_path):
    run = _fake_run(tmp_path / "fit_out")
    config = {"SDIR_RUN": run, "SDIR_OUT": tmp_path / "somewhere_else"}
    running2finished(config, exit_status=0)
    assert config["SDIR_RUN"] == tmp_path / "fit_out" / "FINISHED_SUCCESS" / RUN_ID
    assert not (tmp_path / "somewhere_else").exists()


def test_running2finished_without_sdir_run_names_the_key():
    with pytest.raises(KeyError, match="SDIR_RUN"):
        running2finished({"SDIR_OUT": "/tmp"}, exit_status=0)


# start(sdir=...), start(sys=None) ---------------------------------------------------------


def test_sdir_is_the_run_folder_and_stays_in_place(tmp_path, script):
    # scitex: start(sdir=X) makes X the run folder (SDIR_RUN = X, SDIR_OUT = X's parent); at
    # close, X outside a RUNNING/ folder is not moved
    target = tmp_path / "results" / "my_run"
    CONFIG, out, _err, *_ = start(sys, file=script, sdir=target, sdir_suffix="x", verbose=False)
    try:
        assert CONFIG["SDIR_RUN"] == target
        assert CONFIG["SDIR_OUT"] == tmp_path / "results"
        assert not (target / "RUNNING").exists()
        sys.stdout.write("into the given folder\n")
    finally:
        close(CONFIG, exit_status=0, verbose=False)
    assert sys.stdout is not out
    assert CONFIG["SDIR_RUN"] == target
    assert (target / "logs" / "stdout.log").read_text() == "into the given folder\n"
    assert json.loads((target / "CONFIGS" / "CONFIG.json").read_text())["STATUS"] == "success"
    assert not (script.parent / "analysis_out").exists()


def test_sdir_inside_running_moves_at_close(tmp_path, script):
    target = tmp_path / "fit_out" / "RUNNING" / "trial-3"
    CONFIG, *_ = start(file=script, sdir=target, verbose=False)
    assert CONFIG["SDIR_OUT"] == tmp_path / "fit_out"
    close(CONFIG, exit_status=1, verbose=False)
    assert CONFIG["SDIR_RUN"] == tmp_path / "fit_out" / "FINISHED_ERROR" / "trial-3"
    assert CONFIG["SDIR_RUN"].is_dir()


def test_sdir_holding_another_run_is_refused(tmp_path, script):
    # labsession: never overwrite another run's logs and record (scitex would write into it)
    target = tmp_path / "my_run"
    CONFIG, *_ = start(file=script, sdir=target, verbose=False)
    close(CONFIG, verbose=False)
    before = (target / "CONFIGS" / "CONFIG.json").read_text()
    with pytest.raises(SessionError, match=r"my_run: holds a run already \(CONFIGS/CONFIG\.json\)"):
        start(file=script, sdir=target, verbose=False)
    assert (target / "CONFIGS" / "CONFIG.json").read_text() == before


def test_start_without_sys_returns_no_streams(script):
    # scitex: `return CONFIGS, None, None, plt, COLORS, rng` when sys is None
    before = sys.stdout, sys.stderr
    CONFIG, stdout, stderr, *_ = start(None, file=script, verbose=False)
    try:
        assert (stdout, stderr) == (None, None)
        assert (sys.stdout, sys.stderr) == before
    finally:
        close(CONFIG, verbose=False)
    assert not (CONFIG["SDIR_RUN"] / "logs").exists()


# CONFIG is plain data; start is an adapter over start_run ---------------------------------


def test_config_holds_no_private_state_and_a_copy_closes_the_run(script):
    before = sys.stdout, sys.stderr
    CONFIG, out, *_ = start(sys, file=script, verbose=False)
    assert sys.stdout is out
    assert [k for k in CONFIG if k.startswith("_")] == []
    snapshot = copy.deepcopy(CONFIG)  # a tee or a handler in CONFIG could not be deep-copied
    close(snapshot, exit_status=0, verbose=False)  # the run's state is found by its ID
    assert (sys.stdout, sys.stderr) == before
    assert snapshot["SDIR_RUN"].parent.name == "FINISHED_SUCCESS"


def test_start_modules_parameters_do_not_shadow_its_own_code(script):
    # start(os=..., np=..., random=...) names modules to seed; start's own code must still
    # use the real os (the process ID) whatever is passed
    fake_os = types.ModuleType("fake_os")
    fake_os.environ = {}
    CONFIG, *_ = start(file=script, os=fake_os, seed=7, verbose=False)
    close(CONFIG, verbose=False)
    assert fake_os.environ == {"PYTHONHASHSEED": "7"}
    assert CONFIG["PID"] == os.getpid()


def test_start_run_is_keyword_only_and_takes_an_output_folder(tmp_path, script):
    with pytest.raises(TypeError):
        start_run(True)  # type: ignore[misc]
    with pytest.raises(ValueError, match="not both"):
        start_run(file=script, run_dir=tmp_path / "a", out_dir=tmp_path / "b")
    run = start_run(file=script, out_dir=tmp_path / "elsewhere", sdir_suffix="fit", verbose=False)
    config, stdout, stderr, _plt, colors, rng = run  # unpacks as start's tuple
    close(config, verbose=False)
    assert (stdout, stderr) == (None, None)
    assert run.rng is rng
    assert "blue" in colors
    assert config["SDIR_RUN"] == tmp_path / "elsewhere" / "FINISHED_SUCCESS" / f"{config.ID}-fit"


# SessionManager as dicts -----------------------------------------------------------------


def test_manager_returns_dicts_as_scitex_documents():
    manager = SessionManager()
    manager.create_session(RUN_ID, {"ID": RUN_ID}, "fit.py")
    session = manager.get_session(RUN_ID)
    assert isinstance(session, dict)
    assert {"config", "start_time", "status", "script_path"} <= set(session)
    assert (session["status"], session["script_path"], session["config"]) == (
        "running",
        "fit.py",
        {"ID": RUN_ID},
    )
    assert manager.get_session("unknown") == {}
    assert set(manager.get_active_sessions()) == {RUN_ID}
    assert set(manager.active_sessions) == {RUN_ID}
    assert all(isinstance(v, dict) for v in manager.list_sessions().values())
    # labsession's richer record stays available as extra keys
    assert session["pid"] == os.getpid()
    assert session["host"]
    assert session["session_id"] == RUN_ID


def test_manager_close_keeps_final_status_and_exit_code():
    manager = SessionManager()
    manager.create_session(RUN_ID, {})
    manager.close_session(RUN_ID, status="error", exit_code=3)
    closed = manager.get_session(RUN_ID)
    assert (closed["status"], closed["final_status"], closed["exit_code"]) == ("closed", "error", 3)
    assert closed["end_time"] >= closed["start_time"]
    assert manager.get_active_sessions() == {}
    assert set(manager.active_sessions) == {RUN_ID}  # scitex keeps closed ones there too
    assert set(manager.list_sessions()) == {RUN_ID}


def test_manager_unknown_close_is_a_noop_and_create_replaces(hook_calls):
    manager = SessionManager()
    assert manager.close_session("never-started", status="error", exit_code=1) == {}
    assert manager.list_sessions() == {}
    assert hook_calls["close"] == []  # labsession: no close hook for a session never started
    manager.create_session(RUN_ID, {"round": 1})
    manager.close_session(RUN_ID)
    manager.create_session(RUN_ID, {"round": 2})
    assert manager.get_session(RUN_ID)["config"] == {"round": 2}
    assert manager.get_session(RUN_ID)["status"] == "running"


def test_manager_records_are_copies():
    manager = SessionManager()
    manager.create_session(RUN_ID, {})
    manager.get_session(RUN_ID)["status"] = "tampered"
    manager.active_sessions[RUN_ID]["status"] = "tampered"
    assert manager.get_session(RUN_ID)["status"] == "running"


def test_start_and_close_update_the_global_manager(script):
    CONFIG, *_ = start(file=script, verbose=False)
    assert get_session_manager().get_session(CONFIG.ID)["status"] == "running"
    assert CONFIG.ID in get_session_manager().get_active_sessions()
    close(CONFIG, exit_status=2, verbose=False)
    record = get_session_manager().get_session(CONFIG.ID)
    assert (record["status"], record["final_status"], record["exit_code"]) == ("closed", "error", 2)
    assert record["path"] == CONFIG["SDIR_RUN"]


# hooks -----------------------------------------------------------------------------------


def test_hooks_are_package_attributes_in_all():
    names = {
        "register_session_start_hook",
        "register_session_close_hook",
        "unregister_session_start_hook",
        "unregister_session_close_hook",
    }
    assert names <= set(labsession.runs.__all__)
    assert names <= set(vars(labsession.runs))  # real attributes, set at import


def test_start_and_close_fire_the_hooks(script, hook_calls):
    CONFIG, *_ = start(file=script, verbose=False)
    assert len(hook_calls["start"]) == 1  # once per run (scitex fires its start hooks twice)
    session_id, script_path, metadata = hook_calls["start"][0]
    assert (session_id, script_path) == (CONFIG.ID, str(script))
    assert metadata["sdir_run"] == str(CONFIG.SDIR_RUN)
    assert metadata["pid"] == os.getpid()
    assert hook_calls["close"] == []
    close(CONFIG, exit_status=1, verbose=False)
    assert hook_calls["close"] == [("error", 1)]


def test_register_is_idempotent_returns_the_function_and_unregister_stops_it():
    calls = []

    def on_close(status, exit_code):
        calls.append((status, exit_code))

    assert register_session_close_hook(on_close) is on_close
    register_session_close_hook(on_close)
    manager = SessionManager()
    manager.create_session(RUN_ID, {})
    manager.close_session(RUN_ID, status="success", exit_code=0)
    unregister_session_close_hook(on_close)
    unregister_session_close_hook(on_close)  # absent: a no-op
    manager.create_session(RUN_ID, {})
    manager.close_session(RUN_ID, status="error", exit_code=1)
    assert calls == [("success", 0)]
    with pytest.raises(TypeError, match="callable"):
        register_session_start_hook("not a function")  # type: ignore[type-var]


def test_raising_hooks_are_logged_and_never_break_a_run(script, hook_calls, caplog):
    def broken_start(session_id, script_path, metadata):
        raise RuntimeError("lineage database is locked")

    def broken_close(status, exit_code):
        raise RuntimeError("lineage database is gone")

    # registered after the recording hooks of hook_calls and before another one
    register_session_start_hook(broken_start)
    register_session_close_hook(broken_close)
    later = []

    def later_close(status, exit_code):
        later.append(status)

    register_session_close_hook(later_close)
    try:
        with caplog.at_level(logging.WARNING, logger="labsession.runs"):
            CONFIG, *_ = start(file=script, verbose=False)
            close(CONFIG, exit_status=0, verbose=False)
    finally:
        unregister_session_start_hook(broken_start)
        unregister_session_close_hook(broken_close)
        unregister_session_close_hook(later_close)
    assert CONFIG["SDIR_RUN"].parent.name == "FINISHED_SUCCESS"
    assert later == ["success"]  # the hooks after a failing one still run
    assert [c[0] for c in hook_calls["start"]] == [CONFIG.ID]
    assert "lineage database is locked" in caplog.text
    assert "lineage database is gone" in caplog.text
    assert "session close hook" in caplog.text
