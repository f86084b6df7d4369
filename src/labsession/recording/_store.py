"""Read-only sessions from a folder or a ``.session.zip``: :func:`open_session_store`."""

from __future__ import annotations

import logging
import os
import stat
import zipfile
from pathlib import Path

import zarr.storage

from labsession.errors import SessionError
from labsession.recording._arrays import open_stream_arrays
from labsession.recording._layout import (
    LABELS_FILE,
    META_FILE,
    ZIP_SUFFIX,
    parse_labels,
    parse_meta,
    zip_prefix,
)
from labsession.recording._reader import SessionReader
from labsession.recording._records import sorted_labels

__all__ = ["SessionStore", "open_session_store"]

log = logging.getLogger(__name__)


def _special_kind(mode: int) -> str:
    kinds = {
        stat.S_ISFIFO: "a named pipe",
        stat.S_ISSOCK: "a socket",
        stat.S_ISCHR: "a character device",
        stat.S_ISBLK: "a block device",
    }
    return next((name for test, name in kinds.items() if test(mode)), "not a regular file")


class SessionStore(SessionReader):
    """A recorded session opened read-only (folder or ``.session.zip``).

    Build it with :func:`open_session_store`. Reading never changes anything on disk. Close it
    (or use it as a context manager) to release the archive handle.
    """

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)
        self._zip_store: zarr.storage.ZipStore | None = None
        try:
            mode = self.path.stat().st_mode
        except FileNotFoundError:
            raise SessionError(f"{self.path}: no such session folder or archive") from None
        except OSError as exc:
            raise SessionError(f"{self.path}: cannot be read ({exc.strerror})") from exc
        if not (stat.S_ISDIR(mode) or stat.S_ISREG(mode)):
            # A FIFO or a device would block the first read forever.
            raise SessionError(
                f"{self.path}: not a session folder or archive but a special file "
                f"({_special_kind(mode)}); a session is a folder or a .session.zip"
            )
        if self.path.is_dir():
            meta_raw, labels_raw, opener = self._open_folder()
        elif zipfile.is_zipfile(self.path):
            meta_raw, labels_raw, opener = self._open_zip()
        else:
            kind = (
                "a .session.zip that is corrupt or truncated"
                if self.path.name.endswith(ZIP_SUFFIX)
                else "a session"
            )
            raise SessionError(
                f"{self.path}: not {kind} (expected a session folder or a .session.zip)"
            )
        where = str(self.path)
        meta = parse_meta(meta_raw, where=where)
        self.meta = {k: v for k, v in meta.items() if k != "streams"}
        self.app_name: str = str(meta.get("app_name", ""))
        self.class_names = [str(n) for n in meta.get("class_names") or []]
        self._infos = dict(meta["streams"])
        self._labels = sorted_labels(parse_labels(labels_raw, where=where))
        self.stores, self.ts_stores = {}, {}
        for name in self._infos:
            try:
                self.stores[name], self.ts_stores[name] = opener(name)
            except Exception as exc:
                self.close()
                raise SessionError(
                    f"{self.path}: stream {name!r} is listed in meta.json but its arrays cannot "
                    f"be opened ({type(exc).__name__}: {exc})"
                ) from exc

    def _open_folder(self):
        meta_file = self.path / META_FILE
        if not meta_file.is_file():
            raise SessionError(f"{self.path}: not a session folder (no {META_FILE})")
        labels_file = self.path / LABELS_FILE
        labels_raw = labels_file.read_bytes() if labels_file.is_file() else None
        folder = self.path
        return (
            meta_file.read_bytes(),
            labels_raw,
            lambda name: open_stream_arrays(name, folder=folder),
        )

    def _open_zip(self):
        try:
            with zipfile.ZipFile(self.path) as zf:
                names = set(zf.namelist())
                prefix = zip_prefix(self.path, names)
                meta_raw = zf.read(prefix + META_FILE)
                labels_name = prefix + LABELS_FILE
                labels_raw = zf.read(labels_name) if labels_name in names else None
        except (zipfile.BadZipFile, EOFError, OSError) as exc:
            raise SessionError(
                f"{self.path}: the .session.zip is corrupt or truncated ({exc})"
            ) from exc
        self._zip_store = zarr.storage.ZipStore(self.path, mode="r")
        store = self._zip_store
        return (
            meta_raw,
            labels_raw,
            lambda name: open_stream_arrays(name, store=store, prefix=prefix),
        )

    @property
    def is_packed(self) -> bool:
        """True for a ``.session.zip``, False for a folder."""
        return self._zip_store is not None or not self.path.is_dir()

    def close(self) -> None:
        """Release the archive handle (safe to call twice)."""
        store, self._zip_store = self._zip_store, None
        if store is not None:
            try:
                store.close()
            except Exception:
                log.debug("closing %s", self.path, exc_info=True)

    def __enter__(self) -> SessionStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        streams, labels = self.stream_names, len(self._labels)
        return f"SessionStore({str(self.path)!r}, streams={streams}, labels={labels})"


def open_session_store(path: str | os.PathLike[str]) -> SessionStore:
    """Open a session folder or ``.session.zip`` read-only.

    Sessions written by MyoGestic and by labsession open alike; archives whose members sit under
    one top-level folder are accepted too.

    Raises
    ------
    SessionError
        If the path is missing, is not a session, lacks ``meta.json``, or is a corrupt or
        truncated archive. The message names the path and the problem.

    Examples
    --------
    >>> with open_session_store(
    ...     "sessions/2026-05-17_14-23-05_3f9a0c1e.session.zip"
    ... ) as s:  # doctest: +SKIP
    ...     data, ts = s.get_continuous("emg")
    """
    return SessionStore(path)
