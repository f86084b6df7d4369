"""Readers and writers: every format round-trips real files on disk."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
import tifffile
import zarr

from labsession.motion import VideoWriter, open_video


@pytest.fixture
def video():
    rng = np.random.default_rng(0)
    return rng.random((7, 12, 10, 2)).astype(np.float32)


def _read_all(path, **kwargs):
    with open_video(path, **kwargs) as reader:
        return reader.shape, reader[0 : len(reader)], reader.read_frames([5, 1, 1])


@pytest.mark.parametrize("fmt", ["HDF5", "MAT", "TIFF", "NPZ", "ZARR"])
def test_writer_reader_round_trip(tmp_path, video, fmt):
    suffix = {"HDF5": ".h5", "MAT": ".mat", "TIFF": ".tif", "NPZ": ".npz", "ZARR": ".zarr"}[fmt]
    path = tmp_path / f"out{suffix}"
    with VideoWriter(path, fmt, shape=video.shape, metadata={"alpha": [1.5, 1.5]}) as writer:
        writer.write(video[:4])
        writer.write(video[4:])
    assert path.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp left
    if fmt == "NPZ":
        with np.load(path) as data:
            np.testing.assert_array_equal(data["mov"], video)
            assert json.loads(str(data["options"]))["alpha"] == [1.5, 1.5]
        return
    shape, frames, picked = _read_all(path)
    assert shape == video.shape
    np.testing.assert_array_equal(frames, video)
    np.testing.assert_array_equal(picked, video[[5, 1, 1]])


def test_metadata_is_stored(tmp_path, video):
    meta = {"alpha": [2.0, 2.0], "quality_setting": "fast"}
    for fmt, name in (("HDF5", "a.h5"), ("ZARR", "a.zarr"), ("TIFF", "a.tif")):
        with VideoWriter(tmp_path / name, fmt, shape=video.shape, metadata=meta) as w:
            w.write(video)
    with h5py.File(tmp_path / "a.h5") as f:
        assert json.loads(f["mov"].attrs["options"]) == meta
    assert json.loads(zarr.open_array(tmp_path / "a.zarr").attrs["options"]) == meta
    with tifffile.TiffFile(tmp_path / "a.tif") as tif:
        assert tif.is_imagej
        assert json.loads(tif.imagej_metadata["Info"]) == meta


def test_mat_header_and_matlab_layout(tmp_path, video):
    path = tmp_path / "v.mat"
    with VideoWriter(path, "MAT", shape=video.shape) as w:
        w.write(video)
    assert path.read_bytes()[:19] == b"MATLAB 7.3 MAT-file"
    with h5py.File(path) as f:  # MATLAB sees (H, W, C, T): HDF5 holds it axis-reversed
        assert f["mov"].shape == (7, 2, 10, 12)


def test_mat_written_like_matlab_is_read(tmp_path, video):
    path = tmp_path / "matlab.mat"
    with h5py.File(path, "w", userblock_size=512) as f:
        f.create_dataset("Y", data=np.transpose(video[..., 0], (0, 2, 1)))  # MATLAB (H, W, T)
    shape, frames, _ = _read_all(path)
    assert shape == (7, 12, 10, 1)
    np.testing.assert_array_equal(frames[..., 0], video[..., 0])


def test_multipage_tiff_and_imagej_hyperstack(tmp_path, video):
    plain = tmp_path / "plain.tif"
    tifffile.imwrite(plain, (video[..., 0] * 1000).astype(np.uint16))  # T pages
    with tifffile.TiffFile(plain) as tif:
        assert len(tif.pages) == 7
    shape, frames, _ = _read_all(plain)
    assert shape == (7, 12, 10, 1)
    np.testing.assert_array_equal(frames[..., 0], (video[..., 0] * 1000).astype(np.uint16))
    hyper = tmp_path / "hyper.tif"
    tifffile.imwrite(hyper, np.moveaxis(video, -1, 1), imagej=True, metadata={"axes": "TCYX"})
    shape, frames, picked = _read_all(hyper)
    assert shape == video.shape
    np.testing.assert_array_equal(frames, video)
    np.testing.assert_array_equal(picked, video[[5, 1, 1]])
    shape, frames, _ = _read_all(hyper, channel_idx=[1])
    np.testing.assert_array_equal(frames[..., 0], video[..., 1])


def test_hdf5_dataset_choice_npy_zarr_and_arrays(tmp_path, video):
    path = tmp_path / "two.h5"
    with h5py.File(path, "w") as f:
        f["small"] = video[:2, ..., 0]
        f["big"] = video
    assert _read_all(path)[0] == video.shape  # largest dataset by default
    with open_video(path, dataset_name="small") as reader:
        assert reader.shape == (2, 12, 10, 1)
    with pytest.raises(ValueError, match="no dataset 'nope'"):
        open_video(path, dataset_name="nope")
    np.save(tmp_path / "v.npy", video)
    np.testing.assert_array_equal(_read_all(tmp_path / "v.npy")[1], video)
    z = zarr.create_array(store=str(tmp_path / "v.zarr"), shape=video.shape, dtype="float32")
    z[:] = video
    np.testing.assert_array_equal(_read_all(tmp_path / "v.zarr")[1], video)
    np.testing.assert_array_equal(_read_all(video[..., 0])[1][..., 0], video[..., 0])


def _write_then_fail(writer, frames):
    with writer:
        writer.write(frames)
        raise RuntimeError("boom")


def test_failed_write_leaves_no_file(tmp_path, video):
    for fmt, name in (("HDF5", "x.h5"), ("TIFF", "x.tif"), ("ZARR", "x.zarr"), ("MAT", "x.mat")):
        writer = VideoWriter(tmp_path / name, fmt, shape=video.shape)
        with pytest.raises(RuntimeError, match="boom"):
            _write_then_fail(writer, video[:3])
        assert not (tmp_path / name).exists()
    assert list(tmp_path.iterdir()) == []
    short = VideoWriter(tmp_path / "short.h5", "HDF5", shape=video.shape)
    short.write(video[:3])
    with pytest.raises(ValueError, match="only 3 of 7 frames"):
        short.close()
    assert not (tmp_path / "short.h5").exists()


def test_reader_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"missing\.tif"):
        open_video(tmp_path / "missing.tif")
    (tmp_path / "v.avi").write_bytes(b"x")
    with pytest.raises(ValueError, match=r"unknown video format '\.avi'"):
        open_video(tmp_path / "v.avi")
    np.save(tmp_path / "flat.npy", np.zeros((4, 4)))
    with pytest.raises(ValueError, match="2 dimensions"):
        open_video(tmp_path / "flat.npy")
    with pytest.raises(ValueError, match="channel_idx"):
        open_video(np.zeros((2, 4, 4, 1)), channel_idx=[1])
