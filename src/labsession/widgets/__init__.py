"""The desktop GUI's building blocks (imgui-bundle): usable inside any imgui frame.

Each widget exists as a function (``recording_controls(ctx, ...)``, as in MyoGestic's seeds) and
as a class with a ``.ui(...)`` method (MyoGestic 2.6's form): same behaviour, the class keeps its
state per instance, the function keeps one instance per place in the frame. Item IDs written
``###name`` (``###record``, ``###stop``, ``###class_<i>``, ``###session_<name>`` ...) are public
API, stable across versions, so scripts and tests can drive the window.

Nothing here waits on disk, LSL or a subprocess inside a frame: such work runs on a background
thread and the widget shows its progress.
"""

from labsession.widgets._grid import Grid
from labsession.widgets._launcher import ProcessLauncher
from labsession.widgets._prediction import PredictionPanel, prediction_panel
from labsession.widgets._recording_controls import RecordingControls, recording_controls
from labsession.widgets._session_manager import SessionManager, session_manager
from labsession.widgets._signal_viewer import SignalViewer, ViewerFrame, signal_viewer
from labsession.widgets._stream_health import StreamHealthPanel, stream_health

__all__ = [
    "Grid",
    "PredictionPanel",
    "ProcessLauncher",
    "RecordingControls",
    "SessionManager",
    "SignalViewer",
    "StreamHealthPanel",
    "ViewerFrame",
    "prediction_panel",
    "recording_controls",
    "session_manager",
    "signal_viewer",
    "stream_health",
]
