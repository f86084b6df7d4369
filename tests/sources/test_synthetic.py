import time

import numpy as np
import pytest

from labsession.sources import SyntheticSource
from labsession.testing.source_tests import SourceTests


def test_paced_by_clock_and_timestamps_regular():
    source = SyntheticSource(4, 1000.0, seed=1)
    source.connect()
    started = time.monotonic()
    chunks = []
    while time.monotonic() - started < 1.0:
        chunk = source.read()
        if chunk is not None:
            chunks.append(chunk)
    elapsed = time.monotonic() - started
    data = np.concatenate([c[0] for c in chunks])
    ts = np.concatenate([c[1] for c in chunks])
    assert data.shape[1] == 4
    assert data.dtype == np.float32
    assert abs(len(ts) - elapsed * 1000) < 30  # no drift beyond one poll
    np.testing.assert_allclose(np.diff(ts), 1e-3, atol=1e-9)


def test_amplitude_pattern_follows_class():
    source = SyntheticSource(8, 1000.0, classes=["Rest", "A", "B"], seed=3)
    rest = source.generate(4000).std(axis=0)
    source.set_class(1)
    a = source.generate(4000).std(axis=0)
    source.set_class(2)
    b = source.generate(4000).std(axis=0)
    assert a.mean() > 5 * rest.mean()
    assert np.corrcoef(a, b)[0, 1] < 0.9  # different muscles
    with pytest.raises(ValueError, match=r"0\.\.2"):
        source.set_class(3)


def test_seeded_reproducible():
    x = SyntheticSource(3, 500.0, seed=7).generate(100)
    y = SyntheticSource(3, 500.0, seed=7).generate(100)
    z = SyntheticSource(3, 500.0, seed=8).generate(100)
    np.testing.assert_array_equal(x, y)
    assert not np.array_equal(x, z)


def test_read_before_connect():
    with pytest.raises(RuntimeError, match="before connect"):
        SyntheticSource().read()


class TestSyntheticConformance(SourceTests):
    @pytest.fixture
    def source(self):
        return SyntheticSource(3, 500.0)
