"""compensate_arr and compensate_recording on real files, larger than the buffer."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from labsession.errors import ConfigError
from labsession.motion import (
    OFOptions,
    compensate_arr,
    compensate_recording,
    open_video,
    register_backend,
)
from labsession.motion._backends import DisoBackend
from labsession.motion._compensate import _Engine
from labsession.motion.synthetic import endpoint_error


def test_recording_larger_than_buffer_matches_in_memory(tmp_path, small_video):
    src = tmp_path / "raw.h5"
    with h5py.File(src, "w") as f:
        f["data"] = small_video.video
    opts = OFOptions(
        input_file=src,
        output_path=tmp_path / "out",
        buffer_size=6,
        quality_setting="balanced",
        reference_frames=list(range(20)),
        save_w=True,
        save_valid_idx=True,
    )
    result = compensate_recording(opts, progress=False)
    files = result.files
    for key in ("compensated", "w", "valid", "average", "reference", "statistics", "options"):
        assert files[key].exists(), key
    with h5py.File(files["w"]) as f:
        w = f["w"][:]
        assert json.loads(f["w"].attrs["options"])["buffer_size"] == 6
    assert w.shape == (20, 64, 64, 2)
    # a template built from the frames sits at their mean position: compare relative motion
    truth = small_video.w
    assert endpoint_error(w - w.mean(axis=0), truth - truth.mean(axis=0)) < 0.4
    with open_video(files["compensated"]) as reader:
        assert reader.shape == small_video.video.shape
        registered = reader[0:20]
    with h5py.File(files["valid"]) as f:
        valid = f["valid"][:]
    assert valid.shape == (20, 64, 64, 1)
    assert 0.8 < valid.mean() < 1.0  # a border leaves the field of view
    stats = np.load(files["statistics"])
    assert stats["corr_after"].mean() > stats["corr_before"].mean()
    assert stats["mean_displacement"].shape == (20,)
    assert np.load(files["average"]).shape == (64, 64, 2)
    # the same reference in memory gives the same result as the streamed run
    mem_reg, mem_w = compensate_arr(small_video.video, result.reference, opts)
    np.testing.assert_allclose(mem_w, w, atol=1e-4)
    np.testing.assert_allclose(mem_reg, registered, atol=1e-4)


def test_registration_sharpens_the_mean(small_video):
    registered, _ = compensate_arr(
        small_video.video, small_video.reference, OFOptions(quality_setting="balanced")
    )

    def err(frames):
        return np.abs(frames.mean(axis=0) - small_video.reference)[8:-8, 8:-8].mean()

    assert err(registered) < 0.5 * err(small_video.video)


@pytest.mark.parametrize("fmt", ["TIFF", "MAT", "NPZ", "ZARR"])
def test_output_formats(tmp_path, small_video, fmt):
    opts = OFOptions(
        input_file=small_video.video[:5, ..., :1],
        output_path=tmp_path,
        output_format=fmt,
        quality_setting="fast",
        reference_frames=[0, 1, 2],
        buffer_size=2,
    )
    result = compensate_recording(opts, progress=False)
    assert (
        result.files["compensated"].suffix
        == {"TIFF": ".tif", "MAT": ".mat", "NPZ": ".npz", "ZARR": ".zarr"}[fmt]
    )
    if fmt != "NPZ":
        with open_video(result.files["compensated"]) as reader:
            assert reader.shape == (5, 64, 64, 1)
    assert json.loads(result.files["options"].read_text())["output_format"] == fmt


def test_cc_initialization_and_diso(small_video):
    for opts in (
        OFOptions(cc_initialization=True, cc_up=10, quality_setting="fast"),
        OFOptions(flow_backend="diso"),
    ):
        _, w = compensate_arr(small_video.video, small_video.reference, opts)
        assert endpoint_error(w, small_video.w) < 0.5, opts.flow_backend


@pytest.mark.parametrize(
    ("video", "message"),
    [
        (np.zeros(4), "1 dimensions"),
        (np.zeros((2, 3, 4, 4, 1)), "5 dimensions"),
        (np.zeros((0, 8, 8)), "empty: it has 0 frames"),
    ],
)
def test_bad_video_shapes(video, message):
    with pytest.raises(ValueError, match=message):
        compensate_arr(video, np.zeros((8, 8)))


def test_nan_and_mismatched_reference_are_rejected():
    video = np.ones((3, 8, 8), np.float32)
    video[1, 2, 2] = np.nan
    with pytest.raises(ValueError, match="1 NaN or infinite"):
        compensate_arr(video, np.ones((8, 8)))
    with pytest.raises(ValueError, match="reference has shape"):
        compensate_arr(np.ones((3, 8, 8)), np.ones((8, 9)))


@pytest.mark.parametrize(
    ("wrong", "message"),
    [
        ("w", r"returned w of shape \(3, 16, 15, 2\) .*; expected \(3, 16, 16, 2\)"),
        (
            "registered",
            r"a registered video of shape \(3, 16, 15, 1\) .*; expected \(3, 16, 16, 1\)",
        ),
    ],
)
def test_a_wrong_shape_from_the_engine_names_the_array_that_is_wrong(monkeypatch, wrong, message):
    """With one buffer the engine's outputs are returned as they are, so their shapes are
    checked; the error names the one that is wrong: the flows as the backend gave them (checked
    by the engine, for every buffer), or the registered video (warped by the engine itself, so
    only a fault put into the engine can give it another shape)."""
    backend = "diso"
    if wrong == "w":

        class CutFlows(DisoBackend):
            def __call__(self, *args, **kwargs):
                return super().__call__(*args, **kwargs)[:, :, :-1]

        register_backend("cut_flows_test", CutFlows, overwrite=True)
        backend = "cut_flows_test"
    else:
        process = _Engine.process

        def cut(engine, batch):
            registered, w = process(engine, batch)
            return registered[:, :, :-1], w

        monkeypatch.setattr(_Engine, "process", cut)
    video = np.random.default_rng(0).random((3, 16, 16))
    with pytest.raises(ValueError, match=message) as error:
        compensate_arr(video, np.ones((16, 16)), OFOptions(flow_backend=backend))
    assert ("returned w " in str(error.value)) == (wrong == "w")


def test_recording_errors(tmp_path):
    with pytest.raises(ValueError, match="input_file is not set"):
        compensate_recording(OFOptions(output_path=tmp_path))
    with pytest.raises(FileNotFoundError, match=r"nope\.h5"):
        compensate_recording(OFOptions(input_file=tmp_path / "nope.h5", output_path=tmp_path))
    with pytest.raises(ConfigError, match="unknown flow_backend 'nope'"):
        compensate_arr(np.ones((2, 8, 8)), np.ones((8, 8)), OFOptions(flow_backend="nope"))
    with pytest.raises(ConfigError, match="unknown key 'buffer'"):
        OFOptions.from_mapping({"buffer": 3})


def test_bin_size_bins_frames_spatially(tmp_path, small_video):
    opts = OFOptions(bin_size=2, quality_setting="fast", buffer_size=8)
    registered, w = compensate_arr(small_video.video[:4], small_video.reference, opts)
    assert registered.shape == (4, 32, 32, 2)
    assert w.shape == (4, 32, 32, 2)
    np.save(tmp_path / "raw.npy", small_video.video[:4])
    result = compensate_recording(
        opts.model_copy(
            update={
                "input_file": tmp_path / "raw.npy",
                "output_path": tmp_path / "o",
                "reference_frames": [0, 1],
            }
        ),
        progress=False,
    )
    with open_video(result.files["compensated"]) as reader:
        assert reader.shape == (4, 32, 32, 2)
    with pytest.raises(ValueError, match="bin_size 40"):
        compensate_arr(small_video.video[:2], small_video.reference, OFOptions(bin_size=40))


def test_reference_image_from_a_file(tmp_path, small_video):
    np.save(tmp_path / "raw.npy", small_video.video[:4])
    np.save(tmp_path / "ref.npy", small_video.reference)
    opts = OFOptions(
        input_file=tmp_path / "raw.npy",
        output_path=tmp_path / "out",
        reference_frames=str(tmp_path / "ref.npy"),
        quality_setting="fast",
    )
    result = compensate_recording(opts, progress=True)
    np.testing.assert_array_equal(np.load(result.files["reference"]), small_video.reference)
    with pytest.raises(ValueError, match="reference has shape"):
        compensate_recording(
            opts.model_copy(update={"reference_frames": small_video.reference[:10]}),
            progress=False,
        )


def test_default_reference_frames_on_a_video_shorter_than_50_frames(small_video, caplog):
    """The default frames 50..499 lie beyond a 20-frame video: all 20 frames build the reference."""
    from labsession.motion import open_video
    from labsession.motion._reference import reference_from_options

    with open_video(small_video.video) as reader:
        default = reference_from_options(reader, OFOptions())
        explicit = reference_from_options(reader, OFOptions(reference_frames=list(range(20))))
        last_only = reference_from_options(reader, OFOptions(reference_frames=[19]))
    np.testing.assert_array_equal(default, explicit)
    assert not np.allclose(default, last_only)
    assert "lie beyond the video's 20 frames" in caplog.text


@pytest.mark.parametrize("fmt", ["HDF5", "TIFF", "ZARR"])
def test_an_interrupted_call_leaves_no_output_folder_it_made(tmp_path, fmt):
    """Ctrl-C (or an error) before anything is written: the folder the call created is gone,
    with nothing half-written in it; a folder that was there before stays."""
    import tifffile

    src = tmp_path / "raw.tif"
    rng = np.random.default_rng(0)
    tifffile.imwrite(src, rng.random((6, 32, 32), dtype=np.float32))
    made = tmp_path / "out" / "raw_compensated"
    options = OFOptions(
        input_file=src,
        output_path=made,
        output_format=fmt,
        quality_setting="fast",
        flow_backend="diso",
        reference_frames=[0, 1],
        buffer_size=2,
        save_w=True,
    )

    def interrupt(done, total):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        compensate_recording(options, progress=False, on_frames=interrupt)
    assert not made.exists()
    assert (tmp_path / "out").is_dir()  # only the folder itself is removed, never more
    with pytest.raises(ValueError, match="reference has shape"):
        compensate_recording(options, reference=np.zeros((8, 8)), progress=False)
    assert not made.exists()
    made.mkdir()  # there before the call: kept, empty
    with pytest.raises(KeyboardInterrupt):
        compensate_recording(options, progress=False, on_frames=interrupt)
    assert made.is_dir()
    assert list(made.iterdir()) == []
    result = compensate_recording(options, progress=False)  # and a call that ends writes it all
    assert result.files["compensated"].exists()
