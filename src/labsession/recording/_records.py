"""Plain records of a recording session: label events, stream descriptions and trials."""

from __future__ import annotations

import math
import operator
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from labsession.errors import SessionError
from labsession.recording._schema import (
    MAX_CHANNELS,
    MAX_CHUNK_BYTES,
    MAX_CLASS_INDEX,
    MAX_FS,
    MISSING,
    FieldError,
    check_dtype,
    check_int,
    check_number,
    check_str,
    check_str_list,
    field_message,
    shown,
)

__all__ = [
    "UNLABELLED",
    "LabelEvent",
    "Recording",
    "StreamInfo",
    "check_append",
    "label_columns",
    "label_fields",
    "labels_from_columns",
    "sorted_labels",
]

#: Class index of a label that marks "no class" (e.g. a pause); iterators skip it.
UNLABELLED = -1

_SUPPORTED_KINDS = "biuf"


@dataclass(frozen=True, order=True, slots=True)
class LabelEvent:
    """One entry of a session's label track: "from time ``timestamp`` on, class ``class_index``".

    Parameters
    ----------
    timestamp
        Seconds on the LSL clock (``labsession.core.clock.local_clock``), finite.
    class_index
        Index into the session's ``class_names``; ``-1`` (``UNLABELLED``) marks a pause. An
        integer in ``[-1, 2**31 - 1]`` (an integral float such as ``2.0`` is taken as ``2``).

    Raises
    ------
    SessionError
        For a value ``labels.json`` could not hold (its readers refuse it), naming the key and
        the value: ``label class_index must be an integer in [-1, 2147483647], got 2147483648``.
    """

    timestamp: float
    class_index: int

    def __post_init__(self) -> None:
        # The checks labels.json gets when read: a label made here can always be read back.
        index, timestamp = self.class_index, self.timestamp
        if isinstance(timestamp, np.ndarray) and timestamp.ndim == 0:
            timestamp = timestamp.item()  # np.array(4.0), as NumPy reductions give
        if isinstance(index, np.ndarray) and index.ndim == 0:
            index = index.item()
        if isinstance(index, float | np.floating) and float(index).is_integer():
            index = int(index)  # 2.0 is class 2
        try:
            timestamp = check_number(timestamp, "timestamp")
            index = check_int(index, "class_index", UNLABELLED, MAX_CLASS_INDEX)
        except FieldError as exc:
            raise SessionError(f"label {exc}") from None
        object.__setattr__(self, "timestamp", timestamp)
        object.__setattr__(self, "class_index", index)

    def to_dict(self) -> dict[str, Any]:
        """Return the ``labels.json`` form ``{"timestamp": ..., "class_index": ...}``."""
        return {"timestamp": self.timestamp, "class_index": self.class_index}

    @classmethod
    def from_dict(cls, entry: Any) -> LabelEvent:
        """Build from a ``labels.json`` entry ``{"timestamp": float, "class_index": int}``.

        Types are checked as JSON gives them: ``timestamp`` a finite number, ``class_index`` an
        integer in ``[-1, 2**31 - 1]`` (not ``1.7``, not ``true``); other keys are ignored.

        Raises
        ------
        ValueError
            Naming the key and the value found, e.g. ``class_index must be an integer in
            [-1, 2147483647], got 1.7``.
        """
        return cls._checked(*label_fields(entry))

    @classmethod
    def _checked(cls, timestamp: float, class_index: int) -> LabelEvent:
        """From a finite float and an int in range, already checked (no checks: fast)."""
        event = object.__new__(cls)
        _SET_TIMESTAMP(event, timestamp)
        _SET_CLASS_INDEX(event, class_index)
        return event


# The slots' own setters: what the frozen dataclass's __init__ does, without the checks.
_SET_TIMESTAMP = LabelEvent.timestamp.__set__  # type: ignore[attr-defined]
_SET_CLASS_INDEX = LabelEvent.class_index.__set__  # type: ignore[attr-defined]


def label_fields(entry: Any) -> tuple[float, int]:
    """``(timestamp, class_index)`` of a ``labels.json`` entry, checked as
    :meth:`LabelEvent.from_dict` says (``ValueError`` naming the key and the value)."""
    if not isinstance(entry, dict):
        raise FieldError("", f"must be an object {{timestamp, class_index}}, got {shown(entry)}")
    return (
        check_number(entry.get("timestamp", MISSING), "timestamp"),
        check_int(entry.get("class_index", MISSING), "class_index", UNLABELLED, MAX_CLASS_INDEX),
    )


