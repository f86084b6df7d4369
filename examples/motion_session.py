"""Correct a whole imaging session: three recordings of one field, aligned to one reference.

Writes three synthetic 2-photon recordings with known offsets between them, a session config
file, and runs the three stages of :mod:`labsession.motion.session`. Prints the recovered
offsets against the truth and the size of the final valid mask, and saves the session QC
figure (``--figure``; the docs' ``docs/img/motion-session-qc.png`` comes from here).

    python examples/motion_session.py --out motion_session_demo
    python examples/motion_session.py --tiny --out /tmp/demo   # seconds, for tests
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import numpy as np

from labsession.motion.session import (
    SessionConfig,
    make_synthetic_session,
    run_stage1,
    run_stage2,
    run_stage3,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("motion_session_demo"))
    parser.add_argument("--tiny", action="store_true", help="48x48 px, 24 frames, fast flow")
    parser.add_argument("--figure", type=Path, help="also copy the QC figure here")
    args = parser.parse_args()

    # 1. Three recordings of one field of view; rec_1 (the middle one) is the reference.
    size, frames = ((48, 48), 24) if args.tiny else ((128, 128), 100)
    truth = make_synthetic_session(
        args.out / "data",
        offsets=[(-3.0, 2.0), (0.0, 0.0), (2.5, -1.5)],
        n_frames=frames,
        shape=size,
        n_channels=1 if args.tiny else 2,
        seed=7,
    )

    # 2. The session config: paths are relative to this file's folder.
    backend = "diso" if args.tiny else "flowreg"
    quality = "fast" if args.tiny else "balanced"
    sigma = 1.0 if args.tiny else 3.0
    config_path = args.out / "session.toml"
    config_path.write_text(
        f'root = "data"\nflow_backend = "{backend}"\nstage1_quality_setting = "{quality}"\n'
        f"sigma_smooth = {sigma}\nn_workers = 2\n\n"
        f"[flow_options]\nreference_frames = {list(range(min(frames, 50)))}\n"
    )
    config = SessionConfig.from_file(config_path)

    # 3. The three stages; each resumes what a previous (possibly killed) run finished.
    run_stage1(config)
    middle_idx, center, displacements = run_stage2(config)
    final_valid = run_stage3(config, middle_idx, displacements)

    print(f"center recording: {center.name}")
    for idx, w in enumerate(displacements):
        inner = w[8:-8, 8:-8]
        found = np.median(inner[..., 0]), np.median(inner[..., 1])
        expected = truth.expected_displacement(idx)
        print(
            f"  {truth.files[idx].name}: offset to center ({found[0]:+.2f}, {found[1]:+.2f}) px, "
            f"truth ({expected[0]:+.2f}, {expected[1]:+.2f}) px"
        )
    print(f"final valid mask: {int(final_valid.sum())} of {final_valid.size} pixels")
    qc = config.final_dir / "session_qc.png"
    print(f"QC figure: {qc}")
    if args.figure:
        args.figure.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(qc, args.figure)
        print(f"copied to {args.figure}")


if __name__ == "__main__":
    main()
