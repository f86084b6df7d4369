import numpy as np
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from labsession.recording import LabelEvent
from labsession.recording._segments import label_segments, nearest_index

finite = st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False)


@given(arrays(np.float64, st.integers(1, 40), elements=finite), finite)
def test_nearest_index_equals_argmin_reference(ts, t):
    """Same answer as MyoGestic's argmin(abs(ts - t)), sorted or not, ties to the earlier sample."""
    for series in (np.sort(ts), ts):
        assert nearest_index(series, t) == int(np.argmin(np.abs(series - t)))


def test_segments_skip_unlabelled_and_filter_classes():
    ts = np.arange(100) / 10.0
    labels = [LabelEvent(0.0, 0), LabelEvent(2.0, 1), LabelEvent(5.0, -1), LabelEvent(7.0, 2)]
    segs = label_segments(ts, labels)
    assert [(s.label.class_index, s.start, s.stop) for s in segs] == [
        (0, 0, 20),
        (1, 20, 50),
        (2, 70, 100),
    ]
    assert [s.label.class_index for s in label_segments(ts, labels, classes={2})] == [2]
    last = label_segments(ts, labels, post=1.0)[-1]
    assert (last.start, last.stop) == (70, 80)
    pre = label_segments(ts, labels, pre=0.5)
    assert [s.start for s in pre] == [0, 15, 65]


def test_label_after_data_claims_last_sample_as_myogestic_does():
    ts = np.arange(10) / 10.0
    (seg,) = label_segments(ts, [LabelEvent(5.0, 1)])
    assert (seg.start, seg.stop) == (9, 10)
    assert label_segments(np.array([]), [LabelEvent(0.0, 1)]) == []
