"""Sources of samples to record: the interface, and the built-in sources.

``Source`` is the three-method interface (``connect``, ``read``, ``close``) documented in
``labsession.sources._base``; ``register_source`` adds one by name.
"""

from labsession.sources._base import Chunk, Source, register_source, source_factories
from labsession.sources._lsl import LSLSource
from labsession.sources._replay import ReplaySource
from labsession.sources._synthetic import SyntheticSource

register_source("synthetic", SyntheticSource)
register_source("lsl", LSLSource)
register_source("replay", ReplaySource)

__all__ = [
    "Chunk",
    "LSLSource",
    "ReplaySource",
    "Source",
    "SyntheticSource",
    "register_source",
    "source_factories",
]
