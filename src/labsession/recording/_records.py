"""Plain records of a recording session: label events, stream descriptions and trials."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["UNLABELLED", "LabelEvent", "Recording", "StreamInfo"]

#: Class index of a label that marks "no class" (e.g. a pause); iterators skip it.
UNLABELLED = -1

_SUPPORTED_KINDS = "biuf"


@dataclass(frozen=True, order=True)
class LabelEvent:
    """One entry of a session's label track: "from time ``timestamp`` on, class ``class_index``".

    Parameters
    ----------
    timestamp
        Seconds on the LSL clock (``labsession.core.clock.local_clock``).
    class_index
        Index into the session's ``class_names``; ``-1`` (``UNLABELLED``) marks a pause.
    """

    timestamp: float
    class_index: int

    def __post_init__(self) -> None:
        if not math.isfinite(self.timestamp):
            raise ValueError(f"label timestamp must be finite, got {self.timestamp!r}")
        if int(self.class_index) != self.class_index or self.class_index < UNLABELLED:
            raise ValueError(f"class_index must be an integer >= -1, got {self.class_index!r}")
        object.__setattr__(self, "timestamp", float(self.timestamp))
        object.__setattr__(self, "class_index", int(self.class_index))

    def to_dict(self) -> dict[str, Any]:
        """Return the ``labels.json`` form ``{"timestamp": ..., "class_index": ...}``."""
        return {"timestamp": self.timestamp, "class_index": self.class_index}

    @classmethod
    def from_dict(cls, entry: dict[str, Any]) -> LabelEvent:
        """Build from a ``labels.json`` entry."""
        return cls(float(entry["timestamp"]), int(entry["class_index"]))


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
        Optional one name per channel.
    """

    n_channels: int
    fs: float
    dtype: np.dtype = field(default=np.dtype("float32"))
    channel_names: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if int(self.n_channels) != self.n_channels or self.n_channels < 1:
            raise ValueError(f"n_channels must be a positive integer, got {self.n_channels!r}")
        if not (math.isfinite(self.fs) and self.fs > 0):
            raise ValueError(f"fs must be a finite rate > 0 Hz, got {self.fs!r}")
        dtype = np.dtype(self.dtype)
        if dtype.kind not in _SUPPORTED_KINDS:
            raise ValueError(f"dtype must be a numeric type (int or float), got {dtype}")
        object.__setattr__(self, "n_channels", int(self.n_channels))
        object.__setattr__(self, "fs", float(self.fs))
        object.__setattr__(self, "dtype", dtype)
        if self.channel_names is not None:
            names = tuple(str(n) for n in self.channel_names)
            if len(names) != self.n_channels:
                raise ValueError(
                    f"channel_names has {len(names)} entries for {self.n_channels} channels"
                )
            object.__setattr__(self, "channel_names", names)

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
    def from_meta(cls, entry: dict[str, Any]) -> StreamInfo:
        """Build from a ``meta.json`` stream entry (extra keys, e.g. ``channel_grids``, ignored)."""
        return cls(
            n_channels=int(entry["n_channels"]),
            fs=float(entry["fs"]),
            dtype=np.dtype(entry.get("dtype", "float32")),
            channel_names=entry.get("channel_names"),
        )


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
