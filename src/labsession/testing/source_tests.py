"""A conformance suite for sources: subclass it in your tests to check your own device.

Every :class:`~labsession.sources.Source` must pass it. Subclass :class:`SourceTests` in a test
module and provide a pytest fixture named ``source`` returning a fresh, unconnected source that
will produce samples (start its outlet, point it at a recording, ...)::

    class TestMyDevice(SourceTests):
        @pytest.fixture
        def source(self):
            return MyDevice(...)
"""

from __future__ import annotations

import time

import numpy as np

from labsession.recording import StreamInfo
from labsession.sources import Source

__all__ = ["SourceTests"]


def _read_for(source: Source, seconds: float) -> list[tuple[np.ndarray, np.ndarray]]:
    chunks = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        chunk = source.read()
        if chunk is not None:
            chunks.append(chunk)
    return chunks


class SourceTests:
    """Behaviour every source shares (the interface documented in ``labsession.sources``)."""

    #: Seconds of reading each test does; raise it for slow sources.
    read_seconds = 0.5

    def test_connect_returns_stream_info(self, source: Source) -> None:
        info = source.connect()
        try:
            assert isinstance(info, StreamInfo)
        finally:
            source.close()

    def test_reads_are_sample_major_typed_and_in_time_order(self, source: Source) -> None:
        info = source.connect()
        try:
            chunks = _read_for(source, self.read_seconds)
        finally:
            source.close()
        assert chunks, "no samples arrived"
        for data, ts in chunks:
            assert data.ndim == 2
            assert data.shape[1] == info.n_channels
            assert np.can_cast(data.dtype, info.dtype, casting="same_kind")
            assert ts.shape == (data.shape[0],)
            assert ts.dtype == np.float64
        all_ts = np.concatenate([ts for _, ts in chunks])
        assert np.all(np.diff(all_ts) > 0), "timestamps repeat or go back"

    def test_read_returns_promptly_when_idle(self, source: Source) -> None:
        source.connect()
        try:
            started = time.monotonic()
            source.read()
            assert time.monotonic() - started < max(0.5, 5 * source.poll_interval)
        finally:
            source.close()

    def test_close_is_idempotent(self, source: Source) -> None:
        source.connect()
        source.close()
        source.close()
