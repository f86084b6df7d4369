"""The video format registry: a new format is one sink class and one registration."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

from labsession.core.atomic import StagedFile
from labsession.errors import ConfigError
from labsession.motion import (
    OFOptions,
    SinkSpec,
    VideoReader,
    VideoSink,
    VideoWriter,
    _formats,
    available_video_formats,
    compensate_recording,
    open_video,
    register_video_format,
    synthetic_video,
)
from labsession.motion._writers import SUFFIXES

_HEADER = 256


class RawSink:
    """A toy format: a 256-byte JSON header (shape, dtype, options), then the raw frames."""

    def __init__(self, spec: SinkSpec) -> None:
        self.spec = spec
        self.staged = StagedFile(spec.path)
        self.file = open(self.staged.tmp, "r+b")  # noqa: SIM115 - closed by commit/abort
        head = {"shape": spec.shape, "dtype": spec.dtype.str, "options": spec.metadata}
        self.file.write(json.dumps(head).encode().ljust(_HEADER))

    def write(self, frames: np.ndarray, start: int) -> None:
        self.file.seek(_HEADER + start * frames[0].nbytes)
        self.file.write(np.ascontiguousarray(frames).tobytes())

    def commit(self) -> None:
        self.file.close()
        self.staged.commit()

    def abort(self) -> None:
        self.file.close()
        self.staged.abort()

    @staticmethod
    def read(path: Path, *, dataset_name=None, channel_idx=None) -> VideoReader:
        head = json.loads(path.read_bytes()[:_HEADER])
        frames = np.memmap(
            path, dtype=head["dtype"], mode="r", offset=_HEADER, shape=tuple(head["shape"])
        )
        return VideoReader(frames, name=str(path), channel_idx=channel_idx)


@pytest.fixture
def registry(monkeypatch):
    """The format registry, restored after the test."""
    monkeypatch.setattr(_formats, "_FORMATS", dict(_formats._FORMATS))
    monkeypatch.setattr(_formats, "_BY_SUFFIX", dict(_formats._BY_SUFFIX))


@pytest.fixture
def video():
    return np.random.default_rng(0).random((9, 12, 10, 2)).astype(np.float32)


def test_a_registered_format_round_trips_through_writer_and_reader(registry, tmp_path, video):
    fmt = register_video_format("raw", sink=RawSink, reader=RawSink.read, suffix=".RAWV")
    assert fmt.name == "RAW"
    assert fmt.read_suffixes == (".rawv",)
    probe = RawSink(SinkSpec(tmp_path / "probe.rawv", (1, 1, 1, 1), np.dtype("f4")))
    assert isinstance(probe, VideoSink)
    probe.abort()
    assert available_video_formats()[-1] == "RAW"
    assert SUFFIXES["raw"] == ".rawv"
    path = tmp_path / "v.RAWV"  # suffixes are case-insensitive
    with VideoWriter(path, "Raw", shape=video.shape, metadata={"alpha": 2}) as writer:
        writer.write(video[:4])
        writer.write(video[4:])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v.RAWV"]  # temporaries gone
    assert json.loads(json.loads(path.read_bytes()[:_HEADER])["options"]) == {"alpha": 2}
    with open_video(path) as reader:
        assert reader.shape == video.shape
        np.testing.assert_array_equal(reader[0:9], video)
        np.testing.assert_array_equal(reader.read_frames([8, 0, 8]), video[[8, 0, 8]])
    with open_video(path, channel_idx=[1]) as reader:
        np.testing.assert_array_equal(reader[2:3][..., 0], video[2:3, ..., 1])


def test_a_registered_format_is_read_by_compensate_recording(registry, tmp_path):
    register_video_format("RAW", sink=RawSink, reader=RawSink.read, suffix=".rawv")
    frames, _ = synthetic_video(n_frames=12, shape=(32, 32), max_shift=1.5, seed=3)
    path = tmp_path / "input.rawv"
    with VideoWriter(path, "RAW", shape=frames.shape) as writer:
        writer.write(frames)
    options = OFOptions(
        input_file=path,
        output_path=tmp_path / "out",
        flow_backend="diso",
        quality_setting="fast",
        reference_frames=list(range(12)),
    )
    result = compensate_recording(options, progress=False)
    with open_video(result.files["compensated"]) as reader:
        assert reader.shape == frames.shape


def _write_then_fail(writer, frames):
    with writer:
        writer.write(frames)
        raise RuntimeError("boom")


def test_an_aborted_write_leaves_an_earlier_file_untouched(registry, tmp_path, video):
    register_video_format("RAW", sink=RawSink, reader=RawSink.read, suffix=".rawv")
    path = tmp_path / "v.rawv"
    with VideoWriter(path, "RAW", shape=video.shape) as writer:
        writer.write(video)
    before = path.read_bytes()
    writer = VideoWriter(path, "RAW", shape=video.shape)
    with pytest.raises(RuntimeError, match="boom"):
        _write_then_fail(writer, video[:3] + 1)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["v.rawv"]


def test_registration_mistakes_are_refused(registry):
    with pytest.raises(ValueError, match="'HDF5' is already registered; pass overwrite=True"):
        register_video_format("hdf5", sink=RawSink, suffix=".h5x")
    with pytest.raises(
        ValueError, match=r"suffixes already read as other formats \{'.tif': 'TIFF'\}"
    ):
        register_video_format("RAW", sink=RawSink, reader=RawSink.read, suffix=".tif")
    with pytest.raises(ValueError, match="give a sink"):
        register_video_format("RAW", suffix=".rawv")
    with pytest.raises(ValueError, match=r"must look like '\.h5'"):
        register_video_format("RAW", sink=RawSink, suffix="rawv")
    with pytest.raises(ValueError, match="empty"):
        register_video_format(" ", sink=RawSink, suffix=".rawv")
    # taking a suffix over is explicit, and the reader table follows
    register_video_format("RAW", sink=RawSink, reader=RawSink.read, suffix=".tif", overwrite=True)
    assert _formats.format_for_path(Path("x.TIF")).name == "RAW"
    assert _formats.format_for_path(Path("x.tiff")).name == "TIFF"


def test_builtin_formats_and_their_suffixes():
    assert available_video_formats() == ["HDF5", "TIFF", "MAT", "NPZ", "ZARR"]
    assert available_video_formats(readable=True) == ["HDF5", "TIFF", "MAT", "NPZ", "ZARR", "NPY"]
    assert dict(SUFFIXES) == {
        "HDF5": ".h5",
        "TIFF": ".tif",
        "MAT": ".mat",
        "NPZ": ".npz",
        "ZARR": ".zarr",
    }
    assert "NPY" not in SUFFIXES  # read, never written


def test_unknown_and_read_only_formats_are_refused(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown output format 'AVI'; use one of \['HDF5'"):
        VideoWriter(tmp_path / "v.avi", "AVI", shape=(1, 2, 2, 1))
    with pytest.raises(ValueError, match="format NPY is read only"):
        VideoWriter(tmp_path / "v.npy", "npy", shape=(1, 2, 2, 1))
    assert list(tmp_path.iterdir()) == []


def test_cli_lists_the_registry_formats():
    from labsession.cli import motion as cli_motion

    assert list(cli_motion._FORMATS) == available_video_formats()
    assert _formats.readable_description() == cli_motion._READ


# -- NPZ is read too (what the NPZ writer writes, memory-mapped) ---------------------------------
def test_npz_written_is_read_memory_mapped(tmp_path, video):
    path = tmp_path / "v.npz"
    with VideoWriter(path, "NPZ", shape=video.shape, metadata={"a": 1}) as writer:
        writer.write(video)
    with open_video(path) as reader:
        assert isinstance(reader._source, np.memmap)  # not loaded whole
        assert reader.shape == video.shape
        np.testing.assert_array_equal(reader[0:9], video)
        np.testing.assert_array_equal(reader.read_frames([3, 3, 0]), video[[3, 3, 0]])


def test_npz_key_choice_compressed_and_errors(tmp_path, video):
    path = tmp_path / "two.npz"
    np.savez_compressed(path, small=video[:2, ..., 0], big=video, note=np.array("x"))
    with open_video(path) as reader:  # the largest 3-D/4-D array
        assert reader.shape == video.shape
        np.testing.assert_array_equal(reader[0:9], video)
    with open_video(path, dataset_name="small") as reader:
        np.testing.assert_array_equal(reader[0:2][..., 0], video[:2, ..., 0])
    with pytest.raises(ValueError, match=r"no array 'nope'; found \['big', 'note', 'small'\]"):
        open_video(path, dataset_name="nope")
    np.savez(tmp_path / "flat.npz", a=np.zeros(3))
    with pytest.raises(ValueError, match="no 3-D or 4-D array found"):
        open_video(tmp_path / "flat.npz")
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match=r"bad\.npz: not a readable \.npz file"):
        open_video(tmp_path / "bad.npz")
    fortran = tmp_path / "fortran.npz"
    with zipfile.ZipFile(fortran, "w") as archive, archive.open("mov.npy", "w") as f:
        np.lib.format.write_array(f, np.asfortranarray(video))
    with open_video(fortran) as reader:
        np.testing.assert_array_equal(reader[0:9], video)


# -- every built-in writer publishes in one rename, over an earlier file too ---------------------
def _snapshot(path: Path) -> dict[str, bytes]:
    files = sorted(path.rglob("*")) if path.is_dir() else [path]
    return {str(p.relative_to(path.parent)): p.read_bytes() for p in files if p.is_file()}


@pytest.mark.parametrize("fmt", ["HDF5", "MAT", "TIFF", "NPZ", "ZARR"])
def test_rewriting_replaces_whole_and_a_failed_rewrite_changes_nothing(tmp_path, video, fmt):
    path = tmp_path / f"v{SUFFIXES[fmt]}"
    with VideoWriter(path, fmt, shape=video.shape) as writer:  # 9 frames: 1 Zarr chunk
        writer.write(video)
    first = _snapshot(path)
    with pytest.raises(RuntimeError, match="boom"):
        _write_then_fail(VideoWriter(path, fmt, shape=video.shape), video[:5] * 2)
    assert _snapshot(path) == first
    longer = np.concatenate([video, video, video[:2]])  # 20 frames: 2 Zarr chunks
    with VideoWriter(path, fmt, shape=longer.shape) as writer:
        writer.write(longer)
    shorter = video[:3] + 5
    with VideoWriter(path, fmt, shape=shorter.shape) as writer:
        writer.write(shorter)
    with open_video(path) as reader:
        np.testing.assert_array_equal(reader[0:3], shorter)
        assert reader.shape == shorter.shape
    if fmt == "ZARR":  # the 20-frame video's second chunk went with it
        assert sorted(p.name for p in (path / "c").iterdir()) == ["0"]
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporaries left


# -- pyflowreg's HDF5 output: one (T, H, W) dataset per channel -------------------------------
def test_per_channel_hdf5_datasets_read_as_channels(tmp_path, video):
    import h5py

    path = tmp_path / "pyflowreg.h5"
    with h5py.File(path, "w") as f:  # what pyflowreg's HDF5FileWriter writes (dataset_names ch*)
        f["ch2"] = video[..., 1]
        f["ch1"] = video[..., 0]
        f["summary"] = video[:2, ..., 0]  # another 3-D dataset, not a channel
    with open_video(path) as reader:
        assert reader.shape == video.shape
        np.testing.assert_array_equal(reader[0:9], video)  # channels in ch<N> order
        np.testing.assert_array_equal(reader.read_frames([4, 1, 4]), video[[4, 1, 4]])
    with open_video(path, channel_idx=[1]) as reader:
        np.testing.assert_array_equal(reader[2:5][..., 0], video[2:5, ..., 1])
    with open_video(path, dataset_name="ch2") as reader:  # one dataset when named
        assert reader.shape == (*video.shape[:3], 1)
        np.testing.assert_array_equal(reader[0:9][..., 0], video[..., 1])
    with h5py.File(tmp_path / "mixed.h5", "w") as f:  # shapes differ: not a channel group
        f["ch1"] = video[..., 0]
        f["ch2"] = video[:4, ..., 1]
    with open_video(tmp_path / "mixed.h5") as reader:
        assert reader.shape == (*video.shape[:3], 1)  # the largest dataset, as before
        np.testing.assert_array_equal(reader[0:9][..., 0], video[..., 0])


def test_a_name_holding_ch_and_a_digit_is_no_channel_and_the_video_is_taken(tmp_path):
    """``patch0``, ``epoch1`` matched the channel pattern and a tiny dataset beat the video."""
    import h5py

    rng = np.random.default_rng(0)
    video = rng.random((30, 64, 64, 2), dtype=np.float32)
    path = tmp_path / "recording.h5"
    with h5py.File(path, "w") as f:
        f["mov"] = video
        f["stim/epoch1"] = rng.random((3, 4, 5), dtype=np.float32)
        f["rois/patch0"] = rng.random((10, 8, 8), dtype=np.float32)
        f["batch2"] = rng.random((4, 6, 6), dtype=np.float32)
    with open_video(path) as reader:
        assert reader.name.endswith(":mov")
        assert reader.shape == video.shape
        np.testing.assert_array_equal(reader[0:30], video)


def test_per_channel_datasets_smaller_than_the_video_are_not_the_video(tmp_path):
    import h5py

    rng = np.random.default_rng(1)
    video = rng.random((20, 32, 32, 2), dtype=np.float32)
    path = tmp_path / "with-channel-previews.h5"
    with h5py.File(path, "w") as f:
        f["mov"] = video
        f["preview/ch1"] = video[:3, ..., 0]  # same-shaped channel datasets, but small
        f["preview/ch2"] = video[:3, ..., 1]
    with open_video(path) as reader:
        assert reader.name.endswith(":mov")
        assert reader.shape == video.shape


@pytest.mark.parametrize(
    "names",
    [("ch1", "ch2"), ("mov_ch1", "mov_ch2"), ("raw/channel_1", "raw/channel_2"), ("Ch 1", "Ch 2")],
)
def test_channel_datasets_named_as_a_token_read_as_channels(tmp_path, video, names):
    import h5py

    path = tmp_path / "channels.h5"
    with h5py.File(path, "w") as f:
        f[names[1]] = video[..., 1]
        f[names[0]] = video[..., 0]
        f["epoch1"] = video[:2, ..., 0]  # a 3-D side dataset whose name holds ch + a digit
    with open_video(path) as reader:
        assert reader.shape == video.shape
        np.testing.assert_array_equal(reader[0 : len(reader)], video)
