"""The session writer: record streams and labels to a folder, then pack it into a verified zip."""

from __future__ import annotations

import bisect
import logging
import os
import shutil
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from labsession.core.archive import pack_zip
from labsession.core.clock import local_clock
from labsession.errors import ArchiveError, SessionError
from labsession.recording._arrays import create_stream_arrays, open_stream_arrays, valid_length
from labsession.recording._layout import (
    ZIP_SUFFIX,
    build_meta,
    check_stream_name,
    new_session_folder,
    write_labels,
    write_meta,
)
from labsession.recording._reader import SessionReader
from labsession.recording._records import LabelEvent, StreamInfo
from labsession.recording._store import SessionStore
from labsession.recording._writer import SessionWriter

__all__ = ["Session"]

log = logging.getLogger(__name__)


def _check_append(
    stream: str, info: StreamInfo, data: object, ts: object
) -> tuple[np.ndarray, np.ndarray]:
    """Validate one append and return owned copies in the stream's dtype."""
    data = np.asarray(data)
    ts = np.asarray(ts)
    expected = f"(n_samples, {info.n_channels})"
    if data.ndim != 2 or data.shape[1] != info.n_channels:
        raise ValueError(f"stream {stream!r}: data must have shape {expected}, got {data.shape}")
    if ts.ndim != 1 or ts.shape[0] != data.shape[0]:
        raise ValueError(
            f"stream {stream!r}: timestamps must have shape ({data.shape[0]},) to match data "
            f"{data.shape}, got {ts.shape}"
        )
    if not np.can_cast(data.dtype, info.dtype, casting="same_kind"):
        raise ValueError(
            f"stream {stream!r}: data of dtype {data.dtype} cannot be stored as {info.dtype}"
        )
    if ts.dtype.kind not in "iuf":
        raise ValueError(f"stream {stream!r}: timestamps must be numbers, got dtype {ts.dtype}")
    ts = np.array(ts, dtype=np.float64)
    if not np.isfinite(ts).all():
        raise ValueError(f"stream {stream!r}: timestamps contain NaN or infinity")
    return np.array(data, dtype=info.dtype, order="C"), ts


