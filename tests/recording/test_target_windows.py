"""Dense regression targets: iter_target_windows on sessions written by Session.

The hand-built session: ``emg`` at 1 kHz for 3 s from t = 100 s (one channel: the sample
index), and a ``force`` target at 100 Hz, sample ``j`` at ``100.0005 + j / 100`` for
``j = 10 .. 249``, without ``j = 180 .. 184`` (six periods apart: a gap, more than three).
Phase 0 (``j < 120``) has value ``j``, phase 1 has ``500 - 2 j``: both linear in time, so the
interpolation between two samples of one phase is the line itself. Windows of 0.1 s every
0.05 s: 59 windows, starts 0, 50, ... 2900, ending at sample ``start + 99``, at
``100 + (start + 99) / 1000`` s.
"""

import logging
import re
import shutil
import tracemalloc

import numpy as np
import pytest

from labsession.errors import SessionError
from labsession.recording import (
    Session,
    StreamInfo,
    TargetWindow,
    _blocks,
    iter_target_windows,
)
from labsession.recording._target_track import TargetTrack


def _target_rows():
    j = np.array([k for k in range(10, 250) if not 180 <= k <= 184])
    ts = 100.0005 + j / 100
    phase = (j >= 120).astype(np.float32)
    value = np.where(j < 120, j, 500 - 2 * j).astype(np.float32)
    return np.stack([value, phase], axis=1), ts


def _write(base, *, target=True, pack=False, emg_seconds=3.0):
    session = Session(base)
    n = int(emg_seconds * 1000)
    session.init_stream("emg", StreamInfo(1, 1000.0))
    session.append("emg", np.arange(n, dtype=np.float32)[:, None], 100.0 + np.arange(n) / 1000)
    if target:
        rows, ts = _target_rows()
        session.init_stream("force", StreamInfo(2, 100.0, channel_names=("force", "phase")))
        for lo in range(0, len(ts), 7):  # as an acquisition thread delivers it
            session.append("force", rows[lo : lo + 7], ts[lo : lo + 7])
    if pack:
        return session.pack_to_zip()
    session.close()
    return session.path


@pytest.fixture(scope="module")
def ramp_session(tmp_path_factory):
    return _write(tmp_path_factory.mktemp("target"))


def _by_start(windows):
    return {int(w.window[0, 0]): w for w in windows}


def test_target_is_the_value_at_the_window_end(ramp_session):
    it = iter_target_windows(ramp_session, "emg", "force", 0.1, 0.05)
    got = list(it)
    assert all(isinstance(w, TargetWindow) for w in got)
    window, ts, target, phase = got[0]  # MyoGestic's order, and the phase
    assert (window.shape, ts.shape, target.shape, phase) == ((1, 100), (100,), (1,), 0)
    by_start = _by_start(got)
    # 59 windows: the first ends before the target starts (100.099 < 100.1005), the last 11
    # after it ends (start >= 2400: 102.499 > 102.4905), two in the gap (101.7905..101.8505).
    assert it.dropped == {"outside": 12, "gap": 2, "span": 0, "phase": 0}
    assert len(got) == 45
    assert sorted(by_start) == [s for s in range(50, 2400, 50) if s not in (1700, 1750)]
    w = by_start[500]  # ends at 100.599 s: j = 59.85 of phase 0
    assert w.window.shape == (1, 100)
    assert w.window.dtype == np.float32
    np.testing.assert_array_equal(w.window[0], np.arange(500, 600))
    assert w.ts[-1] == pytest.approx(100.599)
    assert w.target.dtype == np.float32
    assert w.target.shape == (1,)
    assert w.target[0] == pytest.approx(59.85, abs=1e-4)
    assert w.phase == 0
    w = by_start[1500]  # ends at 101.599 s: j = 159.85 of phase 1
    assert w.target[0] == pytest.approx(500 - 2 * 159.85, abs=1e-4)
    assert w.phase == 1
    # Ends at 101.199 s, between j = 119 (phase 0, 119) and j = 120 (phase 1, 260): the earlier
    # value is held, not blended with the next phase's.
    w = by_start[1100]
    assert w.target[0] == 119
    assert w.phase == 0
    # Next to the gap: ends at 101.649 s (j = 164.85) and 101.899 s (after it, j = 189.85).
    assert by_start[1550].target[0] == pytest.approx(500 - 2 * 164.85, abs=1e-4)
    assert by_start[1800].target[0] == pytest.approx(500 - 2 * 189.85, abs=1e-4)
    assert "45 windows from 1 session(s) (12 outside, 2 gap dropped)" in it.summary()


