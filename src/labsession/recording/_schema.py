"""Limits and value checks for the small JSON files of a session, read from untrusted disks.

A session's ``meta.json``, ``labels.json`` and each array's ``zarr.json`` may be damaged,
hand-edited or hostile. Readers load them through :func:`load_json` after checking their size
against the caps below (before reading a byte), and check each value with the ``check_*``
helpers, which raise :class:`FieldError` (a ``ValueError``) with the key and the value as
found::

    n_channels must be an integer in [1, 65536], got 1e400

Callers put the key under its path (:func:`field_message`), prefix the file and raise
:class:`~labsession.errors.SessionError`.
Every cap is far above what a recording writes, so no real session meets one.
"""

from __future__ import annotations

import json
import math
import numbers
import reprlib
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from labsession.core.messages import brief

__all__ = [
    "ARRAY_META_MAX_BYTES",
    "LABELS_MAX_BYTES",
    "LABELS_MAX_JSON_ITEMS",
    "MAX_CHANNELS",
    "MAX_CHUNK_BYTES",
    "MAX_CHUNK_ROWS",
    "MAX_CLASS_INDEX",
    "MAX_FS",
    "MAX_LABELS",
    "MAX_MEMBER_BYTES",
    "META_MAX_BYTES",
    "MISSING",
    "NUMERIC_DTYPES",
    "ArrayLayout",
    "FieldError",
    "brief",
    "check_dtype",
    "check_int",
    "check_number",
    "check_str",
    "check_str_list",
    "check_stream_layout",
    "field_message",
    "load_json",
    "shown",
]

#: Largest ``meta.json`` read (bytes; channel names of 65,536 channels in a few streams fit,
#: and the largest parses in a fraction of a second); a bigger one is refused unread.
META_MAX_BYTES = 4 * 2**20
#: Most labels a ``labels.json`` may hold: a label every 2 s for 27 hours. With the two caps
#: below it bounds what opening a session costs: the largest file accepted opens in well under
#: a second (about 0.15 s of CPU here) and 50 MB.
MAX_LABELS = 50_000
#: Largest ``labels.json`` read (bytes): :data:`MAX_LABELS` labels as labsession and MyoGestic
#: write them (indented, about 70 bytes each) fit.
LABELS_MAX_BYTES = 4 * 2**20
#: Most JSON values a ``labels.json`` may hold, counted before it is parsed as its commas,
#: ``[`` and ``{`` (a label as written takes 3, one more for each extra key): bounds the
#: objects parsing creates, whatever the file holds.
LABELS_MAX_JSON_ITEMS = 4 * MAX_LABELS
#: Largest ``zarr.json`` (or Zarr v2 ``.zarray``/``.zattrs``) of an array read (bytes).
ARRAY_META_MAX_BYTES = 2**20
#: Most channels a stream may have.
MAX_CHANNELS = 65536
#: Highest sample rate a stream may have (Hz).
MAX_FS = 1e7
#: Highest class index of a label (it fits an int32 wherever class indices are stored).
MAX_CLASS_INDEX = 2**31 - 1
#: Most rows in one chunk of a stream's array (one second at :data:`MAX_FS`).
MAX_CHUNK_ROWS = int(MAX_FS)
#: Most bytes one decoded chunk of a stream's array may hold.
MAX_CHUNK_BYTES = 256 * 2**20
#: Largest member of a ``.session.zip`` (bytes): a chunk of :data:`MAX_CHUNK_BYTES` that
#: compression made larger (zstd adds at most 1/128 plus a header). Members are read whole.
MAX_MEMBER_BYTES = MAX_CHUNK_BYTES + MAX_CHUNK_BYTES // 128 + 2**16

#: Sample types a stream may have (``meta.json`` ``dtype``, the names NumPy gives them).
NUMERIC_DTYPES = frozenset(
    ["bool", "float16", "float32", "float64"]
    + [f"{sign}int{bits}" for sign in ("", "u") for bits in (8, 16, 32, 64)]
)

#: Stands for a key absent from its object (``entry.get(key, MISSING)``).
MISSING: Any = type("Missing", (), {"__repr__": lambda self: "missing"})()

