"""The on-disk layout of a session folder: names, ``meta.json`` and ``labels.json``.

::

    2026-05-17_14-23-05_3f9a0c1e/
        emg.zarr/  emg_timestamps.zarr/  ...  meta.json  labels.json

The layout, the ``meta.json`` keys and the Zarr codecs are those MyoGestic writes, so either tool
opens the other's sessions.
"""

from __future__ import annotations

import json
import re
import secrets
import time
from pathlib import Path
from typing import Any

from labsession._version import __version__
from labsession.core.atomic import atomic_write_json
from labsession.errors import SessionError
from labsession.recording._records import LabelEvent, StreamInfo

__all__ = [
    "LABELS_FILE",
    "META_FILE",
    "SCHEMA_VERSION",
    "ZIP_SUFFIX",
    "build_meta",
    "check_stream_name",
    "data_array_name",
    "new_session_folder",
    "parse_labels",
    "parse_meta",
    "timestamps_array_name",
    "write_labels",
    "write_meta",
    "zip_prefix",
]

META_FILE = "meta.json"
LABELS_FILE = "labels.json"
ZIP_SUFFIX = ".session.zip"
#: ``meta.json`` schema written here (MyoGestic's current one).
SCHEMA_VERSION = 3

_STREAM_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_TS_SUFFIX = "_timestamps"


def check_stream_name(name: str) -> str:
    """Return ``name`` if it can name a stream's arrays on disk, else raise ``ValueError``."""
    if not isinstance(name, str) or not _STREAM_NAME.match(name) or name.endswith(".zarr"):
        raise ValueError(
            f"stream name {name!r} is not usable as a file name: use letters, digits, "
            f"'_', '.' and '-', starting with a letter or digit"
        )
    if name.endswith(_TS_SUFFIX):
        raise ValueError(
            f"stream name {name!r} ends with {_TS_SUFFIX!r}, which would clash with the "
            f"timestamps array of stream {name[: -len(_TS_SUFFIX)]!r}"
        )
    return name


def data_array_name(stream: str) -> str:
    """Folder (or zip prefix) of a stream's sample array."""
    return f"{stream}.zarr"


def timestamps_array_name(stream: str) -> str:
    """Folder (or zip prefix) of a stream's timestamp array."""
    return f"{stream}{_TS_SUFFIX}.zarr"


def new_session_folder(base_path: str | Path) -> Path:
    """Create and return ``base_path/YYYY-MM-DD_HH-MM-SS_<8 hex>`` (never an existing folder)."""
    base = Path(base_path)
    base.mkdir(parents=True, exist_ok=True)
    while True:
        name = f"{time.strftime('%Y-%m-%d_%H-%M-%S')}_{secrets.token_hex(4)}"
        folder = base / name
        try:
            folder.mkdir()
        except FileExistsError:  # pragma: no cover - 1 in 4e9 per second
            continue
        return folder


def build_meta(
    *,
    app_name: str,
    created: str,
    streams: dict[str, StreamInfo],
    class_names: list[str] | None,
) -> dict[str, Any]:
    """Return the ``meta.json`` content (MyoGestic's keys plus the writer's version)."""
    meta: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "app_name": app_name,
        "created": created,
        "streams": {name: info.to_meta() for name, info in streams.items()},
        "writer": f"labsession {__version__}",
    }
    if class_names is not None:
        meta["class_names"] = list(class_names)
    return meta


def write_meta(folder: Path, meta: dict[str, Any]) -> None:
    """Write ``meta.json`` atomically."""
    atomic_write_json(folder / META_FILE, meta)


def write_labels(folder: Path, labels: list[LabelEvent]) -> None:
    """Write ``labels.json`` atomically (the list in time order)."""
    atomic_write_json(folder / LABELS_FILE, [event.to_dict() for event in labels])


def parse_meta(raw: bytes | str, *, where: str) -> dict[str, Any]:
    """Parse and check ``meta.json``; raise :class:`SessionError` naming ``where`` if it is bad."""
    try:
        meta = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise SessionError(f"{where}: meta.json is not valid JSON ({exc})") from exc
    if not isinstance(meta, dict) or not isinstance(meta.get("streams", {}), dict):
        raise SessionError(f"{where}: meta.json must be an object with a 'streams' object")
    try:
        meta["streams"] = {
            check_stream_name(name): StreamInfo.from_meta(entry)
            for name, entry in meta.get("streams", {}).items()
        }
    except (KeyError, TypeError, ValueError) as exc:
        raise SessionError(f"{where}: meta.json has a bad stream entry ({exc})") from exc
    return meta


def parse_labels(raw: bytes | str | None, *, where: str) -> list[LabelEvent]:
    """Parse ``labels.json`` (``None`` = absent = no labels); raise :class:`SessionError` if bad."""
    if raw is None:
        return []
    try:
        entries = json.loads(raw)
        return [LabelEvent.from_dict(entry) for entry in entries]
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, ValueError) as exc:
        raise SessionError(f"{where}: labels.json is not a list of labels ({exc})") from exc


def zip_prefix(path: Path, names: set[str]) -> str:
    """Where the session sits inside the archive: the root, or one top-level folder."""
    if META_FILE in names:
        return ""
    tops = {n.split("/", 1)[0] for n in names if "/" in n}
    candidates = [t for t in tops if f"{t}/{META_FILE}" in names]
    if len(candidates) == 1:
        return candidates[0] + "/"
    raise SessionError(
        f"{path}: not a session archive: no meta.json at its root or under a single top folder"
    )
