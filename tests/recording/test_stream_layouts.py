"""Sessions of different stream layouts: split_sessions_by_stream, and aligned windows that
yield nothing (as MyoGestic's do) when no session has the aligned stream."""

import contextlib
import logging
import os

import numpy as np
import pytest

from labsession.recording import (
    Session,
    SessionSplit,
    StreamInfo,
    iter_aligned_windows,
    split_sessions_by_stream,
)


def _session(base, streams, *, pack=False):
    session = Session(base)
    for name in streams:
        session.init_stream(name, StreamInfo(2, 100.0))
        session.append(name, np.ones((100, 2), np.float32), 10.0 + np.arange(100) / 100)
    if pack:
        return session.pack_to_zip()
    session.close()
    return session.path


def _open_files():
    """Paths of the files this process has open (Linux)."""
    names = []
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):  # closed since the listing
            names.append(os.readlink(f"/proc/self/fd/{fd}"))
    return names


@pytest.fixture
def layouts(tmp_path):
    """In one folder: emg + glove (zip), emg only (folder), emg + glove (folder), a corrupt zip."""
    base = tmp_path / "study"
    with_glove = _session(base, ["emg", "glove"], pack=True)
    emg_only = _session(base, ["emg"])
    also_glove = _session(base, ["emg", "glove"])
    corrupt = base / "zz_broken.session.zip"
    corrupt.write_bytes(b"PK\x03\x04 not really a zip")
    return base, with_glove, emg_only, also_glove, corrupt


def test_split_by_stream_in_the_order_given(layouts, tmp_path):
    _, with_glove, emg_only, also_glove, corrupt = layouts
    missing = tmp_path / "nowhere"
    split = split_sessions_by_stream([also_glove, corrupt, emg_only, missing, with_glove], "glove")
    assert isinstance(split, SessionSplit)
    with_stream, without_stream, unreadable = split
    assert with_stream == [also_glove, with_glove]
    assert without_stream == [emg_only]
    assert [u.path for u in unreadable] == [corrupt, missing]
    for path, reason in unreadable:  # pairs, as MyoGestic's (path, exception)
        assert "cannot be opened" in reason
        assert str(path) in str(unreadable[[corrupt, missing].index(path)])
    # A stream every session has, and one none has.
    assert split_sessions_by_stream([emg_only, with_glove], "emg").with_stream == [
        emg_only,
        with_glove,
    ]
    assert split_sessions_by_stream(with_glove, "mocap").without_stream == [with_glove]


def test_split_takes_a_parent_folder_and_closes_each_session(layouts, tmp_path):
    base, with_glove, emg_only, also_glove, corrupt = layouts
    split = split_sessions_by_stream(base, "glove")
    assert sorted(split.with_stream) == sorted([with_glove, also_glove])
    assert split.without_stream == [emg_only]
    assert [u.path for u in split.unreadable] == [corrupt]
    # Each session closed at once: no file of the study is left open.
    assert not [f for f in _open_files() if f.startswith(str(base))]
    empty = tmp_path / "empty"
    empty.mkdir()
    (nothing,) = split_sessions_by_stream([empty], "glove").unreadable
    assert "no sessions in" in nothing.reason
    assert split_sessions_by_stream([], "glove") == SessionSplit([], [], [])


def test_aligned_windows_yield_nothing_when_no_session_has_the_stream(layouts, caplog):
    _, with_glove, emg_only, _, _ = layouts
    with caplog.at_level(logging.INFO, logger="labsession.recording._windows"):
        it = iter_aligned_windows([emg_only], "emg", ["glove"], 0.2, 0.1)
        assert list(it) == []
    assert it.n_windows == 0
    ((path, reason),) = [(s.path, s.reason) for s in it.skipped]
    assert path == emg_only
    assert "no aligned stream(s) ['glove']" in reason
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("0 windows from 0 session(s)" in w for w in warnings)
    # Mixed layouts: windows from the sessions that have it, the others listed.
    it = iter_aligned_windows([emg_only, with_glove], "emg", ["glove"], 0.2, 0.1)
    got = list(it)
    assert len(got) == 9  # 100 samples, windows of 20 every 10
    assert it.n_sessions == 1
    assert [s.path for s in it.skipped] == [emg_only]
    # A primary stream no session recorded is still refused at the call (a misspelt name).
    with pytest.raises(ValueError, match=r"no session recorded stream\(s\) \['emgg'\]"):
        iter_aligned_windows([emg_only], "emgg", ["glove"], 0.2, 0.1)
