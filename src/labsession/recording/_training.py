"""``TrainingData``: the sessions a model trains on, and the arrays scikit-learn wants from them."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from labsession.errors import SessionError
from labsession.recording._aligned_windows import AlignedWindow, iter_aligned_windows
from labsession.recording._folders import sessions_of
from labsession.recording._store import open_session_store
from labsession.recording._windows import (
    LabeledWindow,
    PathLike,
    WindowIterator,
    _check_paths,
    iter_labeled_windows,
)
from labsession.recording.features import Feature, feature_matrix, resolve_features

__all__ = ["TrainingData"]

log = logging.getLogger(__name__)

#: Windows turned into features at a time by :meth:`TrainingData.to_arrays`.
_BATCH = 1024


class TrainingData:
    """A set of recorded sessions to train on (what a pipeline's train callback receives).

    Parameters
    ----------
    paths
        Session folders, ``.session.zip`` archives and/or parent folders (one path or an
        iterable). A parent folder (one that is no session itself) stands for every session
        directly inside it, sorted by name (see
        :func:`~labsession.recording.find_sessions`).
    class_names
        Names of the class indices (default: the ``class_names`` of the first session that
        has them, read when first asked for).

    Raises
    ------
    SessionError
        If a folder given is no session and holds none (``"no sessions in ..."``).

    Notes
    -----
    The training helpers drop the first labelled segment of each session by default
    (``skip_first=True``): it holds the set-up (the subject settling, the electrodes warming)
    rather than the cued class. Pass ``skip_first=False`` to keep it, e.g. to reproduce
    MyoGestic's windows exactly.

    Examples
    --------
    >>> data = TrainingData(["sessions/a.session.zip", "sessions/b"])  # doctest: +SKIP
    >>> data = TrainingData("sessions")  # every session in the folder  # doctest: +SKIP
    >>> X, y, groups = data.to_arrays("emg", 0.2, 0.05, features=["rms", "wl"])  # doctest: +SKIP
    """

    def __init__(
        self,
        paths: PathLike | Iterable[PathLike],
        class_names: Sequence[str] | None = None,
    ):
        self.paths: list[Path] = [
            session for path in _check_paths(paths) for session in sessions_of(path)
        ]
        self._class_names = None if class_names is None else [str(n) for n in class_names]

    @property
    def class_names(self) -> list[str]:
        """Names of the class indices (``[]`` if no session names them)."""
        if self._class_names is None:
            self._class_names = []
            for path in self.paths:
                try:
                    with open_session_store(path) as store:
                        names = store.class_names
                except (SessionError, OSError):
                    continue
                if names:
                    self._class_names = list(names)
                    break
        return list(self._class_names)

    def __len__(self) -> int:
        return len(self.paths)

    def __repr__(self) -> str:
        return f"TrainingData({len(self.paths)} sessions, class_names={self._class_names})"

    def windows(
        self,
        stream: str,
        win_seconds: float,
        hop_seconds: float,
        classes: Iterable[int] | None = None,
        *,
        skip_first: bool = True,
        copy: bool = True,
    ) -> WindowIterator[LabeledWindow]:
        """Labelled windows of ``stream`` from every session.

        As :func:`labsession.recording.iter_labeled_windows` (same parameters and yields),
        except that the first labelled segment of each session is dropped unless
        ``skip_first=False``.
        """
        return iter_labeled_windows(
            self.paths, stream, win_seconds, hop_seconds, classes, copy=copy, skip_first=skip_first
        )

    def aligned_windows(
        self,
        primary_stream: str,
        aligned_streams: Sequence[str],
        win_seconds: float,
        hop_seconds: float,
        align_window_samples: int = 1,
        *,
        copy: bool = True,
    ) -> WindowIterator[AlignedWindow]:
        """Windows of ``primary_stream`` with aligned targets, as
        :func:`labsession.recording.iter_aligned_windows` (for regression)."""
        return iter_aligned_windows(
            self.paths,
            primary_stream,
            aligned_streams,
            win_seconds,
            hop_seconds,
            align_window_samples,
            copy=copy,
        )

    def to_arrays(
        self,
        stream: str,
        win_seconds: float,
        hop_seconds: float,
        classes: Iterable[int] | None = None,
        features: str | Feature | Sequence[str | Feature] | None = None,
        *,
        skip_first: bool = True,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Stack the labelled windows into arrays ready for scikit-learn.

        Parameters
        ----------
        stream, win_seconds, hop_seconds, classes, skip_first
            As in :meth:`windows`.
        features
            ``None``: ``X`` holds the raw windows. Otherwise names from
            :data:`labsession.recording.features.FEATURES` and/or callables, computed on
            batches of windows (the raw windows are never all in memory at once); see
            :func:`labsession.recording.features.feature_matrix`.

        Returns
        -------
        X : ndarray
            ``(n_windows, n_channels, n_samples)`` float32 raw windows, or
            ``(n_windows, n_features * n_channels)`` float64 features.
        y : ndarray
            ``(n_windows,)`` int64 class indices.
        groups : ndarray
            ``(n_windows,)`` int64 index into :attr:`paths` of the session each window came
            from, for grouped cross-validation (``sklearn.model_selection.GroupKFold``,
            ``LeaveOneGroupOut``).

        Raises
        ------
        ValueError
            As :func:`~labsession.recording.iter_labeled_windows`; also if no window results
            (the message lists the skipped sessions), or sessions disagree on the channel
            count, or (with ``features=None``) on the samples per window (different rates).
        """
        resolved = None if features is None else resolve_features(features)
        blocks: list[np.ndarray] = []
        labels: list[int] = []
        groups: list[int] = []
        batch: list[np.ndarray] = []
        shape: tuple[int, ...] | None = None

        def flush() -> None:
            if batch:
                stacked = np.stack(batch)
                blocks.append(stacked if resolved is None else feature_matrix(stacked, resolved))
                batch.clear()

        iterator = self.windows(
            stream, win_seconds, hop_seconds, classes, skip_first=skip_first, copy=False
        )
        with iterator:
            for window, _ts, cls in iterator:
                if window.shape != shape:
                    if shape is not None and (resolved is None or window.shape[0] != shape[0]):
                        raise ValueError(
                            f"windows of {stream!r} change shape from {shape} to "
                            f"{window.shape} (sessions with different channel counts or "
                            f"rates); train on sessions recorded alike, or (for different "
                            f"rates only) pass features=... to reduce windows to per-channel "
                            f"values"
                        )
                    flush()
                    shape = window.shape
                batch.append(window)
                labels.append(cls)
                groups.append(iterator.current_index)
                if len(batch) >= _BATCH:
                    flush()
            flush()
        if not labels:
            raise ValueError(f"no training windows: {iterator.summary()}")
        X = np.concatenate(blocks) if len(blocks) > 1 else blocks[0]
        return X, np.asarray(labels, dtype=np.int64), np.asarray(groups, dtype=np.int64)
