"""The run lifecycle: :func:`start` a run folder, :func:`close` it, move it to where it belongs.

A run lives in ``<script>_out/RUNNING/<ID>/`` while the script runs: its stdout and stderr go to
the terminal and to ``logs/stdout.log`` / ``logs/stderr.log``, its record to ``CONFIGS/``. At
:func:`close` the status and duration are written and :func:`running2finished` moves the folder
to ``FINISHED_SUCCESS/`` (exit status 0 or None) or ``FINISHED_ERROR/`` (anything else), by a
rename when it can, and by a verified copy otherwise; with ``archive_format`` the finished run
becomes one archive file. A process killed before :func:`close` leaves its folder in ``RUNNING/``,
with every finished log line in it; :class:`SessionManager` reports it as ``"interrupted"``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import importlib
import logging
import os
import shutil
import sys as _sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from labsession.core.archive import folder_manifest
from labsession.core.atomic import fsync_dir
from labsession.runs._archive import archive_path_for, archive_session_dir
from labsession.runs._ids import (
    FINISHED_ERROR,
    FINISHED_SUCCESS,
    ID_PATTERN,
    RUNNING,
    make_run_dir,
)
from labsession.runs._manager import get_session_manager
from labsession.runs._plotting import PlotStyle, close_figures, configure_matplotlib
from labsession.runs._provenance import (
    RunConfig,
    collect_environment,
    load_user_configs,
    write_configs,
)
from labsession.runs._seeds import RandomStateManager, fix_seeds
from labsession.runs._tee import restore_streams, swap_streams

__all__ = ["close", "running2finished", "set_notify_hook", "start"]

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


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at emit time (the tee during the run)."""

    def __init__(self) -> None:
        super().__init__(_sys.stderr)

    @property  # type: ignore[override]
    def stream(self) -> Any:
        return _sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


def _add_log_handler(config: dict[str, Any]) -> None:
    handler = _StderrHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    handler.setLevel(logging.INFO)
    root = logging.getLogger()
    config["_log_handler"] = (handler, root.level)
    root.addHandler(handler)
    if root.level > logging.INFO or root.level == logging.NOTSET:
        root.setLevel(logging.INFO)


def _undo_streams(config: dict[str, Any]) -> None:
    handler_state = config.pop("_log_handler", None)
    if handler_state is not None:
        handler, level = handler_state
        root = logging.getLogger()
        root.removeHandler(handler)
        root.setLevel(level)
    streams = config.pop("_streams", None)
    if streams is not None:
        restore_streams(*streams)


def _script_path(file: str | os.PathLike[str] | None) -> Path | None:
    if file is not None:
        return Path(file).resolve()
    main = _sys.modules.get("__main__")
    main_file = getattr(main, "__file__", None)
    return Path(main_file).resolve() if main_file else None


def _history(out_dir: Path, run_id: str) -> list[Path]:
    runs = []
    for status in (FINISHED_SUCCESS,):
        folder = out_dir / status
        if folder.is_dir():
            runs += [p for p in folder.iterdir() if p.is_dir() and ID_PATTERN.match(p.name)]
    return sorted((p for p in runs if p.name != run_id), key=lambda p: p.name, reverse=True)


