"""Multi-recording motion session: wall time per stage, recovered offsets, pyflowreg side by side.

Three synthetic recordings of one field of view with known offsets between them
(:func:`labsession.motion.session.make_synthetic_session`) go through the three stages with the
``local`` scheduler (process pool) and the ``dask`` scheduler (a LocalCluster), then through
pyflowreg's session pipeline (``pyflowreg.session``) in its own venv on the same files, with
the same settings. Prints wall time per stage, the inter-recording offsets recovered by each
(median of the stage-2 field inside an 8-px border) against the truth, and the ratios.

    python benchmarks/motion_session_bench.py            # 3 x 100 frames of 128 x 128
    python benchmarks/motion_session_bench.py --quick    # 3 x 40 frames of 64 x 64
    python benchmarks/motion_session_bench.py --pyflowreg-python /path/to/venv/bin/python
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

OFFSETS = [(-3.0, 2.0), (0.0, 0.0), (2.5, -1.75)]
PYFLOWREG_CANDIDATES = ("/tmp/pyflowreg-venv/bin/python", "/tmp/pyflowreg-venv-session/bin/python")

# Runs inside pyflowreg's venv: the same session through pyflowreg.session, stage by stage.
PYFLOWREG_SCRIPT = r"""
import contextlib, io, json, sys, time
from pathlib import Path
import numpy as np
spec = json.loads(sys.argv[1])
from pyflowreg.session.config import SessionConfig
from pyflowreg.session.stage1_compensate import run_stage1
from pyflowreg.session.stage2_between_avgs import run_stage2
from pyflowreg.session.stage3_valid_mask import run_stage3
config = SessionConfig(
    root=Path(spec["root"]), pattern="*.tif", output_root=Path("out_pyflowreg"),
    final_results=Path("final_pyflowreg"), resume=False, flow_backend="flowreg",
    stage1_quality_setting=spec["quality"], n_workers=spec["n_workers"],
    sigma_smooth=spec["sigma_smooth"], flow_options={"reference_frames": spec["reference_frames"]},
)
times = {}
log = io.StringIO()
with contextlib.redirect_stdout(log):
    t = time.perf_counter()
    run_stage1(config)
    times["stage1"] = time.perf_counter() - t
    t = time.perf_counter()
    mid, center, ws = run_stage2(config)
    times["stage2"] = time.perf_counter() - t
    t = time.perf_counter()
    final = run_stage3(config, mid, ws)
    times["stage3"] = time.perf_counter() - t
