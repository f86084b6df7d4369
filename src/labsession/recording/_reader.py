"""Read access shared by the writer (``Session``) and the reader (``SessionStore``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import zarr

from labsession.errors import SessionError
from labsession.recording._arrays import valid_length
from labsession.recording._records import LabelEvent, Recording, StreamInfo
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
        ``(n_samples,)``. Prefer :meth:`get_continuous`, which trims a crashed recording to the
        samples actually written.
    class_names
        Names of the label classes (``[]`` if the session has none).
    """

    path: Path
    stores: dict[str, zarr.Array]
    ts_stores: dict[str, zarr.Array]
    class_names: list[str]
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

    def n_samples(self, name: str) -> int:
        """Samples of stream ``name`` present with a valid timestamp."""
        self._check_stream(name)
        return self._read(name, lambda: valid_length(self.stores[name], self.ts_stores[name]))

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
        """Return the ``(n_samples,)`` float64 timestamps of stream ``name``."""
        n = self.n_samples(name)
        return self._read(name, lambda: np.asarray(self.ts_stores[name][:n], dtype=np.float64))

    def get_continuous(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """Return ``(data (n_samples, n_channels), ts (n_samples,))`` of stream ``name``."""
        n = self.n_samples(name)
        data = self._read(name, lambda: self.stores[name][:n])
        ts = self._read(name, lambda: np.asarray(self.ts_stores[name][:n], dtype=np.float64))
        return data, ts

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
            Seconds (>= 0) before each label and after the last one.
        class_names
            Names for the trials' ``class_name`` (default: the session's ``class_names``; with
            neither, the class index as text).
        """
        if pre < 0 or post < 0:
            raise ValueError(f"pre and post must be >= 0 seconds, got pre={pre}, post={post}")
        ts = self.get_timestamps(stream_name)
        trials = []
        for seg in label_segments(ts, self._labels, pre=pre, post=post):
            data = self._read(stream_name, lambda s=seg: self.stores[stream_name][s.start : s.stop])
            trials.append(
                Recording(
                    class_index=seg.label.class_index,
                    class_name=self.class_name(seg.label.class_index, class_names),
                    data=np.ascontiguousarray(data.T),
                    ts=ts[seg.start : seg.stop].copy(),
                )
            )
        return trials