def label_columns(entries: list[Any]) -> tuple[np.ndarray, np.ndarray]:
    """The ``(n,)`` float64 timestamps and int64 class indices of ``labels.json`` entries,
    each checked as :meth:`LabelEvent.from_dict` says.

    Checked column-wise (entries as labsession and MyoGestic write them never reach a loop in
    Python); the first entry failing a check is then found one by one, for its message.

    Raises
    ------
    ValueError
        Naming the first bad entry (``[3].class_index must be ...``), the key and the value.
    """
    if not entries:
        return np.zeros(0), np.zeros(0, dtype=np.int64)
    if set(map(type, entries)) == {dict}:
        times = list(map(_GET_TIMESTAMP, entries))
        classes = list(map(_GET_CLASS_INDEX, entries))
        # No bool, str or _Overflowed (a float subclass): NumPy would convert them.
        if set(map(type, times)) <= {float, int} and set(map(type, classes)) == {int}:
            try:
                stamps = np.array(times, dtype=np.float64)
                indices = np.array(classes, dtype=np.int64)
            except OverflowError:  # an integer beyond float64 or int64: found below
                pass
            else:
                good = np.isfinite(stamps) & (indices >= UNLABELLED) & (indices <= MAX_CLASS_INDEX)
                if good.all():
                    return stamps, indices
    for i, entry in enumerate(entries):
        try:
            label_fields(entry)
        except ValueError as exc:
            raise ValueError(field_message(exc, f"[{i}]")) from None
    raise AssertionError("an entry failed a column check but passes its own")  # pragma: no cover


_GET_TIMESTAMP = operator.methodcaller("get", "timestamp")
_GET_CLASS_INDEX = operator.methodcaller("get", "class_index")


def labels_from_columns(stamps: np.ndarray, indices: np.ndarray) -> list[LabelEvent]:
    """:class:`LabelEvent` objects of checked columns (:func:`label_columns`), in time order:
    sorted stably (equal timestamps keep their order)."""
    order = np.argsort(stamps, kind="stable")
    new, set_time, set_class = object.__new__, _SET_TIMESTAMP, _SET_CLASS_INDEX
    events = []
    add = events.append
    for t, c in zip(stamps[order].tolist(), indices[order].tolist(), strict=True):
        event = new(LabelEvent)
        set_time(event, t)
        set_class(event, c)
        add(event)
    return events


