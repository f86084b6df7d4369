"""Test helpers shipped with labsession: synthetic signals and ready-made sessions.

Used by labsession's own tests, benchmarks and demo, and by anyone testing code built on it.
"""

from labsession.sources._signals import class_patterns, emg_like
from labsession.testing._gui import (
    GuiScript,
    ImguiFrames,
    run_gui,
    save_screenshot,
    wait_frames,
    xvfb_display,
)
from labsession.testing._polling import wait_until
from labsession.testing._sessions import record_synthetic_session, record_tiny_session

__all__ = [
    "GuiScript",
    "ImguiFrames",
    "class_patterns",
    "emg_like",
    "record_synthetic_session",
    "record_tiny_session",
    "run_gui",
    "save_screenshot",
    "wait_frames",
    "wait_until",
    "xvfb_display",
]
