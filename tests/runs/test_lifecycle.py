from __future__ import annotations

import json
import logging
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import pytest
import yaml

from labsession.errors import ConfigError, SessionError
from labsession.runs import (
    close,
    get_session_manager,
    is_run_id,
    running2finished,
    set_notify_hook,
    start,
    start_run,
)
from labsession.runs._plotting import LazyPyplot


@pytest.fixture
def script(tmp_path):
    path = tmp_path / "analysis.py"
    path.write_text("# the script\n")
    return path


def _config_json(run_dir):
    return json.loads((run_dir / "CONFIGS" / "CONFIG.json").read_text())


def test_start_creates_running_folder_and_records(script):
    CONFIG, _out, _err, plt, COLORS, rng = start(file=script, args={"alpha": 1}, seed=3)
    run_dir = CONFIG.SDIR_RUN
    try:
        assert run_dir.parent == script.parent / "analysis_out" / "RUNNING"
        assert is_run_id(run_dir.name)
        assert run_dir.name == CONFIG["ID"]
        assert isinstance(plt, LazyPyplot)
        assert "blue" in COLORS
        assert rng.seed == 3
        for name in ("CONFIG.yaml", "CONFIG.json", "args.yaml", "args.json"):
            assert (run_dir / "CONFIGS" / name).is_file(), name
        record = _config_json(run_dir)
        assert yaml.safe_load((run_dir / "CONFIGS" / "CONFIG.yaml").read_text()) == record
        assert record["SEED"] == 3
        assert record["ARGS"] == {"alpha": 1}
        assert record["STATUS"] == "running"
        assert record["PYTHON"]["version"].count(".") == 2
        assert "numpy" in record["PACKAGES"]
        assert record["COMMAND_LINE"]
        assert record["HOST"]
        assert get_session_manager().get_session(CONFIG.ID).status == "running"
    finally:
        close(CONFIG, verbose=False)


def test_close_moves_to_success_and_records_duration(script):
    CONFIG, *_ = start(file=script, verbose=False)
    running = CONFIG.SDIR_RUN
    (running / "result.txt").write_text("42")
    out = close(CONFIG, exit_status=0, verbose=False)
    final = script.parent / "analysis_out" / "FINISHED_SUCCESS" / CONFIG.ID
    assert out["SDIR_RUN"] == final
    assert not running.exists()
    assert not running.parent.exists()  # the emptied RUNNING/ is removed
    assert (final / "result.txt").read_text() == "42"
    record = _config_json(final)
    assert record["STATUS"] == "success"
    assert record["EXIT_STATUS"] == 0
    assert record["RUN_DURATION"] == "00:00:00"
    assert record["RUN_SECONDS"] >= 0
    assert record["SDIR_FINAL"] == str(final)
    managed = get_session_manager().get_session(CONFIG.ID)
    assert (managed.status, managed.final_status, managed.exit_code, managed.path) == (
        "closed",
        "success",
        0,
        final,
    )


@pytest.mark.parametrize(("status", "folder"), [(None, "FINISHED_SUCCESS"), (2, "FINISHED_ERROR")])
def test_exit_status_picks_the_folder(script, status, folder):
    CONFIG, *_ = start(file=script, verbose=False)
    close(CONFIG, exit_status=status, verbose=False)
    assert CONFIG.SDIR_RUN.parent.name == folder
    assert _config_json(CONFIG.SDIR_RUN)["STATUS"] == ("success" if status is None else "error")


def test_close_twice_is_refused(script):
    CONFIG, *_ = start(file=script, verbose=False)
    close(CONFIG, verbose=False)
    with pytest.raises(ValueError, match="not running"):
        close(CONFIG, verbose=False)