def test_a_window_ending_on_a_target_sample_takes_it(tmp_path):
    session = Session(tmp_path)
    session.init_stream("emg", StreamInfo(1, 100.0))
    session.append("emg", np.zeros((100, 1), np.float32), np.arange(100) / 100)
    session.init_stream("force", StreamInfo(2, 10.0))
    values = np.stack([np.arange(10) ** 2, np.zeros(10)], axis=1).astype(np.float32)
    session.append("force", values, np.arange(10) / 10)
    session.close()
    # Windows of 11 samples every 10: window k ends at sample 10k + 10, at exactly 0.1 (k + 1)
    # s, on target sample k + 1: its value (k + 1)^2, not a line through its neighbours. The
    # last (k = 8) ends on the last target sample, at 0.9 s: inside the span.
    got = list(iter_target_windows(session.path, "emg", "force", 0.11, 0.1))
    assert [w.target[0] for w in got] == [(k + 1) ** 2 for k in range(9)]


def test_phases_keep_only_windows_ending_in_them(ramp_session):
    every = _by_start(iter_target_windows(ramp_session, "emg", "force", 0.1, 0.05))
    it = iter_target_windows(ramp_session, "emg", "force", 0.1, 0.05, phases=[1])
    ones = list(it)
    assert {w.phase for w in ones} == {1}
    assert sorted(_by_start(ones)) == [s for s in every if s >= 1150]
    assert len(ones) == 23
    assert it.dropped == {"outside": 12, "gap": 2, "span": 0, "phase": 22}
    for w in ones:
        np.testing.assert_array_equal(w.target, every[int(w.window[0, 0])].target)
    zeros = list(iter_target_windows(ramp_session, "emg", "force", 0.1, 0.05, phases={0, 7}))
    assert len(zeros) == 22
    assert {w.phase for w in zeros} == {0}


def test_copies_views_zip_and_small_blocks_agree(ramp_session, tmp_path, monkeypatch):
    zipped = _write(tmp_path, pack=True)
    copies = list(iter_target_windows(ramp_session, "emg", "force", 0.1, 0.05))
    views = list(iter_target_windows(zipped, "emg", "force", 0.1, 0.05, copy=False))
    monkeypatch.setattr(_blocks, "BLOCK_BYTES", 1)  # one chunk per block, target included
    small = list(iter_target_windows(zipped, "emg", "force", 0.1, 0.05))
    assert len(copies) == len(views) == len(small) == 45
    for a, b, c in zip(copies, views, small, strict=True):
        for x, y, z in zip(a, b, c, strict=True):
            np.testing.assert_array_equal(x, y)
            np.testing.assert_array_equal(x, z)
    assert not views[0].window.flags.writeable
    assert not views[0].ts.flags.writeable
    assert copies[0].window.flags.c_contiguous
    assert copies[0].window.flags.writeable


def test_target_blocks_hold_the_next_row_for_interpolation(ramp_session, monkeypatch):
    """Blocks of one chunk (100 rows): a time between two blocks interpolates across them."""
    monkeypatch.setattr(_blocks, "BLOCK_BYTES", 1)
    from labsession.recording import open_session_store

    with open_session_store(ramp_session) as store:
        track = TargetTrack(store, "force")
        assert track.block_rows == 100
        # Rows 99 and 100 are j = 109 and j = 110 (at 101.0905 and 101.1005 s).
        values, phase = track.lookup(101.0955)
        assert values[0] == pytest.approx(109.5)
        assert phase == 0
        assert track.lookup(100.0) == "outside"
        assert track.lookup(float("nan")) == "outside"
        assert track.lookup(101.82) == "gap"
        values, _ = track.lookup(100.1005)  # the very first sample
        assert values[0] == 10
        track.close()


