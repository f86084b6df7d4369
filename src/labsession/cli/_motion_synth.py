"""``labsession motion synth OUT.tif``: a synthetic 2-photon video with known motion.

Wired into the ``motion`` sub-app with :func:`register`. Heavy imports happen inside the command.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

__all__ = [
    "MAX_OFFSET",
    "MAX_PIXEL_FRAMES",
    "register",
    "synth",
    "truth_path",
]

#: Largest video written (frames x height x width): about 256 MiB of float32 per channel.
MAX_PIXEL_FRAMES = 1 << 26
#: Largest ``--offset`` component (px): ``labsession.motion._synthetic.MAX_OFFSET``.
MAX_OFFSET = 6.0
_SUFFIXES = (".tif", ".tiff")


def truth_path(video: Path) -> Path:
    """Where the true displacements of ``video`` go: ``rec1.tif`` -> ``rec1.truth.csv``."""
    return video.with_name(f"{video.stem}.truth.csv")


def _tiff_path(value: Path) -> Path:
    if value.suffix.lower() not in _SUFFIXES:
        raise typer.BadParameter(
            f"{str(value)!r} is not a TIFF name; end it with .tif or .tiff", param_hint="'OUT'"
        )
    if value.is_dir():
        raise typer.BadParameter(
            f"{str(value)!r} is a folder; give a file name", param_hint="'OUT'"
        )
    return value


def _size(value: tuple[int, int]) -> tuple[int, int]:
    if min(value) < 16 or max(value) > 4096:
        raise typer.BadParameter(
            f"{value[0]} {value[1]}: height and width must be in [16, 4096] pixels",
            param_hint="'--size'",
        )
    return value


def _offset(value: tuple[float, float]) -> tuple[float, float]:
    if not all(abs(v) <= MAX_OFFSET for v in value):
        raise typer.BadParameter(
            f"{value[0]:g} {value[1]:g}: each must be within +-{MAX_OFFSET:g} pixels",
            param_hint="'--offset'",
        )
    return value


def synth(
    out: Annotated[
        Path,
        typer.Argument(
            callback=_tiff_path,
            metavar="OUT",
            help="TIFF to write, float32 (T, H, W), or (T, C, H, W) with --channels 2; its "
            "folder is created if missing. The truth goes beside it: rec1.tif -> rec1.truth.csv.",
            show_default=False,
        ),
    ],
    frames: Annotated[int, typer.Option("--frames", min=1, help="Frames T.")] = 100,
    size: Annotated[
        tuple[int, int], typer.Option("--size", callback=_size, help="Frame height and width (px).")
    ] = (128, 128),
    seed: Annotated[int, typer.Option("--seed", min=0, help="Same seed, same video.")] = 0,
    shift: Annotated[
        float,
        typer.Option("--shift", min=0.0, max=20.0, help="Peak rigid jitter (px); plus drift."),
    ] = 3.0,
    offset: Annotated[
        tuple[float, float],
        typer.Option(
            "--offset",
            callback=_offset,
            help="Constant content offset DX DY (px): recordings of one field seen from "
            "slightly moved positions (same --seed, different --offset).",
        ),
    ] = (0.0, 0.0),
    channels: Annotated[
        int, typer.Option("--channels", min=1, max=2, help="1 (functional) or 2 (+ structural).")
    ] = 1,
) -> None:
    """Write a synthetic 2-photon video with known motion, and its truth beside it.

    Bright cells flashing like a calcium indicator on a textured background, moved by a smooth
    known displacement (rigid jitter of up to --shift px, a slow 2 px drift and a 1 px non-rigid
    part) with Poisson photon noise. The truth file (rec1.tif -> rec1.truth.csv) holds, per
    frame, the true displacement
    averaged over the frame: columns frame, u_px (x), v_px (y), in the convention of
    `labsession motion compensate`: video(t, y + v, x + u) = scene(y, x). A correction's
    estimated mean displacement follows them up to a constant (the reference's own position).
    Same --seed, different --offset: recordings of one field of view for `motion run`.
    """
    height, width = size
    if frames * height * width > MAX_PIXEL_FRAMES:
        raise typer.BadParameter(
            f"{frames} frames of {height}x{width} px is more than {MAX_PIXEL_FRAMES:,} "
            f"pixel-frames; write several shorter videos",
            param_hint="'--frames'",
        )
    import numpy as np
    import tifffile

    from labsession.core.atomic import atomic_path
    from labsession.motion import synthetic_video

    video, mean_w = synthetic_video(
        n_frames=frames,
        shape=size,
        n_channels=channels,
        max_shift=shift,
        offset=offset,
        seed=seed,
    )
    data = video[..., 0] if channels == 1 else np.moveaxis(video, -1, 1)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        tifffile.imwrite(
            tmp, data, imagej=True, metadata={"axes": "TYX" if channels == 1 else "TCYX"}
        )
    truth = truth_path(out)
    rows = "".join(f"{t},{u:.4f},{v:.4f}\n" for t, (u, v) in enumerate(mean_w))
    with atomic_path(truth) as tmp:
        tmp.write_text("frame,u_px,v_px\n" + rows)
    typer.echo(f"{out}\n{truth}")


def register(motion_app: typer.Typer) -> None:
    """Add ``synth`` to the ``labsession motion`` sub-app."""
    motion_app.command("synth")(synth)
