"""Cold start of ``labsession motion compensate``: the first run on a machine vs the next ones.

The first run compiles the ``flowreg`` numba kernels; later runs load them from numba's cache.
Each repeat gives the command a fresh, empty ``NUMBA_CACHE_DIR`` (a cold run, as on a new
machine), then runs it again with the cache that run left (a warm run). Both are the wall time
of the whole subprocess (imports, reading, compiling, registering, writing, the QC figure),
on a seeded synthetic 2-photon video (40 frames of 64x64 by default, 2 channels). Printed: the
median of each and the target, cold <= max(15 s, 4 x warm), and when the compile message
("compiling the flow kernels ...") reached stderr in the cold runs.

Usage::

    python benchmarks/motion_cold_start.py                 # 3 repeats
    python benchmarks/motion_cold_start.py --repeats 5 --frames 40 --size 64
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

MESSAGE = "compiling the flow kernels"


def write_video(path: Path, n_frames: int, size: int) -> None:
    """A seeded synthetic video ``(T, H, W, C)`` as an ImageJ TIFF."""
    import tifffile

    from labsession.motion.synthetic import make_2p_video

    data = make_2p_video(n_frames=n_frames, shape=(size, size), seed=3)
    frames = np.moveaxis(data.video, -1, 1)
    tifffile.imwrite(path, frames, imagej=True, metadata={"axes": "TCYX"})


def run_cli(video: Path, out: Path, cache: Path, extra: list[str]) -> tuple[float, float | None]:
    """Wall time (s) of one ``motion compensate`` subprocess, and when the compile message
    appeared on its stderr (s after the start), or ``None`` if it did not."""
    env = {**os.environ, "NUMBA_CACHE_DIR": str(cache)}
    cmd = [sys.executable, "-m", "labsession", "motion", "compensate", str(video)]
    cmd += ["-o", str(out), *extra]
    started = time.perf_counter()
    proc = subprocess.Popen(
        cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    seen: list[float] = []
    lines: list[str] = []

    def read() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.append(line)
            if MESSAGE in line and not seen:
                seen.append(time.perf_counter() - started)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    code = proc.wait()
    elapsed = time.perf_counter() - started
    reader.join()
    if code != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({code}):\n{''.join(lines)}")
    return elapsed, (seen[0] if seen else None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="cold + warm pairs")
    parser.add_argument("--frames", type=int, default=40)
    parser.add_argument("--size", type=int, default=64, help="frame height and width (px)")
    parser.add_argument("--no-qc", action="store_true", help="pass --no-qc (no figure)")
    args = parser.parse_args()
    extra = ["--no-qc"] if args.no_qc else []
    cold: list[float] = []
    warm: list[float] = []
    message_at: list[float | None] = []
    with tempfile.TemporaryDirectory(prefix="cold_start_") as tmp:
        root = Path(tmp)
        video = root / "video.tif"
        write_video(video, args.frames, args.size)
        for i in range(args.repeats):
            cache = root / f"numba_cache_{i}"
            cache.mkdir()
            seconds, at = run_cli(video, root / f"cold_{i}", cache, extra)
            cold.append(seconds)
            message_at.append(at)
            seconds, at_warm = run_cli(video, root / f"warm_{i}", cache, extra)
            warm.append(seconds)
            shown = "-" if at is None else f"{at:.1f} s"
            print(
                f"repeat {i + 1}: cold {cold[-1]:6.1f} s (message after {shown}), "
                f"warm {warm[-1]:5.1f} s{' (message!)' if at_warm is not None else ''}",
                flush=True,
            )
    cold_median = statistics.median(cold)
    warm_median = statistics.median(warm)
    target = max(15.0, 4.0 * warm_median)
    load = os.getloadavg()[0]
    shape = f"{args.frames} frames of {args.size}x{args.size}"
    print(f"\n{shape}, {args.repeats} repeats, load average {load:.1f} at the end")
    print(f"{'cold median':>12s} {'warm median':>12s} {'target (cold <=)':>17s}  verdict")
    verdict = "met" if cold_median <= target else "NOT met"
    print(f"{cold_median:10.1f} s {warm_median:10.1f} s {target:15.1f} s  {verdict}")
    seen = [at for at in message_at if at is not None]
    if seen:
        print(f"compile message on stderr {statistics.median(seen):.1f} s after the start (median)")
    else:
        print("no compile message in the cold runs")


if __name__ == "__main__":
    main()