def test_sessions_without_the_target_are_skipped_and_none_yields_nothing(
    ramp_session, tmp_path, caplog
):
    plain = _write(tmp_path / "plain", target=False)
    it = iter_target_windows([plain, ramp_session], "emg", "force", 0.1, 0.05)
    assert len(list(it)) == 45
    assert it.n_sessions == 1
    ((path, reason),) = [(s.path, s.reason) for s in it.skipped]
    assert path == plain
    assert "no target stream 'force'" in reason
    assert "emg" in reason
    # No session has the target: nothing, no error (as MyoGestic's aligned windows), a warning.
    with caplog.at_level(logging.INFO, logger="labsession.recording._windows"):
        it = iter_target_windows(plain, "emg", "force", 0.1, 0.05)
        assert list(it) == []
    assert [s.path for s in it.skipped] == [plain]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("0 windows from 0 session(s)" in w for w in warnings)


def test_a_session_whose_windows_all_miss_the_target_says_why(tmp_path):
    path = _write(tmp_path, emg_seconds=0.1)  # 100.000 to 100.099 s: before the target
    it = iter_target_windows(path, "emg", "force", 0.05, 0.05)
    assert list(it) == []
    (skipped,) = it.skipped
    assert re.search(r"2 end outside its span \(100\.10\d to 102\.49\d s\)", skipped.reason)
    it = iter_target_windows(_write(tmp_path / "b"), "emg", "force", 0.1, 0.05, phases=[5])
    assert list(it) == []
    assert "45 end outside phases [5]" in it.skipped[0].reason


def _session_with_target(base, rows, ts, n_channels=2, names=None):
    session = Session(base)
    session.init_stream("emg", StreamInfo(1, 100.0))
    session.append("emg", np.zeros((300, 1), np.float32), np.arange(300) / 100)
    session.init_stream("force", StreamInfo(n_channels, 100.0, channel_names=names))
    session.append("force", np.asarray(rows, np.float32), np.asarray(ts, np.float64))
    session.close()
    return session.path


@pytest.mark.parametrize(
    ("edit", "reason"),
    [
        ("back", "goes back in time at sample 150"),
        ("one_channel", "has 1 channel"),
        ("half_phase", "has phase 0.5 at sample 7"),
        ("named", "has channels ['x', 'y']; the last channel of a target stream is the phase"),
    ],
)
def test_unusable_target_streams_are_skipped_with_the_reason(tmp_path, edit, reason):
    ts = np.arange(300) / 100
    rows = np.zeros((300, 2))
    channels, names = 2, None
    if edit == "back":
        ts[150:] -= 0.5
    elif edit == "one_channel":
        rows, channels = rows[:, :1], 1
    elif edit == "named":
        names = ("x", "y")  # a cursor stream, say: two values and no phase
    else:
        rows[7, 1] = 0.5
    path = _session_with_target(tmp_path, rows, ts, channels, names)
    it = iter_target_windows(path, "emg", "force", 0.1, 0.05)
    assert list(it) == []
    (skipped,) = it.skipped
    assert reason in skipped.reason
    assert "target stream 'force'" in skipped.reason