ws = [np.asarray(w, dtype=np.float64)[8:-8, 8:-8] for w in ws]
print(json.dumps({
    "times": times, "middle_idx": int(mid),
    "offsets": [[float(np.median(w[..., 0])), float(np.median(w[..., 1]))] for w in ws],
    "valid_pixels": int(np.asarray(final).sum()),
}))
"""


def _recovered(displacements: list[np.ndarray]) -> list[list[float]]:
    return [
        [float(np.median(w[8:-8, 8:-8, 0])), float(np.median(w[8:-8, 8:-8, 1]))]
        for w in displacements
    ]


def run_labsession(root: Path, scheduler: str, args: argparse.Namespace, frames: int) -> dict:
    """All three stages with one scheduler into its own output folders; times per stage."""
    from labsession.motion.session import (
        SessionConfig,
        make_executor,
        run_stage1,
        run_stage2,
        run_stage3,
    )

    extra = {}
    if scheduler == "dask":
        extra["dask_cluster"] = {
            "kwargs": {"n_workers": args.workers, "threads_per_worker": 1, "processes": True}
        }
    config = SessionConfig(
        root=root,
        output_root=f"out_{scheduler}",
        final_results=f"final_{scheduler}",
        resume=False,
        scheduler=scheduler,
        n_workers=args.workers,
        flow_backend="flowreg",
        stage1_quality_setting=args.quality,
        sigma_smooth=args.sigma_smooth,
        flow_options={"reference_frames": list(range(min(frames, 50)))},
        **extra,
    )
    times = {}
    executor = None
    if scheduler == "dask":  # one cluster for stages 1 and 3, as run_session does
        started = time.perf_counter()
        executor = make_executor(config)
        times["cluster_start"] = time.perf_counter() - started
    try:
        started = time.perf_counter()
        run_stage1(config, progress=False, executor=executor)
        times["stage1"] = time.perf_counter() - started
        started = time.perf_counter()
        middle_idx, _, displacements = run_stage2(config, progress=False)
        times["stage2"] = time.perf_counter() - started
        started = time.perf_counter()
        final = run_stage3(config, middle_idx, displacements, progress=False, executor=executor)
        times["stage3"] = time.perf_counter() - started
    finally:
        if executor is not None:
            executor.close()
    return {
        "times": times,
        "middle_idx": middle_idx,
        "offsets": _recovered(displacements),
        "valid_pixels": int(final.sum()),
    }


def run_pyflowreg(python: str, root: Path, args: argparse.Namespace, frames: int) -> dict:
    spec = {
        "root": str(root),
        "quality": args.quality,
        "n_workers": args.workers,
        "sigma_smooth": args.sigma_smooth,
        "reference_frames": list(range(min(frames, 50))),
    }
    done = subprocess.run(
        [python, "-c", PYFLOWREG_SCRIPT, json.dumps(spec)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"pyflowreg run failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _errors(offsets: list[list[float]], truth: np.ndarray) -> list[float]:
    return [float(np.hypot(*(np.asarray(o) - t))) for o, t in zip(offsets, truth, strict=True)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="64x64, 40 frames")
    parser.add_argument("--frames", type=int, default=100)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--workers", type=int, default=min(3, os.cpu_count() or 1))
    parser.add_argument("--quality", default="balanced", choices=["fast", "balanced", "quality"])
    parser.add_argument("--sigma-smooth", type=float, default=6.0)
    parser.add_argument("--pyflowreg-python", default=None)
    parser.add_argument("--no-pyflowreg", action="store_true")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    frames, size = (40, 64) if args.quick else (args.frames, args.size)
    if args.quick:
        args.sigma_smooth = min(args.sigma_smooth, 2.0)

    from labsession.motion.session import make_synthetic_session

    with tempfile.TemporaryDirectory(prefix="motion_session_bench_") as tmp:
        root = Path(tmp) / "data"
        truth = make_synthetic_session(
            root, offsets=OFFSETS, n_frames=frames, shape=(size, size), n_channels=2, seed=11
        )
        expected = np.array([truth.expected_displacement(i) for i in range(len(OFFSETS))])
        results: dict[str, dict] = {}
        for scheduler in ("local", "dask"):
            results[scheduler] = run_labsession(root, scheduler, args, frames)
        python = args.pyflowreg_python or next(
            (p for p in PYFLOWREG_CANDIDATES if Path(p).exists()), None
        )
        if not args.no_pyflowreg:
            if python is None:
                print("pyflowreg venv not found: pass --pyflowreg-python or --no-pyflowreg")
            else:
                results["pyflowreg"] = run_pyflowreg(python, root, args, frames)

    print(
        f"motion session: 3 recordings x {frames} frames of {size}x{size} px, 2 channels, "
        f"flowreg backend, stage-1 quality {args.quality!r}, {args.workers} workers, "
        f"sigma_smooth {args.sigma_smooth}; {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}"
    )
    header = (
        f"{'run':<12}{'start s':>9}{'stage 1 s':>11}{'stage 2 s':>11}{'stage 3 s':>11}"
        f"{'total s':>10}"
    )
    print(header + f"{'max offset err px':>19}{'valid px':>10}")
    for name, res in results.items():
        t = res["times"]
        total = sum(t.values())
        err = max(_errors(res["offsets"], expected))
        print(
            f"{name:<12}{t.get('cluster_start', 0.0):>9.2f}{t['stage1']:>11.2f}"
            f"{t['stage2']:>11.2f}{t['stage3']:>11.2f}{total:>10.2f}{err:>19.3f}"
            f"{res['valid_pixels']:>10d}"
        )
    print("recovered offsets to the center (u, v) px vs truth:")
    for idx, exp in enumerate(expected):
        cells = "  ".join(
            f"{name} ({res['offsets'][idx][0]:+.2f}, {res['offsets'][idx][1]:+.2f})"
            for name, res in results.items()
        )
        print(f"  rec_{idx}: truth ({exp[0]:+.2f}, {exp[1]:+.2f})  {cells}")
    if "pyflowreg" in results:
        ours = results["local"]["times"]
        theirs = results["pyflowreg"]["times"]
        ratios = {k: theirs[k] / max(ours[k], 1e-9) for k in theirs}
        total = sum(theirs.values()) / max(sum(ours.values()), 1e-9)
        print(
            "pyflowreg / labsession-local wall time: "
            + ", ".join(f"{k} {v:.2f}x" for k, v in ratios.items())
            + f", total {total:.2f}x"
        )
    if args.json:
        args.json.write_text(json.dumps({"expected": expected.tolist(), **results}, indent=2))


if __name__ == "__main__":
    sys.exit(main())
