"""The integrity record of one recorded stream, as ``meta.json`` keeps it under ``integrity``.

A :class:`StreamIntegrity` says how far a stream's samples can be trusted: how many arrived, at
what rate against the declared one, where the timestamps jumped (gaps), how often they went
backwards and how the stored stamps were corrected, and when the source disconnected or raised.
:class:`~labsession.recording._integrity.IntegrityTracker` builds it as samples arrive.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from labsession.errors import SessionError

__all__ = ["KEEP_EACH_END", "MESSAGE_CHARS", "StreamIntegrity"]

#: Lists in a record (gaps, disconnects, source errors) keep their first and their last
#: ``KEEP_EACH_END`` entries; the count (``n_gaps``, ...) is always the total.
KEEP_EACH_END = 20
#: Characters of a source error's message kept in the record (longer ones end with "…").
MESSAGE_CHARS = 300
#: Characters of a bad value quoted in a :class:`SessionError` message.
_QUOTE_CHARS = 80

_INT_KEYS = (
    "n_samples",
    "n_gaps",
    "dropped_samples",
    "n_backward_steps",
    "n_repaired",
    "n_unrepaired",
    "n_disconnects",
    "n_source_errors",
)
_SECONDS_KEYS = (
    "nominal_fs",
    "effective_fs",
    "gap_threshold_s",
    "gap_seconds",
    "max_backward_s",
    "max_shift_s",
)
_LISTS = (
    ("gaps", "n_gaps"),
    ("disconnects", "n_disconnects"),
    ("source_errors", "n_source_errors"),
)


@dataclass(frozen=True)
class StreamIntegrity:
    """How complete and orderly one stream's samples and timestamps are (a plain record).

    Times are LSL-clock seconds (:func:`labsession.core.clock.local_clock`), rates Hz.

    Attributes
    ----------
    nominal_fs
        The rate the source declares (0 for an irregular stream).
    n_samples
        Samples received.
    first_timestamp, last_timestamp
        Stamp of the first and of the latest sample as the source gave them (None before any).
    effective_fs
        ``(n_samples - 1) / (last_timestamp - first_timestamp)``: the rate actually delivered
        over the whole record, gaps and disconnects included (0 with fewer than 2 samples).
    gap_threshold_s
        A step between consecutive stamps longer than this is a gap (0: no gap detection, for
        irregular streams).
    n_gaps
        Gaps found.
    gap_seconds
        Their total length (sum of ``end - start``).
    dropped_samples
        Samples estimated missing in them (``round((end - start) * nominal_fs) - 1`` each).
    gaps
        ``(start, end)`` of each kept gap: the stamps either side of the jump; the first and the
        last ``KEEP_EACH_END`` are kept, in the order found.
    n_backward_steps
        Stamps earlier than the one before them, as the source gave them.
    max_backward_s
        The largest of those backward steps (s; 0 if none).
    n_repaired
        Stored stamps that differ from the source's (moved forward to keep the stored stamps
        strictly increasing; see ``IntegrityTracker``).
    max_shift_s
        The largest such move (s): every stored stamp is within this of the source's.
    n_unrepaired
        Backward steps too large to repair, stored as the source gave them.
    n_disconnects
        Times the source went from delivering to lost.
    disconnects
        ``(lost, back)`` of each kept disconnect; ``back`` is None while it lasts.
    n_source_errors
        Errors the source raised (acquisition retries each).
    source_errors
        ``(time, "TypeName: message")`` of each kept error.
    """

    nominal_fs: float = 0.0
    n_samples: int = 0
    first_timestamp: float | None = None
    last_timestamp: float | None = None
    effective_fs: float = 0.0
    gap_threshold_s: float = 0.0
    n_gaps: int = 0
    gap_seconds: float = 0.0
    dropped_samples: int = 0
    gaps: tuple[tuple[float, float], ...] = ()
    n_backward_steps: int = 0
    max_backward_s: float = 0.0
    n_repaired: int = 0
    max_shift_s: float = 0.0
    n_unrepaired: int = 0
    n_disconnects: int = 0
    disconnects: tuple[tuple[float, float | None], ...] = ()
    n_source_errors: int = 0
    source_errors: tuple[tuple[float, str], ...] = ()

    @property
    def last_gap(self) -> tuple[float, float] | None:
        """``(start, end)`` of the latest gap, or None."""
        return self.gaps[-1] if self.gaps else None

    @property
    def last_error(self) -> str | None:
        """Message of the latest source error, or None."""
        return self.source_errors[-1][1] if self.source_errors else None

    @property
    def clean(self) -> bool:
        """True when nothing went wrong: no gap, backward step, disconnect or source error."""
        return not (
            self.n_gaps or self.n_backward_steps or self.n_disconnects or self.n_source_errors
        )

    def to_meta(self) -> dict[str, Any]:
        """The ``meta.json`` form: a JSON object of finite numbers, strings, lists and nulls."""
        return {
            "nominal_fs": self.nominal_fs,
            "n_samples": self.n_samples,
            "first_timestamp": self.first_timestamp,
            "last_timestamp": self.last_timestamp,
            "effective_fs": self.effective_fs,
            "gap_threshold_s": self.gap_threshold_s,
            "n_gaps": self.n_gaps,
            "gap_seconds": self.gap_seconds,
            "dropped_samples": self.dropped_samples,
            "gaps": [[start, end] for start, end in self.gaps],
            "n_backward_steps": self.n_backward_steps,
            "max_backward_s": self.max_backward_s,
            "n_repaired": self.n_repaired,
            "max_shift_s": self.max_shift_s,
            "n_unrepaired": self.n_unrepaired,
            "n_disconnects": self.n_disconnects,
            "disconnects": [[lost, back] for lost, back in self.disconnects],
            "n_source_errors": self.n_source_errors,
            "source_errors": [[t, message] for t, message in self.source_errors],
        }

    @classmethod
    def from_meta(cls, entry: object, *, where: str) -> StreamIntegrity:
        """Read a ``meta.json`` integrity entry back, checking every key.

        Keys this version does not know are ignored (a newer writer may add some).

        Parameters
        ----------
        entry
            The parsed JSON value.
        where
            What to name in errors, e.g. ``"<path>: meta.json integrity['emg']"``.

        Raises
        ------
        SessionError
            Naming ``where``, the key and the value, when the entry is not an object, a key is
            missing, a value has the wrong type, is negative, not finite, or a list holds more
            entries than its count.
        """
        if not isinstance(entry, dict):
            raise SessionError(f"{where}: must be a JSON object, got {_quote(entry)}")
        fields: dict[str, Any] = {}
        for key in _INT_KEYS:
            fields[key] = _count(entry, key, where)
        for key in _SECONDS_KEYS:
            fields[key] = _number(entry, key, where, minimum=0.0)
        for key in ("first_timestamp", "last_timestamp"):
            value = _get(entry, key, where)
            fields[key] = None if value is None else _number(entry, key, where)
        fields["gaps"] = tuple(_pair("gaps", item, where) for item in _list(entry, "gaps", where))
        fields["disconnects"] = tuple(
            _pair("disconnects", item, where, optional_end=True)
            for item in _list(entry, "disconnects", where)
        )
        fields["source_errors"] = tuple(
            _error(item, where) for item in _list(entry, "source_errors", where)
        )
        for list_key, count_key in _LISTS:
            if len(fields[list_key]) > fields[count_key]:
                raise SessionError(
                    f"{where}: {list_key!r} holds {len(fields[list_key])} entries but "
                    f"{count_key!r} is {fields[count_key]}"
                )
        return cls(**fields)


def _quote(value: object) -> str:
    text = repr(value)
    return text if len(text) <= _QUOTE_CHARS else text[: _QUOTE_CHARS - 1] + "…"


def _get(entry: dict[str, Any], key: str, where: str) -> object:
    if key not in entry:
        raise SessionError(f"{where}: key {key!r} is missing")
    return entry[key]


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _count(entry: dict[str, Any], key: str, where: str) -> int:
    value = _get(entry, key, where)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise SessionError(f"{where}: {key!r} must be a count (integer >= 0), got {_quote(value)}")
    return value


def _number(entry: dict[str, Any], key: str, where: str, *, minimum: float | None = None) -> float:
    value = _get(entry, key, where)
    number = _finite(value)
    if number is None:
        raise SessionError(f"{where}: {key!r} must be a finite number, got {_quote(value)}")
    if minimum is not None and number < minimum:
        raise SessionError(f"{where}: {key!r} must be >= {minimum:g}, got {_quote(value)}")
    return number


def _list(entry: dict[str, Any], key: str, where: str) -> list[Any]:
    value = _get(entry, key, where)
    if not isinstance(value, list):
        raise SessionError(f"{where}: {key!r} must be a list, got {_quote(value)}")
    return value


def _pair(
    key: str, item: object, where: str, *, optional_end: bool = False
) -> tuple[float, float | None]:
    ok = isinstance(item, list) and len(item) == 2
    start = _finite(item[0]) if ok else None  # type: ignore[index]
    end = _finite(item[1]) if ok else None  # type: ignore[index]
    open_end = ok and optional_end and item[1] is None  # type: ignore[index]
    if start is None or (end is None and not open_end) or (end is not None and end < start):
        what = "[start, end or null]" if optional_end else "[start, end]"
        raise SessionError(
            f"{where}: {key!r} entries must be {what} pairs of finite seconds with "
            f"start <= end, got {_quote(item)}"
        )
    return start, end


def _finite(value: object) -> float | None:
    """``value`` as a finite float, or None if it is not a number or not finite."""
    if not _is_number(value):
        return None
    try:
        number = float(value)  # type: ignore[arg-type]
    except OverflowError:  # an integer beyond float's range
        return None
    return number if math.isfinite(number) else None


def _error(item: object, where: str) -> tuple[float, str]:
    t = _finite(item[0]) if isinstance(item, list) and len(item) == 2 else None
    if t is None or not isinstance(item[1], str):  # type: ignore[index]
        raise SessionError(
            f"{where}: 'source_errors' entries must be [time, message] pairs, got {_quote(item)}"
        )
    return t, item[1]  # type: ignore[index]