@pytest.mark.parametrize(
    ("bad", "shown"),
    [
        (np.inf, "inf"),
        (-np.inf, "-inf"),
        (np.nan, "nan"),
        (1e30, "1.0000000150474662e+30"),  # as float32 holds it
        (2.0**31, "2147483648.0"),
    ],
)
def test_a_phase_that_is_no_int32_index_makes_the_session_skipped(tmp_path, bad, shown):
    """Infinity raised a raw OverflowError, and 1e30 was yielded as a phase."""
    rows = np.zeros((300, 2))
    rows[:, 1] = np.repeat([0, 1, 2], 100)
    rows[40:60, 1] = bad
    path = _session_with_target(tmp_path, rows, np.arange(300) / 100)
    it = iter_target_windows(path, "emg", "force", 0.1, 0.05)
    assert list(it) == []
    (skipped,) = it.skipped
    assert (
        f"has phase {shown} at sample 40: the last channel must hold whole-number phase "
        "indices in [-2147483648, 2147483647]"
    ) in skipped.reason


def test_a_corrupt_target_chunk_raises_naming_it(ramp_session, tmp_path):
    """A flipped byte in the target's second chunk: SessionError naming it, never a changed
    target (the whole target stream is checked before the first window)."""
    copy = tmp_path / ramp_session.name
    shutil.copytree(ramp_session, copy)
    chunk = copy / "force.zarr" / "c" / "1" / "0"
    raw = bytearray(chunk.read_bytes())
    raw[len(raw) // 2] ^= 0x10
    chunk.write_bytes(bytes(raw))
    it = iter_target_windows(copy, "emg", "force", 0.1, 0.05)
    with pytest.raises(SessionError, match=r"force\.zarr/c/1/0"):
        next(it)


def test_arguments_are_checked_before_reading(ramp_session, tmp_path):
    with pytest.raises(ValueError, match="phases is empty"):
        iter_target_windows(ramp_session, "emg", "force", 0.1, 0.05, phases=[])
    with pytest.raises(TypeError, match="phase indices"):
        iter_target_windows(ramp_session, "emg", "force", 0.1, 0.05, phases=["ramp"])
    with pytest.raises(ValueError, match="hop_seconds"):
        iter_target_windows(ramp_session, "emg", "force", 0.1, 0)
    with pytest.raises(ValueError, match="max_gap_periods must be a finite number >= 1"):
        iter_target_windows(ramp_session, "emg", "force", 0.1, 0.05, max_gap_periods=0.5)
    with pytest.raises(ValueError, match=r"no session recorded stream\(s\) \['eeg'\]"):
        iter_target_windows(ramp_session, "eeg", "force", 0.1, 0.05)
    with pytest.raises(SessionError, match="none of the 1 session"):
        iter_target_windows(tmp_path / "missing", "emg", "force", 0.1, 0.05)


def test_a_wider_gap_allowance_interpolates_across_the_hole(ramp_session):
    """max_gap_periods=10: the six-period hole is no gap; its windows take the line."""
    it = iter_target_windows(ramp_session, "emg", "force", 0.1, 0.05, max_gap_periods=10)
    by_start = _by_start(it)
    assert it.dropped["gap"] == 0
    assert by_start[1700].target[0] == pytest.approx(500 - 2 * 179.85, abs=1e-4)  # 101.799 s
    assert by_start[1750].target[0] == pytest.approx(500 - 2 * 184.85, abs=1e-4)


def test_windows_across_a_dropout_of_the_primary_stream_are_dropped(tmp_path):
    """100 Hz, a 0.5 s hole in the samples: windows of 10 samples reaching across it span
    more than 1.5 x 0.09 s, so the target at their end does not answer for their start."""
    ts = np.concatenate([np.arange(100), np.arange(150, 250)]) / 100
    session = Session(tmp_path)
    session.init_stream("emg", StreamInfo(1, 100.0))
    session.append("emg", np.arange(200, dtype=np.float32)[:, None], ts)
    session.init_stream("force", StreamInfo(2, 100.0))
    session.append("force", np.zeros((250, 2), np.float32), np.arange(250) / 100)
    session.close()
    it = iter_target_windows(session.path, "emg", "force", 0.1, 0.01)
    starts = sorted(_by_start(it))
    # Windows starting at samples 91..99 hold samples from both sides of the hole.
    assert starts == [s for s in range(191) if not 91 <= s <= 99]
    assert it.dropped == {"outside": 0, "gap": 0, "span": 9, "phase": 0}


def test_idle_samples_are_left_out_unless_asked_for(tmp_path):
    """Phase -1 (no target shown) is dropped by default, as labels of class -1 are."""
    rows = np.zeros((300, 2))
    rows[:100, 1] = -1  # idle, then phase 0, then idle again
    rows[200:, 1] = -1
    path = _session_with_target(tmp_path, rows, np.arange(300) / 100)
    it = iter_target_windows(path, "emg", "force", 0.1, 0.1)
    assert [round(w.ts[-1] * 100) for w in it] == list(range(109, 200, 10))
    assert it.dropped["phase"] == 20
    idle = list(iter_target_windows(path, "emg", "force", 0.1, 0.1, phases=[-1]))
    assert len(idle) == 20
    assert {w.phase for w in idle} == {-1}


def test_reads_a_myogestic_target_stream(tmp_path):
    """MyoGestic's TargetSource records ("target_pct", "phase") with its phase codes (rest 0,
    ramp_up 1, hold 2, ramp_down 3, ..., idle 6): the same layout."""
    level = np.concatenate([np.zeros(50), np.linspace(0, 30, 100), np.full(100, 30), [0] * 50])
    codes = np.repeat([0, 1, 2, 6], [50, 100, 100, 50])
    rows = np.stack([level, codes], axis=1)
    path = _session_with_target(tmp_path, rows, np.arange(300) / 100, names=("target_pct", "phase"))
    every = list(iter_target_windows(path, "emg", "force", 0.1, 0.1))
    assert [w.phase for w in every] == [0] * 5 + [1] * 10 + [2] * 10 + [6] * 5
    # MyoGestic keeps every phase but idle and done by default; here: name the codes.
    moving = list(iter_target_windows(path, "emg", "force", 0.1, 0.1, phases={1, 2, 3}))
    assert len(moving) == 20
    assert moving[-1].target[0] == pytest.approx(30.0)


def _long_target_session(base, seconds, channels=16, fs=2000.0):
    session = Session(base)
    session.init_stream("emg", StreamInfo(channels, fs))
    session.init_stream("force", StreamInfo(2, 100.0))
    block = np.random.default_rng(0).standard_normal((20_000, channels)).astype(np.float32)
    for k in range(int(seconds * fs) // 20_000):
        session.append("emg", block, (np.arange(20_000) + k * 20_000) / fs)
        j = np.arange(1000) + k * 1000
        force = np.stack([np.sin(j / 100), (j // 500) % 4], axis=1).astype(np.float32)
        session.append("force", force, j / 100)
    return session.pack_to_zip()


def test_memory_does_not_grow_with_the_session(tmp_path, monkeypatch):
    """256 KiB blocks: 80 s of 16 channels at 2 kHz iterates holding what 40 s holds."""
    monkeypatch.setattr(_blocks, "BLOCK_BYTES", 2**18)
    held, peaks = {}, {}
    for seconds in (40, 80):
        path = _long_target_session(tmp_path / str(seconds), seconds)
        tracemalloc.start()
        try:
            it = iter_target_windows(path, "emg", "force", 0.2, 0.05)
            count = sum(1 for _ in it)
            peaks[seconds] = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        held[seconds] = it.peak_held_bytes
        # Every window but those ending after the last target sample (t > seconds - 0.01).
        assert count == (seconds * 2000 - 400) // 100 + 1 - it.dropped["outside"]
        assert it.dropped == {"outside": 1, "gap": 0, "span": 0, "phase": 0}
    assert held[40] == held[80], held
    assert held[80] <= 6 * 2**18, held
    for seconds in (40, 80):
        # Besides the counted blocks: decode buffers, one window, the zip directory.
        assert peaks[seconds] <= held[seconds] + 3 * 2**20, (peaks, held)
