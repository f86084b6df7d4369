"""A row of the session list: what it shows of one session, and its JSON form for the cache.

:class:`SessionRow` (with one :class:`StreamSummary` per stream) is what
:func:`labsession.widgets._session_files.read_row` reads from a session's small files and what
:mod:`labsession.widgets._session_cache` keeps between runs; ``from_dict`` checks every field's
type, so a cache file edited by hand gives an error, never a wrong row.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

__all__ = ["SessionRow", "StreamSummary"]


@dataclass(frozen=True)
class StreamSummary:
    """One stream of a listed session (``n_samples`` from the arrays' shapes)."""

    name: str
    n_channels: int
    fs: float
    n_samples: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields (:meth:`from_dict` gives back an equal summary)."""
        return {
            "name": self.name,
            "n_channels": self.n_channels,
            "fs": self.fs,
            "n_samples": self.n_samples,
        }

    @classmethod
    def from_dict(cls, data: Any) -> StreamSummary:
        """The summary :meth:`to_dict` gave; raises ``TypeError``/``KeyError`` if malformed."""
        return cls(
            _typed(data["name"], str),
            _typed(data["n_channels"], int),
            _typed(data["fs"], float, int),
            _typed(data["n_samples"], int),
        )


@dataclass(frozen=True)
class SessionRow:
    """What the session list shows of one entry of the base folder.

    Attributes
    ----------
    name
        File or folder name (``###session_<name>`` in the GUI).
    path
        The folder or ``.session.zip``.
    packed
        True for a ``.session.zip``.
    created
        Start time, from ``meta.json`` ``created`` or the folder name; ``None`` if neither.
    duration_s
        Samples of the first stream over its rate (``None`` without streams). For a folder the
        shape may count samples of a write cut short by a crash: see ``approximate``.
    approximate
        True for folders, whose arrays may hold a slot or two never written.
    streams
        The streams in ``meta.json`` order.
    class_names
        ``class_names`` of ``meta.json`` (empty if none).
    label_counts
        Labels per class name (class index as text when unnamed); unlabelled (-1) not counted.
    size_bytes
        Bytes on disk (every file of a folder; files that cannot be read are not counted).
    newest_mtime
        Newest modification time (s since the epoch) of the files the stamp covers.
    error
        Why the session cannot be read (``None`` when it can); the other fields are then
        as far as they were read.
    """

    name: str
    path: Path
    packed: bool
    created: datetime | None = None
    duration_s: float | None = None
    approximate: bool = False
    streams: tuple[StreamSummary, ...] = ()
    class_names: tuple[str, ...] = ()
    label_counts: dict[str, int] = field(default_factory=dict)
    size_bytes: int = 0
    newest_mtime: float = 0.0
    error: str | None = None

    @property
    def n_labels(self) -> int:
        """Labels of a class (unlabelled ones not counted)."""
        return sum(self.label_counts.values())

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields: :meth:`from_dict` gives back an equal row (the path as text, the
        start time in ISO format, tuples as lists)."""
        return {
            "name": self.name,
            "path": os.fspath(self.path),
            "packed": self.packed,
            "created": None if self.created is None else self.created.isoformat(),
            "duration_s": self.duration_s,
            "approximate": self.approximate,
            "streams": [stream.to_dict() for stream in self.streams],
            "class_names": list(self.class_names),
            "label_counts": dict(self.label_counts),
            "size_bytes": self.size_bytes,
            "newest_mtime": self.newest_mtime,
            "error": self.error,
        }

    @classmethod
    def from_dict(cls, data: Any) -> SessionRow:
        """The row :meth:`to_dict` gave (read back from JSON); every field's type is checked,
        and a malformed one raises ``TypeError``, ``KeyError`` or ``ValueError``."""
        created = _typed(data["created"], str, type(None))
        counts = _typed(data["label_counts"], dict)
        return cls(
            name=_typed(data["name"], str),
            path=Path(_typed(data["path"], str)),
            packed=_typed(data["packed"], bool),
            created=None if created is None else datetime.fromisoformat(created),
            duration_s=_typed(data["duration_s"], float, int, type(None)),
            approximate=_typed(data["approximate"], bool),
            streams=tuple(StreamSummary.from_dict(s) for s in _typed(data["streams"], list)),
            class_names=tuple(_typed(n, str) for n in _typed(data["class_names"], list)),
            label_counts={_typed(k, str): _typed(v, int) for k, v in counts.items()},
            size_bytes=_typed(data["size_bytes"], int),
            newest_mtime=_typed(data["newest_mtime"], float, int),
            error=_typed(data["error"], str, type(None)),
        )


def _typed(value: Any, *types: type) -> Any:
    """``value`` if its type is exactly one of ``types`` (as JSON gives them: a bool is no int
    here), else ``TypeError``."""
    if type(value) not in types:
        raise TypeError(f"{value!r} is not {' or '.join(t.__name__ for t in types)}")
    return value
