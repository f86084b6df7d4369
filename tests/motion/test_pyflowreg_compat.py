"""pyflowreg's calls and option files work: compensate_arr's shapes and dtypes, the OFOptions
methods, backend names, valid masks and warping dtypes (pyflowreg's documented behaviour)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest

from labsession.errors import ConfigError
from labsession.motion import OFOptions, compensate_arr, compensate_recording, get_displacement
from labsession.motion.synthetic import shift_image, textured_image
from labsession.motion.warping import (
    align_sequence,
    backward_valid_mask,
    compute_batch_valid_masks,
    imregister_binary,
    valid_mask,
    warp_frame,
    warp_video,
)

FAST = {"quality_setting": "fast", "iterations": 10}


# -- compensate_arr: "c_reg: Registered array with same shape as input" ------------------------
def test_single_channel_video_comes_back_three_dimensional(small_video):
    video = small_video.video[:6, ..., 0]  # (T, H, W)
    registered, w = compensate_arr(video, small_video.reference[..., 0], OFOptions(**FAST))
    assert registered.shape == video.shape
    assert w.shape == (*video.shape, 2)


def test_a_single_2d_frame_is_registered(small_video):
    frame = small_video.video[3, ..., 0]
    reference = small_video.reference[..., 0]
    registered, w = compensate_arr(frame, reference, OFOptions(**FAST))
    assert registered.shape == frame.shape
    assert w.shape == (*frame.shape, 2)  # pyflowreg: the time axis squeezed away
    video_w = compensate_arr(frame[None], reference, OFOptions(**FAST))[1]
    np.testing.assert_array_equal(w, video_w[0])


def test_dtype_of_the_input_is_kept_and_output_typename_overrides_it(small_video):
    video = small_video.video[:4].astype(np.float64)
    reference = small_video.reference
    registered, w = compensate_arr(video, reference, OFOptions(**FAST))
    assert registered.dtype == np.float64
    assert w.dtype == np.float32
    as_single, _ = compensate_arr(video, reference, OFOptions(**FAST, output_typename="single"))
    assert as_single.dtype == np.float32
    np.testing.assert_allclose(as_single, registered, atol=1e-5)
    # integer types: rounded and clipped, as MATLAB's cast (not wrapped around)
    scaled = video * 100.0 + 200.0
    as_uint8, _ = compensate_arr(scaled, reference * 100.0 + 200.0, OFOptions(**FAST))
    assert as_uint8.dtype == np.float64
    cast, _ = compensate_arr(
        scaled, reference * 100.0 + 200.0, OFOptions(**FAST, output_typename="uint8")
    )
    assert cast.dtype == np.uint8
    np.testing.assert_array_equal(cast, np.clip(np.rint(as_uint8), 0, 255))
    assert cast.max() == 255  # values above 255 saturate


def test_integer_input_comes_back_as_its_integer_type(small_video):
    video = np.round(small_video.video[:4] * 1000).astype(np.uint16)
    registered, _ = compensate_arr(video, small_video.reference * 1000, OFOptions(**FAST))
    assert registered.dtype == np.uint16
    assert registered.shape == video.shape


def test_progress_callback_is_called_after_each_buffer(small_video):
    calls = []
    compensate_arr(
        small_video.video[:10],
        small_video.reference,
        OFOptions(**FAST, buffer_size=4),
        lambda done, total: calls.append((done, total)),
    )
    assert calls == [(4, 10), (8, 10), (10, 10)]


def test_a_multichannel_frame_given_as_3d_is_explained(small_video):
    frame = small_video.video[0]  # (H, W, C) is read as (T, H, W)
    with pytest.raises(ValueError, match=r"give a single multi-channel frame as frame\[None\]"):
        compensate_arr(frame, small_video.reference)


# -- OFOptions -------------------------------------------------------------------------------
def test_alpha_of_one_value_in_a_list_counts_for_both_axes():
    assert OFOptions(alpha=[3.0]).alpha == (3.0, 3.0)
    assert OFOptions.from_mapping({"alpha": [2]}).alpha == (2.0, 2.0)
    with pytest.raises(ConfigError, match="alpha"):
        OFOptions(alpha=[0.0])


def test_to_dict_has_pyflowregs_keys():
    options = OFOptions(alpha=2.0, quality_setting="balanced", constancy_assumption="gray")
    assert options.to_dict() == {
        "alpha": (2.0, 2.0),
        "weight": [0.5, 0.5],
        "levels": 100,
        "min_level": 4,  # the preset's, as pyflowreg's effective_min_level
        "eta": 0.8,
        "iterations": 50,
        "update_lag": 5,
        "a_data": 0.45,
        "a_smooth": 1.0,
        "const_assumption": "gray",
    }


def test_get_weight_at_gives_the_weight_each_channel_gets():
    options = OFOptions(weight=[1.0, 3.0])
    assert options.get_weight_at(0, 2) == pytest.approx(0.25)
    assert options.get_weight_at(1, 2) == pytest.approx(0.75)
    assert OFOptions(weight=[0.5, 0.5]).get_weight_at(0, 1) == pytest.approx(1.0)  # truncated
    with pytest.raises(IndexError, match="channel 2 is out of range for 2"):
        options.get_weight_at(2, 2)


def test_a_spatial_weight_map_is_kept_and_not_flattened(caplog):
    plane = np.linspace(0.0, 1.0, 12).reshape(3, 4)
    maps = np.stack([plane, 1.0 - plane * 0.5], axis=-1)  # (H, W, C)
    options = OFOptions(weight=maps)
    assert isinstance(options.weight, np.ndarray)
    np.testing.assert_array_equal(options.weight, maps)
    np.testing.assert_array_equal(options.get_weight_at(0, 2), plane)
    np.testing.assert_array_equal(options.get_weight_at(1, 2), 1.0 - plane * 0.5)
    np.testing.assert_array_equal(options.get_weight_at(2, 3), np.full((3, 4), 1 / 3))
    one_map = OFOptions(weight=plane)
    np.testing.assert_array_equal(one_map.get_weight_at(1, 2), plane)  # all channels
    # the channel mix gets each channel's mean weight; the flowreg backends use the map, and
    # only a backend without spatial weights (diso) says that it gets the means
    with caplog.at_level(logging.WARNING, logger="labsession.motion"):
        means = options.channel_weights(2)
    expected = maps.mean(axis=(0, 1))
    np.testing.assert_allclose(means, expected / expected.sum(), rtol=1e-6)
    assert "spatial map" not in caplog.text
    with caplog.at_level(logging.WARNING, logger="labsession.motion"):
        OFOptions(weight=maps, flow_backend="diso").channel_weights(2)
    assert "spatial map of shape (3, 4, 2)" in caplog.text
    np.testing.assert_allclose(one_map.channel_weights(2), [0.5, 0.5])


def test_a_4d_weight_is_refused_naming_the_key():
    with pytest.raises(ConfigError, match=r"weight = .*has 4 dimensions.*\(H, W, C\)"):
        OFOptions(weight=np.ones((2, 3, 4, 2)))
    with pytest.raises(ConfigError, match="weight"):
        OFOptions(weight=-np.ones((3, 4)))


def test_spatial_weights_round_trip_through_a_file(tmp_path):
    maps = np.arange(24, dtype=float).reshape(3, 4, 2) + 1.0
    path = OFOptions(weight=maps).to_file(tmp_path / "opts.yaml")
    loaded = OFOptions.from_file(path)
    np.testing.assert_array_equal(loaded.weight, maps)
    assert "shape=(3, 4, 2)" in OFOptions(weight=maps).metadata()["weight"]


def test_save_options_writes_pyflowregs_dated_json_and_load_options_reads_it(tmp_path):
    reference = np.arange(12, dtype=np.float32).reshape(3, 4)
    options = OFOptions(
        output_path=tmp_path / "out", alpha=(2.0, 3.0), reference_frames=reference, levels=7
    )
    path = options.save_options()
    assert path == tmp_path / "out" / "options.json"
    lines = path.read_text().splitlines()
    assert lines[0].startswith("Compensation options 2")  # header + date, as pyflowreg/MATLAB
    assert lines[1] == ""
    data = json.loads("\n".join(lines[2:]))
    assert data["alpha"] == [2.0, 3.0]
    assert data["reference_frames"] == str(tmp_path / "out" / "reference_frames.tif")
    loaded = OFOptions.load_options(path)
    assert (loaded.alpha, loaded.levels) == ((2.0, 3.0), 7)
    import tifffile

    np.testing.assert_array_equal(tifffile.imread(loaded.reference_frames), reference)


def test_save_options_round_trip_gives_back_the_same_files(tmp_path, monkeypatch):
    """Relative paths came back under the options file's folder: results/rec.tif, ..."""
    import tifffile

    monkeypatch.chdir(tmp_path)
    video = np.random.default_rng(0).random((6, 32, 32), dtype=np.float32)
    tifffile.imwrite("rec.tif", video)
    reference = video.mean(axis=0)
    options = OFOptions(
        input_file="rec.tif",
        output_path="results",
        reference_frames=reference,
        flow_backend="diso",
        quality_setting="fast",
    )
    saved = options.save_options()
    assert saved == Path("results") / "options.json"
    data = json.loads("\n".join(saved.read_text().splitlines()[2:]))
    assert data["input_file"] == str(tmp_path / "rec.tif")  # absolute: pyflowreg reads it too
    assert data["output_path"] == str(tmp_path / "results")
    assert data["reference_frames"] == str(tmp_path / "results" / "reference_frames.tif")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # another working directory: the same files
    back = OFOptions.load_options(tmp_path / saved)
    assert Path(back.input_file) == tmp_path / "rec.tif"
    assert back.output_path == tmp_path / "results"
    np.testing.assert_array_equal(tifffile.imread(back.reference_frames), reference)
    result = compensate_recording(back)
    assert result.files["compensated"].parent == tmp_path / "results"
    # to_file / from_file: the same
    written = OFOptions(input_file="../rec.tif", output_path="out").to_file("opts.toml")
    monkeypatch.chdir(tmp_path)
    again = OFOptions.from_file(elsewhere / written)
    assert Path(again.input_file) == tmp_path / "rec.tif"
    assert again.output_path == elsewhere / "out"


