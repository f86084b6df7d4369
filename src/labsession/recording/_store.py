"""Read-only sessions from a folder or a ``.session.zip``: :func:`open_session_store`."""

from __future__ import annotations

import logging
import os
import stat
import struct
import zipfile
import zlib
from pathlib import Path
from typing import Any

import zarr.storage

from labsession.core.paths import file_kind
from labsession.errors import SessionError
from labsession.recording._arrays import open_stream_arrays
from labsession.recording._layout import (
    LABELS_FILE,
    META_FILE,
    ZIP_SUFFIX,
    check_small_file,
    check_small_member,
    data_array_name,
    parse_labels,
    parse_meta,
    read_small_file,
    read_small_member,
    timestamps_array_name,
    zip_prefix,
)
from labsession.recording._reader import SessionReader
from labsession.recording._records import StreamInfo
from labsession.recording._schema import (
    ARRAY_META_MAX_BYTES,
    LABELS_MAX_BYTES,
    MAX_MEMBER_BYTES,
    META_MAX_BYTES,
    ArrayLayout,
    brief,
    check_stream_layout,
)

__all__ = ["SessionStore", "open_session_store"]

log = logging.getLogger(__name__)

#: Zarr's metadata files of an array (v3, then v2), read whole when an array is opened.
_ARRAY_META_FILES = ("zarr.json", ".zarray", ".zattrs")
#: What a damaged archive raises while its directory and small members are read.
_ZIP_ERRORS = (
    zipfile.BadZipFile,
    zipfile.LargeZipFile,
    EOFError,
    OSError,
    NotImplementedError,  # an unknown compression method
    RuntimeError,  # a member flagged as encrypted
    ValueError,  # a member name that is not valid UTF-8
    struct.error,
    zlib.error,
)


class SessionStore(SessionReader):
    """A recorded session opened read-only (folder or ``.session.zip``).

    Build it with :func:`open_session_store`. Reading never changes anything on disk. Close it
    (or use it as a context manager) to release the archive handle.

    Attributes
    ----------
    meta
        ``meta.json`` as found (its ``streams`` aside: :meth:`stream_info`).
    app_name, class_names, name, extras, control_space
        From ``meta.json`` (``""``, ``[]``, None, ``{}``, None where absent).
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
                f"({file_kind(mode)}); a session is a folder or a .session.zip"
            )
        if stat.S_ISDIR(mode):
            meta_raw, labels_raw, opener, prefix = self._open_folder()
        elif zipfile.is_zipfile(self.path):
            meta_raw, labels_raw, opener, prefix = self._open_zip()
        elif self.path.name.endswith(ZIP_SUFFIX):
            raise SessionError(
                f"{self.path}: this .session.zip is corrupt or truncated: it does not read as a "
                "zip archive (an interrupted copy or download?)"
            )
        else:
            raise SessionError(
                f"{self.path}: not a session (expected a session folder or a .session.zip)"
            )
        where = str(self.path)
        try:
            meta = parse_meta(meta_raw, where=where, name=prefix + META_FILE)
            self._labels = parse_labels(labels_raw, where=where, name=prefix + LABELS_FILE)
        except BaseException:
            self.close()
            raise
        self.meta = {k: v for k, v in meta.items() if k != "streams"}
        self.app_name: str = meta.get("app_name") or ""
        self.class_names: list[str] = list(meta.get("class_names") or [])
        self.name: str | None = meta.get("name")
        self.extras: dict[str, Any] = dict(meta.get("extras") or {})
        self.control_space: Any = meta.get("control_space")
        self._infos = dict(meta["streams"])
        self.stores, self.ts_stores = {}, {}
        try:
            for name, info in self._infos.items():
                self.stores[name], self.ts_stores[name] = self._open_stream(opener, name, info)
        except BaseException:
            self.close()
            raise

    def _open_stream(self, opener, name: str, info: StreamInfo):
        """Open stream ``name``'s arrays and check them against its ``meta.json`` entry."""
        data_name, ts_name = data_array_name(name), timestamps_array_name(name)
        try:
            data, ts = opener(name)
        except SessionError:
            raise
        except Exception as exc:
            raise SessionError(
                f"{self.path}: stream {name!r} is listed in meta.json but its arrays cannot "
                f"be opened ({brief(exc)})"
            ) from exc
        try:
            check_stream_layout(
                info.n_channels,
                info.dtype,
                ArrayLayout.of(data, data_name),
                ArrayLayout.of(ts, ts_name),
            )
        except ValueError as exc:
            raise SessionError(f"{self.path}: stream {name!r}: {exc}") from None
        except Exception as exc:  # a layout Zarr opens but cannot describe
            raise SessionError(
                f"{self.path}: stream {name!r}: the arrays' layout cannot be read ({brief(exc)})"
            ) from exc
        return data, ts

    def _open_folder(self):
        where = str(self.path)
        folder = self.path
        meta_raw = read_small_file(
            folder / META_FILE, cap=META_MAX_BYTES, where=where, shown=META_FILE
        )
        if meta_raw is None:
            raise SessionError(f"{self.path}: not a session folder (no {META_FILE})")
        labels_raw = read_small_file(
            folder / LABELS_FILE, cap=LABELS_MAX_BYTES, where=where, shown=LABELS_FILE
        )

        def open_arrays(name: str):
            # Zarr reads these whole (and would block on a named pipe): check them first.
            for array in (data_array_name(name), timestamps_array_name(name)):
                for file in _ARRAY_META_FILES:
                    member = f"{array}/{file}"
                    check_small_file(
                        folder / member, cap=ARRAY_META_MAX_BYTES, where=where, shown=member
                    )
            return open_stream_arrays(name, folder=folder)

        return meta_raw, labels_raw, open_arrays, ""

    def _open_zip(self):
        where = str(self.path)
        try:
            with zipfile.ZipFile(self.path) as zf:
                prefix = zip_prefix(self.path, set(zf.namelist()))
                meta_raw, labels_raw = (
                    read_small_member(zf, prefix + file, cap=cap, where=where, shown=prefix + file)
                    for file, cap in ((META_FILE, META_MAX_BYTES), (LABELS_FILE, LABELS_MAX_BYTES))
                )
                # Zarr reads members whole: their declared sizes (which bound the reads) must
                # fit an array's metadata, or the largest chunk (compressed) a stream may have.
                for info in zf.infolist():
                    small = info.filename.rsplit("/", 1)[-1] in _ARRAY_META_FILES
                    check_small_member(
                        zf,
                        info.filename,
                        cap=ARRAY_META_MAX_BYTES if small else MAX_MEMBER_BYTES,
                        where=where,
                        shown=info.filename,
                    )
        except SessionError:
            raise
        except _ZIP_ERRORS as exc:
            raise SessionError(
                f"{self.path}: the .session.zip is corrupt or truncated ({brief(exc)})"
            ) from exc
        if meta_raw is None:  # pragma: no cover - zip_prefix found it
            raise SessionError(f"{self.path}: not a session archive (no {META_FILE})")
        self._zip_store = zarr.storage.ZipStore(self.path, mode="r")
        store = self._zip_store
        return (
            meta_raw,
            labels_raw,
            lambda name: open_stream_arrays(name, store=store, prefix=prefix),
            prefix,
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
