"""pydantic errors become one line in the user's words: key path, value, what is allowed."""

from typing import Literal

import pytest
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from labsession.core.config import FileConfig, describe_validation_error, suggest_key
from labsession.errors import ConfigError


class Cluster(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    cls: str = Field("local", alias="class")
    scale: int | None = Field(None, ge=1)


class Settings(FileConfig):
    rate: float = Field(1.0, gt=0)
    mode: Literal["fast", "slow"] = "fast"
    pair: tuple[int, int] = (1, 2)
    rows: list[list[float]] = Field(default_factory=list)
    cluster: Cluster | None = None
    name: str


def _message(data):
    with pytest.raises(ConfigError) as info:
        Settings.from_mapping(data, source="s.toml")
    message = str(info.value)
    assert "\n" not in message
    for words in ("Value error", "Input should", "pydantic", "[type=", "Field required"):
        assert words not in message
    return message


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"name": "a", "rat": 2}, "unknown key 'rat'; did you mean 'rate'?"),
        ({"name": "a", "rate": 0}, "rate = 0: must be > 0"),
        ({"name": "a", "mode": "medium"}, "mode = 'medium': must be one of 'fast' or 'slow'"),
        ({"name": "a", "pair": [1]}, "pair = [1]: must be a list of 2 whole numbers"),
        ({"name": "a", "rows": [[1.0, "x"]]}, "rows[0][1] = 'x': must be a number"),
        ({"name": "a", "cluster": {"clas": "x"}}, "unknown key 'cluster.clas'; did you mean"),
        ({"name": "a", "cluster": {"scale": 0}}, "cluster.scale = 0: must be >= 1"),
        ({"name": "a", "cluster": 5}, "cluster = 5: must be a table of keys and values"),
        ({}, "missing key 'name' (a string)"),
    ],
)
def test_each_kind_of_mistake(data, expected):
    assert _message(data).startswith(f"s.toml: {expected}")


def test_close_keys_are_suggested_and_far_ones_are_not():
    assert suggest_key("sigma_smoth", ["sigma_smooth", "alpha"]) == "; did you mean 'sigma_smooth'?"
    assert suggest_key("colour", ["alpha", "levels"]) == ""
    assert _message({"name": "a", "xyzzy": 1}) == "s.toml: unknown key 'xyzzy'"


def test_long_values_are_cut():
    message = _message({"name": "a", "mode": "m" * 500})
    assert "..." in message
    assert len(message) < 200


def test_describe_works_on_any_model_and_under_a_prefix():
    with pytest.raises(ValidationError) as info:
        Cluster.model_validate({"scale": 0, "clss": "x"})
    text = describe_validation_error(info.value, Cluster, prefix="dask_cluster")
    assert text == (
        "dask_cluster.scale = 0: must be >= 1; "
        "unknown key 'dask_cluster.clss'; did you mean 'class'?"
    )
    assert "must be >= 1" in describe_validation_error(info.value)  # without the model too
