"""Motion-correction speed and accuracy: labsession backends vs pyflowreg, same files, same run.

For each frame size, a seeded synthetic 2-photon video (labsession.motion.synthetic, 2 channels,
non-rigid ground truth) is written to disk; every configuration then runs in its own process
(so peak memory is its own and numba compilation is excluded by a warm-up call) and reports:

- frames/s: median over ``--repeats`` timed runs of ``compensate_arr`` on the whole video;
- frames/CPU-s: frames per CPU second (user + system, the process and its children), which
  other jobs on a shared machine disturb much less than wall time;
- peak RSS (MiB): the worker process's own high-water mark plus its largest child process
  (pyflowreg's multiprocessing workers; labsession runs in one process);
- EPE: mean endpoint error (px) of the estimated displacement against the truth (8 px border
  left out);
- corr: mean Pearson correlation of the corrected frames with the reference.

The load average (1, 5, 15 min) is printed at the start and the end: on a shared machine,
compare tools within one run, not across runs.

pyflowreg runs from a separate virtual environment (it needs opencv-contrib-python):
``python3 -m venv /tmp/pyflowreg-venv && /tmp/pyflowreg-venv/bin/pip install pyflowreg``.

Usage::

    python benchmarks/motion_bench.py            # 256x256 and 512x512
    python benchmarks/motion_bench.py --quick    # 64x64 and 128x128, few frames
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

PYFLOWREG_PYTHON = "/tmp/pyflowreg-venv/bin/python"

_COMMON = r"""
import json, resource, sys, time
import numpy as np

def corr(registered, reference):
    flat = registered.reshape(len(registered), -1).astype(np.float64)
    ref = reference.ravel().astype(np.float64)
    flat -= flat.mean(axis=1, keepdims=True)
    ref = ref - ref.mean()
    return float(np.mean(flat @ ref / (np.linalg.norm(flat, axis=1) * np.linalg.norm(ref))))

def peak_mib():
    # VmHWM: this process's own peak RSS (ru_maxrss would include the parent's RSS at fork).
    with open("/proc/self/status") as f:
        own = next(int(ln.split()[1]) for ln in f if ln.startswith("VmHWM:"))
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # pyflowreg's workers
    return (own + kids) / 1024.0

folder, backend, quality, repeats = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
video = np.load(folder + "/video.npy")
reference = np.load(folder + "/reference.npy")
"""

_OURS = (
    _COMMON
    + r"""
from labsession.motion import OFOptions, compensate_arr
opts = OFOptions(quality_setting=quality, flow_backend=backend)
def run(frames):
    return compensate_arr(frames, reference, opts)
"""
)

_PYFLOWREG = (
    _COMMON
    + r"""
import contextlib, io
from pyflowreg.motion_correction.compensate_arr import compensate_arr
from pyflowreg.motion_correction.OF_options import OFOptions
from pyflowreg.motion_correction.compensate_recording import RegistrationConfig
opts = OFOptions(quality_setting=quality, flow_backend=backend, save_meta_info=False)
config = RegistrationConfig(n_jobs=2)
def run(frames):
    with contextlib.redirect_stdout(io.StringIO()):  # pyflowreg prints progress
        return compensate_arr(frames, reference, opts, registration_config=config)
"""
)

_TIMING = r"""
run(video[:2])  # warm-up: numba compilation, thread pools
times = []
cpu = []
for _ in range(repeats):
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    c0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    registered, w = run(video)
    times.append(time.perf_counter() - start)
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    c1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu.append(r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime
               + c1.ru_utime + c1.ru_stime - c0.ru_utime - c0.ru_stime)
np.save(folder + f"/w_{sys.argv[5]}.npy", np.asarray(w, np.float32))
print("RESULT " + json.dumps({"seconds": times, "cpu_seconds": cpu,
                              "corr": corr(registered, reference),
                              "peak_mib": peak_mib()}))
