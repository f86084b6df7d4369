"""pyflowreg's session calls work: SessionConfig's methods, relative output folders under root,
run_stage1(config, overrides, task_index=...), and a resumed stage 1 saying what it skipped."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from labsession.errors import MotionSessionError
from labsession.motion.session import SessionConfig, recording_dir, run_stage1

from .conftest import fast_config


def test_relative_output_folders_stay_relative_and_live_under_root(tmp_path: Path) -> None:
    data = tmp_path / "somewhere" / "data"
    data.mkdir(parents=True)
    configs = tmp_path / "configs"
    configs.mkdir()
    path = configs / "session.toml"
    path.write_text(
        f'root = "{data}"\noutput_root = "compensated_outputs"\nfinal_results = "final"\n'
    )
    config = SessionConfig.from_file(path)
    assert config.output_root == Path("compensated_outputs")  # kept as written
    assert config.resolve_output_paths() == (
        data.resolve() / "compensated_outputs",
        data.resolve() / "final",
    )
    assert not (configs / "compensated_outputs").exists()
    absolute = SessionConfig(root=data, output_root=tmp_path / "elsewhere")
    assert absolute.resolve_output_paths()[0] == tmp_path / "elsewhere"


def test_resolve_center_file_takes_the_middle_or_the_named_one(tmp_path: Path) -> None:
    files = [tmp_path / name for name in ("c.tif", "a.tif", "d.tif", "b.tif")]
    config = SessionConfig(root=tmp_path)
    # pyflowreg: sorted, index ceil(n / 2) - 1 -> b.tif of a, b, c, d
    assert config.resolve_center_file(files) == (1, tmp_path / "b.tif")
    chosen = SessionConfig(root=tmp_path, center="d.tif")
    assert chosen.resolve_center_file(files) == (3, tmp_path / "d.tif")
    with pytest.raises(ValueError, match=r"center 'z\.tif' is not among"):
        SessionConfig(root=tmp_path, center="z.tif").resolve_center_file(files)


def test_get_flow_options_override_returns_a_copy_of_the_mapping(tmp_path: Path) -> None:
    config = SessionConfig(root=tmp_path, flow_options={"alpha": 4.0, "levels": 20})
    overrides = config.get_flow_options_override()
    assert overrides == {"alpha": 4.0, "levels": 20}
    overrides["alpha"] = 1.0
    assert config.get_flow_options_override()["alpha"] == 4.0
    assert SessionConfig(root=tmp_path).get_flow_options_override() == {}


def test_a_pyflowreg_options_file_under_root_is_found_and_read(tmp_path: Path) -> None:
    """pyflowreg resolves a relative flow_options under root and reads save_options' JSON."""
    data = tmp_path / "data"
    data.mkdir()
    saved = {"alpha": [3.0, 3.0], "levels": 30, "verbose": False, "input_file": "x.tif"}
    (data / "of_options.json").write_text(
        "Compensation options 2025-01-02\n\n" + json.dumps(saved, indent=2)
    )
    configs = tmp_path / "configs"
    configs.mkdir()
    path = configs / "session.yaml"
    path.write_text(f"root: {data}\nflow_options: of_options.json\n")
    config = SessionConfig.from_file(path)
    assert config.flow_options == (data / "of_options.json").resolve()
    assert config.get_flow_options_override() == {"alpha": (3.0, 3.0), "levels": 30}
    path.write_text(f"root: {data}\nflow_options: missing.json\n")
    with pytest.raises(ValueError, match="options file not found"):
        SessionConfig.from_file(path)


def test_run_stage1_with_a_task_index_runs_that_recording_only(fresh_copy: Path) -> None:
    config = fast_config(fresh_copy)
    folders = run_stage1(config, {"alpha": 2.5}, task_index=2)  # 0-based, as pyflowreg
    assert folders == [recording_dir(config, fresh_copy / "rec_2.tif")]
    assert json.loads((folders[0] / "status.json").read_text())["stage1"] == "done"
    assert json.loads((folders[0] / "options.json").read_text())["alpha"] == [2.5, 2.5]
    assert not recording_dir(config, fresh_copy / "rec_0.tif").exists()
    with pytest.raises(MotionSessionError, match=r"task_index 3 is out of range: 3 recording"):
        run_stage1(config, task_index=3)


def test_a_resumed_stage1_logs_each_recording_it_skipped(
    finished_copy: SessionConfig, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="labsession"):
        run_stage1(finished_copy, progress=False)
    for name in ("rec_0.tif", "rec_1.tif", "rec_2.tif"):
        assert f"stage 1: {name} already complete (verified); skipped" in caplog.text
    assert "3 of 3 recording(s) already complete (skipped)" in caplog.text
