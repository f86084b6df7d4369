"""A registered video format is an ``output_format`` and, when it is a folder, an input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from labsession.core.atomic import create_temp_dir, replace_dir
from labsession.errors import ConfigError
from labsession.motion import (
    OFOptions,
    OutputFormat,
    SinkSpec,
    VideoReader,
    _formats,
    compensate_recording,
    open_video,
    register_video_format,
    synthetic_video,
)

N_FRAMES = 12


class ToySink:
    """A toy folder format ``<name>.toyv/``: ``frames.npy`` ``(T, H, W, C)`` and ``meta.json``."""

    def __init__(self, spec: SinkSpec) -> None:
        self.spec = spec
        self.tmp = create_temp_dir(spec.path.parent, prefix=f".{spec.path.name}.", suffix=".tmp")
        self.frames = np.lib.format.open_memmap(
            self.tmp / "frames.npy", mode="w+", dtype=spec.dtype, shape=spec.shape
        )
        (self.tmp / "meta.json").write_text(spec.metadata)

    def write(self, frames: np.ndarray, start: int) -> None:
        self.frames[start : start + len(frames)] = frames

    def commit(self) -> None:
        self.frames.flush()
        del self.frames
        replace_dir(self.tmp, self.spec.path)

    def abort(self) -> None:
        self.frames = None
        shutil.rmtree(self.tmp, ignore_errors=True)

    @staticmethod
    def read(path: Path, *, dataset_name=None, channel_idx=None) -> VideoReader:
        frames = np.load(Path(path) / "frames.npy", mmap_mode="r")
        return VideoReader(frames, name=str(path), channel_idx=channel_idx)


@pytest.fixture
def toy(monkeypatch):
    """The TOY format registered (one class, one call); the registry is restored afterwards."""
    monkeypatch.setattr(_formats, "_FORMATS", dict(_formats._FORMATS))
    monkeypatch.setattr(_formats, "_BY_SUFFIX", dict(_formats._BY_SUFFIX))
    register_video_format("TOY", sink=ToySink, reader=ToySink.read, suffix=".toyv", folder=True)


@pytest.fixture
def recording(tmp_path: Path) -> Path:
    frames, _ = synthetic_video(n_frames=N_FRAMES, shape=(32, 32), max_shift=1.5, seed=3)
    path = tmp_path / "input.npy"
    np.save(path, frames)
    return path


def _options(input_file: Path, output_path: Path, output_format: str) -> OFOptions:
    return OFOptions(
        input_file=input_file,
        output_path=output_path,
        output_format=output_format,
        flow_backend="diso",
        quality_setting="fast",
        reference_frames=list(range(N_FRAMES)),
        buffer_size=5,  # several buffers: the sink is written in pieces
    )


def test_compensate_recording_writes_a_registered_format(toy, tmp_path, recording):
    options = _options(recording, tmp_path / "toy", "TOY")
    assert options.output_format == "TOY"
    result = compensate_recording(options, progress=False)
    target = tmp_path / "toy" / "compensated.toyv"
    assert result.files["compensated"] == target
    assert target.is_dir()
    assert sorted(p.name for p in target.iterdir()) == ["frames.npy", "meta.json"]
    assert json.loads((target / "meta.json").read_text())["output_format"] == "TOY"
    assert json.loads(result.files["options"].read_text())["output_format"] == "TOY"
    assert not [p for p in target.parent.iterdir() if p.name.startswith(".")]  # no temporaries
    # the same frames as the built-in HDF5 output of the same options
    reference = compensate_recording(_options(recording, tmp_path / "h5", "HDF5"), progress=False)
    with open_video(target) as toy_video, open_video(reference.files["compensated"]) as h5:
        assert toy_video.shape == h5.shape == (N_FRAMES, 32, 32, 1)
        np.testing.assert_array_equal(toy_video[0:N_FRAMES], h5[0:N_FRAMES])


def test_a_registered_folder_format_is_an_input(toy, tmp_path, recording):
    first = compensate_recording(_options(recording, tmp_path / "a", "TOY"), progress=False)
    folder = first.files["compensated"]
    options = _options(folder, tmp_path / "b", "HDF5")  # accepted although it is a folder
    assert options.input_file == folder
    again = compensate_recording(options, progress=False)
    with open_video(again.files["compensated"]) as reader:
        assert reader.shape == (N_FRAMES, 32, 32, 1)
    for name in ("plain", "video.unknown"):  # a folder of no folder format is still refused
        (tmp_path / name).mkdir()
        with pytest.raises(ConfigError, match=rf"input_file '.*{name}' is a folder; give a video"):
            OFOptions(input_file=tmp_path / name)


def test_output_format_is_checked_against_the_registry(toy, tmp_path):
    with pytest.raises(ConfigError) as info:
        OFOptions(output_format="AVI")
    assert str(info.value) == (
        "OFOptions: output_format = 'AVI': must be one of 'HDF5', 'TIFF', 'MAT', 'NPZ', 'ZARR' "
        "or 'TOY' (add one with labsession.motion.register_video_format)"
    )
    options = OFOptions()
    options.output_format = "TOY"  # assignment is validated too
    assert options.output_format == "TOY"
    options.output_format = "TIFF"
    assert options.output_format is OutputFormat.TIFF  # a built-in name stays an OutputFormat
    assert options.output_format.value == "TIFF"
    path = tmp_path / "opts.toml"
    path.write_text('output_format = "TOY"\n')
    assert OFOptions.from_file(path).output_format == "TOY"
    path.write_text('output_format = "NPY"\n')  # registered, but read only
    with pytest.raises(ConfigError, match=rf"{path}: output_format = 'NPY': must be one of"):
        OFOptions.from_file(path)


def test_an_unregistered_format_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="output_format = 'TOY': must be one of 'HDF5', 'TIFF'"):
        OFOptions(output_format="TOY")
    assert OFOptions(output_format=OutputFormat.ZARR).output_format is OutputFormat.ZARR


def test_a_session_aligns_into_a_registered_format(toy, tmp_path):
    from labsession.errors import ConfigError
    from labsession.motion.session import SessionConfig
    from labsession.motion.session._stage3 import aligned_video_path

    config = SessionConfig(root=tmp_path, align_output_format="TOY")
    assert config.align_output_format == "TOY"
    assert aligned_video_path(config, tmp_path / "rec1.tif").name == "aligned_rec1.toyv"
    assert SessionConfig(root=tmp_path).align_output_format == "TIFF"  # the built-in default
    with pytest.raises(ConfigError, match=r"align_output_format.*'TOY'.*register_video_format"):
        SessionConfig(root=tmp_path, align_output_format="AVI")