def start(
    sys: Any = None,
    plt: Any = None,
    file: str | os.PathLike[str] | None = None,
    sdir: str | os.PathLike[str] | None = None,
    sdir_suffix: str | None = None,
    args: Any = None,
    os: Any = None,
    random: Any = None,
    np: Any = None,
    torch: Any = None,
    seed: int = 42,
    agg: bool = False,
    fig_size_mm: tuple[float, float] = (160, 100),
    fig_scale: float = 1.0,
    dpi_display: int = 100,
    dpi_save: int = 300,
    fontsize: str | float = "small",
    autolayout: bool = False,
    hide_top_right_spines: bool = True,
    alpha: float = 0.9,
    line_width: float = 1.0,
    clear_logs: bool = False,
    verbose: bool = True,
) -> tuple[RunConfig, Any, Any, Any, dict[str, str], RandomStateManager]:
    """Start a run: create its folder, tee its output, record its config, fix seeds, style plots.

    Parameters
    ----------
    sys
        The ``sys`` module: pass it to tee ``sys.stdout``/``sys.stderr`` into the run's logs and
        to show ``logging`` messages from INFO up on stderr (hence in ``stderr.log``) until
        :func:`close`. ``None`` leaves streams and logging alone.
    plt
        ``matplotlib.pyplot`` to style now; ``None`` returns a stand-in that imports and styles
        pyplot on first use.
    file
        The script (default: ``__main__.__file__``); the run goes to ``<script stem>_out/``.
    sdir
        The run folder's parent output folder instead of ``<script stem>_out`` (the run then
        lives in ``sdir/RUNNING/<ID>/``).
    sdir_suffix
        Appended to the run folder name as ``<ID>-<suffix>`` (letters, digits, ``_.-``).
    args
        Parsed arguments (``argparse.Namespace`` or a mapping), recorded as ``CONFIG["ARGS"]``.
    os, random, np, torch
        Modules to seed (defaults: the standard ones; torch only when importable).
    seed
        Seed for ``random``, NumPy, torch and the named generators of ``rng``.
    agg
        Use the non-interactive Agg backend.
    fig_size_mm, fig_scale, dpi_display, dpi_save, fontsize, autolayout,
    hide_top_right_spines, alpha, line_width
        Plot style (see :class:`labsession.runs.PlotStyle`).
    clear_logs
        Accepted for compatibility with the established tools. A fresh run's ``logs/`` is
        always empty, and the logs of other runs are never deleted.
    verbose
        Log the run's folder and config at INFO.

    Returns
    -------
    tuple
        ``(CONFIG, stdout, stderr, plt, COLORS, rng)``: the run's config (a dict with attribute
        access), the tee streams (or the untouched ones when ``sys`` is None), pyplot, the
        palette, and the :class:`RandomStateManager`.
    """
    started = dt.datetime.now()
    t0 = time.perf_counter()
    script = _script_path(file)
    if sdir_suffix is not None and not ID_PATTERN.match(f"2000Y-01M-01D-00h00m00s_a-{sdir_suffix}"):
        raise ValueError(f"sdir_suffix {sdir_suffix!r} may hold only letters, digits and '_.-'")
    if sdir is not None:
        out_dir = Path(sdir).resolve()
    elif script is not None:
        out_dir = script.with_name(script.stem + "_out")
    else:
        out_dir = Path.cwd() / "interactive_out"
    style = PlotStyle(
        fig_size_mm=tuple(fig_size_mm),
        fig_scale=fig_scale,
        dpi_display=dpi_display,
        dpi_save=dpi_save,
        fontsize=fontsize,
        autolayout=autolayout,
        hide_top_right_spines=hide_top_right_spines,
        alpha=alpha,
        line_width=line_width,
    )
    user_configs = load_user_configs("config")  # a bad file fails before any folder is made
    run_id, run_dir = make_run_dir(out_dir / RUNNING, suffix=sdir_suffix)
    if clear_logs:
        logger.debug("clear_logs: %s starts with an empty logs/ folder", run_dir)

    config = RunConfig(user_configs)
    config.update(
        ID=run_id,
        PID=_sys.modules["os"].getpid(),
        FILE=script,
        SDIR_OUT=out_dir,
        SDIR_RUN=run_dir,
        START_DATETIME=started,
        STATUS="running",
        SEED=seed,
        ARGS=(dict(args) if isinstance(args, dict) else vars(args)) if args is not None else {},
    )
    config.update(collect_environment(script))

    stdout, stderr = _sys.stdout, _sys.stderr
    if sys is not None:
        stdout, stderr = swap_streams(run_dir / "logs")
        config["_streams"] = (stdout, stderr)
        _add_log_handler(config)
    try:
        seeded = fix_seeds(seed, random=random, np_module=np, torch=torch, os_module=os)
        rng = RandomStateManager(
            seed,
            run_dir=run_dir,
            history_dirs=lambda: _history(out_dir, run_dir.name),
            args=config["ARGS"],
        )
        plt, colors = configure_matplotlib(plt, agg=agg, style=style)
        config.update(SEEDED=seeded, PLOT={"agg": agg, **style.to_dict()})
        config["_t0"] = t0
        write_configs(config, run_dir / "CONFIGS")
    except BaseException:
        _undo_streams(config)  # the folder stays in RUNNING/ with what it has, for inspection
        raise
    get_session_manager().create_session(run_id, config, path=run_dir)
    if verbose:
        logger.info("run %s started: %s", run_id, run_dir)
    return config, stdout, stderr, plt, colors, rng


def _destination(config: dict[str, Any], exit_status: int | None) -> Path:
    status_folder = FINISHED_SUCCESS if exit_status in (0, None) else FINISHED_ERROR
    return Path(config["SDIR_OUT"]) / status_folder / Path(config["SDIR_RUN"]).name


