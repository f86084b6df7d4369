"""labsession: record, process and archive experiment sessions.

Three pillars share one core: recording sessions (``labsession.recording``, ``labsession.sources``),
motion-correction pipelines (``labsession.motion``) and reproducible run sessions
(``labsession.runs``).
"""

from labsession._version import __version__

__all__ = ["__version__"]