def test_archive_format_leaves_one_file(script):
    CONFIG, *_ = start(file=script, verbose=False)
    (CONFIG.SDIR_RUN / "data.csv").write_text("1,2\n")
    close(CONFIG, verbose=False, archive_format="tar.gz")
    archive = CONFIG.SDIR_RUN
    assert archive.name == f"{CONFIG.ID}.tar.gz"
    assert archive.is_file()
    assert list(archive.parent.iterdir()) == [archive]
    with tarfile.open(archive) as tf:
        names = set(tf.getnames())
    assert f"{CONFIG.ID}/data.csv" in names
    assert f"{CONFIG.ID}/CONFIGS/CONFIG.json" in names


def test_tee_in_process_and_streams_restored(script):
    before = sys.stdout, sys.stderr
    CONFIG, out, _err, *_ = start(sys=sys, file=script, verbose=False)
    assert sys.stdout is out
    sys.stdout.write("\x1b[1mbold\x1b[0m result\n")
    logging.getLogger("analysis").info("a log line")
    close(CONFIG, verbose=False)
    assert (sys.stdout, sys.stderr) == before
    logs = CONFIG.SDIR_RUN / "logs"
    assert (logs / "stdout.log").read_text() == "bold result\n"
    assert "a log line" in (logs / "stderr.log").read_text()


def test_sdir_and_suffix(tmp_path, script):
    CONFIG, *_ = start(file=script, sdir_suffix="fit", verbose=False)  # sdir: test_scitex_api.py
    assert CONFIG.SDIR_RUN.parent == tmp_path / "analysis_out" / "RUNNING"
    assert CONFIG.SDIR_RUN.name == f"{CONFIG.ID}-fit"
    close(CONFIG, verbose=False)
    with pytest.raises(ValueError, match="sdir_suffix"):
        start(file=script, sdir_suffix="../escape")


def test_running2finished_copy_keeps_source(script):
    CONFIG, *_ = start(file=script, verbose=False)
    src = CONFIG.SDIR_RUN
    (src / "x.bin").write_bytes(b"\0" * 100)
    running2finished(CONFIG, exit_status=1, remove_src_dir=False)
    assert (src / "x.bin").is_file()
    assert (CONFIG.SDIR_RUN / "x.bin").read_bytes() == b"\0" * 100
    assert CONFIG.SDIR_RUN.parent.name == "FINISHED_ERROR"


def test_running2finished_never_overwrites(script):
    CONFIG, *_ = start(file=script, verbose=False)
    src = CONFIG.SDIR_RUN
    clash = src.parents[1] / "FINISHED_SUCCESS" / src.name
    clash.mkdir(parents=True)
    with pytest.raises(FileExistsError, match="finished run with this ID"):
        running2finished(CONFIG, exit_status=0)
    assert src.is_dir()
    shutil.rmtree(clash)


def test_notify_hook_is_called_and_may_fail(script, caplog):
    calls = []

    def hook(**kwargs):
        calls.append(kwargs)
        raise RuntimeError("mail server down")

    set_notify_hook(hook)
    try:
        CONFIG, *_ = start(file=script, verbose=False)
        with caplog.at_level(logging.WARNING, logger="labsession.runs"):
            close(CONFIG, message="done", notify=True, verbose=False)
    finally:
        set_notify_hook(None)
    assert calls[0]["message"] == "done"
    assert calls[0]["exit_status"] is None
    assert calls[0]["config"]["ID"] == CONFIG.ID
    assert [p.name for p in calls[0]["log_paths"]] == []  # no tee: no logs
    assert "mail server down" in caplog.text


def test_notify_without_hook_warns(script, caplog, monkeypatch):
    monkeypatch.delenv("LABSESSION_NOTIFY_HOOK", raising=False)
    CONFIG, *_ = start(file=script, verbose=False)
    with caplog.at_level(logging.WARNING, logger="labsession.runs"):
        close(CONFIG, notify=True, verbose=False)
    assert "no hook is set" in caplog.text


