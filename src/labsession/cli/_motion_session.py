"""``labsession motion run | status | submit``: the multi-recording session pipeline.

Wired into the ``motion`` sub-app with :func:`register`. Heavy imports happen inside commands.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from labsession.cli._errors import UsageError
from labsession.cli._validate import matches, non_blank, ranged

__all__ = ["parse_of_params", "register"]

_CONFIG = typer.Option(
    "--config", "-c", exists=True, dir_okay=False, help="Session config (TOML, YAML or JSON)."
)


def _check_of_params(items: list[str] | None) -> list[str] | None:
    """Callback of ``--of-params``: each item is key=value naming a valid OFOptions field value."""
    overrides = parse_of_params(items)
    if overrides:
        from labsession.errors import ConfigError
        from labsession.motion import OFOptions

        try:
            OFOptions.from_mapping(overrides, source="--of-params")
        except ConfigError as exc:
            raise typer.BadParameter(str(exc).removeprefix("--of-params: ")) from None
    return items


_OF_PARAMS = typer.Option(
    "--of-params",
    help="OFOptions override for stage 1 as key=value (repeatable), e.g. --of-params alpha=4.",
    callback=_check_of_params,
)
#: SLURM's --time forms: minutes, m:s, h:m:s, d-h, d-h:m, d-h:m:s (or UNLIMITED).
_SLURM_TIME = r"(?i:unlimited|infinite)|\d+(-\d+)?(:\d{1,2}){0,2}"
#: SLURM's --mem: a number of megabytes, or with a unit K, M, G or T.
_SLURM_MEM = r"\d+[KMGTkmgt]?"


def parse_of_params(items: list[str] | None) -> dict[str, Any]:
    """``["alpha=4", "levels=50"]`` -> ``{"alpha": 4, "levels": 50}`` (values read as YAML).

    Raises
    ------
    typer.BadParameter
        For an item without ``=`` or with an empty key.
    """
    import yaml

    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise typer.BadParameter(
                f"expected key=value, got {item!r}", param_hint="'--of-params'"
            )
        try:
            out[key.strip()] = yaml.safe_load(value) if value.strip() else None
        except yaml.YAMLError:
            out[key.strip()] = value
    return out


def _load(config: Path, of_params: list[str] | None):  # -> SessionConfig
    from labsession.motion.session import SessionConfig

    session = SessionConfig.from_file(config)
    overrides = parse_of_params(of_params)
    return session.with_flow_overrides(overrides) if overrides else session


def run(
    config: Annotated[Path, _CONFIG],
    stage: Annotated[
        int | None,
        ranged("--stage", "-s", help="Run only this stage (default: 1-3).", ge=1, le=3),
    ] = None,
    array: Annotated[
        bool,
        typer.Option(
            "--array", help="Stage 1 for this HPC array task only (SLURM/SGE/PBS task id)."
        ),
    ] = False,
    of_params: Annotated[list[str] | None, _OF_PARAMS] = None,
    progress: Annotated[
        bool | None,
        typer.Option(
            "--progress/--no-progress",
            help="Progress bars on stderr (default: only when stderr is a terminal).",
        ),
    ] = None,
) -> None:
    """Run the session's stages: motion correction, average alignment, masks and re-projection."""
    from labsession.errors import MotionSessionError
    from labsession.motion.session import get_array_task_id, run_session, run_stage1_array
    from labsession.motion.session._stage1 import ARRAY_TASK_VARIABLES

    if array and stage != 1:
        raise typer.BadParameter("runs stage 1 only: add --stage 1", param_hint="'--array'")
    if array and get_array_task_id() is None:  # said for the command line, not for Python
        raise MotionSessionError(
            f"--array runs inside an array job (sbatch --array=1-N, qsub -t 1-N, qsub -J 1-N); "
            f"none of {', '.join(ARRAY_TASK_VARIABLES)} is set here. Without --array, "
            f"`labsession motion run --config {config} --stage 1` runs every recording here"
        )
    session = _load(config, of_params)
    stages = [stage] if stage else [1, 2, 3]
    if array:
        folder = run_stage1_array(session)
        typer.echo(f"stage 1 done: {folder}")
        return
    final = run_session(session, stages=stages, progress=progress)
    done = ", ".join(str(s) for s in stages)
    typer.echo(f"stage(s) {done} done for {session.root}")
    if 2 in stages:
        _echo_offsets(session)
    if final is not None:
        typer.echo(
            f"final valid mask: {int(final.sum())} of {final.size} pixels -> {session.final_dir}"
        )


