"""OFOptions: defaults users know, presets, validation, config files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from labsession.errors import ConfigError
from labsession.motion import OFOptions


def test_defaults_follow_flow_registration():
    opts = OFOptions()
    assert opts.alpha == (1.5, 1.5)
    assert (opts.levels, opts.min_level, opts.eta) == (100, -1, 0.8)
    assert (opts.update_lag, opts.iterations, opts.a_smooth, opts.a_data) == (5, 50, 1.0, 0.45)
    assert opts.sigma == [[1.0, 1.0, 0.1], [1.0, 1.0, 0.1]]
    assert opts.buffer_size == 400
    assert opts.reference_frames == list(range(50, 500))
    assert opts.output_format.value == "HDF5"
    assert opts.constancy_assumption.value == "gc"
    assert opts.flow_backend == "flowreg"


@pytest.mark.parametrize(("preset", "level"), [("quality", 0), ("balanced", 4), ("fast", 6)])
def test_quality_presets_set_min_level(preset, level):
    assert OFOptions(quality_setting=preset).effective_min_level == level
    assert OFOptions(quality_setting=preset, min_level=2).effective_min_level == 2


def test_scalar_alpha_becomes_pair_and_sigma_row_is_accepted():
    opts = OFOptions(alpha=3, sigma=[2.0, 2.0, 0.5])
    assert opts.alpha == (3.0, 3.0)
    np.testing.assert_allclose(opts.channel_sigma(2), [[2, 2, 0.5], [2, 2, 0.5]])


def test_unknown_key_is_rejected_by_name(tmp_path):
    path = tmp_path / "opts.toml"
    path.write_text("alpha = 2.0\nalfa = 3.0\n")
    with pytest.raises(ConfigError, match="unknown key 'alfa'"):
        OFOptions.from_file(path)
    with pytest.raises(ConfigError, match="unknown key 'iteration'"):
        OFOptions.from_mapping({"iteration": 3})


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("eta", 1.5),
        ("alpha", -1),
        ("weight", [-1, 2]),
        ("sigma", [1, 2]),
        ("quality_setting", "best"),
        ("constancy_assumption", "census"),
        ("levels", 0),
    ],
)
def test_bad_values_name_the_key(key, value):
    with pytest.raises(ConfigError, match=key):
        OFOptions.from_mapping({key: value})


@pytest.mark.parametrize("suffix", [".toml", ".yaml", ".json"])
def test_file_round_trip(tmp_path, suffix):
    opts = OFOptions(
        alpha=(2.0, 3.0),
        quality_setting="fast",
        weight=[0.3, 0.7],
        input_file=tmp_path / "v.h5",
        reference_frames=[1, 2, 3],
        backend_params={"preset": "fast"},
        flow_backend="diso",
    )
    path = opts.to_file(tmp_path / f"opts{suffix}")
    loaded = OFOptions.from_file(path)
    assert loaded.alpha == (2.0, 3.0)
    assert loaded.quality_setting.value == "fast"
    assert loaded.weight == [0.3, 0.7]
    assert loaded.reference_frames == [1, 2, 3]
    assert loaded.backend_params == {"preset": "fast"}
    assert str(loaded.input_file) == str(tmp_path / "v.h5")


def test_relative_paths_in_a_file_are_resolved_against_its_folder(tmp_path, monkeypatch):
    folder = tmp_path / "configs"
    folder.mkdir()
    path = folder / "opts.toml"
    path.write_text(
        'input_file = "../data/v.tif"\noutput_path = "out"\nreference_frames = "ref.npy"\n'
    )
    monkeypatch.chdir(tmp_path)  # not the config's folder
    loaded = OFOptions.from_file(path)
    assert Path(loaded.input_file) == (tmp_path / "data" / "v.tif").resolve()
    assert loaded.output_path == (folder / "out").resolve()
    assert Path(loaded.reference_frames) == (folder / "ref.npy").resolve()


def test_array_input_is_kept_in_memory_but_summarised_in_metadata():
    video = np.zeros((3, 8, 8), np.float32)
    opts = OFOptions(input_file=video)
    assert opts.input_file is video
    assert "shape=(3, 8, 8)" in opts.metadata()["input_file"]
    with pytest.raises(ConfigError, match="input_file"):
        OFOptions.from_mapping({"input_file": np.zeros((8, 8))})
