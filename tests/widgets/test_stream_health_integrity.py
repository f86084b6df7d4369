"""The health panel shows the integrity counts: gaps with the latest one, backward steps."""

import numpy as np

from labsession.acquisition import StreamHealth
from labsession.widgets._stream_health import _cells, assess_health


def _health_with_trouble() -> StreamHealth:
    health = StreamHealth()
    health.on_connected(1000.0)
    health.on_chunk(100.0 + np.arange(100) / 1000.0, now=0.0)
    health.on_chunk(100.0 + 0.0975 + np.arange(100) / 1000.0, now=0.1)  # 1.5 ms back
    health.on_chunk(100.0 + 0.75 + np.arange(100) / 1000.0, now=0.2)  # a 0.5545 s gap
    return health


def test_gap_and_backward_cells_and_notes_come_from_the_record():
    snap = _health_with_trouble().snapshot(now=0.2)
    row = assess_health("emg", snap, ever_connected=True, judge_rate=False)
    cells = _cells(row)
    gap = snap.integrity.gaps[0]
    assert gap == (100.0 + 0.0975 + 0.099, 100.75)
    assert cells["gaps"] == f"1, last {(gap[1] - gap[0]) * 1e3:.3g} ms"
    assert cells["backwards"] == "1, max 1.5 ms"
    assert row.problems["gaps"] == row.problems["backwards"] == "warn"
    assert "longer than 3 sample periods and 20 ms" in row.notes["gaps"]
    assert f"LSL time {gap[0]:.3f} to {gap[1]:.3f}" in row.notes["gaps"]
    assert "Largest step back: 1.5 ms" in row.notes["backwards"]


def test_a_clean_stream_shows_plain_zeros():
    health = StreamHealth()
    health.on_connected(1000.0)
    health.on_chunk(np.arange(100) / 1000.0, now=0.0)
    cells = _cells(
        assess_health("emg", health.snapshot(now=0.0), ever_connected=True, judge_rate=False)
    )
    assert (cells["gaps"], cells["backwards"], cells["dropped"]) == ("0", "0", "0")
