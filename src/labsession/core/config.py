"""User configuration files (TOML, YAML, JSON) read into pydantic models.

:class:`FileConfig` is the base of every user-facing config model (``OFOptions``,
``SessionConfig``): unknown keys are rejected, and a validation error is turned into a
:class:`~labsession.errors.ConfigError` whose message names each bad key and the file it came
from.
"""

from __future__ import annotations

import json
import os
import tomllib
from pathlib import Path
from typing import Any, Self

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from labsession.core.atomic import atomic_write_text
from labsession.errors import ConfigError

__all__ = [
    "CONFIG_SUFFIXES",
    "FileConfig",
    "describe_validation_error",
    "dump_mapping",
    "load_mapping",
]

#: File suffixes understood by :func:`load_mapping` and :func:`dump_mapping`.
CONFIG_SUFFIXES = (".toml", ".yaml", ".yml", ".json")


def load_mapping(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a TOML, YAML or JSON file (chosen by suffix) into a dict.

    Raises
    ------
    ConfigError
        If the file is missing, has an unknown suffix, does not parse, or is not a mapping.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in CONFIG_SUFFIXES:
        raise ConfigError(f"{path}: unknown config format {suffix!r}; use one of {CONFIG_SUFFIXES}")
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: config file not found") from exc
    try:
        if suffix == ".toml":
            data = tomllib.loads(text)
        elif suffix == ".json":
            data = json.loads(text)
        else:
            data = yaml.safe_load(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot parse {suffix[1:].upper()} ({exc})") from exc
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of keys to values, found {type(data)}")
    return data


def _toml_dumps(data: dict[str, Any]) -> str:
    """Write a mapping of plain values (one level of tables) as TOML; stdlib has no writer."""
    lines: list[str] = []
    tables: list[tuple[str, dict[str, Any]]] = []
    for key, value in data.items():
        if value is None:
            continue
        if isinstance(value, dict):
            tables.append((key, value))
        else:
            lines.append(f"{key} = {json.dumps(value)}")
    for name, table in tables:
        lines.append(f"\n[{name}]")
        lines.extend(f"{k} = {json.dumps(v)}" for k, v in table.items() if v is not None)
    return "\n".join(lines) + "\n"


def dump_mapping(data: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    """Write ``data`` as TOML, YAML or JSON (chosen by suffix), atomically."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".toml":
        text = _toml_dumps(data)
    elif suffix in (".yaml", ".yml"):
        text = yaml.safe_dump(data, sort_keys=False)
    elif suffix == ".json":
        text = json.dumps(data, indent=2) + "\n"
    else:
        raise ConfigError(f"{path}: unknown config format {suffix!r}; use one of {CONFIG_SUFFIXES}")
    return atomic_write_text(path, text)


def describe_validation_error(exc: ValidationError) -> str:
    """One line naming each bad key of a pydantic error (``unknown key 'x'; alpha: ...``)."""
    parts = []
    for error in exc.errors():
        key = ".".join(str(p) for p in error["loc"]) or "<root>"
        if error["type"] == "extra_forbidden":
            parts.append(f"unknown key {key!r}")
        else:
            parts.append(f"{key}: {error['msg']} (got {error.get('input')!r})")
    return "; ".join(parts)


class FileConfig(BaseModel):
    """Base of user config models: strict keys, loading from files, clear errors."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    @classmethod
    def from_mapping(cls, data: dict[str, Any], *, source: str = "config") -> Self:
        """Validate a mapping; raise :class:`ConfigError` naming each bad or unknown key."""
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise ConfigError(
                f"{source}: invalid configuration: {describe_validation_error(exc)}"
            ) from None

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> Self:
        """Read a TOML, YAML or JSON file (by suffix) into this model."""
        path = Path(path)
        data = cls._prepare(load_mapping(path), base_dir=path.parent)
        return cls.from_mapping(data, source=str(path))

    @classmethod
    def from_toml(cls, path: str | os.PathLike[str]) -> Self:
        """Read a TOML file into this model."""
        return cls.from_file(_require_suffix(path, (".toml",)))

    @classmethod
    def from_yaml(cls, path: str | os.PathLike[str]) -> Self:
        """Read a YAML file into this model."""
        return cls.from_file(_require_suffix(path, (".yaml", ".yml")))

    @classmethod
    def _prepare(cls, data: dict[str, Any], *, base_dir: Path) -> dict[str, Any]:
        """Hook for subclasses: adjust raw file data (e.g. resolve relative paths)."""
        return data

    def to_file(self, path: str | os.PathLike[str]) -> Path:
        """Write this config as TOML, YAML or JSON (by suffix), atomically."""
        return dump_mapping(self.model_dump(mode="json", exclude_none=True), path)


def _require_suffix(path: str | os.PathLike[str], suffixes: tuple[str, ...]) -> Path:
    path = Path(path)
    if path.suffix.lower() not in suffixes:
        raise ConfigError(f"{path}: expected a file ending in {' or '.join(suffixes)}")
    return path