_SHOWN = reprlib.Repr()
_SHOWN.maxlevel, _SHOWN.maxstring, _SHOWN.maxother = 2, 40, 40
_SHOWN.maxlist = _SHOWN.maxdict = _SHOWN.maxtuple = 4


def shown(value: Any) -> str:
    """A short ``repr`` of a value read from a file (truncated; bounded depth and length)."""
    return _SHOWN.repr(value)


class FieldError(ValueError):
    """A bad value in a JSON object: ``key`` (``""`` for the object itself) and the problem."""

    def __init__(self, key: str, problem: str):
        super().__init__(f"{key} {problem}" if key else problem)
        self.key, self.problem = key, problem


def field_message(exc: ValueError, parent: str) -> str:
    """``exc``'s message with its key under ``parent`` (``streams.emg`` + ``fs`` ->
    ``streams.emg.fs must be ...``); other errors follow ``parent: ``."""
    if not parent:
        return str(exc)
    if isinstance(exc, FieldError):
        sep = "" if exc.key.startswith("[") else "."
        key = f"{parent}{sep}{exc.key}" if exc.key else parent
        return f"{key} {exc.problem}"
    return f"{parent}: {exc}"


class _Overflowed(float):
    """A JSON number too large for a float: ``inf`` that shows as it was written (``1e400``)."""

    text: str

    def __new__(cls, text: str) -> _Overflowed:
        number = super().__new__(cls, text)
        number.text = text
        return number

    def __repr__(self) -> str:
        return self.text

    __str__ = __repr__


#: Numbers too large for a float kept as written, per file (for messages); later ones are
#: plain ``inf``: a file of a million ``1e400`` parses as fast as one of ``1.5``.
_OVERFLOWED_KEPT = 64


def _float_parser() -> Callable[[str], float]:
    kept = 0

    def parse_float(text: str) -> float:
        nonlocal kept
        number = float(text)
        if math.isinf(number) and kept < _OVERFLOWED_KEPT:
            kept += 1
            return _Overflowed(text)
        return number

    return parse_float


def load_json(raw: bytes | str, *, as_written: bool = True) -> Any:
    """Parse JSON text from a file; ``ValueError`` (one line) if it is not valid JSON.

    Nesting deeper than the interpreter's recursion limit and integers of more than 4300
    digits are refused as invalid; ``NaN`` and ``Infinity`` parse (the value checks refuse
    them where a finite number is due). With ``as_written`` (the default), numbers too large
    for a float show in messages as written (``1e400``); without, they are plain ``inf`` and
    floats parse at the speed of ``json.loads``.
    """
    try:
        return json.loads(raw, parse_float=_float_parser() if as_written else None)
    except RecursionError:
        raise ValueError("nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, too many digits
        raise ValueError(str(exc)) from None


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool | np.bool_)


def check_int(value: Any, key: str, lo: int, hi: int) -> int:
    """``value`` as an int if it is an integer (not a bool, not ``1.0``) in ``[lo, hi]``."""
    if not (_is_int(value) and lo <= value <= hi):
        raise FieldError(key, f"must be an integer in [{lo}, {hi}], got {shown(value)}")
    return int(value)


def check_number(
    value: Any, key: str, *, gt: float | None = None, le: float | None = None
) -> float:
    """``value`` as a float if it is a finite number (not a bool) with ``gt < value <= le``."""
    try:
        ok = (
            isinstance(value, numbers.Real)
            and not isinstance(value, bool | np.bool_)
            and math.isfinite(value)
            and (gt is None or value > gt)
            and (le is None or value <= le)
        )
    except OverflowError:  # an integer too large for a float
        ok = False
    if not ok:
        bounds = ([] if gt is None else [f"> {gt:g}"]) + ([] if le is None else [f"<= {le:g}"])
        need = f"a finite number {' and '.join(bounds)}" if bounds else "a finite number"
        raise FieldError(key, f"must be {need}, got {shown(value)}")
    return float(value)


