import json
import threading
from pathlib import Path

import numpy as np
import pytest

MYOGESTIC = Path(__file__).parent.parent / "data" / "myogestic"


@pytest.fixture(scope="session")
def myogestic_dir():
    """Folder holding MyoGestic's fixture session (folder/, sample.session.zip, expected.json)."""
    return MYOGESTIC


@pytest.fixture(scope="session")
def myogestic_expected():
    """What MyoGestic's own readers returned for its fixture session (see its README)."""
    return json.loads((MYOGESTIC / "expected.json").read_text())


@pytest.fixture(params=["folder", "sample.session.zip"])
def myogestic_session(request):
    """The MyoGestic-written session, as a folder and as its zip."""
    return MYOGESTIC / request.param


def outcome_within(action, seconds, hang):
    """``action()``'s result or the exception it raised; a hang fails the test with ``hang``
    (the thread is a daemon) instead of hanging the suite."""
    outcome = []

    def run():
        try:
            outcome.append(action())
        except BaseException as exc:  # noqa: BLE001 - handed back to the test
            outcome.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), hang
    return outcome[0]


def record_window_sessions(base):
    """Two labsession-written sessions in ``base``: a zip and a folder (8 channels at 1 kHz,
    glove at 100 Hz), for the window tests."""
    from labsession.testing import record_synthetic_session

    zipped = record_synthetic_session(base, fs=1000.0, phase_seconds=0.6, repeats=2, seed=1)
    folder = record_synthetic_session(
        base, fs=1000.0, phase_seconds=0.6, repeats=2, seed=2, pack=False
    )
    return zipped, folder


def reference_labeled(path, stream, window_ms, hop_ms, classes=None):
    """MyoGestic's iter_labeled_windows (2.6.2), transcribed over whole in-memory arrays."""
    from labsession.recording import open_session_store

    with open_session_store(path) as store:
        data, ts = store.get_continuous(stream)
        fs = store.stream_info(stream).fs
        events = store.label_track
    data = data.astype(np.float32, copy=False)
    win, hop = int(window_ms * fs / 1000), max(1, int(hop_ms * fs / 1000))
    out = []
    for i, event in enumerate(events):
        if event.class_index < 0 or (classes is not None and event.class_index not in classes):
            continue
        lo = int(np.argmin(np.abs(ts - event.timestamp)))
        hi = (
            int(np.argmin(np.abs(ts - events[i + 1].timestamp))) if i + 1 < len(events) else len(ts)
        )
        if hi - lo < win:
            continue
        for start in range(lo, hi - win + 1, hop):
            out.append((data[start : start + win].T, ts[start : start + win], event.class_index))
    return out


def assert_same_windows(got, expected):
    assert len(got) == len(expected)
    for (w, ts, c), (w2, ts2, c2) in zip(got, expected, strict=True):
        assert c == c2
        np.testing.assert_array_equal(w, w2)
        np.testing.assert_array_equal(ts, ts2)


# -- the reader fuzz tests (test_fuzz_json.py, test_fuzz_bytes.py) ---------------------------------
@pytest.fixture(scope="package")
def fuzz_bases(tmp_path_factory):
    """The fuzz tests' two base sessions, recorded once for both modules."""
    from ._fuzz_harness import record_bases

    return record_bases(tmp_path_factory.mktemp("fuzz-bases"))


@pytest.fixture(scope="package")
def fuzz_scratch(fuzz_bases, tmp_path_factory):
    """The working copies every fuzz example damages and resets."""
    from ._fuzz_harness import Workspace

    return Workspace(fuzz_bases, tmp_path_factory.mktemp("fuzz-work"))
