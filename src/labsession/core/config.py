"""User configuration files (TOML, YAML, JSON) read into pydantic models.

:class:`FileConfig` is the base of every user-facing config model (``OFOptions``,
``SessionConfig``): unknown keys are rejected, and a validation error is turned into a
:class:`~labsession.errors.ConfigError` of one line naming the file, each bad key, its value and
what is allowed, and the closest known key for a typo (the wording is
:func:`describe_validation_error`'s, in ``core/_config_errors.py``).
"""

from __future__ import annotations

import json
import os
import tomllib
from pathlib import Path
from typing import Any, Self

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from labsession.core._config_errors import (
    InvalidConfigError,
    KeyedConfigError,
    describe_validation_error,
    suggest_key,
)
from labsession.core.atomic import atomic_write_text
from labsession.errors import ConfigError

__all__ = [
    "CONFIG_SUFFIXES",
    "FileConfig",
    "InvalidConfigError",
    "KeyedConfigError",
    "describe_validation_error",
    "dump_mapping",
    "load_mapping",
    "suggest_key",
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


class FileConfig(BaseModel):
    """Base of user config models: strict keys, loading from files, clear errors.

    Building (``Model(alpha=2)``), assigning (``model.alpha = 2``) and loading
    (:meth:`from_mapping`, :meth:`from_file`) all raise :class:`ConfigError` with one line such
    as ``opts.toml: unknown key 'alpah'; did you mean 'alpha'?``, never pydantic's text.
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    def __init__(self, /, **data: Any) -> None:
        # pydantic also runs an overridden __init__ from model_validate: one place for both.
        try:
            super().__init__(**data)
        except ValidationError as exc:
            raise InvalidConfigError(type(self), exc) from None

    def __setattr__(self, name: str, value: Any) -> None:
        try:
            super().__setattr__(name, value)
        except ValidationError as exc:
            raise InvalidConfigError(type(self), exc) from None

    @classmethod
    def from_mapping(cls, data: dict[str, Any], *, source: str | None = None) -> Self:
        """Validate a mapping; raise :class:`ConfigError` naming each bad or unknown key.

        ``source`` (the file name, by default the class name) starts the message:
        ``"opts.toml: levels = 0: must be >= 1"``.
        """
        try:
            return cls.model_validate(data)
        except ValidationError as exc:  # __init__'s InvalidConfigError, as pydantic passes it on
            text = describe_validation_error(exc, cls)
            raise ConfigError(f"{source or cls.__name__}: {text}") from None

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
