"""The integrity record and its live tracker: counting rules, repair of stamps, meta.json form."""

from __future__ import annotations

import json
import math
import threading

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from labsession.errors import SessionError
from labsession.recording._integrity import (
    GAP_MIN_S,
    REPAIR_LIMIT_S,
    REPAIR_STEP_MIN_S,
    REPAIR_STEP_PERIODS,
    IntegrityTracker,
    StreamIntegrity,
    integrity_from_timestamps,
)
from labsession.recording._integrity_record import KEEP_EACH_END, MESSAGE_CHARS

FS = 1024.0
TICK = 1 / 4096  # stamps on a binary grid: every sum in the tracker is exact


def reference(raw: np.ndarray, fs: float, *, limit: float = REPAIR_LIMIT_S) -> dict:
    """The documented rules, one stamp at a time in plain Python."""
    step = REPAIR_STEP_PERIODS / fs
    threshold = max(3 / fs, GAP_MIN_S)
    out, gaps = [], []
    backward = unrepaired = 0
    prev_raw, prev_stored = None, -math.inf
    for r in raw.tolist():
        if prev_raw is not None:
            backward += r < prev_raw
            if r - prev_raw > threshold:
                gaps.append((prev_raw, r))
        stored = max(r, prev_stored + step)
        if stored - r > limit:
            stored, unrepaired = r, unrepaired + 1
        out.append(stored)
        prev_raw, prev_stored = r, stored
    return {"out": np.array(out), "gaps": gaps, "backward": backward, "unrepaired": unrepaired}


def split(raw: np.ndarray, cuts: list[int]) -> list[np.ndarray]:
    return np.split(raw, sorted({c % (raw.size + 1) for c in cuts}))


stamps = st.lists(st.integers(-400, 1200), min_size=1, max_size=200).map(
    lambda steps: 1000.0 + np.cumsum(np.array(steps)) * TICK
)


@given(raw=stamps, cuts=st.lists(st.integers(0, 400), max_size=8))
def test_tracker_follows_the_documented_rules_however_the_stream_is_chunked(raw, cuts):
    tracker = IntegrityTracker(FS)
    stored = np.concatenate([tracker.on_chunk(chunk) for chunk in split(raw, cuts)])
    expected = reference(raw, FS)
    np.testing.assert_allclose(stored, expected["out"], rtol=0, atol=1e-9)
    record = tracker.snapshot()
    assert record.n_samples == raw.size
    assert record.n_backward_steps == expected["backward"]
    assert record.n_unrepaired == expected["unrepaired"]
    assert record.n_gaps == len(expected["gaps"])
    assert (
        list(record.gaps)
        == expected["gaps"][:KEEP_EACH_END]
        + expected["gaps"][max(KEEP_EACH_END, len(expected["gaps"]) - KEEP_EACH_END) :]
    )
    # Stored stamps: never earlier than the source's, never more than the limit later,
    # strictly increasing wherever nothing was too deep to repair.
    shift = stored - raw
    assert shift.min() >= 0
    assert shift.max() <= REPAIR_LIMIT_S
    assert record.max_shift_s == shift.max()
    assert record.n_repaired == np.count_nonzero(shift)
    if record.n_unrepaired == 0:
        assert np.all(np.diff(stored) >= REPAIR_STEP_PERIODS / FS - 1e-12)


@given(raw=stamps)
def test_increasing_stamps_are_stored_as_given(raw):
    steady = 1000.0 + np.cumsum(np.abs(np.diff(raw, prepend=0)) + 1 / FS)
    tracker = IntegrityTracker(FS)
    stored = tracker.on_chunk(steady)
    assert stored is steady or np.array_equal(stored, steady)
    assert tracker.snapshot().n_repaired == 0


def test_backward_steps_across_chunk_boundaries_are_counted_and_repaired():
    fs = 2048.0
    period = 1 / fs
    tracker = IntegrityTracker(fs)
    a = 10.0 + np.arange(32) * period
    b = a[-1] - 0.0012 + np.arange(1, 33) * period  # liblsl back-dated this chunk 1.2 ms late
    stored_a, stored_b = tracker.on_chunk(a), tracker.on_chunk(b)
    record = tracker.snapshot()
    assert record.n_backward_steps == 1
    assert record.max_backward_s == pytest.approx(0.0012 - period)
    assert stored_a is a  # nothing to move in the first chunk: no copy
    both = np.concatenate([stored_a, stored_b])
    assert np.all(np.diff(both) > 0)
    assert record.max_shift_s <= 0.0012
    assert 0 < record.n_repaired < b.size  # only the stamps that needed it moved
    np.testing.assert_array_equal(stored_b[record.n_repaired :], b[record.n_repaired :])


