"""The session manager widget: drawn in a real imgui context, and clicked in a real window."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from labsession.acquisition import AppContext
from labsession.errors import SessionError
from labsession.recording import Session, StreamInfo, TrainingData, open_session_store
from labsession.recording._lock import SessionLock
from labsession.testing import GuiScript, ImguiFrames, record_tiny_session, run_gui, wait_until
from labsession.widgets import SessionManager, session_manager
from labsession.widgets import _session_index as session_index

CRASHER = """
import sys, time
import numpy as np
from labsession.recording import Session, StreamInfo

session = Session(sys.argv[1], class_names=["Rest", "Fist"])
session.init_stream("emg", StreamInfo(2, 100.0))
session.append("emg", np.ones((250, 2), np.float32), 10 + np.arange(250) / 100.0)
for i, cls in enumerate([0, 1, 0, 1]):
    session.add_label(cls, timestamp=10 + 0.5 * i)
session.flush()
print(session.path, flush=True)
time.sleep(60)
"""


def age(folder: Path, seconds: float = 3600.0) -> None:
    """Make every file of ``folder`` look last written ``seconds`` ago (a past crash)."""
    past = time.time() - seconds
    for path in [folder, *folder.rglob("*")]:
        os.utime(path, (past, past))


def crashed_recording(base: Path) -> Path:
    """A session folder left by a recorder killed with SIGKILL: 250 samples, 4 labels."""
    proc = subprocess.Popen(
        [sys.executable, "-c", CRASHER, str(base)], stdout=subprocess.PIPE, text=True
    )
    try:
        folder = Path(proc.stdout.readline().strip())
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()
    assert folder.is_dir(), "the recorder did not start"
    return folder


@pytest.fixture
def frames():
    with ImguiFrames() as f:
        yield f


@pytest.fixture
def manager(tmp_path):
    managers = []

    def make(**kwargs) -> SessionManager:
        managers.append(SessionManager(tmp_path / "sessions", **kwargs))
        return managers[-1]

    yield make
    for m in managers:
        m.close()


def draw_until(frames, manager, predicate, timeout=10.0):
    """Draw frames until ``predicate()`` holds; return the last value ``ui()`` returned."""
    out = []

    def step():
        with frames.frame():
            out.append(manager.ui())
        return predicate()

    assert wait_until(step, timeout), "condition not reached while drawing"
    return out[-1]


def test_returns_none_then_the_ticked_sessions(tmp_path, frames, manager):
    base = tmp_path / "sessions"
    a, b, c = (
        record_tiny_session(base),
        record_tiny_session(base),
        record_tiny_session(base, pack=False),
    )
    age(c)
    mgr = manager()
    assert draw_until(frames, mgr, lambda: len(mgr.rows) == 3) is None
    assert {r.name: mgr.state(r) for r in mgr.rows} == {
        a.name: "packed",
        b.name: "packed",
        c.name: "unfinished",
    }
    mgr.select([a.name, c.name])
    with frames.frame():
        data = mgr.ui()
    assert isinstance(data, TrainingData)
    assert sorted(data.paths) == sorted([a, c])
    assert data.class_names == ["Rest", "Fist", "Open"]
    with frames.frame():
        assert mgr.ui() is data  # same object while the ticks do not change
    mgr.select(b.name)
    with frames.frame():
        again = mgr.ui()
    assert again is not data
    assert sorted(again.paths) == sorted([a, b, c])
    mgr.unselect()
    with frames.frame():
        assert mgr.ui() is None


def test_class_filter_hides_rows_and_their_ticks_from_the_data(tmp_path, frames, manager):
    base = tmp_path / "sessions"
    fist = record_tiny_session(base, class_names=("Rest", "Fist"))
    open_ = record_tiny_session(base, class_names=("Rest", "Open"))
    mgr = manager()
    draw_until(frames, mgr, lambda: len(mgr.rows) == 2)
    assert sorted(mgr.class_choices) == ["Fist", "Open", "Rest"]
    mgr.select([fist.name, open_.name])
    mgr.set_class_filter(["Open"])
    with frames.frame():
        data = mgr.ui()
    assert [r.name for r in mgr.visible_rows] == [open_.name]
    assert mgr.selected == sorted([fist.name, open_.name])  # the hidden tick stays...
    assert data.paths == [open_]  # ...but its session is not trained on
    mgr.set_class_filter([])
    with frames.frame():
        assert sorted(mgr.ui().paths) == sorted([fist, open_])
    assert manager(class_names=["A", "B"]).class_choices == ["A", "B"]


def test_missing_base_folder_and_unreadable_sessions_never_raise(tmp_path, frames, manager):
    mgr = manager()
    draw_until(frames, mgr, lambda: mgr.index.exists is False)
    assert not (tmp_path / "sessions").exists()
    base = tmp_path / "sessions"
    base.mkdir()
    good = record_tiny_session(base)
    (base / "x.session.zip").write_bytes(b"\0" * 100)
    (base / "2026-01-01_00-00-00_deadbeef").mkdir()
    draw_until(frames, mgr, lambda: len(mgr.rows) == 3)
    states = {r.name: mgr.state(r) for r in mgr.rows}
    assert states == {
        good.name: "packed",
        "x.session.zip": "error",
        "2026-01-01_00-00-00_deadbeef": "error",
    }
    mgr.select(["x.session.zip", good.name])
    with frames.frame():
        assert mgr.ui().paths == [good]  # an unreadable session is never trained on


def test_a_ticked_session_that_disappears_is_unticked(tmp_path, frames, manager):
    base = tmp_path / "sessions"
    a, b = record_tiny_session(base), record_tiny_session(base)
    mgr = manager()
    draw_until(frames, mgr, lambda: len(mgr.rows) == 2)
    mgr.select([a.name, b.name])
    a.unlink()
    data = draw_until(frames, mgr, lambda: mgr.selected == [b.name])
    assert data.paths == [b]


def test_finish_packs_a_crashed_recording_in_the_background(tmp_path, frames, manager):
    base = tmp_path / "sessions"
    folder = crashed_recording(base)
    age(folder)
    mgr = manager()
    draw_until(frames, mgr, lambda: [mgr.state(r) for r in mgr.rows] == ["unfinished"])
    (row,) = mgr.rows
    assert row.approximate
    assert row.duration_s == pytest.approx(2.5)
    assert row.label_counts == {"Rest": 2, "Fist": 2}
    mgr.select(folder.name)
    future = mgr.finish(folder.name)
    assert mgr.state(row) == "finishing"
    zip_name = folder.name + ".session.zip"
    data = draw_until(
        frames, mgr, lambda: [(r.name, mgr.state(r)) for r in mgr.rows] == [(zip_name, "packed")]
    )
    assert future.result() == base / zip_name
    assert not folder.exists()
    assert mgr.selected == [zip_name]  # the tick followed the session into its zip
    assert data.paths == [base / zip_name]
    with open_session_store(base / zip_name) as store:
        assert [(e.timestamp, e.class_index) for e in store.label_track] == [
            (10.0, 0),
            (10.5, 1),
            (11.0, 0),
            (11.5, 1),
        ]
        assert store.n_samples("emg") == 250


def test_a_failed_finish_shows_the_error_and_keeps_the_folder(tmp_path, frames, manager):
    base = tmp_path / "sessions"
    folder = record_tiny_session(base, pack=False)
    age(folder)
    # A folder where the zip goes: a zip there is replaced, a folder cannot be.
    (base / (folder.name + ".session.zip")).mkdir()
    mgr = manager()
    draw_until(frames, mgr, lambda: len(mgr.rows) == 2)
    future = mgr.finish(folder.name)
    draw_until(frames, mgr, lambda: folder.name in mgr.finish_errors)
    assert "failed (Is a directory" in mgr.finish_errors[folder.name]
    assert future.exception() is not None
    assert folder.is_dir()
    assert mgr.state(next(r for r in mgr.rows if r.name == folder.name)) == "unfinished"
    (base / (folder.name + ".session.zip")).rmdir()
    # at once: what the failed attach wrote (a moment ago) is no sign of another recorder
    assert mgr.finish(folder.name).result(10) == base / (folder.name + ".session.zip")


def test_live_and_recent_folders_cannot_be_finished_or_ticked(tmp_path, frames, manager):
    base = tmp_path / "sessions"
    live = Session(base, class_names=["Rest"])
    try:
        live.init_stream("emg", StreamInfo(2, 100.0))
        recent = record_tiny_session(
            base, pack=False
        )  # just closed: maybe another process's recording
        age(live.path)  # even when idle for long, ctx says it is live
        mgr = manager(ctx=AppContext(state="recording", session=live))
        draw_until(frames, mgr, lambda: len(mgr.rows) == 2)
        states = {r.name: mgr.state(r) for r in mgr.rows}
        assert states == {live.path.name: "recording", recent.name: "recording?"}
        mgr.select([live.path.name, recent.name])
        with frames.frame():
            assert mgr.ui() is None
        for name in states:
            with pytest.raises(ValueError, match="cannot finish"):
                mgr.finish(name)
        age(recent)
        mgr.rescan()
        draw_until(frames, mgr, lambda: mgr.state(mgr.row(recent.name)) == "unfinished")
    finally:
        live.close()


def test_function_form_on_a_missing_folder(tmp_path, frames):
    base = tmp_path / "sessions"
    with frames.frame():
        assert session_manager(base) is None
    assert not base.exists()


@pytest.mark.gui
def test_clicking_rows_and_rescan_in_a_real_window(tmp_path, display):
    base = tmp_path / "sessions"
    a, b = record_tiny_session(base), record_tiny_session(base)
    with open_session_store(a) as store:
        started_a = store.meta["created"]
    results: list[TrainingData | None] = []
    made: list[Path] = []

    def gui() -> None:
        results.append(session_manager(base))

    def wait_for(ctx, predicate, timeout=10.0) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            assert time.monotonic() < deadline, "timed out waiting in the window"
            ctx.yield_()

    def script(ctx) -> None:
        wait_for(ctx, lambda: ctx.item_exists(f"**/###session_{b.name}"))
        ctx.item_check(f"**/###session_{a.name}")
        ctx.yield_(2)
        assert results[-1] is not None
        assert results[-1].paths == [a]
        # meta.json's start time is to the second: c must start in a later second than a
        # to be listed after it (sessions of one second are ordered by name)
        wait_for(ctx, lambda: time.strftime("%Y-%m-%dT%H:%M:%S") > started_a)
        c = record_tiny_session(base)
        made.append(c)
        ctx.item_click("**/###rescan")
        wait_for(ctx, lambda: ctx.item_exists(f"**/###session_{c.name}"))
        ctx.item_check(f"**/###session_{c.name}")
        ctx.yield_(2)
        assert results[-1].paths == [a, c]

    run_gui(gui, GuiScript(script))
    assert results[-1].paths == [a, *made]  # kept across frames by the function form


def test_the_apps_own_packing_folder_is_not_offered(tmp_path, frames, manager, monkeypatch):
    base = tmp_path / "sessions"
    folder = record_tiny_session(base, pack=False)
    age(folder)  # a big session packed slowly: quiet for long
    monkeypatch.chdir(tmp_path)
    ctx = AppContext()
    ctx.packing.add(Path("sessions") / folder.name)  # as App.stop_recording gives it
    mgr = manager(ctx=ctx)
    draw_until(frames, mgr, lambda: len(mgr.rows) == 1)
    assert mgr.state(mgr.row(folder.name)) == "packing"
    mgr.select(folder.name)
    with frames.frame():
        assert mgr.ui() is None
    with pytest.raises(ValueError, match="cannot finish a session that is packing"):
        mgr.finish(folder.name)
    ctx.packing.clear()  # the app's pack failed: the folder is left to finish
    with frames.frame():
        data = mgr.ui()
    assert mgr.state(mgr.row(folder.name)) == "unfinished"
    assert data.paths == [folder]


def test_finish_checks_again_on_its_thread_just_before_attaching(
    tmp_path, frames, manager, monkeypatch
):
    # "Written a moment ago" must still hold when the Finish thread gets to it, however slow
    # a loaded machine makes it (5 s by default; a full-suite run once took longer).
    monkeypatch.setattr(session_index, "RECENT_SECONDS", 120.0)
    base = tmp_path / "sessions"
    packed_meanwhile = record_tiny_session(base, pack=False)
    written_meanwhile = record_tiny_session(base, pack=False)
    locked_meanwhile = record_tiny_session(base, pack=False)
    for folder in (packed_meanwhile, written_meanwhile, locked_meanwhile):
        age(folder)
    labels = (written_meanwhile / "labels.json").read_bytes()
    ctx = AppContext()
    mgr = manager(ctx=ctx)
    draw_until(frames, mgr, lambda: {mgr.state(r) for r in mgr.rows} == {"unfinished"})
    gate = threading.Event()
    mgr._tasks.submit(gate.wait, 20)  # the Finish thread busy, as with a Finish in progress
    futures = [mgr.finish(f.name) for f in (packed_meanwhile, written_meanwhile, locked_meanwhile)]
    ctx.packing.add(packed_meanwhile)  # after the click: the app packs it
    (written_meanwhile / "labels.json").write_bytes(labels)  # another recorder writes to it
    lock = SessionLock(locked_meanwhile)  # a live labsession process takes it
    lock.acquire()
    gate.set()
    try:
        draw_until(frames, mgr, lambda: len(mgr.finish_errors) == 3)
    finally:
        lock.release()
    assert mgr.finish_errors[locked_meanwhile.name].startswith(
        f"finish failed: refused: process {os.getpid()} on "
    )
    assert mgr.finish_errors[packed_meanwhile.name] == (
        "finish failed: refused: the app is packing this session itself"
    )
    assert re.fullmatch(
        r"finish failed: refused: written to \d+\.\d s ago, perhaps by another recorder; "
        r"try again once it has been idle for 120 s",
        mgr.finish_errors[written_meanwhile.name],
    )
    for future in futures:
        assert isinstance(future.exception(), SessionError)
    assert sorted(p.name for p in base.iterdir() if not p.name.startswith(".")) == sorted(
        f.name for f in (packed_meanwhile, written_meanwhile, locked_meanwhile)
    )  # nothing attached, trimmed or packed
    assert (written_meanwhile / "labels.json").read_bytes() == labels


def test_the_close_hook_stops_the_manager_which_can_be_drawn_again(tmp_path, frames):
    base = tmp_path / "sessions"
    first = record_tiny_session(base)
    folder = record_tiny_session(base, pack=False)
    age(folder)
    ctx = AppContext()
    before = set(threading.enumerate())
    mgr = SessionManager(base, ctx=ctx)
    try:
        draw_until(frames, mgr, lambda: len(mgr.rows) == 2)
        frames.draw(mgr.ui, frames=3)
        assert ctx.close_hooks == [mgr.close]  # once, however many frames
        (index_thread,) = (t for t in set(threading.enumerate()) - before if "index" in t.name)
        gate = threading.Event()
        mgr._tasks.submit(gate.wait, 20)  # a Finish in progress that takes long
        queued = mgr.finish(folder.name)
        start = time.monotonic()
        (hook,) = ctx.close_hooks
        assert hook() is False  # what App.run does as its loop ends: gives up after 5 s
        assert 4.5 < time.monotonic() - start < 8
        assert queued.cancelled()
        gate.set()
        assert not index_thread.is_alive()
        assert mgr.close() is True  # twice is fine

        second = record_tiny_session(base)
        draw_until(frames, mgr, lambda: {r.name for r in mgr.rows} >= {first.name, second.name})
        assert ctx.close_hooks == [mgr.close]
        assert mgr.finish_errors == {folder.name: "finish cancelled: the manager was closed first"}
        assert mgr.state(mgr.row(folder.name)) == "unfinished"
    finally:
        assert mgr.close()
    assert not [t for t in set(threading.enumerate()) - before if "index" in t.name]


@contextlib.contextmanager
def unprivileged():
    """Run the block as ``nobody`` (effective uid) when the tests run as root, whose right to
    read any folder would hide a permission error; as another user, permissions already apply."""
    if os.geteuid() != 0:
        yield
        return
    os.seteuid(65534)
    try:
        yield
    finally:
        os.seteuid(0)


def test_a_base_folder_that_cannot_be_listed_says_why(frames):
    shared = Path(tempfile.mkdtemp(prefix="labsession-"))  # tmp_path is private to its user
    try:
        shared.chmod(0o755)
        base = shared / "sessions"
        mgr = SessionManager(base)
        assert mgr.message is None  # not scanned yet
        draw_until(frames, mgr, lambda: mgr.index.exists is False)
        assert mgr.message == f"no sessions in {base} yet"
        record_tiny_session(base)
        base.chmod(0)
        with unprivileged():  # drawn meanwhile: the scans run as nobody too
            draw_until(frames, mgr, lambda: mgr.index.listing_error is not None)
        assert mgr.message == f"cannot list {base}: Permission denied"
        assert mgr.rows == []
        base.chmod(0o755)
        draw_until(frames, mgr, lambda: len(mgr.rows) == 1)
        assert mgr.message is None
        assert mgr.close()
    finally:
        shared.chmod(0o755)
        if (shared / "sessions").exists():
            (shared / "sessions").chmod(0o755)
        shutil.rmtree(shared)
