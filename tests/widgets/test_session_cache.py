"""The session list's row cache: rows kept between runs, read back checked (no imgui)."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import resource
import shutil
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest

from labsession.testing import record_tiny_session
from labsession.widgets._session_cache import CACHE_VERSION, MAX_CACHE_BYTES
from labsession.widgets._session_index import SessionIndex, read_row
from labsession.widgets._session_rows import SessionRow, StreamSummary

MYOGESTIC = Path(__file__).parent.parent / "data" / "myogestic"


# the sessions folder is tmp_path: the state folder lives elsewhere
pytestmark = pytest.mark.usefixtures("state_dir")


def cache_file(state_dir: Path, base: Path) -> Path:
    key = hashlib.sha1(os.fsencode(os.path.abspath(base)), usedforsecurity=False).hexdigest()
    return state_dir / "session-index" / f"{key[:16]}.json"


def age(base: Path, seconds: float = 3600) -> None:
    """Date every file and folder under ``base`` ``seconds`` back: rows read right after a write
    are not cached (the stamp of a rewrite within the timestamps' granularity could be equal)."""
    then = time.time() - seconds
    for path in [*base.rglob("*"), base]:
        os.utime(path, (then, then), follow_symlinks=False)


def twenty_sessions(base: Path) -> list[Path]:
    sessions = [record_tiny_session(base, seed=i, pack=i % 2 == 0) for i in range(20)]
    age(base)
    return sessions


def test_rows_round_trip_through_json():
    rows = [
        SessionRow("a.session.zip", Path("/x/a.session.zip"), packed=True),
        SessionRow(
            "2026-01-02_03-04-05_0123abcd",
            Path("rel/2026-01-02_03-04-05_0123abcd"),
            packed=False,
            created=datetime(2026, 1, 2, 3, 4, 5, 123456),
            duration_s=1.0 / 3,
            approximate=True,
            streams=(StreamSummary("emg", 2, 2048.0, 100), StreamSummary("imu", 6, 0.1, 1)),
            class_names=("Rest", "Fist"),
            label_counts={"Rest": 3, "7": 1},
            size_bytes=1 << 40,
            newest_mtime=1767323045.123456789,
            error="meta.json is not valid JSON (\u00e9)",
        ),
        read_row(MYOGESTIC / "sample.session.zip"),
    ]
    for row in rows:
        back = SessionRow.from_dict(json.loads(json.dumps(row.to_dict())))
        assert back == row
        assert [type(getattr(back, f)) for f in vars(row)] == [
            type(getattr(row, f)) for f in vars(row)
        ]
    bad = rows[1].to_dict() | {"size_bytes": True}  # a bool is no size
    with pytest.raises(TypeError):
        SessionRow.from_dict(bad)


def test_a_new_index_lists_from_the_cache_without_reading(tmp_path, state_dir, monkeypatch):
    base = tmp_path / "sessions"
    sessions = twenty_sessions(base)
    monkeypatch.chdir(tmp_path)  # never written to the working folder
    first = SessionIndex(base)
    rows = first.scan()
    assert (first.reads, first.cache_hits, len(rows)) == (20, 0, 20)
    assert all(row.error is None for row in rows)
    assert cache_file(state_dir, base).is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sessions"]

    second = SessionIndex(base)  # as a new process would
    assert second.scan() == rows  # equal rows: dates, tuples and counts round-trip
    assert (second.reads, second.cache_hits) == (0, 20)
    second.scan()
    assert second.reads == 0

    relative = SessionIndex(os.path.relpath(base))  # the same folder, named otherwise
    assert [r.path for r in relative.scan()] == [Path(os.path.relpath(r.path)) for r in rows]
    assert relative.reads == 0

    then = time.time() - 1800
    os.utime(sessions[0], (then, then))  # a zip rewritten
    os.utime(sessions[1] / "labels.json", (then, then))  # a label added to a folder
    sessions[2].unlink()
    third = SessionIndex(base)
    assert len(third.scan()) == 19
    assert (third.reads, third.cache_hits) == (2, 17)

    script = "import sys; from labsession.widgets._session_index import SessionIndex as S\n"
    script += "i = S(sys.argv[1]); print(len(i.scan()), i.reads, i.cache_hits)"
    done = subprocess.run(  # a real new process, with the same state folder
        [sys.executable, "-c", script, str(base)], capture_output=True, text=True, timeout=60
    )
    assert (done.returncode, done.stdout) == (0, "19 0 19\n"), done.stderr


def test_rows_read_just_after_a_write_or_with_an_error_are_not_cached(tmp_path):
    fresh = record_tiny_session(tmp_path / "sessions")  # written now: racy
    bad = tmp_path / "sessions" / "2026-01-01_00-00-00_deadbeef"
    bad.mkdir()
    (bad / "meta.json").write_text("{not json")
    age(bad)
    SessionIndex(tmp_path / "sessions").scan()
    again = SessionIndex(tmp_path / "sessions")
    rows = {row.name: row for row in again.scan()}
    assert (again.reads, again.cache_hits) == (2, 0)
    assert rows[fresh.name].error is None
    assert "meta.json is not valid JSON" in rows[bad.name].error


def corrupt(path: Path, kind: str, state_dir: Path, tmp_path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "garbage":
        path.write_bytes(b"\x00\xff{garbage" * 100)
    elif kind == "list":
        path.write_text("[1, 2, 3]")
    elif kind == "huge":  # sparse: takes no disk, and is never read
        path.write_text(path.read_text() if path.exists() else "{}")
        os.truncate(path, 100 << 20)
        assert path.stat().st_size > MAX_CACHE_BYTES
    elif kind == "version":
        data = json.loads(path.read_text())
        path.write_text(json.dumps(data | {"version": CACHE_VERSION + 1}))
    elif kind == "bad row":  # one malformed row spoils the whole file
        data = json.loads(path.read_text())
        next(iter(data["entries"].values()))["row"]["streams"] = "emg"
        path.write_text(json.dumps(data))
    elif kind == "other base":  # a copy of the sessions elsewhere, and that folder's cache
        other = tmp_path / "copy"
        shutil.copytree(tmp_path / "sessions", other)
        SessionIndex(other).scan()
        shutil.copy(cache_file(state_dir, other), path)


@pytest.mark.parametrize("kind", ["garbage", "list", "huge", "version", "bad row", "other base"])
def test_a_bad_cache_file_is_ignored_and_rewritten(tmp_path, state_dir, kind, caplog):
    base = tmp_path / "sessions"
    twenty_sessions(base)
    expected = SessionIndex(base, cache=False).scan()
    SessionIndex(base).scan()
    path = cache_file(state_dir, base)
    corrupt(path, kind, state_dir, tmp_path)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    index = SessionIndex(base)
    with caplog.at_level(logging.DEBUG, logger="labsession.widgets._session_cache"):
        assert index.scan() == expected
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 50 * 1024  # KiB
    assert (index.reads, index.cache_hits) == (20, 0)
    assert "session list cache" in caplog.text
    assert path.stat().st_size < 1 << 20  # rewritten
    after = SessionIndex(base)
    assert after.scan() == expected
    assert (after.reads, after.cache_hits) == (0, 20)


def test_a_cache_that_cannot_be_written_never_breaks_the_scan(tmp_path, monkeypatch, caplog):
    base = tmp_path / "sessions"
    twenty_sessions(base)
    (tmp_path / "not_a_folder").write_text("")
    monkeypatch.setenv("LABSESSION_STATE_DIR", str(tmp_path / "not_a_folder"))
    index = SessionIndex(base)
    with caplog.at_level(logging.DEBUG, logger="labsession.widgets._session_cache"):
        assert len(index.scan()) == 20
        age(record_tiny_session(base))
        assert len(index.scan(full=True)) == 21
        assert index.close()
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1  # then quieter
    assert "cannot write the session list cache" in warnings[0].getMessage()


def cached_names(state_dir: Path, base: Path) -> set[str]:
    return set(json.loads(cache_file(state_dir, base).read_text())["entries"])


def test_the_cache_is_written_at_most_every_few_seconds_and_on_close(tmp_path, state_dir):
    base = tmp_path / "sessions"
    sessions = twenty_sessions(base)
    index = SessionIndex(base, poll_interval=0.0)
    try:
        index.request_scan()  # on the background thread
        assert index.wait_idle(10)
        assert cached_names(state_dir, base) == {p.name for p in sessions}
        new = record_tiny_session(base)
        age(new)
        index.request_scan()
        assert index.wait_idle(10)
        assert index.reads == 21
        assert new.name not in cached_names(state_dir, base)  # written less than 5 s ago
    finally:
        assert index.close(10)
    assert new.name in cached_names(state_dir, base)  # by the thread, as it ended
    direct = SessionIndex(base)  # no background thread: close() writes
    direct.scan()
    assert direct.reads == 0  # nothing new: not written
    sessions[4].unlink()
    direct.scan()  # its first write
    assert sessions[4].name not in cached_names(state_dir, base)
    sessions[6].unlink()
    direct.scan()
    assert sessions[6].name in cached_names(state_dir, base)
    direct.close()
    assert sessions[6].name not in cached_names(state_dir, base)
