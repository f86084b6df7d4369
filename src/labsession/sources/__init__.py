"""Sources of samples to record: the interface, and the built-in sources.

``Source`` is the three-method interface (``connect``, ``read``, ``close``) documented in
``labsession.sources._base``; ``register_source`` adds one by name.
"""

from labsession.sources._base import Chunk, Source, register_source, source_factories
from labsession.sources._lsl import LSLSource
from labsession.sources._replay import ReplaySource
from labsession.sources._synthetic import SyntheticSource
from labsession.sources._target import Hold, Ramp, Sine, TargetPhase, TargetSource

register_source("synthetic", SyntheticSource)
register_source("lsl", LSLSource)
register_source("replay", ReplaySource)
register_source("target", TargetSource)

__all__ = [
    "Chunk",
    "Hold",
    "LSLSource",
    "Ramp",
    "ReplaySource",
    "Sine",
    "Source",
    "SyntheticSource",
    "TargetPhase",
    "TargetSource",
    "register_source",
    "source_factories",
]