def _copy_verified(src: Path, dest: Path) -> None:
    tmp = dest.with_name(f".{dest.name}.copying")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        shutil.copytree(src, tmp, symlinks=True)
        expected = folder_manifest(src, links=True)
        found = folder_manifest(tmp, links=True)
        if expected != found:
            raise OSError(f"{tmp}: copy of {src} does not match it ({len(found)} files)")
        os.rename(tmp, dest)
        fsync_dir(dest.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def running2finished(
    CONFIG: dict[str, Any],
    exit_status: int | None = None,
    remove_src_dir: bool = True,
    max_wait: float = 60,
    archive_format: str | None = None,
) -> dict[str, Any]:
    """Move a run from ``RUNNING/`` to ``FINISHED_SUCCESS/`` or ``FINISHED_ERROR/``.

    Parameters
    ----------
    CONFIG
        The run's config from :func:`start` (``SDIR_RUN`` and ``SDIR_OUT`` are used, and
        ``SDIR_RUN`` is updated to the new place).
    exit_status
        0 or None: ``FINISHED_SUCCESS``; anything else: ``FINISHED_ERROR``.
    remove_src_dir
        Move (rename) the folder. False copies it and keeps the source.
    max_wait
        Seconds to keep retrying a rename refused because the folder is busy (network file
        systems, virus scanners) before falling back to a verified copy.
    archive_format
        ``"tar.gz"`` (or another tar format) turns the finished folder into one archive file.

    Returns
    -------
    dict
        ``CONFIG``, with ``SDIR_RUN`` pointing at the finished folder or archive.

    Raises
    ------
    FileExistsError
        If the destination exists already (nothing is overwritten).
    """
    src = Path(CONFIG["SDIR_RUN"])
    dest = _destination(CONFIG, exit_status)
    if dest.exists():
        raise FileExistsError(f"{dest}: a finished run with this ID exists; {src} left in place")
    dest.parent.mkdir(parents=True, exist_ok=True)
    if not remove_src_dir:
        _copy_verified(src, dest)
    else:
        deadline = time.monotonic() + max_wait
        while True:
            try:
                os.rename(src, dest)
                fsync_dir(dest.parent)
                break
            except OSError as exc:
                if exc.errno == errno.EXDEV:
                    _copy_verified(src, dest)
                    shutil.rmtree(src)
                    break
                if exc.errno not in (errno.EBUSY, errno.EACCES, errno.EPERM, errno.ENOTEMPTY):
                    raise
                if time.monotonic() >= deadline:
                    logger.warning("rename of %s kept failing (%s); copying instead", src, exc)
                    _copy_verified(src, dest)
                    shutil.rmtree(src)
                    break
                time.sleep(0.1)
        with contextlib.suppress(OSError):
            src.parent.rmdir()  # RUNNING/ when it was the last run in it
    CONFIG["SDIR_RUN"] = dest
    if archive_format is not None:
        CONFIG["SDIR_RUN"] = archive_session_dir(dest, format=archive_format, remove_src=True)
    return CONFIG


def _format_duration(seconds: float) -> str:
    hours, rest = divmod(int(seconds), 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}"


def close(
    CONFIG: dict[str, Any],
    message: str = ":)",
    notify: bool = False,
    verbose: bool = True,
    exit_status: int | None = None,
    archive_format: str | None = None,
) -> dict[str, Any]:
    """Close a run: restore the streams, record status and duration, move the folder.

    Parameters
    ----------
    CONFIG
        The run's config from :func:`start`.
    message
        Logged at the end, and passed to the notify hook.
    notify
        Call the hook set with :func:`set_notify_hook` (or named by ``LABSESSION_NOTIFY_HOOK``);
        a failing hook is logged, never raised.
    verbose
        Log where the run went.
    exit_status
        The script's exit status: 0 or None is success, anything else an error.
    archive_format
        Leave one archive (e.g. ``"tar.gz"``) instead of the finished folder.

    Returns
    -------
    dict
        ``CONFIG`` with ``STATUS``, ``EXIT_STATUS``, ``END_DATETIME``, ``RUN_DURATION``
        (``HH:MM:SS``), ``RUN_SECONDS``, and ``SDIR_RUN`` pointing at the finished folder or
        archive (``CONFIGS/CONFIG.*`` inside the run record it as ``SDIR_FINAL``).
    """
    if CONFIG.get("STATUS") != "running":
        raise ValueError(
            f"run {CONFIG.get('ID')!r} is not running (status {CONFIG.get('STATUS')!r})"
        )
    ended = dt.datetime.now()
    seconds = time.perf_counter() - CONFIG.pop("_t0", time.perf_counter())
    status = "success" if exit_status in (0, None) else "error"
    CONFIG.update(
        STATUS=status,
        EXIT_STATUS=exit_status,
        END_DATETIME=ended,
        RUN_DURATION=_format_duration(seconds),
        RUN_SECONDS=round(seconds, 6),
        MESSAGE=message,
    )
    log = logger.info if status == "success" else logger.error
    try:
        close_figures()
        run_dir = Path(CONFIG["SDIR_RUN"])
        dest = _destination(CONFIG, exit_status)
        if archive_format is not None:
            dest = archive_path_for(dest, archive_format)
        CONFIG["SDIR_FINAL"] = dest
        write_configs(CONFIG, run_dir / "CONFIGS")
        if verbose:
            log(
                "run %s %s after %s (%s); moving it to %s",
                CONFIG["ID"],
                status,
                CONFIG["RUN_DURATION"],
                message,
                dest,
            )
    finally:
        _undo_streams(CONFIG)  # the terminal gets its streams back whatever happens
    try:
        running2finished(CONFIG, exit_status=exit_status, archive_format=archive_format)
    finally:
        final = Path(CONFIG["SDIR_RUN"])
        get_session_manager().close_session(
            CONFIG["ID"], status=status, exit_code=exit_status, path=final
        )
    if notify:
        _notify(CONFIG, message, exit_status)
    return CONFIG


def _notify(config: dict[str, Any], message: str, exit_status: int | None) -> None:
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