def check_str(value: Any, key: str) -> str:
    """``value`` if it is a string of valid Unicode (no lone surrogate, so it can be shown)."""
    if not isinstance(value, str):
        raise FieldError(key, f"must be a string, got {shown(value)}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise FieldError(key, f"must be valid Unicode text, got {shown(value)}") from None
    return value


def check_str_list(value: Any, key: str) -> list[str]:
    """``value`` as a new list if it is a list of strings."""
    if not isinstance(value, list | tuple):
        raise FieldError(key, f"must be a list of strings, got {shown(value)}")
    return [check_str(item, f"{key}[{i}]") for i, item in enumerate(value)]


def check_dtype(value: Any, key: str) -> np.dtype:
    """The native NumPy dtype named ``value``, one of :data:`NUMERIC_DTYPES`."""
    if not (isinstance(value, str) and value in NUMERIC_DTYPES):
        raise FieldError(
            key, f"must be one of {', '.join(sorted(NUMERIC_DTYPES))}, got {shown(value)}"
        )
    return np.dtype(value)


def _chunks_ok(chunks: tuple[int, ...], itemsize: int) -> bool:
    return (
        len(chunks) > 0
        and all(isinstance(c, int) and c >= 1 for c in chunks)
        and chunks[0] <= MAX_CHUNK_ROWS
        and math.prod(chunks) * itemsize <= MAX_CHUNK_BYTES
    )


class ArrayLayout(NamedTuple):
    """What is checked of one array of a stream against ``meta.json``.

    Built from an opened Zarr array (:meth:`of`) or from its ``zarr.json`` alone (the session
    list, which never opens Zarr).
    """

    #: Folder (or zip prefix) of the array, e.g. ``emg.zarr``.
    name: str
    shape: tuple[int, ...]
    #: The element type, or None if it is no NumPy type (then ``dtype_text`` says what it is).
    dtype: np.dtype | None
    dtype_text: str
    #: The chunk shape, and the shard shape if the array is sharded.
    chunk_shapes: tuple[tuple[int, ...], ...]

    @classmethod
    def of(cls, array: Any, name: str) -> ArrayLayout:
        """The layout of an opened Zarr array."""
        dtype = np.dtype(array.dtype)
        shards = getattr(array, "shards", None)
        chunk_shapes = (tuple(array.chunks),) + (() if shards is None else (tuple(shards),))
        return cls(name, tuple(array.shape), dtype, str(dtype), chunk_shapes)


def check_stream_layout(
    n_channels: int, dtype: np.dtype, data: ArrayLayout, ts: ArrayLayout
) -> None:
    """Check a stream's two arrays against its ``meta.json`` entry.

    ``data`` must be ``(n_samples, n_channels)`` of the stream's ``dtype`` (byte order aside),
    ``ts`` ``(n_samples,)`` of floats (the two lengths may differ after a crash), and every
    chunk (and shard) of both 1 to :data:`MAX_CHUNK_ROWS` rows and at most
    :data:`MAX_CHUNK_BYTES` bytes. Raises ``ValueError`` naming the array and both values.
    """
    if len(data.shape) != 2 or data.shape[1] != n_channels:
        raise ValueError(
            f"{data.name} has shape {data.shape}, but meta.json gives the stream "
            f"{n_channels} channels: expected (n_samples, {n_channels})"
        )
    if len(ts.shape) != 1:
        raise ValueError(f"{ts.name} has shape {ts.shape}: expected (n_samples,)")
    if data.dtype is None or (data.dtype.kind, data.dtype.itemsize) != (dtype.kind, dtype.itemsize):
        raise ValueError(
            f"{data.name} holds {data.dtype_text}, but meta.json gives the stream dtype {dtype}"
        )
    if ts.dtype is None or ts.dtype.kind != "f":
        raise ValueError(f"{ts.name} holds {ts.dtype_text}: expected float64 timestamps")
    for layout in (data, ts):
        for chunks in layout.chunk_shapes:
            if not _chunks_ok(chunks, layout.dtype.itemsize):
                raise ValueError(
                    f"{layout.name} has chunks of {chunks}: expected 1 to {MAX_CHUNK_ROWS} "
                    f"rows and at most {MAX_CHUNK_BYTES} bytes per chunk"
                )