def test_a_file_pyflowreg_saved_keeps_its_paths_as_written(tmp_path, monkeypatch):
    """pyflowreg writes paths as given and reads them against the working directory."""
    import tifffile

    monkeypatch.chdir(tmp_path)
    (tmp_path / "pfr" / "out").mkdir(parents=True)
    video = np.random.default_rng(1).random((5, 16, 16), dtype=np.float32)
    tifffile.imwrite("pfr/vid.tif", video)
    tifffile.imwrite("pfr/out/reference_frames.tif", video[0])
    data = {  # what pyflowreg 0.1's save_options("pfr/out/options.json") writes, cut short
        "input_file": "pfr/vid.tif",
        "output_path": "pfr/out",
        "output_format": "HDF5",
        "output_file_name": None,
        "channel_idx": None,
        "alpha": [2.0, 2.0],
        "weight": [0.5, 0.5],
        "quality_setting": "balanced",
        "reference_frames": "pfr/out/reference_frames.tif",
        "verbose": False,
        "flow_backend": "flowreg",
        "backend_params": {},
    }
    path = tmp_path / "pfr" / "out" / "options.json"
    path.write_text("Compensation options 2026-12-02\n\n" + json.dumps(data, indent=2))
    loaded = OFOptions.load_options(path)
    assert Path(loaded.input_file) == Path("pfr/vid.tif")
    assert loaded.output_path == Path("pfr/out")
    assert Path(loaded.reference_frames) == Path("pfr/out/reference_frames.tif")
    with loaded.get_video_reader() as reader:  # the file pyflowreg meant
        np.testing.assert_array_equal(reader[0:5][..., 0], video)
    assert OFOptions.from_file(path).output_path == Path("pfr/out")  # the same by either name
    # a hand-written file (no saved-form header) resolves against its folder, as before
    path.write_text(json.dumps({"input_file": "../vid.tif", "output_path": "."}))
    written = OFOptions.from_file(path)
    assert Path(written.input_file) == tmp_path / "pfr" / "vid.tif"
    assert written.output_path == tmp_path / "pfr" / "out"


