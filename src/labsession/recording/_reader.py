"""Read access shared by the writer (``Session``) and the reader (``SessionStore``)."""

from __future__ import annotations

import operator
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import zarr

from labsession.errors import SessionError
from labsession.recording._chunks import ArrayChunks, valid_rows
from labsession.recording._integrity_record import StreamIntegrity
from labsession.recording._records import LabelEvent, Recording, StreamInfo
from labsession.recording._schema import FieldError, check_number
from labsession.recording._segments import label_segments

__all__ = ["SessionReader"]


class SessionReader:
    """Streams, labels and trials of one session; subclasses fill the attributes.

    Attributes
    ----------
    path
        The session folder or ``.session.zip``.
    stores, ts_stores
        ``{stream: zarr.Array}`` of samples ``(n_samples, n_channels)`` and timestamps
        ``(n_samples,)``. Prefer :meth:`read_rows` and :meth:`get_continuous`, which verify
        every chunk (reading the arrays directly skips the zip CRC check) and trim a crashed
        recording to the samples actually written.
    class_names
        Names of the label classes (``[]`` if the session has none).
    name
        The session's name (``meta.json`` ``name``), or None.
    extras
        JSON facts about the session (``meta.json`` ``extras``, e.g. a force calibration),
        ``{}`` without any.
    control_space
        What the session's controls mean (``meta.json`` ``control_space``, any JSON value, as
        MyoGestic's ``save_meta`` writes it), or None.
    """

    path: Path
    stores: Mapping[str, zarr.Array]
    ts_stores: Mapping[str, zarr.Array]
    class_names: list[str]
    name: str | None
    extras: dict[str, Any]
    control_space: Any
    _infos: dict[str, StreamInfo]
    _labels: list[LabelEvent]

    @property
    def label_track(self) -> list[LabelEvent]:
        """The labels in time order (a copy)."""
        return list(self._labels)

    @property
    def stream_names(self) -> list[str]:
        """Names of the recorded streams."""
        return list(self._infos)

    def _check_stream(self, name: str) -> None:
        if name not in self._infos:
            raise KeyError(
                f"{self.path}: no stream named {name!r}; "
                f"streams here: {sorted(self._infos) or 'none'}"
            )

    def stream_info(self, name: str) -> StreamInfo:
        """Return the :class:`StreamInfo` of stream ``name`` (``KeyError`` lists the streams)."""
        self._check_stream(name)
        return self._infos[name]

    def integrity(self, name: str) -> StreamIntegrity | None:
        """The integrity record of stream ``name`` saved in ``meta.json``, or None without one.

        Sessions written before labsession kept the record (and MyoGestic's) have none; then
        :func:`~labsession.recording.integrity_from_timestamps` computes what the timestamps
        tell (gaps, backward steps, effective rate).

        Raises
        ------
        SessionError
            If the saved record is malformed (naming the key and the value).
        """
        self._check_stream(name)
        records = getattr(self, "meta", {}).get("integrity")
        entry = records.get(name) if isinstance(records, dict) else None
        if entry is None:
            return None
        return StreamIntegrity.from_meta(entry, where=f"{self.path}: meta.json integrity[{name!r}]")

    def n_samples(self, name: str) -> int:
        """Samples of stream ``name`` present with a valid timestamp.

        Bounded by the chunk files that exist, not by the shape ``zarr.json`` declares; after
        a crash mid-write, rows allocated but never written (NaN timestamps) are cut off.

        Raises
        ------
        SessionError
            If the stream's arrays record that it was closed with more rows
            (``labsession.closed_rows``, written by a clean close) than are found: chunks lost
            from its end (naming the array, the rows expected and found, the chunks missing).
        """
        self._check_stream(name)
        n = self._read(
            name,
            lambda: valid_rows(
                self._array_chunks(name, timestamps=False),
                self._array_chunks(name, timestamps=True),
            ),
        )
        self._checked_rows()[name] = n
        return n

    # -- verified reads ------------------------------------------------------------------------
    def _checked_rows(self) -> dict[str, int]:
        """Stream -> rows known to be valid (sessions only grow while read)."""
        return self.__dict__.setdefault("_valid_rows", {})

    def _stored_array(self, name: str, *, timestamps: bool) -> zarr.Array:
        """Stream ``name``'s sample or timestamp array as it is on disk now."""
        return (self.ts_stores if timestamps else self.stores)[name]

    def _array_chunks(self, name: str, *, timestamps: bool) -> ArrayChunks:
        """The verified reader of stream ``name``'s sample or timestamp array (cached)."""
        array = self._stored_array(name, timestamps=timestamps)
        cache: dict[tuple[str, bool], ArrayChunks] = self.__dict__.setdefault("_chunk_readers", {})
        reader = cache.get((name, timestamps))
        if reader is None or reader.array is not array:
            indexes = self.__dict__.setdefault("_zip_indexes", {})
            reader = self._read(
                name,
                lambda: ArrayChunks.open(
                    array,
                    where=str(self.path),
                    stream=name,
                    zip_indexes=indexes,
                    timestamps=timestamps,
                ),
            )
            cache[name, timestamps] = reader
        if not timestamps:
            # A missing sample chunk of an unmarked array reads as fill value only where its
            # timestamps exist (see ArrayChunks).
            reader.timestamps_of_rows = self._array_chunks(name, timestamps=True)
        return reader

    def read_rows(
        self,
        name: str,
        start: int,
        stop: int,
        *,
        timestamps: bool = False,
        channels_first: bool = False,
        dtype: npt.DTypeLike | None = None,
    ) -> np.ndarray:
        """Rows ``[start, stop)`` of stream ``name``, every chunk verified before it is used.

        Each chunk read is checked once: by its zstd content checksum where ``zarr.json``
        promises one (labsession writes one into every chunk), in a folder or a zip; otherwise
        a zip member against the CRC-32 in the archive's directory. Folders written without
        checksums, such as MyoGestic's or those of earlier labsession versions, cannot be
        verified: a flipped bit there is caught only when it breaks the zstd frame. A chunk
        decodes into at most its own size (chunk rows x channels x item size); a frame claiming
        more is refused before anything is allocated.

        Parameters
        ----------
        name
            The stream.
        start, stop
            Rows to read, ``0 <= start <= stop <= n_samples(name)``.
        timestamps
            Read the stream's timestamps (``(n,)`` float64 seconds) instead of its samples.
        channels_first
            Return samples as ``(n_channels, stop - start)`` (C-contiguous) instead of
            ``(stop - start, n_channels)``.
        dtype
            Convert to this dtype (default: the stored one).

        Returns
        -------
        ndarray
            ``(stop - start, n_channels)`` samples (or ``(n_channels, stop - start)`` with
            ``channels_first``), or ``(stop - start,)`` timestamps: a new array.

        Raises
        ------
        KeyError
            No stream ``name`` (the message lists the streams).
        IndexError
            The range is not within ``[0, n_samples(name)]``.
        SessionError
            A chunk is corrupt: it fails its CRC or zstd checksum, does not decode to its size,
            or is too large to read. The message names the session, the stream and the chunk
            key (``emg.zarr/c/3/0``).

        Examples
        --------
        >>> with open_session_store("sessions/a.session.zip") as s:  # doctest: +SKIP
        ...     first_second = s.read_rows("emg", 0, 2048)  # (2048, n_channels)
        """
        self._check_stream(name)
        start, stop = operator.index(start), operator.index(stop)
        if not 0 <= start <= stop:
            raise IndexError(
                f"{self.path}: rows [{start}, {stop}) of stream {name!r}: need 0 <= start <= stop"
            )
        if stop > self._checked_rows().get(name, 0) and stop > self.n_samples(name):
            raise IndexError(
                f"{self.path}: rows [{start}, {stop}) of stream {name!r} are out of range: "
                f"it has {self._checked_rows()[name]} samples"
            )
        chunks = self._array_chunks(name, timestamps=timestamps)
        if channels_first and len(chunks.shape) != 2:
            raise ValueError(f"{self.path}: {name!r} timestamps have no channels to put first")
        rows = self._read(name, lambda: chunks.read(start, stop, channels_first=channels_first))
        return rows if dtype is None else rows.astype(dtype, copy=False)

    def _read(self, name: str, action):
        """Run a read of stream ``name``, turning decoder/archive failures into SessionError."""
        try:
            return action()
        except (SessionError, KeyError):
            raise
        except Exception as exc:
            raise SessionError(
                f"{self.path}: stream {name!r} cannot be read ({type(exc).__name__}: {exc}); "
                f"a chunk file is truncated or corrupt"
            ) from exc

    def get_timestamps(self, name: str) -> np.ndarray:
        """Return the ``(n_samples,)`` float64 timestamps of stream ``name`` (verified reads)."""
        n = self.n_samples(name)
        return self.read_rows(name, 0, n, timestamps=True, dtype=np.float64)

    def get_continuous(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """Return ``(data (n_samples, n_channels), ts (n_samples,))`` of stream ``name``.

        Read with :meth:`read_rows` (every chunk verified).
        """
        n = self.n_samples(name)
        return self.read_rows(name, 0, n), self.read_rows(
            name, 0, n, timestamps=True, dtype=np.float64
        )

    def class_name(self, class_index: int, class_names: list[str] | None = None) -> str:
        """Name of ``class_index`` from ``class_names`` (default: the session's) or its text."""
        names = class_names if class_names is not None else self.class_names
        if 0 <= class_index < len(names):
            return str(names[class_index])
        return str(class_index)

    def get_trials(
        self,
        stream_name: str,
        pre: float = 0.0,
        post: float = 0.0,
        class_names: list[str] | None = None,
    ) -> list[Recording]:
        """Cut stream ``stream_name`` into one :class:`Recording` per label.

        Each trial runs from the sample nearest ``label.timestamp - pre`` to the sample nearest
        the next label (exclusive); the last one to ``timestamp + post`` when ``post > 0``,
        else to the end of the data. Unlabelled (-1) labels are skipped. Only the samples of
        the trials are read.

        Parameters
        ----------
        stream_name
            The stream to cut.
        pre, post
            Seconds (finite, >= 0) before each label and after the last one.
        class_names
            Names for the trials' ``class_name`` (default: the session's ``class_names``; with
            neither, the class index as text).

        Raises
        ------
        SessionError
            A ``pre`` or ``post`` that is negative, NaN, infinite or no number (naming it):
            checked before anything is read.
        """
        for key, value in (("pre", pre), ("post", post)):
            try:
                ok = check_number(value, key) >= 0
            except FieldError:
                ok = False
            if not ok:
                raise SessionError(
                    f"{self.path}: get_trials({stream_name!r}): {key} must be a finite number "
                    f"of seconds >= 0, got {value!r}"
                )
        ts = self.get_timestamps(stream_name)
        trials = []
        for seg in label_segments(ts, self._labels, pre=pre, post=post):
            data = self.read_rows(stream_name, seg.start, seg.stop, channels_first=True)
            trials.append(
                Recording(
                    class_index=seg.label.class_index,
                    class_name=self.class_name(seg.label.class_index, class_names),
                    data=data,
                    ts=ts[seg.start : seg.stop].copy(),
                )
            )
        return trials