def test_a_clock_reset_is_stored_as_given_and_counted():
    tracker = IntegrityTracker(100.0)
    tracker.on_chunk(50.0 + np.arange(10) / 100)
    back = 20.0 + np.arange(10) / 100  # 30 s back: no repair can absorb that
    stored = tracker.on_chunk(back)
    np.testing.assert_array_equal(stored, back)
    record = tracker.snapshot()
    assert (record.n_backward_steps, record.n_unrepaired, record.n_repaired) == (1, 1, 0)
    assert record.max_backward_s == pytest.approx(30.09)


def test_irregular_and_unrepaired_streams_keep_their_stamps():
    raw = np.array([1.0, 0.5, 0.7, 0.2])
    for tracker in (IntegrityTracker(0.0), IntegrityTracker(100.0, repair=False)):
        assert tracker.on_chunk(raw) is raw
        assert tracker.snapshot().n_backward_steps == 2
    assert IntegrityTracker(0.0).snapshot().gap_threshold_s == 0.0  # no gaps without a rate


def test_gaps_need_three_periods_and_twenty_milliseconds():
    tracker = IntegrityTracker(2048.0)
    period = 1 / 2048
    # Chunk jitter up to 15 ms is not a gap; a 25 ms jump is (51 samples missing).
    ts = np.cumsum([10.0, period, 0.015, period, 0.025, period])
    tracker.on_chunk(ts)
    record = tracker.snapshot()
    assert record.gap_threshold_s == GAP_MIN_S
    assert record.gaps == ((ts[3], ts[4]),)
    assert record.dropped_samples == round(0.025 * 2048) - 1
    assert record.gap_seconds == pytest.approx(0.025)
    assert IntegrityTracker(10.0).snapshot().gap_threshold_s == pytest.approx(0.3)


def test_kept_lists_hold_the_first_and_last_entries_and_count_all():
    tracker = IntegrityTracker(100.0)
    n = 3 * KEEP_EACH_END + 5
    starts = np.arange(n) * 10.0  # n gaps of 9.99 s, fed in chunks of various sizes
    ts = np.sort(np.concatenate([starts, starts + 0.01]))[1:]
    for chunk in np.split(ts, [1, 7, 30, 31]):
        tracker.on_chunk(chunk)
    for k in range(n):
        tracker.on_source_error(float(k), f"OSError: hiccup {k}")
        tracker.on_disconnect(float(k))
        tracker.on_reconnect(k + 0.5)
    record = tracker.snapshot()
    assert record.n_gaps == n - 1
    kept = [g[0] for g in record.gaps]
    all_starts = (starts[:-1] + 0.01).tolist()
    assert kept == all_starts[:KEEP_EACH_END] + all_starts[-KEEP_EACH_END:]
    assert record.n_source_errors == record.n_disconnects == n
    assert [t for t, _ in record.source_errors] == [
        *range(KEEP_EACH_END),
        *range(n - KEEP_EACH_END, n),
    ]
    assert record.last_error == f"OSError: hiccup {n - 1}"
    assert record.disconnects[-1] == (n - 1.0, n - 0.5)


def test_disconnects_count_transitions_and_stay_open_until_reconnect():
    tracker = IntegrityTracker(100.0)
    tracker.on_disconnect(5.0)
    tracker.on_disconnect(6.0)  # still lost: not a second disconnect
    assert tracker.disconnected
    assert tracker.snapshot().disconnects == ((5.0, None),)
    tracker.on_reconnect(9.0)
    tracker.on_reconnect(9.5)  # not lost: nothing to close
    record = tracker.snapshot()
    assert (record.n_disconnects, record.disconnects) == (1, ((5.0, 9.0),))


def test_long_error_messages_are_cut():
    tracker = IntegrityTracker(100.0)
    tracker.on_source_error(1.0, "x" * 10_000)
    message = tracker.snapshot().last_error
    assert len(message) == MESSAGE_CHARS
    assert message.endswith("…")


def test_effective_rate_is_measured_over_the_stamps():
    tracker = IntegrityTracker(1000.0)
    tracker.on_chunk(np.arange(1000) / 1000.0)
    tracker.on_chunk(2.0 + np.arange(1000) / 1000.0)  # 1 s of samples lost between the two
    record = tracker.snapshot()
    assert record.effective_fs == pytest.approx(1999 / 2.999)
    assert (record.first_timestamp, record.last_timestamp) == (0.0, 2.999)
    assert record.n_gaps == 1
    assert record.dropped_samples == 1000


