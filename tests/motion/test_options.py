"""OFOptions: defaults users know, presets, validation, config files."""

from __future__ import annotations

import json
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
        ("constancy_assumption", "ncc"),  # "census" is pyflowreg's name of "cs"
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


# -- mistakes get one clear line ---------------------------------------------------------------
_PYDANTIC_WORDS = ("Value error", "Input should", "errors.pydantic.dev", "[type=", "Field required")


def _one_clear_line(message: str) -> str:
    assert "\n" not in message
    for words in _PYDANTIC_WORDS:
        assert words not in message
    return message


def test_a_typo_names_the_key_meant(tmp_path):
    path = tmp_path / "opts.toml"
    path.write_text("alpah = 2.0\n")
    with pytest.raises(ConfigError) as info:
        OFOptions.from_file(path)
    assert str(info.value) == f"{path}: unknown key 'alpah'; did you mean 'alpha'?"
    with pytest.raises(ConfigError) as info:
        OFOptions.from_mapping({"zzqxv": 1})
    assert str(info.value) == "OFOptions: unknown key 'zzqxv'"  # nothing close: no guess


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"levels": 0}, "levels = 0: must be >= 1"),
        ({"eta": 1.5}, "eta = 1.5: must be < 1.0"),
        ({"levels": "many"}, "levels = 'many': must be a whole number"),
        ({"save_w": "maybe"}, "save_w = 'maybe': must be true or false"),
        ({"alpha": -1}, "alpha = -1: must be > 0"),
        ({"alpha": [1, 2, 3]}, "alpha = [1, 2, 3]: must have at most 2 items"),
        ({"alpha": "x"}, "alpha = 'x': must be a list of 2 numbers"),
        ({"quality_setting": "best"}, "quality_setting = 'best': must be one of 'quality', "),
        ({"output_format": "AVI"}, "output_format = 'AVI': must be one of 'HDF5', 'TIFF'"),
        ({"channel_idx": [0, "b"]}, "channel_idx[1] = 'b': must be a whole number"),
        ({"sigma": [1, 2]}, "sigma = [1, 2]: must be [sx, sy, st]"),
        ({"weight": [-1, 2]}, "weight = [-1, 2]: must be non-negative"),
        ({"backend_params": 3}, "backend_params = 3: must be a table of keys and values"),
        ({"reference_frames": 2.5}, "reference_frames = 2.5: must be a list of whole numbers, a"),
    ],
)
def test_bad_values_say_key_value_and_what_is_allowed(tmp_path, data, expected):
    path = tmp_path / "opts.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ConfigError) as info:
        OFOptions.from_file(path)
    message = _one_clear_line(str(info.value))
    assert message.startswith(f"{path}: {expected}")


def test_building_or_assigning_in_python_gives_the_same_line():
    with pytest.raises(ConfigError) as info:
        OFOptions(alpah=2)
    assert str(info.value) == "OFOptions: unknown key 'alpah'; did you mean 'alpha'?"
    options = OFOptions()
    with pytest.raises(ConfigError) as info:
        options.levels = 0
    assert _one_clear_line(str(info.value)) == "OFOptions: levels = 0: must be >= 1"
    assert options.levels == 100  # the bad value was not kept


def test_several_mistakes_are_named_in_one_line():
    with pytest.raises(ConfigError) as info:
        OFOptions.from_mapping({"levels": 0, "iteratons": 3}, source="opts.yaml")
    message = _one_clear_line(str(info.value))
    assert "levels = 0: must be >= 1" in message
    assert "unknown key 'iteratons'; did you mean 'iterations'?" in message


def test_a_folder_as_input_file_says_to_give_a_video_or_use_motion_run(tmp_path):
    folder = tmp_path / "recordings"
    folder.mkdir()
    with pytest.raises(ConfigError) as info:
        OFOptions.from_mapping({"input_file": str(folder)}, source="opts.toml")
    message = _one_clear_line(str(info.value))
    assert message.startswith(f"opts.toml: input_file '{folder}' is a folder; give a video file")
    assert "`labsession motion run`" in message
    zarr_folder = tmp_path / "video.zarr"  # a Zarr array is a folder, and a video
    zarr_folder.mkdir()
    assert OFOptions(input_file=zarr_folder).input_file == zarr_folder
