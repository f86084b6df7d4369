"""Census constancy (``constancy_assumption="cs"``), pyflowreg's third data term."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from labsession.errors import ConfigError
from labsession.motion import OFOptions, get_displacement
from labsession.motion._flowreg_kernels import motion_tensor_cs
from labsession.motion.session import SessionConfig
from labsession.motion.synthetic import endpoint_error, shift_image, textured_image


def _census_tensor_as_pyflowreg(f1, f2, hy, hx, eps=0.1 / 255.0):
    """pyflowreg's ``get_motion_tensor_cs`` (float64, its padded layout cut back to the image):
    J11, J22, J33, J12, J13, J23."""
    height, width = f1.shape
    f1p = np.pad(f1, 1, mode="symmetric")
    f2p = np.pad(f2, 1, mode="symmetric")
    parts = [np.zeros_like(f1p) for _ in range(6)]
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            if dy == 0 and dx == 0:
                continue
            dist = np.sqrt((hy * dy) ** 2 + (hx * dx) ** 2)
            signs = []
            for fp in (f1p, f2p):
                r = (fp[1 + dy : 1 + dy + height, 1 + dx : 1 + dx + width] - fp[1:-1, 1:-1]) / dist
                signs.append(np.pad(0.5 * (1.0 + r / np.sqrt(r * r + eps * eps)), 1, mode="edge"))
            sy1, sx1 = np.gradient(signs[0], hy, hx)
            sy2, sx2 = np.gradient(signs[1], hy, hx)
            sx, sy, st = 0.5 * (sx1 + sx2), 0.5 * (sy1 + sy2), signs[1] - signs[0]
            values = (sx * sx, sy * sy, st * st, sx * sy, sx * st, sy * st)
            for part, value in zip(parts, values, strict=True):
                part += value
    return [0.25 * part[1:-1, 1:-1] for part in parts]


def _smooth_pair(seed: int, shape=(20, 30)):
    rng = np.random.default_rng(seed)
    return [gaussian_filter(rng.random(shape), 1.5).astype(np.float32) for _ in range(2)]


@pytest.mark.parametrize(("hx", "hy"), [(1.0, 1.0), (1.5, 1.25)])
def test_census_tensor_follows_pyflowregs_definition(hx, hy):
    f1, f2 = _smooth_pair(0)
    ours = motion_tensor_cs(f1[None], f2[None, None], hx, hy)[0, :, 0]  # (6, h, w)
    j11, j22, j33, j12, j13, j23 = _census_tensor_as_pyflowreg(
        f1.astype(np.float64), f2.astype(np.float64), hy, hx
    )
    for mine, theirs in zip(ours, (j11, j12, j13, j22, j23, j33), strict=True):
        np.testing.assert_allclose(mine[1:-1, 1:-1], theirs[1:-1, 1:-1], rtol=1e-5, atol=1e-6)
        # no data term on the image border, as the other data terms here
        assert not mine[[0, -1]].any()
        assert not mine[:, [0, -1]].any()
    assert np.abs(ours[5]).max() > 0.1  # the images differ: the test is not of zeros


def test_census_tensor_ignores_offsets_and_constant_images():
    f1, f2 = _smooth_pair(1)
    base = motion_tensor_cs(f1[None], f2[None, None], 1.0, 1.0)
    offset = motion_tensor_cs(f1[None] + 0.3, f2[None, None] + 0.3, 1.0, 1.0)
    np.testing.assert_allclose(offset, base, rtol=1e-4, atol=1e-4)  # float32 differences
    flat = motion_tensor_cs(
        np.full((1, 7, 6), 0.25, np.float32), np.full((1, 1, 7, 6), 0.75, np.float32), 1.0, 1.0
    )
    assert not flat.any()


def test_census_recovers_a_rigid_shift():
    ref = textured_image(seed=3)
    mov = shift_image(ref, u=1.6, v=-2.3)
    w = get_displacement(ref, mov, OFOptions(constancy_assumption="cs"))
    truth = np.broadcast_to(np.array([1.6, -2.3], np.float32), w.shape)
    assert endpoint_error(np.zeros_like(w), truth) > 2.5
    # census is less precise than gc on clean data (its linearised signs), but finds the shift
    assert endpoint_error(w, truth) < 0.35
    assert abs(w[8:-8, 8:-8, 0].mean() - 1.6) < 0.2
    assert abs(w[8:-8, 8:-8, 1].mean() + 2.3) < 0.3


@pytest.mark.parametrize("change", ["gamma", "gain"])
def test_census_is_robust_to_a_brightness_change_that_defeats_gray(change):
    ref = textured_image(seed=5)
    moved = np.clip(shift_image(ref, u=1.2, v=0.8), 0.0, None)
    mov = moved**0.5 if change == "gamma" else 1.8 * moved  # both keep the order of values
    truth = np.broadcast_to(np.array([1.2, 0.8], np.float32), (64, 64, 2))
    err = {
        c: endpoint_error(get_displacement(ref, mov, OFOptions(constancy_assumption=c)), truth)
        for c in ("gray", "cs")
    }
    assert err["cs"] < 0.4
    assert err["gray"] > 3 * err["cs"]


def test_census_is_named_as_in_pyflowreg(tmp_path):
    assert OFOptions(constancy_assumption="cs").constancy_assumption.value == "cs"
    assert OFOptions(constancy_assumption="census").constancy_assumption.value == "cs"
    assert OFOptions(constancy_assumption="Gradient").constancy_assumption.value == "gc"
    assert OFOptions(constancy_assumption="brightness").constancy_assumption.value == "gray"
    assert OFOptions(constancy_assumption="cs").to_dict()["const_assumption"] == "cs"
    with pytest.raises(ConfigError, match="constancy_assumption"):
        OFOptions(constancy_assumption="ncc")
    config = SessionConfig(root=tmp_path, stage2_constancy_assumption="cs")
    assert config.stage2_options().constancy_assumption.value == "cs"


def test_census_kernel_is_compiled_only_when_used():
    """A gc run leaves the census kernel and the weight-map solver uncompiled (no cold-start
    cost for what a run does not use)."""
    code = (
        "import numpy as np\n"
        "from labsession.motion import OFOptions, get_displacement\n"
        "from labsession.motion._flowreg_kernels import motion_tensor_cs\n"
        "from labsession.motion._sor_kernels import solve_level\n"
        "from labsession.motion.synthetic import textured_image\n"
        "ref = textured_image((24, 24), seed=1)\n"
        "mov = np.roll(ref, 1, axis=1)\n"
        "get_displacement(ref, mov, OFOptions(levels=2))\n"
        "print(len(motion_tensor_cs.signatures), [s[1].ndim for s in solve_level.signatures])\n"
        "get_displacement(ref, mov, OFOptions(levels=2, constancy_assumption='cs'))\n"
        "print(len(motion_tensor_cs.signatures))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=600, check=True
    )
    assert out.stdout.split("\n")[:2] == ["0 [1]", "1"], out.stdout + out.stderr