def test_non_finite_stamps_are_counted_but_skipped():
    tracker = IntegrityTracker(100.0)
    tracker.on_chunk(np.array([0.0, 0.01]))
    bad = np.array([0.02, np.nan, np.inf, 0.03])
    assert tracker.on_chunk(bad) is bad
    tracker.on_chunk(np.array([0.04]))
    record = tracker.snapshot()
    assert record.n_samples == 7
    assert (record.n_backward_steps, record.n_gaps, record.last_timestamp) == (0, 0, 0.04)
    json.dumps(record.to_meta(), allow_nan=False)


def test_snapshots_while_a_thread_feeds_chunks_are_consistent():
    tracker = IntegrityTracker(1000.0)
    chunks = [k * 0.01 + np.arange(10) / 1000.0 for k in range(2000)]
    seen: list[StreamIntegrity] = []

    def feed():
        for chunk in chunks:
            tracker.on_chunk(chunk)

    thread = threading.Thread(target=feed)
    thread.start()
    while thread.is_alive():
        seen.append(tracker.snapshot())
    thread.join()
    seen.append(tracker.snapshot())
    for record in seen:
        assert record.n_samples % 10 == 0  # never half a chunk
        if record.n_samples:
            assert record.last_timestamp == pytest.approx((record.n_samples - 1) / 1000.0)
    assert seen[-1].n_samples == 20_000
    assert seen[-1].clean


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"nominal_fs": -1.0}, "nominal_fs"),
        ({"nominal_fs": math.nan}, "nominal_fs"),
        ({"gap_min_s": -0.1}, "gap_min_s"),
        ({"repair_limit_s": math.inf}, "repair_limit_s"),
        ({"keep": 0}, "keep"),
    ],
)
def test_bad_parameters_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        IntegrityTracker(**kwargs)


# -- the meta.json form --------------------------------------------------------------------------
def busy_record() -> StreamIntegrity:
    tracker = IntegrityTracker(100.0)
    tracker.on_chunk(np.array([1.0, 1.01, 1.005, 2.0, 2.01]))
    tracker.on_disconnect(3.0)
    tracker.on_reconnect(4.0)
    tracker.on_disconnect(5.0)
    tracker.on_source_error(3.5, 'OSError: "usb" gone ✗')
    return tracker.snapshot()


def test_meta_round_trip_through_json():
    record = busy_record()
    text = json.dumps({"emg": record.to_meta()}, allow_nan=False)
    back = StreamIntegrity.from_meta(json.loads(text)["emg"], where="meta.json['emg']")
    assert back == record
    assert back.disconnects == ((3.0, 4.0), (5.0, None))
    assert StreamIntegrity.from_meta(StreamIntegrity().to_meta(), where="x") == StreamIntegrity()


def test_unknown_keys_are_ignored():
    entry = busy_record().to_meta() | {"written_by_a_newer_version": [1, 2]}
    assert StreamIntegrity.from_meta(entry, where="x") == busy_record()


@pytest.mark.parametrize(
    ("key", "value", "match"),
    [
        ("n_samples", -1, "'n_samples' must be a count"),
        ("n_samples", 1.5, "'n_samples' must be a count"),
        ("n_samples", True, "'n_samples' must be a count"),
        ("n_gaps", "3", "'n_gaps' must be a count"),
        ("effective_fs", None, "'effective_fs' must be a finite number"),
        ("effective_fs", -5.0, "'effective_fs' must be >= 0"),
        ("first_timestamp", "soon", "'first_timestamp' must be a finite number"),
        ("max_shift_s", 1e400, "'max_shift_s' must be a finite number"),
        ("gaps", {"a": 1}, "'gaps' must be a list"),
        ("gaps", [[2.0, 1.0]], "'gaps' entries must be \\[start, end\\]"),
        ("gaps", [[1.0]], "'gaps' entries"),
        ("gaps", [[1.0, None]], "'gaps' entries"),
        ("disconnects", [[1.0, "x"]], "'disconnects' entries"),
        ("source_errors", [[1.0, 2]], "'source_errors' entries must be \\[time, message\\]"),
        ("source_errors", [["t", "m"]], "'source_errors' entries"),
        ("gaps", [[1.0, 2.0]] * 5, "'gaps' holds 5 entries but 'n_gaps' is 1"),
        ("effective_fs", 10**400, "'effective_fs' must be a finite number"),
        ("gaps", [[0, 10**400]], "'gaps' entries"),
        ("disconnects", [[10**400, None]], "'disconnects' entries"),
        ("source_errors", [[-(10**400), "m"]], "'source_errors' entries"),
    ],
)
def test_bad_entries_raise_session_error_naming_where_key_and_value(key, value, match):
    entry = busy_record().to_meta()
    entry[key] = value
    with pytest.raises(SessionError, match=match) as info:
        StreamIntegrity.from_meta(entry, where="/data/s1/meta.json integrity['emg']")
    assert str(info.value).startswith("/data/s1/meta.json integrity['emg']: ")


