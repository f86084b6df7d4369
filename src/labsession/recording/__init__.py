"""Recording sessions: write streams and labels to Zarr, pack verified zips, read them back.

See the user guide page "Recording sessions" for the on-disk layout (shared with MyoGestic).
"""

from labsession.recording._aligned_windows import iter_aligned_windows
from labsession.recording._arrays import use_zarrs
from labsession.recording._folders import find_sessions
from labsession.recording._integrity import IntegrityTracker, integrity_from_timestamps
from labsession.recording._integrity_record import StreamIntegrity
from labsession.recording._lock import LockHolder, session_lock_holder
from labsession.recording._plot import plot_session
from labsession.recording._records import UNLABELLED, LabelEvent, Recording, StreamInfo
from labsession.recording._session import Session
from labsession.recording._session_split import SessionSplit, split_sessions_by_stream
from labsession.recording._store import SessionStore, open_session_store
from labsession.recording._summary import session_summary
from labsession.recording._target_windows import (
    TargetWindow,
    TargetWindowIterator,
    iter_target_windows,
)
from labsession.recording._training import TrainingData
from labsession.recording._windows import SkippedSession, WindowIterator, iter_labeled_windows

__all__ = [
    "UNLABELLED",
    "IntegrityTracker",
    "LabelEvent",
    "LockHolder",
    "Recording",
    "Session",
    "SessionSplit",
    "SessionStore",
    "SkippedSession",
    "StreamInfo",
    "StreamIntegrity",
    "TargetWindow",
    "TargetWindowIterator",
    "TrainingData",
    "WindowIterator",
    "find_sessions",
    "integrity_from_timestamps",
    "iter_aligned_windows",
    "iter_labeled_windows",
    "iter_target_windows",
    "open_session_store",
    "plot_session",
    "session_lock_holder",
    "session_summary",
    "split_sessions_by_stream",
    "use_zarrs",
]
