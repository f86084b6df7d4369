"""SessionConfig: defaults, file formats, relative paths, errors naming the key."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from labsession.errors import ConfigError
from labsession.motion._backends import get_backend
from labsession.motion.session import (
    SessionConfig,
    discover_recordings,
    recording_dir,
    resolve_center,
)

from .conftest import fast_config, fast_config_text


def test_defaults_follow_the_issue(tmp_path: Path) -> None:
    config = SessionConfig(root=tmp_path)
    assert config.pattern == "*.tif"
    assert config.center is None
    assert config.output_dir == tmp_path.resolve() / "compensated_outputs"
    assert config.final_dir == tmp_path.resolve() / "final_results"
    assert config.resume is True
    assert config.scheduler == "local"
    assert config.n_workers == -1
    assert config.effective_workers >= 1
    assert config.flow_backend == "flowreg"
    assert config.backend_params == {}
    assert config.flow_options is None
    assert config.stage1_quality_setting is None
    assert (config.cc_upsample, config.sigma_smooth) == (4, 6.0)
    assert (config.alpha_between, config.iterations_between) == (25.0, 100)
    assert config.stage2_constancy_assumption.value == "gc"
    assert config.align_chunk_size == 64
    assert config.align_output_format.value == "TIFF"
    assert config.dask_address is None
    assert config.dask_cluster is None


@pytest.mark.parametrize("suffix", [".toml", ".yaml", ".json"])
def test_from_file_resolves_root_against_the_config_folder_and_outputs_under_root(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, suffix: str
) -> None:
    project = tmp_path / "project"
    (project / "data").mkdir(parents=True)
    (project / "opts.toml").write_text("alpha = 3.0\n")
    data = {
        "root": "data",
        "output_root": "out/comp",
        "final_results": "out/final",
        "flow_options": "opts.toml",
        "scheduler": "dask",
        "dask_cluster": {"class": "distributed.LocalCluster", "kwargs": {"n_workers": 2}},
    }
    path = project / f"session{suffix}"
    if suffix == ".toml":
        path.write_text(
            'root = "data"\noutput_root = "out/comp"\nfinal_results = "out/final"\n'
            'flow_options = "opts.toml"\nscheduler = "dask"\n\n[dask_cluster]\n'
            'class = "distributed.LocalCluster"\nkwargs = { n_workers = 2 }\n'
        )
    elif suffix == ".yaml":
        import yaml

        path.write_text(yaml.safe_dump(data))
    else:
        path.write_text(json.dumps(data))
    monkeypatch.chdir(tmp_path)  # somewhere else: paths must not depend on the cwd
    config = SessionConfig.from_file(path)
    assert config.root == (project / "data").resolve()
    # pyflowreg: relative output folders stay relative, and live under root when used
    assert config.output_root == Path("out/comp")
    assert config.final_results == Path("out/final")
    assert config.output_dir == (project / "data" / "out/comp").resolve()
    assert config.final_dir == (project / "data" / "out/final").resolve()
    assert config.resolve_output_paths() == (config.output_dir, config.final_dir)
    assert config.flow_overrides() == {"alpha": (3.0, 3.0)}
    assert config.dask_cluster is not None
    assert config.dask_cluster.cls == "distributed.LocalCluster"
    assert config.dask_cluster.kwargs == {"n_workers": 2}
    if suffix == ".toml":
        assert SessionConfig.from_toml(path) == config
    if suffix == ".yaml":
        assert SessionConfig.from_yaml(path) == config


def test_default_outputs_live_under_root_when_loaded_from_a_file(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    path = tmp_path / "session.toml"
    path.write_text('root = "data"\n')
    config = SessionConfig.from_toml(path)
    assert config.output_dir == (tmp_path / "data" / "compensated_outputs").resolve()


@pytest.mark.parametrize(
    ("line", "key"),
    [
        ("bogus = 1", "bogus"),
        ('scheduler = "slurm"', "scheduler"),
        ("cc_upsample = 0", "cc_upsample"),
        ("n_workers = 0", "n_workers"),
        ("sigma_smooth = -1.0", "sigma_smooth"),
        ('flow_backend = "nope"', "flow_backend"),
        ('align_output_format = "AVI"', "align_output_format"),
        ('stage1_quality_setting = "ultra"', "stage1_quality_setting"),
        ('stage2_constancy_assumption = "brightness"', "stage2_constancy_assumption"),
        ("flow_options = { alpha = -1 }", "flow_options"),
        ("flow_options = { bogus_option = 1 }", "bogus_option"),
        ('flow_options = { input_file = "x.tif" }', "input_file"),
        ('flow_options = "missing.toml"', "flow_options"),
        ("dask_cluster = { workers = 3 }", "dask_cluster.workers"),
    ],
)
def test_bad_values_are_rejected_naming_the_key(tmp_path: Path, line: str, key: str) -> None:
    (tmp_path / "data").mkdir()
    path = tmp_path / "session.toml"
    path.write_text(f'root = "data"\n{line}\n')
    with pytest.raises(ConfigError, match=key) as info:
        SessionConfig.from_toml(path)
    assert str(path) in str(info.value)


def test_missing_root_is_named(tmp_path: Path) -> None:
    path = tmp_path / "session.toml"
    path.write_text('root = "nowhere"\n')
    with pytest.raises(ConfigError, match=r"root.*existing folder"):
        SessionConfig.from_file(path)


def test_wrong_suffix_for_from_toml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"\.toml"):
        SessionConfig.from_toml(tmp_path / "session.yaml")


def test_stage1_options_precedence(tmp_path: Path) -> None:
    """As pyflowreg: session settings < flow_options < of_options_override (--of-params)."""
    config = SessionConfig(
        root=tmp_path,
        flow_backend="diso",
        stage1_quality_setting="fast",
        flow_options={"alpha": 4.0, "flow_backend": "flowreg", "quality_setting": "quality"},
    )
    options = config.stage1_options(tmp_path / "a.tif", tmp_path / "out")
    assert options.alpha == (4.0, 4.0)  # from flow_options
    assert options.flow_backend == "flowreg"  # flow_options wins over the session's key
    assert options.quality_setting.value == "quality"
    assert options.save_valid_idx is True
    assert options.output_format.value == "HDF5"
    assert options.output_path == tmp_path / "out"
    assert config.stage2_options().flow_backend == "diso"  # stage 2 keeps the session's
    overridden = config.with_flow_overrides({"flow_backend": "torch", "quality_setting": "fast"})
    options = overridden.stage1_options(tmp_path / "a.tif", tmp_path / "out")
    assert options.flow_backend == "flowreg_torch"
    assert options.quality_setting.value == "fast"
    plain = SessionConfig(root=tmp_path, stage1_quality_setting="fast")  # nothing set twice
    assert plain.stage1_options(tmp_path / "a.tif", tmp_path / "out").quality_setting.value == (
        "fast"
    )
    assert plain.stage1_options(tmp_path / "a.tif", tmp_path / "out").flow_backend == "flowreg"


def test_stage1_settings_given_twice_and_disagreeing_are_named(tmp_path: Path, caplog) -> None:
    """A value set in two places that disagree is not silently dropped: it is named."""
    config = SessionConfig(
        root=tmp_path,
        stage1_quality_setting="balanced",
        flow_options={"quality_setting": "fast", "flow_backend": "diso", "alpha": 2.0},
    )
    # flow_backend: the session's default, not written: no disagreement
    assert config.stage1_disagreements() == [
        "stage-1 option quality_setting = 'fast' (flow_options or --of-params) overrides the "
        "session's stage1_quality_setting = 'balanced', as in pyflowreg; set it in one place"
    ]
    with caplog.at_level("WARNING", logger="labsession.motion.session._config"):
        overridden = config.with_flow_overrides({"alpha": 3.0, "flow_backend": "DISO"})
    assert [r.getMessage() for r in caplog.records] == [
        "--of-params alpha = 3.0 overrides flow_options alpha = 2.0"
    ]  # DISO is diso: no disagreement
    same = SessionConfig(
        root=tmp_path, flow_backend="torch", flow_options={"flow_backend": "flowreg_torch"}
    )
    assert same.stage1_disagreements() == []
    backend = SessionConfig(root=tmp_path, flow_backend="diso").with_flow_overrides(
        {"flow_backend": "flowreg"}
    )
    assert backend.stage1_disagreements() == [
        "stage-1 option flow_backend = 'flowreg' (flow_options or --of-params) overrides the "
        "session's flow_backend = 'diso', as in pyflowreg; set it in one place"
    ]
    assert overridden.stage1_options(tmp_path / "a.tif", tmp_path / "o").alpha == (3.0, 3.0)


def test_flow_overrides_from_the_cli_are_validated(tmp_path: Path) -> None:
    config = SessionConfig(root=tmp_path, flow_options={"alpha": 2.0})
    merged = config.with_flow_overrides({"levels": 20})
    assert merged.flow_overrides() == {"alpha": 2.0, "levels": 20}
    with pytest.raises(ConfigError, match="wrong_name"):
        config.with_flow_overrides({"wrong_name": 1})


def test_discovery_center_and_folders(tmp_path: Path) -> None:
    for name in ("b.tif", "a.tif", "c.tif", "notes.txt", ".hidden.tif"):
        (tmp_path / name).write_bytes(b"")
    config = SessionConfig(root=tmp_path)
    files = discover_recordings(config)
    assert [p.name for p in files] == ["a.tif", "b.tif", "c.tif"]
    assert resolve_center(config, files) == (1, tmp_path.resolve() / "b.tif")
    assert recording_dir(config, files[0]) == config.output_dir / "a"
    chosen = SessionConfig(root=tmp_path, center="c.tif")
    assert resolve_center(chosen, files)[0] == 2
    with pytest.raises(ConfigError, match=r"center 'z.tif' is not among"):
        resolve_center(SessionConfig(root=tmp_path, center="z.tif"), files)
    # four recordings: MATLAB's ceil(n / 2) -> the second (index 1)
    (tmp_path / "d.tif").write_bytes(b"")
    assert resolve_center(config, discover_recordings(config))[0] == 1


def test_discovery_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"pattern '\*.tif' matches no recording"):
        discover_recordings(SessionConfig(root=tmp_path))
    (tmp_path / "a.tif").write_bytes(b"")
    (tmp_path / "a.h5").write_bytes(b"")
    with pytest.raises(ConfigError, match="share the stem 'a'"):
        discover_recordings(SessionConfig(root=tmp_path, pattern="a.*"))


def test_fast_config_helpers_agree(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    path = tmp_path / "session.toml"
    path.write_text(fast_config_text())
    assert SessionConfig.from_file(path) == fast_config(tmp_path / "data")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("sigma_smoth = 4.0", "unknown key 'sigma_smoth'; did you mean 'sigma_smooth'?"),
        (
            "flow_options = { alpah = 2.0 }",
            "unknown key 'flow_options.alpah'; did you mean 'alpha'?",
        ),
        ("flow_options = { levels = 0 }", "flow_options.levels = 0: must be >= 1"),
        ("dask_cluster = { clas = 'x' }", "unknown key 'dask_cluster.clas'; did you mean 'class'?"),
        ('scheduler = "slurm"', "scheduler = 'slurm': must be one of 'local', 'array' or 'dask'"),
        ("n_workers = 0", "n_workers = 0: must be -1 (all cores) or >= 1"),
        ("bogus_thing_entirely = 1", "unknown key 'bogus_thing_entirely'"),
    ],
)
def test_mistakes_are_one_line_with_the_key_meant(tmp_path: Path, text: str, expected: str) -> None:
    (tmp_path / "data").mkdir()
    path = tmp_path / "session.toml"
    path.write_text(f'root = "data"\n{text}\n')
    with pytest.raises(ConfigError) as info:
        SessionConfig.from_file(path)
    assert str(info.value) == f"{path}: {expected}"


def test_missing_root_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "session.yaml"
    path.write_text("pattern: '*.tif'\n")
    with pytest.raises(ConfigError) as info:
        SessionConfig.from_file(path)
    assert str(info.value) == f"{path}: missing key 'root' (a path)"


def test_another_backend_from_of_params_runs_without_the_sessions_backend_params(
    tmp_path: Path,
) -> None:
    # The session's diso preset went to flowreg, which refuses it: every recording failed.
    config = SessionConfig(
        root=tmp_path, flow_backend="diso", backend_params={"preset": "fast"}
    ).with_flow_overrides({"flow_backend": "flowreg"})
    options = config.stage1_options(tmp_path / "a.tif", tmp_path / "o")
    assert options.flow_backend == "flowreg"
    assert options.backend_params == {}
    assert config.stage1_disagreements()[-1] == (
        "the session's backend_params {'preset': 'fast'} are for its flow_backend = 'diso': "
        "stage 1 runs 'flowreg' without them"
    )
    get_backend(options)  # accepted by the backend it names
    both = SessionConfig(
        root=tmp_path, flow_backend="diso", backend_params={"preset": "fast"}
    ).with_flow_overrides({"flow_backend": "diso", "backend_params": {"preset": "medium"}})
    assert both.stage1_options(tmp_path / "a.tif", tmp_path / "o").backend_params == {
        "preset": "medium"
    }
