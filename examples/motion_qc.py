"""Motion-correct a synthetic 2-photon video and draw the QC figure (docs/img/motion-qc.png).

Run from the repository root::

    python examples/motion_qc.py                 # writes docs/img/motion-qc.png
    python examples/motion_qc.py --out /tmp/qc   # writes into another folder
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

from labsession.motion import OFOptions, compensate_recording
from labsession.motion.plots import save_qc_figure
from labsession.motion.synthetic import make_2p_video


def main(out: Path, *, n_frames: int = 60, size: int = 128) -> Path:
    """Correct a seeded synthetic video and save ``motion-qc.png`` into ``out``."""
    data = make_2p_video(n_frames=n_frames, shape=(size, size), max_shift=4.0, seed=7)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as work:
        raw = Path(work) / "raw.npy"
        np.save(raw, data.video)
        options = OFOptions(
            input_file=raw,
            output_path=Path(work) / "corrected",
            quality_setting="balanced",
            buffer_size=20,
            reference_frames=list(range(min(n_frames, 30))),
        )
        result = compensate_recording(options, progress=False)
    w = result.statistics
    # The template is built from the video, so it sits at the frames' mean position: compare
    # the per-frame translation part after removing each one's mean over time.
    estimated = np.stack([w["mean_u"], w["mean_v"]], axis=-1)
    truth = data.w.mean(axis=(1, 2))
    error = np.hypot(*((estimated - estimated.mean(0)) - (truth - truth.mean(0))).T).mean()
    print(f"translation part, mean error: {error:.3f} px")
    print(
        f"correlation with the reference: {w['corr_before'].mean():.3f} before, "
        f"{w['corr_after'].mean():.3f} after"
    )
    path = save_qc_figure(
        out / "motion-qc.png",
        mean_before=result.average_raw,
        mean_after=result.average,
        statistics=result.statistics,
        title=f"synthetic 2-photon video, {n_frames} frames {size}x{size}, balanced",
    )
    print(f"wrote {path}")
    return path


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs/img"))
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--size", type=int, default=128)
    args = parser.parse_args()
    main(args.out, n_frames=args.frames, size=args.size)
