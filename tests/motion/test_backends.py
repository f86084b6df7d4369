"""Backend registry, the diso backend and warping."""

from __future__ import annotations

import numpy as np
import pytest

from labsession.errors import ConfigError
from labsession.motion import (
    OFOptions,
    available_backends,
    compensate_arr,
    compensate_recording,
    get_displacement,
    register_backend,
)
from labsession.motion.synthetic import endpoint_error, shift_image, textured_image
from labsession.motion.warping import valid_mask, valid_masks, warp_frame, warp_video


def test_builtin_backends_are_registered():
    assert {"flowreg", "diso", "flowreg_torch"} <= set(available_backends())


def test_user_backend_is_used(small_video):
    calls = []

    class Constant:
        def __init__(self, options):
            self.shift = options.backend_params["shift"]

        def __call__(self, reference, moving, *, weight, w_init=None):
            calls.append(moving.shape)
            w = np.zeros((*moving.shape[:3], 2), np.float32)
            w[..., 0] = self.shift
            return w

    register_backend("constant_test", Constant, overwrite=True)
    with pytest.raises(ValueError, match="already registered"):
        register_backend("constant_test", Constant)
    opts = OFOptions(flow_backend="constant_test", backend_params={"shift": 1.0}, buffer_size=8)
    _, w = compensate_arr(small_video.video, small_video.reference, opts)
    # first the mean-flow initialisation on the first buffer, then the three buffers
    assert calls == [(8, 64, 64, 2), (8, 64, 64, 2), (8, 64, 64, 2), (4, 64, 64, 2)]
    assert np.all(w[..., 0] == 1.0)


def test_a_backend_that_returns_too_few_or_too_many_flows_is_named(small_video, tmp_path):
    """Checked for every buffer, in memory and from a file: not an IndexError from the warp,
    nor (one flow too many) statistics longer than the video."""

    class OffByOne:
        def __init__(self, options):
            self.extra = options.backend_params["extra"]

        def __call__(self, reference, moving, *, weight, w_init=None):
            return np.zeros((len(moving) + self.extra, *moving.shape[1:3], 2), np.float32)

    register_backend("off_by_one_test", OffByOne, overwrite=True)
    video = small_video.video[:9]
    path = tmp_path / "video.npy"
    np.save(path, video)
    for extra in (-1, 1):
        opts = OFOptions(
            flow_backend="off_by_one_test", backend_params={"extra": extra}, buffer_size=4
        )
        expected = rf"'off_by_one_test' returned w of shape \({4 + extra}, 64, 64, 2\)"
        with pytest.raises(ValueError, match=expected):
            compensate_arr(video, small_video.reference, opts)
        recording = opts.model_copy(
            update={"input_file": path, "output_path": tmp_path / f"out{extra}"}
        )
        recording.reference_frames = small_video.reference
        with pytest.raises(ValueError, match=expected):
            compensate_recording(recording)


def test_diso_recovers_a_shift_and_checks_params():
    ref = textured_image((96, 96), seed=2)
    mov = shift_image(ref, u=2.0, v=-1.0)
    truth = np.broadcast_to(np.array([2.0, -1.0], np.float32), (96, 96, 2))
    w = get_displacement(ref, mov, OFOptions(flow_backend="diso"))
    assert endpoint_error(w, truth, margin=12) < 0.2
    with pytest.raises(ConfigError, match="unknown backend_params for diso"):
        get_displacement(ref, mov, OFOptions(flow_backend="diso", backend_params={"x": 1}))
    with pytest.raises(ConfigError, match="preset 'slow'"):
        get_displacement(
            ref, mov, OFOptions(flow_backend="diso", backend_params={"preset": "slow"})
        )


def test_flowreg_refuses_unknown_backend_params_as_diso_does(tmp_path):
    """A typo in backend_params was ignored by flowreg (the default), refused by diso."""
    video = np.random.default_rng(0).random((3, 32, 32), dtype=np.float32)
    options = OFOptions(quality_setting="fast", backend_params={"batch_sise": 64})
    assert options.flow_backend == "flowreg"
    message = r"unknown backend_params for flowreg: \['batch_sise'\]; flowreg takes none"
    with pytest.raises(ConfigError, match=message):
        compensate_arr(video, video[0], options)
    path = tmp_path / "rec.npy"
    np.save(path, video)
    recording = OFOptions(
        input_file=path,
        output_path=tmp_path / "out",
        quality_setting="fast",
        backend_params={"batch_sise": 64},
    )
    with pytest.raises(ConfigError, match=message):
        compensate_recording(recording)
    assert not (tmp_path / "out").exists()  # refused before anything was written
    diso = OFOptions(flow_backend="diso", backend_params={"batch_sise": 64})
    with pytest.raises(ConfigError, match=r"unknown backend_params for diso: \['batch_sise'\]"):
        compensate_arr(video, video[0], diso)


@pytest.mark.parametrize("interpolation", ["nearest", "linear", "cubic"])
def test_warp_inverts_a_known_shift(interpolation):
    ref = textured_image(seed=1)
    mov = shift_image(ref, u=3.0, v=-2.0)
    w = np.zeros((64, 64, 2), np.float32)
    w[..., 0], w[..., 1] = 3.0, -2.0
    back = warp_frame(mov, w, interpolation=interpolation, fill=0.0)
    assert np.abs(back - ref)[4:-4, 4:-4].max() < 1e-3
    mask = valid_mask(w)
    assert not mask[:, -3:].any()
    assert not mask[:2].any()
    assert mask[2:, :-3].all()
    assert np.all(back[~mask] == 0.0)


def test_warp_video_multichannel_and_masks():
    video = np.random.default_rng(0).random((3, 16, 16, 6)).astype(np.float32)
    w = np.zeros((3, 16, 16, 2), np.float32)
    np.testing.assert_allclose(warp_video(video, w), video, atol=1e-6)
    assert valid_masks(w).all()
    with pytest.raises(ValueError, match="interpolation"):
        warp_frame(video[0], w[0], interpolation="lanczos")
    with pytest.raises(ValueError, match="frames"):
        warp_video(video, w[:2])