"""


def _run_worker(python: str, code: str, args: list[str]) -> dict:
    proc = subprocess.run(
        [python, "-c", code + _TIMING, *args], capture_output=True, text=True, check=False
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"worker {args} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
    return json.loads(lines[-1][len("RESULT ") :])


def _epe(w: np.ndarray, truth: np.ndarray, margin: int = 8) -> float:
    d = (w - truth)[:, margin:-margin, margin:-margin]
    return float(np.hypot(d[..., 0], d[..., 1]).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="64x64 and 128x128, 12 frames")
    parser.add_argument("--sizes", type=int, nargs="+", help="frame sizes (square)")
    parser.add_argument("--frames", type=int, help="frames per video (default by size)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per configuration")
    parser.add_argument("--pyflowreg", default=PYFLOWREG_PYTHON, help="python of pyflowreg's venv")
    parser.add_argument("--no-pyflowreg", action="store_true", help="skip the reference tool")
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    parser.add_argument(
        "--no-quality", action="store_true", help="skip the slow quality preset (256x256 only)"
    )
    args = parser.parse_args()

    from labsession.motion.synthetic import make_2p_video

    sizes = args.sizes or ([64, 128] if args.quick else [256, 512])
    have_pfr = not args.no_pyflowreg and Path(args.pyflowreg).exists()
    if not have_pfr and not args.no_pyflowreg:
        print(f"pyflowreg not found at {args.pyflowreg}: comparing labsession backends only")
    results = []
    load_start = os.getloadavg()
    print("load average at start: {:.2f} {:.2f} {:.2f}".format(*load_start), flush=True)
    for size in sizes:
        n_frames = args.frames or (12 if args.quick else 40)
        configs = [
            ("labsession", "flowreg", "fast"),
            ("labsession", "flowreg", "balanced"),
            ("labsession", "diso", "fast"),
            ("labsession", "diso", "balanced"),
        ]
        with_quality = size <= 256 and not args.no_quality
        if with_quality:
            configs.append(("labsession", "flowreg", "quality"))
        if have_pfr:
            configs += [("pyflowreg", "flowreg", "fast"), ("pyflowreg", "flowreg", "balanced")]
            if with_quality:
                configs.append(("pyflowreg", "flowreg", "quality"))
        with tempfile.TemporaryDirectory(prefix="motion_bench_") as folder:
            data = make_2p_video(n_frames=n_frames, shape=(size, size), seed=size)
            np.save(f"{folder}/video.npy", data.video)
            np.save(f"{folder}/reference.npy", data.reference)
            for tool, backend, quality in configs:
                tag = f"{tool}_{backend}_{quality}"
                python, code = (
                    (args.pyflowreg, _PYFLOWREG) if tool == "pyflowreg" else (sys.executable, _OURS)
                )
                started = time.perf_counter()
                out = _run_worker(python, code, [folder, backend, quality, str(args.repeats), tag])
                w = np.load(f"{folder}/w_{tag}.npy")
                row = {
                    "size": size,
                    "frames": n_frames,
                    "tool": tool,
                    "backend": backend,
                    "quality": quality,
                    "fps": n_frames / statistics.median(out["seconds"]),
                    "frames_per_cpu_s": n_frames / statistics.median(out["cpu_seconds"]),
                    "epe_px": _epe(w, data.w),
                    "corr": out["corr"],
                    "peak_mib": out["peak_mib"],
                }
                results.append(row)
                print(
                    f"{size:4d}px {tool:10s} {backend:8s} {quality:8s} "
                    f"{row['fps']:7.2f} frames/s  {row['frames_per_cpu_s']:7.2f} frames/CPU-s  "
                    f"EPE {row['epe_px']:.3f} px  "
                    f"corr {row['corr']:.4f}  peak {row['peak_mib']:.0f} MiB  "
                    f"({time.perf_counter() - started:.0f} s)",
                    flush=True,
                )
    load_end = os.getloadavg()
    _print_table(results)
    print("\nload average at start: {:.2f} {:.2f} {:.2f}".format(*load_start))
    print("load average at end:   {:.2f} {:.2f} {:.2f}".format(*load_end))
    if args.json:
        args.json.write_text(
            json.dumps({"load_start": load_start, "load_end": load_end, "rows": results}, indent=2)
        )


def _print_table(results: list[dict]) -> None:
    print(
        "\n| size | tool | backend | quality | frames/s | frames/CPU-s | EPE (px) | corr | "
        "peak MiB | fps ratio | CPU ratio | EPE ratio |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        ref = next(
            (
                p
                for p in results
                if p["tool"] == "pyflowreg"
                and p["size"] == r["size"]
                and p["quality"] == r["quality"]
            ),
            None,
        )
        mine = ref and r["tool"] != "pyflowreg"
        fps_ratio = f"{r['fps'] / ref['fps']:.2f}x" if mine else "-"
        cpu_ratio = f"{r['frames_per_cpu_s'] / ref['frames_per_cpu_s']:.2f}x" if mine else "-"
        epe_ratio = (
            f"{r['epe_px'] / ref['epe_px']:.2f}" if ref and r["tool"] != "pyflowreg" else "-"
        )
        print(
            f"| {r['size']} | {r['tool']} | {r['backend']} | {r['quality']} | {r['fps']:.2f} | "
            f"{r['frames_per_cpu_s']:.2f} | {r['epe_px']:.3f} | {r['corr']:.4f} | "
            f"{r['peak_mib']:.0f} | {fps_ratio} | {cpu_ratio} | {epe_ratio} |"
        )


if __name__ == "__main__":
    main()