def _echo_offsets(session: Any) -> None:
    """One line per recording: where stage 2 found it, relative to the center recording."""
    import numpy as np

    from labsession.motion.session import discover_recordings, recording_dir, resolve_center

    files = discover_recordings(session)
    _, center = resolve_center(session, files)
    typer.echo(f"stage 2, each recording's shift to {center.name} (median of its field, px):")
    for path in files:
        # A report only: a recording that came into root after stage 2 (or a field that cannot
        # be read) is named, it does not turn a finished run into a failed one.
        try:
            with np.load(recording_dir(session, path) / "w_to_reference.npz") as data:
                u, v = float(np.median(data["u"])), float(np.median(data["v"]))
        except (OSError, KeyError, ValueError) as exc:
            typer.echo(f"  {path.name}: no stage-2 field ({type(exc).__name__}: {exc})")
            continue
        typer.echo(f"  {path.name}: u {u:+.2f}, v {v:+.2f}")


def status(
    config: Annotated[Path, _CONFIG],
    as_json: Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")] = False,
    of_params: Annotated[list[str] | None, _OF_PARAMS] = None,
) -> None:
    """Show each recording's stage state (verified like a resumed run verifies it).

    Stage 1 is done only for the options it ran with: give the same --of-params as the run.
    """
    import json

    from rich.table import Table

    from labsession.cli._console import cli_console
    from labsession.motion.session import session_state

    state = session_state(_load(config, of_params))
    if as_json:
        typer.echo(json.dumps(state, indent=2, default=str))
        return
    table = Table(title=f"motion session {config}")
    for column in ("recording", "frames", "stage 1", "stage 2", "stage 3"):
        table.add_column(column, overflow="fold")
    for row in state["recordings"]:
        name = row["recording"] + (" (center)" if row["center"] else "")
        table.add_row(name, str(row["frames"]), row["stage1"], row["stage2"], row["stage3"])
    console = cli_console(min_width=100)
    console.print(table)
    session = state["session"]
    extra = f", {session['valid_pixels']} valid pixels" if "valid_pixels" in session else ""
    console.print(f"session stage 3 (final mask): {session['stage3']}{extra}")


def submit(
    config: Annotated[Path, _CONFIG],
    slurm: Annotated[bool, typer.Option("--slurm", help="Write sbatch scripts (SLURM).")] = False,
    run_now: Annotated[
        bool, typer.Option("--run", help="Submit them with sbatch (array, then dependent job).")
    ] = False,
    time: Annotated[
        str,
        typer.Option(
            "--time",
            help="#SBATCH --time per job ([days-]hours:minutes:seconds, or minutes).",
            callback=matches(_SLURM_TIME, "04:00:00"),
        ),
    ] = "04:00:00",
    cpus: Annotated[int, ranged("--cpus", help="#SBATCH --cpus-per-task.", ge=1)] = 4,
    mem: Annotated[
        str,
        typer.Option(
            "--mem",
            help="#SBATCH --mem (megabytes, or with K, M, G or T).",
            callback=matches(_SLURM_MEM, "16G"),
        ),
    ] = "16G",
    partition: Annotated[
        str | None, typer.Option("--partition", help="#SBATCH --partition.", callback=non_blank)
    ] = None,
    of_params: Annotated[list[str] | None, _OF_PARAMS] = None,
) -> None:
    """Write (and with --run submit) an sbatch array for stage 1 and a dependent stage 2-3 job."""
    from labsession.motion.session import submit_slurm, write_slurm_scripts

    if not slurm:
        raise UsageError("Missing option '--slurm': the batch system (the only one supported).")
    session = _load(config, of_params)
    stage1, stage23 = write_slurm_scripts(
        config,
        config=session,
        time=time,
        cpus=cpus,
        mem=mem,
        partition=partition,
        of_params=of_params,
    )
    typer.echo(f"wrote {stage1}\nwrote {stage23}")
    if run_now:
        array_id, final_id = submit_slurm(stage1, stage23)
        typer.echo(f"submitted stage 1 array job {array_id}; stages 2-3 job {final_id}")
    else:
        typer.echo(
            f"submit with: jid=$(sbatch --parsable {stage1}) && "
            f"sbatch --dependency=afterok:$jid {stage23}"
        )


def register(motion_app: typer.Typer) -> None:
    """Add ``run``, ``status`` and ``submit`` to the ``labsession motion`` sub-app."""
    motion_app.command("run")(run)
    motion_app.command("status")(status)
    motion_app.command("submit")(submit)
