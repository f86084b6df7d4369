import pytest

from labsession.core.config import FileConfig, dump_mapping, load_mapping
from labsession.errors import ConfigError


class Example(FileConfig):
    alpha: float = 1.5
    name: str = "x"
    levels: int = 10


@pytest.mark.parametrize("suffix", [".toml", ".yaml", ".json"])
def test_round_trip_each_format(tmp_path, suffix):
    path = tmp_path / f"c{suffix}"
    Example(alpha=2.0, name="y").to_file(path)
    assert Example.from_file(path) == Example(alpha=2.0, name="y")


def test_unknown_key_is_named(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("alpha = 1.0\nalhpa = 3\n")
    with pytest.raises(ConfigError, match=r"c.toml.*unknown key 'alhpa'"):
        Example.from_toml(path)


def test_bad_value_is_named(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("levels: many\n")
    with pytest.raises(ConfigError, match="levels"):
        Example.from_yaml(path)


def test_unparsable_and_missing_files(tmp_path):
    bad = tmp_path / "c.toml"
    bad.write_text("alpha = = 1")
    with pytest.raises(ConfigError, match="cannot parse TOML"):
        load_mapping(bad)
    with pytest.raises(ConfigError, match="not found"):
        load_mapping(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match="unknown config format"):
        load_mapping(tmp_path / "c.ini")
    with pytest.raises(ConfigError, match=r"expected a file ending in \.toml"):
        Example.from_toml(tmp_path / "c.yaml")


def test_dump_mapping_toml_nested(tmp_path):
    path = dump_mapping({"a": 1, "t": {"b": "x", "c": [1, 2]}}, tmp_path / "n.toml")
    assert load_mapping(path) == {"a": 1, "t": {"b": "x", "c": [1, 2]}}