def test_git_commit_and_dirty_state(tmp_path):
    git = shutil.which("git")
    if git is None:
        pytest.skip("git is not installed")
    repo = tmp_path / "repo"
    repo.mkdir()

    def run_git(*args):
        subprocess.run(
            [git, "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t", *args],
            check=True,
            capture_output=True,
        )

    run_git("init", "-q")
    script = repo / "fit.py"
    script.write_text("x = 1\n")
    run_git("add", "fit.py")
    run_git("commit", "-q", "-m", "first")
    CONFIG, *_ = start(file=script, verbose=False)
    close(CONFIG, verbose=False)
    clean = CONFIG["GIT"]
    assert len(clean["commit"]) == 40
    assert clean["dirty"] is False
    script.write_text("x = 2\n")
    CONFIG, *_ = start(file=script, verbose=False)
    close(CONFIG, verbose=False)
    assert CONFIG["GIT"]["dirty"] is True
    assert CONFIG["GIT"]["commit"] == clean["commit"]


def test_user_config_files_are_merged(script, monkeypatch):
    (script.parent / "config").mkdir()
    (script.parent / "config" / "paths.yaml").write_text("data: /srv/data\n")
    monkeypatch.chdir(script.parent)
    CONFIG, *_ = start(file=script, verbose=False)
    close(CONFIG, verbose=False)
    assert CONFIG.PATHS == {"data": "/srv/data"}


def test_bad_settings_fail_before_any_folder(script, monkeypatch):
    monkeypatch.chdir(script.parent)
    with pytest.raises(ValueError, match="fontsize"):
        start(file=script, fontsize="gigantic", verbose=False)
    (script.parent / "config").mkdir()
    (script.parent / "config" / "broken.yaml").write_text("a: [1, 2\n")
    with pytest.raises(ValueError, match=r"broken\.yaml"):
        start(file=script, verbose=False)
    assert not (script.parent / "analysis_out").exists()


@pytest.mark.parametrize("seed", [2**32, -1, 1.5, True, "42"])
def test_a_seed_numpy_cannot_take_fails_before_any_folder(script, monkeypatch, seed):
    # 2**32 and -1 gave NumPy's traceback and left a run behind, listed as interrupted.
    monkeypatch.chdir(script.parent)
    with pytest.raises(ConfigError, match=rf"seed must be an integer from 0 to {2**32 - 1}"):
        start(file=script, seed=seed, verbose=False)
    assert not (script.parent / "analysis_out").exists()


def test_config_files_that_cannot_be_merged_fail_before_any_folder(script, monkeypatch):
    monkeypatch.chdir(script.parent)
    folder = script.parent / "config"
    folder.mkdir()
    (folder / "paths.yaml").write_bytes(b"name: caf\xe9\n")  # Latin-1, not UTF-8
    with pytest.raises(ConfigError, match=r"paths\.yaml: not UTF-8 text"):
        start(file=script, verbose=False)
    (folder / "paths.yaml").write_text("name: cafe\n")
    (folder / "plot.yaml").write_text("colormap: viridis\n")  # was silently replaced
    with pytest.raises(ConfigError, match=r"config/plot\.yaml -> CONFIG\['PLOT'\]"):
        start(file=script, verbose=False)
    (folder / "plot.yaml").rename(folder / "host.yaml")  # collect_environment's HOST
    with pytest.raises(ConfigError, match=r"CONFIG\['HOST'\]"):
        start(file=script, verbose=False)
    assert not (script.parent / "analysis_out").exists()
    (folder / "host.yaml").rename(folder / "figures.yaml")
    CONFIG, *_ = start(file=script, verbose=False)
    close(CONFIG, verbose=False)
    assert CONFIG.FIGURES == {"colormap": "viridis"}


def test_a_run_that_cannot_be_archived_records_where_it_stayed(script, caplog):
    CONFIG, *_ = start(file=script, verbose=False)
    (CONFIG.SDIR_RUN / "outside").symlink_to("/etc/hostname")  # packing refuses it
    close(CONFIG, verbose=False, archive_format="tar.gz")
    folder = CONFIG.SDIR_RUN
    assert folder.is_dir()
    assert folder.parent.name == "FINISHED_SUCCESS"
    assert _config_json(folder)["SDIR_FINAL"] == str(folder)  # not the archive never made
    assert "could not be archived" in caplog.text


