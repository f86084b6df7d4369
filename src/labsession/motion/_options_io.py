"""Options files in pyflowreg's form: ``save_options`` / ``load_options`` and JSON-ready values.

pyflowreg (and MATLAB Flow-Registration) write options as a header line
``Compensation options YYYY-MM-DD``, a blank line, then JSON. These helpers write that form and
read it back, as well as plain JSON, TOML and YAML.

Paths: files written here (``save_options``, ``to_file``) hold absolute paths (``input_file``,
``output_path``, a ``reference_frames`` image), so loading one gives back the same files from
any working directory and with either reader, labsession's or pyflowreg's. A file in the saved
form (:func:`is_saved_form`) keeps its relative paths as written, relative to the working
directory, as pyflowreg reads them; ``OFOptions.from_file`` resolves the relative paths of
other (hand-written) files against the file's folder.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from labsession.core.atomic import atomic_write_text
from labsession.core.config import load_mapping
from labsession.errors import ConfigError

if TYPE_CHECKING:
    from labsession.motion._options import OFOptions

__all__ = ["is_saved_form", "options_data", "read_options_mapping", "write_options_json"]

logger = logging.getLogger(__name__)

#: Keys pyflowreg writes that labsession has no field for, with pyflowreg's defaults: a saved
#: pyflowreg file holding these values loads (they change nothing here); any other value is an
#: unknown key, named in the error.
PYFLOWREG_ONLY_DEFAULTS: dict[str, Any] = {
    "output_file_name": None,
    "n_references": 1,
    "min_frames_per_reference": 20,
    "cc_hw": 256,
    "naming_convention": "default",
}
#: pyflowreg keys that never change a result (printing only): dropped whatever their value.
_PYFLOWREG_IGNORED = ("verbose",)
_ARRAY_KEYS = ("input_file", "reference_frames", "weight")
#: Fields that may hold a path: written absolute to options files.
PATH_KEYS = ("input_file", "output_path", "reference_frames")
#: The first line of a file written by ``save_options`` (pyflowreg, MATLAB, labsession).
SAVED_HEADER = "Compensation options"


def _summary(array: np.ndarray) -> str:
    return f"<array shape={array.shape} dtype={array.dtype}>"


def options_data(options: OFOptions, *, for_file: bool, target: Path | None = None) -> dict:
    """The options as JSON-ready values.

    Parameters
    ----------
    options
        The options.
    for_file
        ``True``: values to write to an options file; paths made absolute (against the
        working directory), an in-memory ``input_file`` left out (with a warning), an in-memory
        ``reference_frames`` too unless ``target`` is given, a spatial ``weight`` map written
        as nested lists. ``False``: metadata stored with outputs; paths as given, arrays
        summarised as ``"<array shape=... dtype=...>"``.
    target
        The options file being written: an in-memory ``reference_frames`` image is then saved
        beside it as ``reference_frames.tif`` and named by its path (pyflowreg's way).
    """
    data = options.model_dump(mode="json", exclude=set(_ARRAY_KEYS))
    for key in _ARRAY_KEYS:
        value = getattr(options, key)
        if isinstance(value, Path):
            data[key] = str(value)
        elif not isinstance(value, np.ndarray):
            data[key] = value
        elif not for_file:
            data[key] = _summary(value)
        elif key == "weight":
            data[key] = value.tolist()
        elif key == "reference_frames" and target is not None:
            import tifffile

            image = target.parent / "reference_frames.tif"
            tifffile.imwrite(image, np.asarray(value))
            data[key] = str(image)
        else:
            logger.warning("%s is an in-memory array and is not written to the options file", key)
    if for_file:
        data = {k: v for k, v in data.items() if v is not None}
        for key in PATH_KEYS:  # a list of frame indices stays as it is
            if isinstance(data.get(key), str) and data[key].strip():
                data[key] = os.path.abspath(Path(data[key]).expanduser())  # `..` folded
    return data


def is_saved_form(path: Path) -> bool:
    """Whether ``path`` starts with ``save_options``' header line (``Compensation options``)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            first = next((line for line in f if line.strip()), "")
    except OSError:
        return False
    return first.lstrip().startswith(SAVED_HEADER)


def write_options_json(options: OFOptions, path: Path) -> Path:
    """Write ``path`` as pyflowreg's ``save_options`` does: a dated header line, then JSON."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = options_data(options, for_file=True, target=path)
    header = f"{SAVED_HEADER} {datetime.date.today().isoformat()}\n\n"
    return atomic_write_text(path, header + json.dumps(data, indent=2) + "\n")


def read_options_mapping(path: Path) -> dict[str, Any]:
    """Read an options file: TOML, YAML, plain JSON, or pyflowreg's JSON with a header line.

    Keys pyflowreg writes that labsession has no field for are dropped when they hold
    pyflowreg's default (``PYFLOWREG_ONLY_DEFAULTS``; ``verbose`` always).

    Raises
    ------
    ConfigError
        If the file is missing or is not a mapping in one of those forms.
    """
    if path.suffix.lower() != ".json":
        return _drop_pyflowreg_only(load_mapping(path), path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: options file not found") from exc
    start = next(
        (i for i, line in enumerate(text.splitlines()) if line.lstrip().startswith("{")), None
    )
    if start is None:
        raise ConfigError(f"{path}: no JSON object found (expected '{{' on a line of its own)")
    try:
        data = json.loads("\n".join(text.splitlines()[start:]))
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: cannot parse JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of keys to values, found {type(data)}")
    return _drop_pyflowreg_only(data, path)


def _drop_pyflowreg_only(data: dict[str, Any], path: Path) -> dict[str, Any]:
    kept = {}
    for key, value in data.items():
        if key in _PYFLOWREG_IGNORED:
            continue
        if key in PYFLOWREG_ONLY_DEFAULTS and value == PYFLOWREG_ONLY_DEFAULTS[key]:
            logger.debug("%s: pyflowreg key %s = %r has no effect here; ignored", path, key, value)
            continue
        kept[key] = value
    return kept
