"""Recording sessions: write streams and labels to Zarr, pack verified zips, read them back.

See the user guide page "Recording sessions" for the on-disk layout (shared with MyoGestic).
"""

from labsession.recording._arrays import use_zarrs_if_available
from labsession.recording._records import UNLABELLED, LabelEvent, Recording, StreamInfo
from labsession.recording._session import Session
from labsession.recording._store import SessionStore, open_session_store
from labsession.recording._summary import session_summary
from labsession.recording._training import TrainingData
from labsession.recording._windows import (
    SkippedSession,
    WindowIterator,
    iter_aligned_windows,
    iter_labeled_windows,
)

use_zarrs_if_available()

__all__ = [
    "UNLABELLED",
    "LabelEvent",
    "Recording",
    "Session",
    "SessionStore",
    "SkippedSession",
    "StreamInfo",
    "TrainingData",
    "WindowIterator",
    "iter_aligned_windows",
    "iter_labeled_windows",
    "open_session_store",
    "session_summary",
]