def test_a_file_pyflowreg_saved_loads(tmp_path):
    """pyflowreg's save_options writes every field, some with no counterpart here."""
    data = {
        "input_file": "raw.h5",
        "output_path": "results",
        "output_format": "HDF5",
        "output_file_name": None,
        "alpha": [4.0, 4.0],
        "weight": [0.5, 0.5],
        "quality_setting": "balanced",
        "n_references": 1,
        "min_frames_per_reference": 20,
        "verbose": True,
        "output_typename": "double",
        "cc_hw": 256,
        "naming_convention": "default",
        "flow_backend": "flowreg",
        "backend_params": {},
    }
    path = tmp_path / "options.json"
    path.write_text("Compensation options 2025-03-04\n\n" + json.dumps(data, indent=2))
    loaded = OFOptions.load_options(path)
    assert loaded.alpha == (4.0, 4.0)
    assert loaded.output_typename == "double"
    assert loaded.output_path == Path("results")  # as written, as pyflowreg reads it
    data["n_references"] = 3  # a setting that would change the result: named, not ignored
    path.write_text(json.dumps(data))
    with pytest.raises(ConfigError, match="unknown key 'n_references'"):
        OFOptions.from_file(path)


def test_get_video_reader_opens_the_input(tmp_path, small_video):
    np.save(tmp_path / "raw.npy", small_video.video[:5])
    options = OFOptions(input_file=tmp_path / "raw.npy", channel_idx=[1])
    with options.get_video_reader() as reader:
        assert reader.shape == (5, 64, 64, 1)
        np.testing.assert_array_equal(reader[0:2][..., 0], small_video.video[:2, ..., 1])
    with pytest.raises(ValueError, match="input_file is not set"):
        OFOptions().get_video_reader()


