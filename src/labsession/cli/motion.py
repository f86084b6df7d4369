"""``labsession motion``: motion correction of 2-photon videos (heavy imports inside commands)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from labsession.cli._validate import choice, ranged

app = typer.Typer(help="Motion correction of 2-photon videos.", no_args_is_help=True)

_QUALITIES = ("quality", "balanced", "fast", "custom")
#: The built-in video formats of labsession.motion's format registry, written and read (kept
#: here as text so that `labsession --help` does not import the motion engine; a test checks
#: them against the registry).
_FORMATS = ("HDF5", "TIFF", "MAT", "NPZ", "ZARR")
_READ = "HDF5, TIFF, MAT v7.3, NPZ, Zarr or NPY"


def _check_backend(value: str | None) -> str | None:
    """Callback of ``--backend``: a registered flow backend (imports the motion engine)."""
    if value is None:
        return value
    from labsession.motion import available_backends
    from labsession.motion._option_types import canonical_backend

    return choice(available_backends())(canonical_backend(value))


@app.command("compensate")
def compensate(
    input_file: Annotated[
        Path,
        typer.Argument(exists=True, metavar="INPUT_FILE", help=f"Video: {_READ}."),
    ],
    quality: Annotated[
        str | None,
        typer.Option(
            "--quality", "-q", help=f"Preset: {', '.join(_QUALITIES)}.", callback=choice(_QUALITIES)
        ),
    ] = None,
    backend: Annotated[
        str | None,
        typer.Option(
            "--backend",
            "-b",
            help="Flow backend: flowreg, diso, flowreg_torch (or torch), flowreg_cuda.",
            callback=_check_backend,
        ),
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output", "-o", help="Output folder (default: <input>_compensated).", file_okay=False
        ),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config", "-c", exists=True, dir_okay=False, help="Options file (TOML, YAML, JSON)."
        ),
    ] = None,
    output_format: Annotated[
        str | None,
        typer.Option(
            "--format", "-f", help=f"Output: {', '.join(_FORMATS)}.", callback=choice(_FORMATS)
        ),
    ] = None,
    buffer_size: Annotated[
        int | None, ranged("--buffer-size", help="Frames per buffer.", ge=1)
    ] = None,
    save_w: Annotated[bool, typer.Option("--save-w", help="Also write the flow (w.h5).")] = False,
    qc: Annotated[bool, typer.Option("--qc/--no-qc", help="Write motion-qc.png.")] = True,
) -> None:
    """Register every frame of INPUT_FILE to a reference and write the corrected video."""
    from labsession.motion import OFOptions, compensate_recording
    from labsession.motion.plots import save_qc_figure

    overrides: dict[str, object] = {"input_file": str(input_file)}
    if quality is not None:
        overrides["quality_setting"] = quality
    if backend is not None:
        overrides["flow_backend"] = backend
    if output_format is not None:
        overrides["output_format"] = output_format.upper()
    if buffer_size is not None:
        overrides["buffer_size"] = buffer_size
    if save_w:
        overrides["save_w"] = True
    overrides["output_path"] = str(output or input_file.with_name(f"{input_file.stem}_compensated"))
    base = OFOptions.from_file(config).model_dump() if config else {}
    options = OFOptions.from_mapping({**base, **overrides}, source=str(config or "command line"))
    result = compensate_recording(options)
    stats = result.statistics
    if qc:
        result.files["qc"] = save_qc_figure(
            Path(options.output_path) / "motion-qc.png",
            mean_before=result.average_raw,
            mean_after=result.average,
            statistics=stats,
            title=f"{input_file.name} ({options.flow_backend}, {options.quality_setting.value})",
        )
    typer.echo(
        f"{len(stats['mean_displacement'])} frames at {float(stats['frames_per_second']):.1f} "
        f"frames/s; correlation with the reference {stats['corr_before'].mean():.3f} -> "
        f"{stats['corr_after'].mean():.3f}"
    )
    for name, path in result.files.items():
        typer.echo(f"  {name:12s} {path}")


def _register_session_commands() -> None:
    from labsession.cli._motion_session import register
    from labsession.cli._motion_synth import register as register_synth

    register(app)
    register_synth(app)


_register_session_commands()