def test_missing_key_and_non_object_are_named():
    entry = busy_record().to_meta()
    del entry["n_backward_steps"]
    with pytest.raises(SessionError, match="key 'n_backward_steps' is missing"):
        StreamIntegrity.from_meta(entry, where="x")
    with pytest.raises(SessionError, match="must be a JSON object, got \\[1, 2\\]"):
        StreamIntegrity.from_meta([1, 2], where="x")


def test_huge_bad_values_are_quoted_short():
    entry = busy_record().to_meta()
    entry["n_gaps"] = "z" * 100_000
    with pytest.raises(SessionError) as info:
        StreamIntegrity.from_meta(entry, where="x")
    assert len(str(info.value)) < 200


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.sampled_from([10**400, -(10**400)])
    | st.floats()
    | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=8,
)


@given(key=st.sampled_from(sorted(StreamIntegrity().to_meta())), value=json_values)
def test_any_value_for_any_key_loads_or_raises_session_error(key, value):
    entry = busy_record().to_meta()
    entry[key] = value
    try:
        record = StreamIntegrity.from_meta(entry, where="x")
    except SessionError:
        return
    json.dumps(record.to_meta(), allow_nan=False)  # what loads is JSON-safe again


# -- from stored timestamps -------------------------------------------------------------------
def test_integrity_from_timestamps_matches_a_tracker_fed_in_blocks():
    rng = np.random.default_rng(3)
    ts = 100.0 + np.cumsum(
        rng.choice([1e-3, 1e-3, 1e-3, -2e-3, 0.5], size=5000, p=[0.9, 0.05, 0.04, 0.005, 0.005])
    )
    whole = integrity_from_timestamps(ts, 1000.0)
    tracker = IntegrityTracker(1000.0, repair=False)
    for block in np.array_split(ts, 7):
        tracker.on_chunk(block)
    assert tracker.snapshot() == whole
    assert whole.n_backward_steps == np.count_nonzero(np.diff(ts) < 0)
    assert whole.n_gaps == np.count_nonzero(np.diff(ts) > 0.02)
    assert whole.n_repaired == 0


def test_faults_as_a_stream_reports_them_to_the_session():
    tracker = IntegrityTracker(100.0)
    tracker.on_fault("source_error", 1.0, "OSError: hiccup")
    tracker.on_fault("disconnected", 2.0, "the source stopped delivering")
    tracker.on_fault("reconnected", 3.0, "the source delivers again")
    tracker.on_fault("acquisition_stopped", 4.0, "ValueError: NaN")
    tracker.on_fault("something_new", 5.0, "ignored")
    record = tracker.snapshot()
    assert record.source_errors == (
        (1.0, "OSError: hiccup"),
        (4.0, "acquisition stopped: ValueError: NaN"),
    )
    assert record.disconnects == ((2.0, 3.0),)


@pytest.mark.parametrize("t0", [0.0, 1e5, 5e7])
@pytest.mark.parametrize("fs", [10.0, 2048.0, 1e6])
def test_repaired_stamps_are_strictly_increasing_at_any_clock_reading(t0, fs):
    stuck = np.full(1000, t0)  # every stamp equal: the worst a chunk can be
    stored = IntegrityTracker(fs).on_chunk(stuck)
    assert np.all(np.diff(stored) > 0)
    step = max(REPAIR_STEP_PERIODS / fs, REPAIR_STEP_MIN_S)
    assert stored[-1] - t0 == pytest.approx(999 * step, abs=np.spacing(t0) + 1e-12)


def test_docstring_examples_run():
    import doctest

    from labsession.recording import _integrity as module

    assert doctest.testmod(module).failed == 0


def test_a_reconnect_stamped_before_its_disconnect_is_kept_readable():
    """A resumed open disconnect closed after a reboot (the LSL clock restarted) must still
    give a record the reader accepts."""
    tracker = IntegrityTracker(100.0)
    tracker.on_disconnect(5000.0)
    tracker.on_reconnect(12.0)
    record = tracker.snapshot()
    assert record.disconnects == ((5000.0, 5000.0),)
    assert StreamIntegrity.from_meta(json.loads(json.dumps(record.to_meta())), where="t") == record


def test_a_chunk_the_session_refused_is_a_source_error_in_the_record():
    tracker = IntegrityTracker(100.0)
    tracker.on_fault("append_error", 3.0, "ValueError: timestamps contain NaN")
    record = tracker.snapshot()
    assert record.n_source_errors == 1
    assert record.source_errors == (
        (3.0, "samples refused by the session: ValueError: timestamps contain NaN"),
    )