def test_output_typename_accepts_pyflowregs_names_and_refuses_others():
    assert OFOptions(output_typename="").output_typename is None  # MATLAB's "same as input"
    assert OFOptions(output_typename="Double").output_typename == "double"
    assert OFOptions(output_typename="float32").output_typename == "float32"
    with pytest.raises(ConfigError, match="output_typename = 'half-float'"):
        OFOptions(output_typename="half-float")


# -- backends: pyflowreg's names ---------------------------------------------------------------
def test_torch_is_an_alias_of_flowreg_torch():
    assert OFOptions(flow_backend="torch").flow_backend == "flowreg_torch"
    assert OFOptions(flow_backend=" Torch ").flow_backend == "flowreg_torch"


def test_flowreg_cuda_is_accepted_and_explains_what_it_needs():
    options = OFOptions(flow_backend="flowreg_cuda")
    assert options.flow_backend == "flowreg_cuda"
    ref = textured_image((32, 32), seed=4)
    mov = shift_image(ref, u=1.0, v=0.5)
    try:
        import torch
    except ImportError:
        torch = None
    if torch is not None and torch.cuda.is_available():
        w = get_displacement(ref, mov, options)  # a GPU: it runs
        assert np.abs(np.median(w[4:-4, 4:-4], axis=(0, 1)) - [1.0, 0.5]).max() < 0.2
        return
    with pytest.raises(ConfigError) as info:
        get_displacement(ref, mov, options)
    message = str(info.value)
    assert "'flowreg_cuda'" in message
    assert "'flowreg'" in message  # what to use instead
    if torch is None:
        assert "PyTorch" in message
        assert "not installed" in message
    else:
        assert "needs a CUDA GPU" in message


def test_flowreg_cuda_refuses_a_cpu_device():
    with pytest.raises(ConfigError, match=r"device is 'cpu'|PyTorch"):
        get_displacement(
            np.ones((16, 16)),
            np.ones((16, 16)),
            OFOptions(flow_backend="flowreg_cuda", backend_params={"device": "cpu"}),
        )


