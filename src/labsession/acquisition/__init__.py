"""Live acquisition: the App, its streams (ring buffers), pipelines and cue-driven recording."""

from labsession.acquisition._app import App
from labsession.acquisition._context import AppContext
from labsession.acquisition._cues import cue_schedule, run_cued_recording
from labsession.acquisition._health import StreamHealth, StreamHealthSnapshot
from labsession.acquisition._pipeline import Pipeline
from labsession.acquisition._ring import RingBuffer
from labsession.acquisition._stream import Stream

__all__ = [
    "App",
    "AppContext",
    "Pipeline",
    "RingBuffer",
    "Stream",
    "StreamHealth",
    "StreamHealthSnapshot",
    "cue_schedule",
    "run_cued_recording",
]