def test_move_across_file_systems_is_a_verified_copy(script, tmp_path):
    other = Path("/dev/shm")
    if not other.is_dir() or other.stat().st_dev == tmp_path.stat().st_dev:
        pytest.skip("needs /dev/shm on another file system than the temp folder")
    target = Path(tempfile.mkdtemp(dir=other))
    try:
        out = script.parent / "analysis_out"
        out.mkdir()
        (out / "FINISHED_SUCCESS").symlink_to(target)  # finished runs live elsewhere
        CONFIG, *_ = start(file=script, verbose=False)
        (CONFIG.SDIR_RUN / "big.bin").write_bytes(b"\1" * 100_000)
        running = CONFIG.SDIR_RUN
        close(CONFIG, verbose=False)
        assert not running.exists()
        assert (target / CONFIG.ID / "big.bin").read_bytes() == b"\1" * 100_000
        assert not [p for p in target.iterdir() if p.name.startswith(".")]
    finally:
        shutil.rmtree(target, ignore_errors=True)


# A run folder given by the caller must not hold other runs (closing it may archive it) -------


def _listing(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*"))


def test_run_dir_holding_a_live_run_is_refused_and_that_run_survives(tmp_path, script):
    out = tmp_path / "fit_out"
    live = start_run(out_dir=out, file=script, verbose=False).config  # run A, still running
    (live.SDIR_RUN / "result.txt").write_text("A's partial result\n")
    before = _listing(tmp_path)
    where = re.escape(str(out))
    with pytest.raises(SessionError, match=rf"^{where}: holds other runs \(RUNNING/\);"):
        start_run(run_dir=out, file=script, verbose=False)
    with pytest.raises(SessionError, match=rf"^{where}: holds other runs \(RUNNING/\);"):
        start(file=script, sdir=out, verbose=False)  # scitex-session's spelling
    assert _listing(tmp_path) == before  # nothing created, nothing archived
    close(live, verbose=False)
    assert out / "FINISHED_SUCCESS" / live.ID == live.SDIR_RUN
    assert (live.SDIR_RUN / "result.txt").read_text() == "A's partial result\n"
    with pytest.raises(SessionError, match=r"holds other runs \(FINISHED_SUCCESS/\)"):
        start(file=script, sdir=out, verbose=False)  # finished runs are as precious


@pytest.mark.parametrize(
    "held",
    [
        "old/fit_out/FINISHED_ERROR/",
        "old/fit_out/FINISHED/",
        "copied/2026Y-01M-02D-03h04m05s_abcd/CONFIGS/CONFIG.json",
    ],
)
def test_run_dir_with_runs_deeper_down_is_refused(tmp_path, script, held):
    sdir = tmp_path / "project"
    target = sdir / held
    if held.endswith("/"):
        target.mkdir(parents=True)
    else:
        target.parent.mkdir(parents=True)
        target.write_text("{}\n")
    before = _listing(tmp_path)
    with pytest.raises(SessionError, match=rf"project: holds other runs \({re.escape(held)}\)"):
        start(file=script, sdir=sdir, verbose=False)
    assert _listing(tmp_path) == before


def test_run_dir_with_ordinary_files_is_accepted_and_archived(tmp_path, script):
    sdir = tmp_path / "project"
    for name in ("data/CONFIG.json", "CONFIGS_old/notes.txt", "notes/RUNNING", "FINISHED.txt"):
        (sdir / name).parent.mkdir(parents=True, exist_ok=True)
        (sdir / name).write_text("mine\n")  # near the markers, but not another run's
    CONFIG, *_ = start(file=script, sdir=sdir, verbose=False)
    close(CONFIG, verbose=False, archive_format="tar.gz")
    assert tmp_path / "project.tar.gz" == CONFIG.SDIR_RUN
    with tarfile.open(CONFIG.SDIR_RUN) as tf:
        assert "project/data/CONFIG.json" in tf.getnames()