# -- valid masks: ours is the exact in-view test; pyflowreg's on request ------------------------
def test_backward_valid_mask_exact_versus_pyflowregs_bounds():
    u = np.full((32, 32), 2.5)
    v = np.full((32, 32), 1.7)
    exact = backward_valid_mask(u, v)
    rows, cols = np.nonzero(exact.any(axis=1))[0], np.nonzero(exact.any(axis=0))[0]
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (0, 29, 0, 28)
    theirs = backward_valid_mask(u, v, bounds="pyflowreg")  # x + u < W, y + v < H
    rows, cols = np.nonzero(theirs.any(axis=1))[0], np.nonzero(theirs.any(axis=0))[0]
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (0, 30, 0, 29)
    np.testing.assert_array_equal(exact, valid_mask(np.stack([u, v], axis=-1)))
    with pytest.raises(ValueError, match="bounds must be 'exact' or 'pyflowreg'"):
        backward_valid_mask(u, v, bounds="loose")


def test_pixels_marked_valid_are_measured_and_the_extra_pyflowreg_ones_are_not():
    """Why the exact test: on a ramp, linear interpolation is exact wherever the sample lies
    between measured pixels; the row pyflowreg adds samples past the last one and gets the
    border value replicated instead of the true continuation."""
    height, width = 32, 32
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    ramp = 3.0 * xx + 5.0 * yy
    u, v = np.full((height, width), 2.5), np.full((height, width), 1.7)
    warped = warp_frame(ramp, np.stack([u, v], axis=-1), interpolation="linear")
    truth = 3.0 * (xx + 2.5) + 5.0 * (yy + 1.7)
    exact = backward_valid_mask(u, v)
    extra = backward_valid_mask(u, v, bounds="pyflowreg") & ~exact
    # OpenCV interpolates at 1/32 px: within (3 + 5) / 32 of the truth where measured
    np.testing.assert_allclose(warped[exact], truth[exact], atol=0.3)
    assert extra.any()
    assert np.abs(warped[extra] - truth[extra]).min() > 1.0  # made up, not measured


def test_mask_helpers_follow_the_chosen_bounds():
    u, v = np.full((8, 8), 0.5), np.zeros((8, 8))
    w = np.stack([u, v], axis=-1)[None]
    assert compute_batch_valid_masks(w)[0, 0].tolist() == [255] * 7 + [0]
    assert compute_batch_valid_masks(w, bounds="pyflowreg")[0, 0].tolist() == [255] * 8
    mask = np.ones((8, 8), bool)
    assert imregister_binary(mask, u, v)[0].tolist() == [True] * 7 + [False]
    assert imregister_binary(mask, u, v, bounds="pyflowreg")[0].all()


# -- warping keeps float dtypes ------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.float16])
def test_warp_video_and_align_sequence_keep_a_float_dtype(dtype):
    rng = np.random.default_rng(0)
    video = rng.random((3, 16, 16, 2)).astype(dtype)
    w = np.zeros((3, 16, 16, 2), np.float32)
    out = warp_video(video, w)
    assert out.dtype == dtype
    np.testing.assert_allclose(out, video, atol=1e-3)
    aligned = align_sequence(video, w[0], video[0])
    assert aligned.dtype == dtype
    assert warp_video(video.astype(np.uint16), w).dtype == np.float32  # integers: float32


def test_align_sequence_warps_every_frame_by_one_field_and_fills_from_the_reference():
    ref = textured_image((32, 32), seed=2)
    video = np.stack([shift_image(ref, u=2.0, v=-1.0)] * 4)  # (T, H, W)
    w = np.zeros((32, 32, 2), np.float32)
    w[..., 0], w[..., 1] = 2.0, -1.0
    fill = np.full((32, 32), -7.0)
    aligned = align_sequence(video, w, fill, interpolation_method="cubic", n_workers=2)
    assert aligned.shape == video.shape
    inside = backward_valid_mask(w[..., 0], w[..., 1])
    for frame in aligned:
        assert np.abs(frame - ref)[inside][:].mean() < 0.02
        assert np.all(frame[~inside] == -7.0)
    with pytest.raises(ValueError, match="w must be"):
        align_sequence(video, np.zeros((4, 31, 32, 2)))
