"""The notify hook: what ``close(..., notify=True)`` calls when a run ends.

labsession never contacts a network service itself: the hook set with :func:`set_notify_hook` (or
named by the ``LABSESSION_NOTIFY_HOOK`` environment variable as ``"package.module:function"``)
sends mail, a chat message or a desktop notification. A hook that raises is logged as a warning.
"""

from __future__ import annotations

import importlib
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["NOTIFY_ENV", "notify_hook", "set_notify_hook"]

logger = logging.getLogger(__name__)

NotifyHook = Callable[..., Any]
_NOTIFY_HOOK: NotifyHook | None = None
#: Environment variable naming a notify hook as ``"package.module:function"``.
NOTIFY_ENV = "LABSESSION_NOTIFY_HOOK"


def set_notify_hook(hook: NotifyHook | None) -> None:
    """Set the function ``close(..., notify=True)`` calls (``None`` removes it).

    The hook is called as ``hook(message=str, config=CONFIG, exit_status=int | None,
    log_paths=list[Path])``. labsession never contacts a network service itself: send mail, a
    chat message or a desktop notification from the hook. Without a hook set here, the
    ``LABSESSION_NOTIFY_HOOK`` environment variable (``"package.module:function"``) is used.
    """
    global _NOTIFY_HOOK
    if hook is not None and not callable(hook):
        raise TypeError(f"notify hook must be callable, got {hook!r}")
    _NOTIFY_HOOK = hook


def _resolve_hook() -> NotifyHook | None:
    if _NOTIFY_HOOK is not None:
        return _NOTIFY_HOOK
    spec = os.environ.get(NOTIFY_ENV)
    if not spec:
        return None
    module_name, _, attr = spec.partition(":")
    try:
        hook = getattr(importlib.import_module(module_name), attr or "notify")
    except (ImportError, AttributeError) as exc:
        logger.warning("%s=%r cannot be loaded: %s", NOTIFY_ENV, spec, exc)
        return None
    return hook if callable(hook) else None


def notify_hook(config: dict[str, Any], message: str, exit_status: int | None) -> None:
    """Call the notify hook for a closed run; log (never raise) a missing or failing hook."""
    hook = _resolve_hook()
    if hook is None:
        logger.warning(
            "notify=True but no hook is set: call labsession.runs.set_notify_hook(func) or set %s",
            NOTIFY_ENV,
        )
        return
    final = Path(config["SDIR_RUN"])
    logs = sorted((final / "logs").glob("*.log")) if final.is_dir() else []
    try:
        hook(message=message, config=config, exit_status=exit_status, log_paths=logs)
    except Exception as exc:  # noqa: BLE001 - a notification must never fail the run
        logger.warning("notify hook %r failed: %s", hook, exc)
