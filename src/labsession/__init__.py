"""labsession: record, process and archive experiment sessions.

Three pillars share one core: recording sessions (``labsession.recording``, ``labsession.sources``),
motion-correction pipelines (``labsession.motion``) and reproducible run sessions
(``labsession.runs``). ``App``, ``Stream`` and ``Pipeline`` are imported on first use.
"""

from typing import TYPE_CHECKING, Any

from labsession._version import __version__

if TYPE_CHECKING:
    from labsession.acquisition import App, Pipeline, Stream

__all__ = ["App", "Pipeline", "Stream", "__version__"]


def __getattr__(name: str) -> Any:
    if name in ("App", "Pipeline", "Stream"):
        import labsession.acquisition as acquisition

        return getattr(acquisition, name)
    raise AttributeError(f"module 'labsession' has no attribute {name!r}")
