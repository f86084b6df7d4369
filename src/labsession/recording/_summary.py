"""A plain-data summary of a session, for ``labsession info`` and for scripts."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Any

from labsession.recording._store import open_session_store

__all__ = ["session_summary"]


def _size_on_disk(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def session_summary(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Describe a session folder or zip: streams, label counts per class, size, packed or not.

    Returns
    -------
    dict
        ``{"path", "packed", "size_bytes", "name", "app_name", "created", "class_names",
        "streams": {name: {"fs", "n_channels", "dtype", "n_samples", "duration_s",
        "first_timestamp", "last_timestamp"}}, "labels": {class name: count}, "n_labels"}``;
        ``name`` is the session's name (``Session(name=...)``) or None.
    """
    path = Path(path)
    with open_session_store(path) as store:
        streams = {}
        for name in store.stream_names:
            info = store.stream_info(name)
            n = store.n_samples(name)
            first = float(store.read_rows(name, 0, 1, timestamps=True)[0]) if n else None
            last = float(store.read_rows(name, n - 1, n, timestamps=True)[0]) if n else None
            streams[name] = {
                "fs": info.fs,
                "n_channels": info.n_channels,
                "dtype": info.dtype.name,
                "n_samples": n,
                "duration_s": n / info.fs,
                "first_timestamp": first,
                "last_timestamp": last,
            }
        counts = Counter(store.class_name(e.class_index) for e in store.label_track)
        return {
            "path": str(path),
            "packed": store.is_packed,
            "size_bytes": _size_on_disk(path),
            "name": store.name,
            "app_name": store.app_name,
            "created": store.meta.get("created"),
            "class_names": store.class_names,
            "streams": streams,
            "labels": dict(counts),
            "n_labels": len(store.label_track),
        }
