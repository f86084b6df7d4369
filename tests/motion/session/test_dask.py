"""The dask scheduler on a real LocalCluster (2 worker processes, 1 thread each)."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from labsession.motion import open_video
from labsession.motion.session import DaskExecutor, recording_dir, run_session

from .conftest import fast_config


def _same_results(config, reference_config) -> None:
    for path in sorted(config.root.glob("*.tif")):
        ours = recording_dir(config, path)
        theirs = recording_dir(reference_config, reference_config.root / path.name)
        with h5py.File(ours / "compensated.hdf5") as a, h5py.File(theirs / "compensated.hdf5") as b:
            np.testing.assert_array_equal(a["mov"][:], b["mov"][:])
        name = f"aligned_{path.stem}.tif"
        with (
            open_video(config.final_dir / name) as a,
            open_video(reference_config.final_dir / name) as b,
        ):
            np.testing.assert_array_equal(a[:], b[:])


@pytest.mark.slow
def test_dask_scheduler_on_a_running_cluster(fresh_copy: Path, finished_session) -> None:
    from distributed import Client, LocalCluster

    reference_config, reference_final = finished_session
    with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address="127.0.0.1:0"
    ) as cluster:
        config = fast_config(fresh_copy, scheduler="dask", dask_address=cluster.scheduler_address)
        final = run_session(config, progress=False)
        with Client(cluster.scheduler_address) as client:
            workers = client.scheduler_info()["workers"]
            assert len(workers) == 2  # the given cluster is left running
    np.testing.assert_array_equal(final, reference_final)
    _same_results(config, reference_config)
    logs = [
        (recording_dir(config, p) / "session.log").read_text()
        for p in sorted(fresh_copy.glob("*.tif"))
    ]
    assert all("Dask Worker process" in log for log in logs)  # stage 1 ran on the workers


@pytest.mark.slow
def test_dask_scheduler_starts_and_stops_its_own_local_cluster(fresh_copy: Path) -> None:
    config = fast_config(
        fresh_copy,
        scheduler="dask",
        dask_cluster={"kwargs": {"n_workers": 2, "threads_per_worker": 1, "processes": True}},
    )
    with DaskExecutor(cluster=config.dask_cluster) as executor:
        info = executor.client.scheduler_info()["workers"]
        assert len(info) == 2
        outcomes = list(executor.map_unordered(divmod, [(7, 2), (1, 0)]))
        cluster = executor._cluster
    results = {i: (r, e) for i, r, e in outcomes}
    assert results[0] == ((3, 1), None)
    assert isinstance(results[1][1], ZeroDivisionError)
    assert cluster is not None
    assert cluster.status.name == "closed"


def test_unknown_cluster_class_is_named(tmp_path: Path) -> None:
    from labsession.motion.session import DaskClusterSpec

    with pytest.raises(ImportError, match=r"dask_cluster\.class 'nope\.Cluster'"):
        DaskExecutor(cluster=DaskClusterSpec.model_validate({"class": "nope.Cluster"}))