class Session(SessionReader):
    """Record a session: per-stream Zarr arrays, a label track, ``meta.json``; pack to a zip.

    The folder ``base_path/YYYY-MM-DD_HH-MM-SS_<8 hex>`` is created at once with a ``meta.json``
    that is kept current (every ``init_stream``) and a ``labels.json`` rewritten atomically on
    every label, so a killed process leaves a folder that :func:`open_session_store` reads with
    every label and all samples but the last second; :meth:`attach` finishes such a folder.

    Parameters
    ----------
    base_path
        Parent folder (created if missing).
    app_name
        Written to ``meta.json``; :meth:`save_meta` can change it.
    class_names
        Names of the label classes; :meth:`save_meta` can change them.
    buffer_seconds
        Data per stream held in memory before :meth:`append` blocks (never drops).

    Examples
    --------
    >>> import numpy as np, tempfile
    >>> from labsession.recording import Session, StreamInfo
    >>> with Session(tempfile.mkdtemp()) as session:
    ...     session.init_stream("emg", StreamInfo(n_channels=2, fs=100.0))
    ...     session.append("emg", np.zeros((10, 2), np.float32), np.arange(10) / 100.0)
    ...     session.add_label(0, timestamp=0.0)
    >>> session.n_samples("emg")
    10
    """

    def __init__(
        self,
        base_path: str | os.PathLike[str] = "sessions",
        *,
        app_name: str = "labsession",
        class_names: Sequence[str] | None = None,
        buffer_seconds: float = 30.0,
        _folder: Path | None = None,
    ):
        self.path = _folder if _folder is not None else new_session_folder(base_path)
        self.app_name = app_name
        self.class_names = list(class_names) if class_names is not None else []
        self._has_class_names = class_names is not None
        self.created = time.strftime("%Y-%m-%dT%H:%M:%S")
        self.stores, self.ts_stores, self._infos = {}, {}, {}
        self._labels: list[LabelEvent] = []
        self._label_lock = threading.Lock()
        self._meta_lock = threading.Lock()
        self._closed = False
        self._packed: Path | None = None
        self._writer = SessionWriter(self.path.name, buffer_seconds=buffer_seconds)
        if _folder is None:
            self._write_meta()
            write_labels(self.path, [])

    # -- streams -------------------------------------------------------------------------------
    def init_stream(self, name: str, info: StreamInfo) -> None:
        """Create the arrays of stream ``name`` and record its info in ``meta.json``."""
        self._check_open()
        check_stream_name(name)
        if not isinstance(info, StreamInfo):
            raise TypeError(f"info must be a StreamInfo, got {type(info).__name__}")
        with self._meta_lock:
            if name in self._infos:
                raise ValueError(f"{self.path}: stream {name!r} is already initialised")
            data, ts = create_stream_arrays(self.path, name, info)
            self._writer.add_stream(name, info, data, ts)
            self.stores[name], self.ts_stores[name], self._infos[name] = data, ts, info
        self._write_meta()

    def append(self, name: str, data: np.ndarray, timestamps: np.ndarray) -> None:
        """Queue ``data (n_samples, n_channels)`` with its ``timestamps (n_samples,)``.

        Thread-safe; returns without waiting for the disk (it copies the samples). Blocks only
        when the stream has ``buffer_seconds`` of data waiting, so nothing is ever dropped.

        Raises
        ------
        ValueError
            Naming the stream and the shapes, for wrong shapes, a dtype that cannot be stored
            in the stream's dtype, or non-finite timestamps; nothing is written then.
        """
        if self._closed:
            raise SessionError(f"{self.path}: session is closed; cannot append to {name!r}")
        info = self.stream_info(name)
        data, timestamps = _check_append(name, info, data, timestamps)
        if data.shape[0]:
            self._writer.append(name, data, timestamps)

    def flush(self) -> None:
        """Return once every sample appended so far is on disk."""
        if not self._closed:
            self._writer.flush()

    # -- labels and meta -----------------------------------------------------------------------
    def add_label(self, class_index: int, timestamp: float | None = None) -> LabelEvent:
        """Add a label (``timestamp`` defaults to the LSL clock now); on disk before returning."""
        self._check_open()
        event = LabelEvent(local_clock() if timestamp is None else timestamp, class_index)
        with self._label_lock:
            keys = [e.timestamp for e in self._labels]
            self._labels.insert(bisect.bisect_right(keys, event.timestamp), event)
            write_labels(self.path, self._labels)
        return event

    def save_meta(
        self, app_name: str | None = None, class_names: Sequence[str] | None = None
    ) -> None:
        """Flush, then write ``meta.json`` with the app name and class names."""
        self._check_open()
        if app_name is not None:
            self.app_name = app_name
        if class_names is not None:
            self.class_names = list(class_names)
            self._has_class_names = True
        self.flush()
        self._write_meta()

    def _write_meta(self) -> None:
        with self._meta_lock:
            meta = build_meta(
                app_name=self.app_name,
                created=self.created,
                streams=dict(self._infos),
                class_names=self.class_names if self._has_class_names else None,
            )
            write_meta(self.path, meta)

    # -- reading while recording ---------------------------------------------------------------
    def n_samples(self, name: str) -> int:
        """Samples of stream ``name`` on disk (call :meth:`flush` first to include queued ones)."""
        return super().n_samples(name)

    def get_continuous(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """Flush, then return ``(data (n_samples, n_channels), ts (n_samples,))``."""
        self.flush()
        return super().get_continuous(name)

    # -- finishing -----------------------------------------------------------------------------
    def close(self) -> None:
        """Write everything queued, stop the writer, save meta and labels (idempotent)."""
        if self._closed:
            return
        try:
            self._writer.close()
        finally:
            self._closed = True
        self._write_meta()
        with self._label_lock:
            write_labels(self.path, self._labels)

    def pack_to_zip(self) -> Path:
        """Close, pack the folder into ``<folder>.session.zip``, verify it, remove the folder.

        The zip (ZIP_STORED, members at the archive root, as MyoGestic writes them) is built
        beside the folder under a temporary name, every member's CRC is read back, and the
        session is reopened from it to check meta, labels and every array's shape. Only then is
        it renamed into place and the folder removed. On any failure the folder is kept and no
        partial zip remains.

        Returns
        -------
        Path
            The ``.session.zip``, which is also the new :attr:`path`.
        """
        if self._packed is not None:
            raise SessionError(f"{self.path}: session is already packed")
        self.close()
        expected = {
            name: (self.n_samples(name), info.n_channels) for name, info in self._infos.items()
        }
        folder = self.path
        zip_path = folder.with_name(folder.name + ZIP_SUFFIX)
        if zip_path.exists():
            raise SessionError(f"{zip_path}: already exists; refusing to overwrite it")
        pack_zip(folder, zip_path)
        try:
            self._verify_packed(zip_path, expected)
        except BaseException:
            zip_path.unlink(missing_ok=True)
            raise
        shutil.rmtree(folder)
        self.stores, self.ts_stores = {}, {}
        self._packed = self.path = zip_path
        log.info("packed %s (%d streams, %d labels)", zip_path, len(expected), len(self._labels))
        return zip_path

    def _verify_packed(self, zip_path: Path, expected: dict[str, tuple[int, int]]) -> None:
        with SessionStore(zip_path) as packed:
            if packed.label_track != self._labels:
                raise ArchiveError(f"{zip_path}: labels differ from the recorded ones")
            if packed.stream_names != list(expected):
                raise ArchiveError(f"{zip_path}: streams {packed.stream_names} != {list(expected)}")
            for name, shape in expected.items():
                data, ts = packed.stores[name], packed.ts_stores[name]
                if (packed.n_samples(name), data.shape[1]) != shape or ts.shape[0] != shape[0]:
                    raise ArchiveError(
                        f"{zip_path}: stream {name!r} has shape {data.shape} in the archive, "
                        f"expected {shape}"
                    )

    def _check_open(self) -> None:
        if self._closed:
            raise SessionError(f"{self.path}: session is closed")

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "packed" if self._packed else "closed" if self._closed else "recording"
        return f"Session({str(self.path)!r}, {state}, streams={self.stream_names})"

    # -- recovery ------------------------------------------------------------------------------
    @classmethod
    def attach(cls, folder: str | os.PathLike[str], *, buffer_seconds: float = 30.0) -> Session:
        """Re-open a session folder left by a crashed process, to finish and pack it.

        Removes temporary files of interrupted writes, trims every stream's arrays to the samples
        written with a valid timestamp (logging what was cut), and returns a writable session:
        call :meth:`pack_to_zip` (or keep appending).

        Raises
        ------
        SessionError
            If ``folder`` is not an unpacked session folder.
        """
        folder = Path(folder)
        if not folder.is_dir():
            raise SessionError(f"{folder}: not a session folder (attach needs an unpacked folder)")
        for stale in [*folder.glob(".*.tmp"), *folder.rglob("*.partial")]:
            stale.unlink()
        with SessionStore(folder) as found:
            infos = {name: found.stream_info(name) for name in found.stream_names}
            labels, meta = found.label_track, found.meta
            class_names = found.class_names if "class_names" in meta else None
        session = cls(
            folder.parent,
            app_name=str(meta.get("app_name", "labsession")),
            class_names=class_names,
            buffer_seconds=buffer_seconds,
            _folder=folder,
        )
        session.created = str(meta.get("created", session.created))
        session._labels = labels
        for name, info in infos.items():
            data, ts = open_stream_arrays(name, folder=folder, mode="r+")
            n = valid_length(data, ts)
            if data.shape[0] != n or ts.shape[0] != n:
                log.warning(
                    "%s: stream %r trimmed to %d samples (had %d samples, %d timestamps)",
                    folder,
                    name,
                    n,
                    data.shape[0],
                    ts.shape[0],
                )
                data.resize((n, info.n_channels))
                ts.resize((n,))
            session._writer.add_stream(name, info, data, ts, n_written=n)
            session.stores[name], session.ts_stores[name], session._infos[name] = data, ts, info
        session._write_meta()
        write_labels(folder, labels)
        return session
