"""pyflowreg's ``get_video_file_reader`` / ``get_video_file_writer`` over the format registry.

Expected values come from pyflowreg's documented behaviour (``pyflowreg.util.io._base``): bin
``i`` is the mean of raw frames ``i*b .. (i+1)*b - 1``; indexing averages a short last bin as it
is, ``read_batch`` pads it with its last frame first; ``len`` is ``ceil(T / b)``.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import h5py
import numpy as np
import pytest

from labsession.core.atomic import StagedFile
from labsession.errors import ConfigError
from labsession.motion import (
    SinkSpec,
    VideoReader,
    _formats,
    get_video_file_reader,
    get_video_file_writer,
    open_video,
    register_video_format,
)
from labsession.motion._writers import SUFFIXES

BUILT_IN = ["HDF5", "TIFF", "MAT", "NPZ", "ZARR"]


def ramp(n_frames: int = 8, height: int = 2, width: int = 3, channels: int = 1) -> np.ndarray:
    """Frame ``t`` holds ``10 t + y + 100 c`` at ``(y, x, c)``: bin means are easy to do by hand."""
    t, y, _, c = np.meshgrid(
        np.arange(n_frames),
        np.arange(height),
        np.arange(width),
        np.arange(channels),
        indexing="ij",
    )
    return (10 * t + y + 100 * c).astype(np.uint16)


def spools(folder: Path) -> list[Path]:
    return sorted(folder.glob(".*.npy"))


@pytest.mark.parametrize("fmt", BUILT_IN)
def test_written_in_batches_reads_back_in_every_format(tmp_path, fmt):
    video = np.random.default_rng(3).random((9, 6, 5, 2), dtype=np.float32)
    target = tmp_path / f"out{SUFFIXES[fmt]}"
    writer = get_video_file_writer(target, fmt)
    writer.write_frames(video[:4])  # (T, H, W, C)
    writer.write_frames(video[4])  # one (H, W, C) frame
    writer.write_frames(video[5:])
    assert not target.exists()  # nothing under the name before close()
    assert writer.close() == target
    assert spools(tmp_path) == []
    with get_video_file_reader(target) as reader:
        assert reader.shape == (9, 6, 5, 2)
        assert len(reader) == 9
        np.testing.assert_array_equal(reader[:], video)
        np.testing.assert_array_equal(reader[4], video[4])
        assert reader[4].shape == (6, 5, 2)


def test_single_channel_shapes_follow_pyflowreg(tmp_path):
    video = ramp(6, 4, 3).astype(np.float32)[..., 0]  # (T, H, W)
    target = tmp_path / "single.h5"
    with get_video_file_writer(target, "hdf5") as writer:  # case-insensitive
        writer.write_frames(video[:3])  # 3-D before any frame: (T, H, W)
        writer.write_frames(video[3])  # (H, W): one frame
        writer.write_frames(video[4][..., None])  # (H, W, C) matching the size: one frame
        writer.write_frames(video[5:])  # (T, H, W) again
        with pytest.raises(ValueError, match=r"frames of shape \(4, 3, 2\)"):
            writer.write_frames(np.zeros((4, 3, 2), np.float32))  # 2 channels after 1
    with h5py.File(target) as h5:
        np.testing.assert_array_equal(h5["mov"][...], video[..., None])


def test_bins_and_batches_as_pyflowreg(tmp_path):
    path = tmp_path / "ramp.h5"
    with h5py.File(path, "w") as h5:
        h5["mov"] = ramp(8)  # uint16 (8, 2, 3, 1)
    reader = get_video_file_reader(path, buffer_size=2, bin_size=3)
    assert len(reader) == 3  # ceil(8 / 3)
    assert reader.shape == (3, 2, 3, 1)
    assert reader.unbinned_shape == (8, 2, 3, 1)
    # bins by hand, at pixel y = 1: (0+10+20)/3 + 1, (30+40+50)/3 + 1, (60+70)/2 + 1
    np.testing.assert_allclose(reader[:][:, 1, 0, 0], [11, 41, 66])
    assert reader[:].dtype == np.float32
    np.testing.assert_allclose(reader[2][:, :, 0], [[65] * 3, [66] * 3])
    np.testing.assert_allclose(reader[-1], reader[2])
    np.testing.assert_allclose(reader[[2, 0, 2]][:, 0, 0, 0], [65, 10, 65])
    np.testing.assert_allclose(reader[::2][:, 0, 0, 0], [10, 65])
    np.testing.assert_allclose(reader[1:, 1, 2], [[41], [66]])  # tuple: frames, then the rest
    assert reader[2:2].shape == (0, 2, 3, 1)
    with pytest.raises(IndexError, match="index 3 out of range for 3"):
        reader[3]
    # batches: 2 bins of 3 raw frames, then the last bin (60, 70) padded with 70 -> 200/3
    assert reader.has_batch()
    np.testing.assert_allclose(reader.read_batch()[:, 0, 0, 0], [10, 40])
    assert reader.current_frame == 6
    np.testing.assert_allclose(reader.read_batch()[:, 0, 0, 0], [200 / 3], rtol=1e-6)
    assert not reader.has_batch()
    assert reader.read_batch() is None
    reader.reset()
    assert reader.has_batch()
    assert [len(b) for b in reader] == [2, 1]  # iterating starts over
    reader.close()


def test_unbinned_batches_cover_the_video_once(tmp_path):
    video = ramp(8, channels=2).astype(np.float32)
    with get_video_file_reader(video, buffer_size=3) as reader:
        batches = list(reader)
        assert [len(b) for b in batches] == [3, 3, 2]
        np.testing.assert_array_equal(np.concatenate(batches), video)
        np.testing.assert_array_equal(reader[[5, 1]], video[[5, 1]])
    one = get_video_file_reader(video[0, :, :, 0])  # one (H, W) frame
    assert one.shape == (1, 2, 3, 1)


def test_reader_kwargs_map_to_ours(tmp_path):
    path = tmp_path / "two.h5"
    video = ramp(5, channels=3)
    with h5py.File(path, "w") as h5:
        h5["big"] = np.zeros((9, 2, 3, 3), np.uint16)
        h5["other"] = video
    with get_video_file_reader(path, dataset_names=["/other"], channel_idx=[2, 0]) as reader:
        np.testing.assert_array_equal(reader[:], video[..., [2, 0]])
    with get_video_file_reader(path, dataset_names="other") as reader:
        assert reader.shape == (5, 2, 3, 3)
    with get_video_file_reader(path) as reader:  # no name: the largest dataset
        assert reader.shape == (9, 2, 3, 3)
    ours = open_video(path, dataset_name="other")
    assert isinstance(ours, VideoReader)
    wrapped = get_video_file_reader(ours, bin_size=5)
    assert wrapped.shape == (1, 2, 3, 3)
    assert get_video_file_reader(wrapped) is wrapped
    wrapped.close()


def test_reader_mistakes_are_refused(tmp_path):
    path = tmp_path / "v.h5"
    with h5py.File(path, "w") as h5:
        h5["mov"] = ramp(4)
    with pytest.raises(ConfigError, match="deinterleave, use_memmap not taken"):
        get_video_file_reader(path, deinterleave=2, use_memmap=True)
    with pytest.raises(ConfigError, match=r"dataset_names=\['ch1', 'ch2'\]"):
        get_video_file_reader(path, dataset_names=["ch1", "ch2"])
    with pytest.raises(ConfigError, match="a list of per-channel files"):
        get_video_file_reader([str(path), str(path)])
    for name, value in [("buffer_size", 0), ("bin_size", -2), ("bin_size", 1.5)]:
        with pytest.raises(ConfigError, match=f"{name}={value} must be a positive integer"):
            get_video_file_reader(path, **{name: value})
    with pytest.raises(FileNotFoundError, match=r"missing\.h5"):
        get_video_file_reader(tmp_path / "missing.h5")


def test_writer_mistakes_are_refused(tmp_path):
    target = tmp_path / "out.h5"
    with pytest.raises(ConfigError, match=r"'MULTIFILE_TIFF'.*\['HDF5', 'TIFF', 'MAT'"):
        get_video_file_writer(target, "MULTIFILE_TIFF")
    with pytest.raises(ConfigError, match=r"'NPY' is read only.*'ZARR'"):
        get_video_file_writer(tmp_path / "out.npy", "NPY")
    with pytest.raises(ConfigError, match="compression, compression_level not taken"):
        get_video_file_writer(target, "HDF5", compression="gzip", compression_level=4)
    with pytest.raises(ConfigError, match=r"dataset_names='ch\*'"):
        get_video_file_writer(target, "HDF5", dataset_names="ch*")
    with pytest.raises(FileNotFoundError, match="no_folder"):
        get_video_file_writer(tmp_path / "no_folder" / "out.h5", "HDF5")
    writer = get_video_file_writer(target, "HDF5")
    writer.write_frames(np.zeros((2, 4, 4, 1), np.float32))
    with pytest.raises(ValueError, match="got shape"):
        writer.write_frames(np.zeros((1, 2, 4, 4, 1), np.float32))
    writer.close()
    with pytest.raises(ValueError, match="already closed"):
        writer.write_frames(np.zeros((1, 4, 4, 1), np.float32))
    assert list(tmp_path.iterdir()) == [target]


def test_dataset_name_and_an_empty_writer(tmp_path):
    video = ramp(3).astype(np.float32)
    target = tmp_path / "named.h5"
    with get_video_file_writer(target, "HDF5", dataset_names="/data") as writer:
        writer.write_frames(video)
    with h5py.File(target) as h5:
        assert list(h5) == ["data"]
    empty = get_video_file_writer(tmp_path / "empty.mat", "MAT")
    assert empty.close() is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["named.h5"]


def test_an_error_in_the_with_block_keeps_the_earlier_file(tmp_path):
    target = tmp_path / "out.tif"
    target.write_bytes(b"earlier")
    with (  # noqa: PT012 - the error comes mid-write
        pytest.raises(RuntimeError, match="stop"),
        get_video_file_writer(target, "TIFF") as writer,
    ):
        writer.write_frames(ramp(4).astype(np.float32))
        assert target.read_bytes() == b"earlier"  # not replaced before close()
        raise RuntimeError("stop")
    assert target.read_bytes() == b"earlier"
    assert spools(tmp_path) == []


def test_a_writer_killed_midway_leaves_no_file_under_the_name(tmp_path):
    target = tmp_path / "out.h5"
    target.write_bytes(b"earlier")
    script = textwrap.dedent(
        f"""
        import sys
        import numpy as np
        from labsession.motion import get_video_file_writer

        writer = get_video_file_writer({str(target)!r}, "HDF5")
        for t in range(5):
            writer.write_frames(np.full((2, 4, 4, 1), t, np.float32))
        print("written", flush=True)
        sys.stdin.readline()  # wait to be killed
        writer.close()
        """
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout.readline().strip() == "written"
    finally:
        proc.kill()  # SIGKILL: no cleanup runs
        proc.wait(timeout=60)
        proc.stdin.close()
        proc.stdout.close()
    assert target.read_bytes() == b"earlier"
    (spool,) = spools(tmp_path)
    assert spool.name.startswith(".out.h5.")
    frames = np.load(spool)  # a valid .npy of the 10 frames written so far
    assert frames.shape == (10, 4, 4, 1)
    np.testing.assert_array_equal(frames[::2, 0, 0, 0], np.arange(5))
    assert sorted(tmp_path.iterdir()) == sorted([target, spool])


def test_a_writer_dropped_without_close_removes_its_spool(tmp_path, caplog):
    writer = get_video_file_writer(tmp_path / "out.npz", "NPZ")
    writer.write_frames(ramp(2).astype(np.float32))
    assert len(spools(tmp_path)) == 1
    del writer
    assert list(tmp_path.iterdir()) == []
    assert "dropped without close()" in caplog.text


class NpyFileSink:
    """A toy registered format: one ``.npy`` file, grown in a staged temporary file."""

    def __init__(self, spec: SinkSpec) -> None:
        self.staged = StagedFile(spec.path)
        self.array = np.lib.format.open_memmap(
            self.staged.tmp, mode="w+", dtype=spec.dtype, shape=spec.shape
        )

    def write(self, frames: np.ndarray, start: int) -> None:
        self.array[start : start + len(frames)] = frames

    def commit(self) -> None:
        self.array.flush()
        del self.array
        self.staged.commit()

    def abort(self) -> None:
        self.staged.abort()

    @staticmethod
    def read(path: Path, *, dataset_name=None, channel_idx=None) -> VideoReader:
        return VideoReader(np.load(path, mmap_mode="r"), name=str(path), channel_idx=channel_idx)


@pytest.fixture
def registry(monkeypatch):
    """A copy of the format registry, restored after the test."""
    monkeypatch.setattr(_formats, "_FORMATS", dict(_formats._FORMATS))
    monkeypatch.setattr(_formats, "_BY_SUFFIX", dict(_formats._BY_SUFFIX))


def test_a_registered_format_is_written_and_read(registry, tmp_path):
    register_video_format("NPYFILE", sink=NpyFileSink, reader=NpyFileSink.read, suffix=".vnpy")
    video = ramp(7, channels=2).astype(np.float32)
    target = tmp_path / "out.vnpy"
    with get_video_file_writer(target, "NPYFILE") as writer:
        writer.write_frames(video[:1])  # a first 3-D batch would be (T, H, W), as pyflowreg
        for frame in video[1:]:
            writer.write_frames(frame)  # (H, W, C), one at a time
    np.testing.assert_array_equal(np.load(target), video)
    with get_video_file_reader(target, bin_size=2) as reader:
        np.testing.assert_allclose(reader[3], video[6])  # a last bin of one frame
        np.testing.assert_allclose(reader[0], (video[0] + video[1]) / 2)