@dataclass(frozen=True)
class StreamInfo:
    """Shape, rate and sample type of one stream (the same field order as MyoGestic's).

    Parameters
    ----------
    n_channels
        Channel count, fixed for the life of the stream.
    fs
        Nominal sample rate in Hz (> 0).
    dtype
        NumPy dtype of a sample (integer or float); stored in the Zarr array as is.
    channel_names
        Optional one name per channel (a list or tuple; each entry is saved as its ``str``).

    Raises
    ------
    SessionError
        For a value ``meta.json`` could not hold (its readers refuse it), naming the value: a
        channel count outside ``[1, 65536]``, a rate outside ``(0, 1e7]`` Hz, a non-numeric
        dtype, a second of samples over a chunk's limit, or channel names that are a plain
        string, of the wrong count, or not valid Unicode (a lone surrogate).
    """

    n_channels: int
    fs: float
    dtype: np.dtype = field(default=np.dtype("float32"))
    channel_names: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if (
            isinstance(self.n_channels, bool)
            or int(self.n_channels) != self.n_channels
            or not 1 <= self.n_channels <= MAX_CHANNELS
        ):
            raise SessionError(
                f"n_channels must be an integer in [1, {MAX_CHANNELS}], got {self.n_channels!r}"
            )
        if not (math.isfinite(self.fs) and 0 < self.fs <= MAX_FS):
            raise SessionError(f"fs must be a finite rate in (0, {MAX_FS:g}] Hz, got {self.fs!r}")
        dtype = np.dtype(self.dtype)
        if dtype.kind not in _SUPPORTED_KINDS:
            raise SessionError(f"dtype must be a numeric type (int or float), got {dtype}")
        chunk_bytes = max(1, int(self.fs)) * int(self.n_channels) * dtype.itemsize
        if chunk_bytes > MAX_CHUNK_BYTES:
            raise SessionError(
                f"one second of this stream ({int(self.n_channels)} channels at {self.fs:g} Hz, "
                f"{dtype}) is {chunk_bytes} bytes, more than the {MAX_CHUNK_BYTES} bytes of a "
                f"chunk that readers accept"
            )
        object.__setattr__(self, "n_channels", int(self.n_channels))
        object.__setattr__(self, "fs", float(self.fs))
        object.__setattr__(self, "dtype", dtype)
        if self.channel_names is not None:
            object.__setattr__(self, "channel_names", self._checked_names(self.channel_names))

    def _checked_names(self, given: Any) -> tuple[str, ...]:
        """``channel_names`` as a tuple of text that ``meta.json`` can hold (each entry as
        ``str``), one per channel; a string is refused, not split into characters."""
        if isinstance(given, str | bytes):
            raise SessionError(
                f"channel_names must be a list of {self.n_channels} strings, got the string "
                f"{shown(given)}: give a list, one name per channel"
            )
        names = tuple(str(n) for n in given)
        if len(names) != self.n_channels:
            raise SessionError(
                f"channel_names has {len(names)} entries for {self.n_channels} channels"
            )
        try:
            for i, name in enumerate(names):
                check_str(name, f"channel_names[{i}]")
        except FieldError as exc:
            raise SessionError(str(exc)) from None
        return names

    @property
    def chunk_samples(self) -> int:
        """Samples per Zarr chunk: one second of data (at least one sample)."""
        return max(1, int(self.fs))

    def to_meta(self) -> dict[str, Any]:
        """Return the ``meta.json`` entry of this stream."""
        return {
            "n_channels": self.n_channels,
            "fs": self.fs,
            "dtype": self.dtype.name,
            "channel_names": list(self.channel_names) if self.channel_names else None,
        }

    @classmethod
    def from_meta(cls, entry: Any) -> StreamInfo:
        """Build from a ``meta.json`` stream entry, checking each value's JSON type.

        ``n_channels`` an integer in ``[1, 65536]``; ``fs`` a finite number in ``(0, 1e7]``;
        ``dtype`` (default ``"float32"``) a name in
        :data:`~labsession.recording._schema.NUMERIC_DTYPES`; ``channel_names`` absent, null,
        or a list of ``n_channels`` strings. Other keys (MyoGestic's ``channel_grids``, ...)
        are ignored.

        Raises
        ------
        ValueError
            Starting with the key, naming the value found, e.g. ``n_channels must be an
            integer in [1, 65536], got 1e400``.
        """
        if not isinstance(entry, dict):
            raise FieldError("", f"must be an object {{n_channels, fs, dtype}}, got {shown(entry)}")
        n_channels = check_int(entry.get("n_channels", MISSING), "n_channels", 1, MAX_CHANNELS)
        fs = check_number(entry.get("fs", MISSING), "fs", gt=0, le=MAX_FS)
        dtype = check_dtype(entry.get("dtype", "float32"), "dtype")
        names = entry.get("channel_names")
        if names is not None:
            names = check_str_list(names, "channel_names")
            if len(names) != n_channels:
                raise FieldError(
                    "channel_names",
                    f"must have n_channels = {n_channels} entries, got {len(names)}",
                )
        return cls(n_channels=n_channels, fs=fs, dtype=dtype, channel_names=names)


def check_append(
    stream: str, info: StreamInfo, data: object, ts: object
) -> tuple[np.ndarray, np.ndarray]:
    """Check one append to stream ``stream`` and return owned copies.

    Parameters
    ----------
    stream
        The stream's name (in messages).
    info
        The stream's description.
    data
        ``(n_samples, info.n_channels)`` samples of a dtype castable (``same_kind``) to
        ``info.dtype``.
    ts
        ``(n_samples,)`` finite timestamps (s).

    Returns
    -------
    tuple of ndarray
        C-contiguous ``data`` in ``info.dtype`` and ``ts`` in float64, both new arrays.

    Raises
    ------
    ValueError
        Naming the stream and the shapes or dtype.
    """
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


@dataclass(frozen=True, eq=False)
class Recording:
    """One labelled trial cut from a session.

    Attributes
    ----------
    class_index
        The label's class.
    class_name
        Its name from the session's ``class_names`` (or the index as text when unnamed).
    data
        ``(n_channels, n_samples)`` samples, channels first.
    ts
        ``(n_samples,)`` float64 timestamps in seconds.
    """

    class_index: int
    class_name: str
    data: np.ndarray
    ts: np.ndarray


def sorted_labels(labels: Sequence[LabelEvent]) -> list[LabelEvent]:
    """Return labels in time order (stable: equal timestamps keep their order)."""
    return sorted(labels, key=lambda e: e.timestamp)
