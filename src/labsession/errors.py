"""Exceptions raised by labsession.

Every error class also inherits the builtin it refines, so ``except ValueError`` in user code keeps
working, while ``except LabsessionError`` catches all of ours.
"""

from __future__ import annotations

__all__ = [
    "ArchiveError",
    "ConfigError",
    "DisplayError",
    "LabsessionError",
    "MotionSessionError",
    "ReproducibilityError",
    "SessionError",
    "UnsafeArchiveMemberError",
]


class LabsessionError(Exception):
    """Base class of every labsession error."""


class SessionError(LabsessionError, ValueError):
    """A recording session on disk is missing, incomplete or corrupt.

    The message names the path and what was found there.
    """


class ArchiveError(LabsessionError, ValueError):
    """An archive (zip or tar) is corrupt, truncated or does not match what was packed."""


class UnsafeArchiveMemberError(ArchiveError):
    """An archive member would land outside the extraction folder (absolute path, ``..``, link)."""


class ConfigError(LabsessionError, ValueError):
    """A configuration file or value is invalid (unknown key, bad value, unreadable file)."""


class ReproducibilityError(LabsessionError, ValueError):
    """A run produced a different result than an earlier run with the same seed (run sessions)."""


class MotionSessionError(LabsessionError, RuntimeError):
    """A stage of the multi-recording motion session failed or cannot start.

    The message names the recording, the missing earlier stage or the array-task variable.
    """


class DisplayError(LabsessionError, RuntimeError):
    """The GUI cannot open a window: no display, or the graphics system failed to start.

    The message says how to run without one (``mode="headless"``) or on a virtual display.
    """
