"""The run lifecycle: :func:`start` a run folder, :func:`close` it, move it to where it belongs.

A run lives in ``<script>_out/RUNNING/<ID>/`` while the script runs: its stdout and stderr go to
the terminal and to ``logs/stdout.log`` / ``logs/stderr.log``, its record to ``CONFIGS/``. At
:func:`close` the status and duration are written and :func:`running2finished` moves the folder
to ``FINISHED_SUCCESS/`` (exit status 0 or None) or ``FINISHED_ERROR/`` (anything else), by a
rename when it can, and by a verified copy otherwise; with ``archive_format`` the finished run
becomes one archive file. A process killed before :func:`close` leaves its folder in ``RUNNING/``,
with every finished log line in it; :class:`SessionManager` reports it as ``"interrupted"``.

:func:`start` keeps scitex-session's signature (``start(sys, plt, ..., os=None, np=None, ...)``)
as a thin adapter over the keyword-only :func:`start_run`. ``CONFIG`` is plain data: the run's
streams, logging handler and clock live in a private registry keyed by the run ID
(:mod:`labsession.runs._state`).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any, NamedTuple

from labsession.errors import ArchiveError, ConfigError, SessionError
from labsession.runs._archive import archive_path_for, archive_session_dir
from labsession.runs._finish import finished_destination, out_dir_of, running2finished
from labsession.runs._ids import (
    FINISHED,
    FINISHED_SUCCESS,
    ID_PATTERN,
    RUNNING,
    STATUS_FOLDERS,
    generate_id,
    make_run_dir,
)
from labsession.runs._manager import get_session_manager
from labsession.runs._notify import notify_hook, set_notify_hook
from labsession.runs._plotting import PlotStyle, close_figures, configure_matplotlib
from labsession.runs._provenance import (
    RunConfig,
    collect_environment,
    load_user_configs,
    write_configs,
)
from labsession.runs._scan import split_archive_name
from labsession.runs._seeds import RandomStateManager, fix_seeds
from labsession.runs._state import RunState, attach_streams, pop_state, put_state, release

__all__ = ["StartedRun", "close", "running2finished", "set_notify_hook", "start", "start_run"]

logger = logging.getLogger(__name__)


def _script_path(file: str | os.PathLike[str] | None) -> Path | None:
    if file is not None:
        return Path(file).resolve()
    main = sys.modules.get("__main__")
    main_file = getattr(main, "__file__", None)
    return Path(main_file).resolve() if main_file else None


def _history(out_dir: Path, run_id: str) -> list[Path]:
    """The earlier successful runs of ``out_dir``, folders and archives, newest first."""
    folder = out_dir / FINISHED_SUCCESS
    runs: dict[Path, str] = {}
    if folder.is_dir():
        for path in folder.iterdir():
            if path.is_dir() and ID_PATTERN.match(path.name):
                runs[path] = path.name
            elif path.is_file() and (split := split_archive_name(path.name)) is not None:
                runs[path] = split[0]
    earlier = [path for path, name in runs.items() if name != run_id]
    return sorted(earlier, key=lambda path: runs[path], reverse=True)


def _runs_below(run_dir: Path) -> str | None:
    """The first thing below ``run_dir`` that holds other runs, relative, or None.

    That is a status folder (``RUNNING/``, ``FINISHED_*/``) or a run's record
    (``CONFIGS/CONFIG.json``) at any depth. Links are not followed.
    """
    for folder, dirs, files in os.walk(run_dir):
        here = Path(folder)
        for name in sorted(dirs):
            if name in STATUS_FOLDERS or name.startswith(f"{FINISHED}_"):
                return f"{(here / name).relative_to(run_dir).as_posix()}/"
        if here.name == "CONFIGS" and "CONFIG.json" in files:
            return (here / "CONFIG.json").relative_to(run_dir).as_posix()
    return None


def _claim_run_dir(run_dir: Path) -> None:
    """Create a run folder the caller named; refuse one that holds a run or other runs.

    Its own logs and record would be overwritten; runs below it would be packed and removed
    with it when the run is closed with ``archive_format``.
    """
    held = [
        name
        for name in ("CONFIGS/CONFIG.json", "logs/stdout.log", "logs/stderr.log")
        if (run_dir / name).exists()
    ]
    if held:
        raise SessionError(
            f"{run_dir}: holds a run already ({held[0]}); pass a new folder as sdir "
            "so that its logs and record are not overwritten"
        )
    below = _runs_below(run_dir)
    if below is not None:
        raise SessionError(
            f"{run_dir}: holds other runs ({below}); pass a folder of the run's own as sdir, "
            "so that closing it with archive_format cannot pack and remove them"
        )
    run_dir.mkdir(parents=True, exist_ok=True)


class StartedRun(NamedTuple):
    """What :func:`start_run` returns; unpacks as ``(CONFIG, stdout, stderr, plt, COLORS, rng)``.

    Attributes
    ----------
    config
        The run's ``CONFIG`` (a dict whose keys also read as attributes).
    stdout, stderr
        The tee streams now in ``sys.stdout`` / ``sys.stderr``, or None when the run does not tee.
    plt
        ``matplotlib.pyplot`` (or a stand-in that imports and styles it on first use).
    colors
        The palette, name -> hex colour.
    rng
        The run's :class:`RandomStateManager`.
    """

    config: RunConfig
    stdout: Any
    stderr: Any
    plt: Any
    colors: dict[str, str]
    rng: RandomStateManager


def start_run(
    *,
    tee: bool = False,
    plt: Any = None,
    file: str | os.PathLike[str] | None = None,
    run_dir: str | os.PathLike[str] | None = None,
    out_dir: str | os.PathLike[str] | None = None,
    sdir_suffix: str | None = None,
    args: Any = None,
    seed: int = 42,
    random_module: Any = None,
    numpy_module: Any = None,
    torch_module: Any = None,
    os_module: Any = None,
    agg: bool = False,
    style: PlotStyle | None = None,
    verbose: bool = True,
) -> StartedRun:
    """Start a run: create its folder, tee its output, record its config, fix seeds, style plots.

    Parameters
    ----------
    tee
        Tee ``sys.stdout``/``sys.stderr`` into the run's ``logs/`` and show ``logging`` messages
        from INFO up on stderr (hence in ``stderr.log``) until :func:`close`.
    plt
        ``matplotlib.pyplot`` to style now; ``None`` returns a stand-in that imports and styles
        pyplot on first use.
    file
        The script (default: ``__main__.__file__``); the run goes to ``<script stem>_out/``.
    run_dir
        The run folder itself (scitex-session's ``sdir``), created if missing; it must not hold
        another run, nor other runs below it (``RUNNING/``, ``FINISHED_*/``,
        ``CONFIGS/CONFIG.json``). It moves at :func:`close` only when it sits in a ``RUNNING/``
        folder.
    out_dir
        The output folder instead of ``<script stem>_out``: the run goes to
        ``out_dir/RUNNING/<ID>/``. Not together with ``run_dir``.
    sdir_suffix
        Appended to a generated run folder name as ``<ID>-<suffix>`` (letters, digits, ``_.-``);
        ignored with ``run_dir``.
    args
        Parsed arguments (``argparse.Namespace`` or a mapping), recorded as ``CONFIG["ARGS"]``.
    seed
        Seed for ``random``, NumPy, torch and the named generators of ``rng``.
    random_module, numpy_module, torch_module, os_module
        Modules to seed (defaults: the standard ones; torch only when imported, or on import).
    agg
        Use the non-interactive Agg backend.
    style
        The plot settings (default :class:`PlotStyle`).
    verbose
        Log the run's folder at INFO.

    Returns
    -------
    StartedRun
        ``(config, stdout, stderr, plt, colors, rng)``.

    Raises
    ------
    ValueError
        For a bad ``sdir_suffix``, or both ``run_dir`` and ``out_dir`` (before any folder is
        made).
    ConfigError
        For a seed NumPy cannot take (not an integer in ``[0, 2**32 - 1]``), or a
        ``config/*.yaml`` that is not UTF-8 YAML or whose name is one labsession sets itself
        (``config/plot.yaml`` would become ``CONFIG["PLOT"]``), before any folder is made.
    SessionError
        If ``run_dir`` holds another run's record or logs, or other runs below it (nothing is
        created then).
    """
    started = dt.datetime.now()
    t0 = time.perf_counter()
    script = _script_path(file)
    if sdir_suffix is not None and not ID_PATTERN.match(f"2000Y-01M-01D-00h00m00s_a-{sdir_suffix}"):
        raise ValueError(f"sdir_suffix {sdir_suffix!r} may hold only letters, digits and '_.-'")
    if run_dir is not None and out_dir is not None:
        raise ValueError(f"give run_dir ({run_dir}) or out_dir ({out_dir}), not both")
    style = style or PlotStyle()
    _check_seed(seed)
    user_configs = load_user_configs("config")  # a bad file fails before any folder is made
    environment = collect_environment(script)
    _check_config_names(user_configs, environment)
    if run_dir is not None:
        run_dir = Path(run_dir).resolve()
        _claim_run_dir(run_dir)
        run_id, out = generate_id(), out_dir_of(run_dir)
        if sdir_suffix:
            logger.debug(
                "sdir_suffix %r ignored: the run folder %s was given", sdir_suffix, run_dir
            )
    else:
        if out_dir is not None:
            out = Path(out_dir).resolve()
        elif script is not None:
            out = script.with_name(script.stem + "_out")
        else:
            out = Path.cwd() / "interactive_out"
        run_id, run_dir = make_run_dir(out / RUNNING, suffix=sdir_suffix)

    config = RunConfig(user_configs)
    config.update(
        ID=run_id,
        PID=os.getpid(),
        FILE=script,
        SDIR_OUT=out,
        SDIR_RUN=run_dir,
        START_DATETIME=started,
        START_TIMESTAMP=started.timestamp(),
        STATUS="running",
        SEED=seed,
        ARGS=(dict(args) if isinstance(args, dict) else vars(args)) if args is not None else {},
    )
    config.update(environment)

    state = RunState(t0=t0)
    stdout = stderr = None
    if tee:
        stdout, stderr = attach_streams(state, run_dir / "logs")
    try:
        seeded = fix_seeds(
            seed,
            random=random_module,
            np_module=numpy_module,
            torch=torch_module,
            os_module=os_module,
        )
        rng = RandomStateManager(
            seed,
            run_dir=run_dir,
            history_dirs=lambda: _history(out, run_dir.name),
            args=config["ARGS"],
        )
        plt, colors = configure_matplotlib(plt, agg=agg, style=style)
        config.update(SEEDED=seeded, PLOT={"agg": agg, **style.to_dict()})
        write_configs(config, run_dir / "CONFIGS")
    except BaseException:
        release(state)  # the folder stays with what it has, for inspection
        raise
    put_state(run_id, state)
    get_session_manager().create_session(run_id, config, path=run_dir)
    if verbose:
        logger.info("run %s started: %s", run_id, run_dir)
    return StartedRun(config, stdout, stderr, plt, colors, rng)


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
    show_execution_flow: bool = False,
    hide_top_right_spines: bool = True,
    alpha: float = 0.9,
    line_width: float = 1.0,
    clear_logs: bool = False,
    verbose: bool = True,
) -> StartedRun:
    """Start a run with scitex-session's signature (an adapter over :func:`start_run`).

    Parameters
    ----------
    sys
        The ``sys`` module: pass it to tee ``sys.stdout``/``sys.stderr`` into the run's logs and
        to show ``logging`` messages from INFO up on stderr until :func:`close`. ``None`` leaves
        streams and logging alone (and returns None for both streams).
    plt
        ``matplotlib.pyplot`` to style now; ``None`` returns a stand-in that imports and styles
        pyplot on first use.
    file
        The script (default: ``__main__.__file__``); the run goes to ``<script stem>_out/``.
    sdir
        The run folder itself instead of ``<script stem>_out/RUNNING/<ID>/`` (created if
        missing; it must not hold a run, nor other runs below it). It moves at :func:`close`
        only when it sits in a ``RUNNING/`` folder; elsewhere it stays where it is.
    sdir_suffix
        Appended to the run folder name as ``<ID>-<suffix>`` (letters, digits, ``_.-``); ignored
        with ``sdir``, as in scitex-session.
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
    show_execution_flow
        Accepted for compatibility; labsession prints no code-flow analysis.
    clear_logs
        Accepted for compatibility with the established tools. A fresh run's ``logs/`` is
        always empty, and the logs of other runs are never deleted.
    verbose
        Log the run's folder at INFO.

    Returns
    -------
    StartedRun
        A tuple ``(CONFIG, stdout, stderr, plt, COLORS, rng)``: the run's config (a dict with
        attribute access), the tee streams (None when ``sys`` is None), pyplot, the palette,
        and the :class:`RandomStateManager`.
    """
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
    if show_execution_flow:
        logger.info("show_execution_flow is not supported by labsession; ignored")
    if clear_logs:
        logger.debug("clear_logs: a fresh run starts with an empty logs/ folder")
    return start_run(
        tee=sys is not None,
        plt=plt,
        file=file,
        run_dir=sdir,
        sdir_suffix=sdir_suffix,
        args=args,
        seed=seed,
        random_module=random,
        numpy_module=np,
        torch_module=torch,
        os_module=os,
        agg=agg,
        style=style,
        verbose=verbose,
    )


def _elapsed(state: RunState | None, started: Any, ended: dt.datetime) -> float:
    """Seconds since the run started: by its clock, or by ``START_DATETIME`` without state."""
    if state is not None:
        return time.perf_counter() - state.t0
    if isinstance(started, dt.datetime):
        return max(0.0, (ended - started).total_seconds())
    return 0.0


def _format_duration(seconds: float) -> str:
    hours, rest = divmod(int(seconds), 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}"


#: ``CONFIG`` keys that :func:`start_run` and :func:`close` set (besides ``collect_environment``'s).
_RUN_KEYS = frozenset(
    {
        "ID", "PID", "FILE", "SDIR_OUT", "SDIR_RUN", "SDIR_FINAL", "START_DATETIME",
        "START_TIMESTAMP", "STATUS",
        "SEED", "ARGS", "SEEDED", "PLOT", "EXIT_STATUS", "END_DATETIME", "RUN_DURATION",
        "RUN_SECONDS", "MESSAGE",
    }
)  # fmt: skip
_MAX_SEED = 2**32 - 1  # what np.random.seed takes


def _check_seed(seed: Any) -> None:
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= _MAX_SEED:
        raise ConfigError(
            f"seed must be an integer from 0 to {_MAX_SEED} (what NumPy's global generator "
            f"takes), got {seed!r}"
        )


def _check_config_names(user_configs: dict[str, Any], environment: dict[str, Any]) -> None:
    """Refuse a ``config/<name>.yaml`` whose key labsession sets itself (it would be lost)."""
    taken = sorted(set(user_configs) & (_RUN_KEYS | set(environment)))
    if taken:
        files = ", ".join(f"config/{name.lower()}.yaml -> CONFIG[{name!r}]" for name in taken)
        raise ConfigError(
            f"{files}: labsession records the run itself under that key, so the file's "
            f"content would be lost; rename the file"
        )


def _archive_finished(CONFIG: dict[str, Any], archive_format: str) -> None:
    """Pack the finished run folder ``CONFIG["SDIR_RUN"]`` into one archive, in place.

    A run that cannot be packed (a full disk) stays a folder, with an error logged: its files
    are all there, and ``archive_existing`` packs it later."""
    folder = Path(CONFIG["SDIR_RUN"])
    try:
        CONFIG["SDIR_RUN"] = archive_session_dir(folder, format=archive_format, remove_src=True)
    except (ArchiveError, OSError) as exc:
        logger.error(
            "run %s stays a folder, %s: it could not be archived: %s", CONFIG["ID"], folder, exc
        )
        CONFIG["SDIR_FINAL"] = folder
        with contextlib.suppress(OSError):  # the disk may still be full: the log says where
            write_configs(CONFIG, folder / "CONFIGS")


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
        raise SessionError(
            f"run {CONFIG.get('ID')!r} is not running (status {CONFIG.get('STATUS')!r})"
        )
    ended = dt.datetime.now()
    state = pop_state(CONFIG["ID"])
    seconds = _elapsed(state, CONFIG.get("START_DATETIME"), ended)
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
    unrecorded: Exception | None = None
    run_dir = Path(CONFIG["SDIR_RUN"])
    try:
        close_figures()
        dest = finished_destination(run_dir, exit_status) or run_dir
        if archive_format is not None:
            try:
                dest = archive_path_for(dest, archive_format)
            except ValueError as exc:  # checked by @session and run(); start/close callers
                logger.error("run %s stays a folder: %s", CONFIG["ID"], exc)
                archive_format = None
        CONFIG["SDIR_FINAL"] = dest
        try:
            write_configs(CONFIG, run_dir / "CONFIGS")
        except Exception as exc:  # noqa: BLE001 - a full disk, or a value YAML cannot hold:
            unrecorded = exc  # the run still moves to its status folder
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
        release(state)  # the terminal gets its streams back whatever happens
    if unrecorded is not None:
        logger.error(
            "run %s: its end (status %s, exit status %s, %s) could not be written to %s: %s; "
            "the folder it is moved to still tells its status",
            CONFIG["ID"],
            status,
            exit_status,
            CONFIG["RUN_DURATION"],
            run_dir / "CONFIGS",
            unrecorded,
        )
    try:
        running2finished(CONFIG, exit_status=exit_status)
        if archive_format is not None:
            _archive_finished(CONFIG, archive_format)
    finally:
        final = Path(CONFIG["SDIR_RUN"])
        get_session_manager().close_session(
            CONFIG["ID"], status=status, exit_code=exit_status, path=final
        )
    if notify:
        notify_hook(CONFIG, message, exit_status)
    return CONFIG
