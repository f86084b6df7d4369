"""Run-session benchmark: start+close overhead and bulk archive/restore, beside scitex-session.

Figures printed:

1. Start+close overhead of a trivial ``@session`` function, median over fresh processes: the time
   from calling ``main()`` to the session being closed (the decorator's own work: argument
   parsing, run folder, tee, CONFIGS, seeds, close and move), and the wall time of the whole
   ``python script.py`` process next to a bare ``python -c "import numpy"``.
2. Bulk archive and restore of N run folders with seven small files each (N = 200 and 2,000 by
   default; ``--n 200,2000,20000``), in sessions per second, timed around the call as a user
   times it (a fresh process imports the package first; the clock then covers the whole
   ``archive_existing(root, dry_run=False)`` call: worker start-up, lazy imports, flushes):
   labsession (all CPUs; one process; and all CPUs from a process running a second thread, as
   in Jupyter, where workers are spawned rather than forked) and scitex-session on the same
   folders in the same run, ours and theirs alternating, with the ratios. Every restore is
   checked byte for byte against the folders made. Once per N, the rate of creating the same
   trees with bare ``os.mkdir`` and ``os.open`` calls in one process: the floor of any restore.

scitex-session is never a labsession dependency: install it in a scratch venv and point
``--scitex-python`` at it::

    python3 -m venv /tmp/scitex-venv && /tmp/scitex-venv/bin/pip install scitex-session
    python benchmarks/runs_bench.py                 # 200 and 2,000 runs, 3 repeats
    python benchmarks/runs_bench.py --n 200 --repeats 1 --overhead-runs 5   # a quick look

This file also serves as the worker (``--worker``); it imports only the standard library at the
top so that the scitex venv's Python can run it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

FILES = (
    "logs/stdout.log",
    "logs/stderr.log",
    "CONFIGS/CONFIG.yaml",
    "CONFIGS/CONFIG.json",
    "CONFIGS/args.yaml",
    "CONFIGS/args.json",
    "results.csv",
)

LABSESSION_TRIVIAL = """
import os, sys, time
t0 = time.perf_counter()
from labsession.runs import session
t_import = time.perf_counter() - t0

@session
def main():
    return 0

if __name__ == "__main__":
    t1 = time.perf_counter()
    try:
        main()
    except SystemExit:
        pass
    with open(os.environ["BENCH_OUT"], "w") as f:
        f.write(f"{time.perf_counter() - t1} {t_import}")
"""

SCITEX_TRIVIAL = """
import os, sys, time
t0 = time.perf_counter()
import scitex_session
t_import = time.perf_counter() - t0

@scitex_session.session
def main():
    return 0

if __name__ == "__main__":
    t1 = time.perf_counter()
    try:
        main()
    except SystemExit:
        pass
    with open(os.environ["BENCH_OUT"], "w") as f:
        f.write(f"{time.perf_counter() - t1} {t_import}")
"""


# --------------------------------------------------------------------------------------------
# worker mode: runs inside labsession's or scitex's interpreter
# --------------------------------------------------------------------------------------------
def _worker(tool: str, op: str, root: str, jobs: int | None, thread: bool) -> None:
    if thread:  # a second thread, as a Jupyter kernel has: labsession then spawns its workers
        import threading

        stop = threading.Event()
        threading.Thread(target=stop.wait, daemon=True).start()
    if tool == "labsession":
        from labsession.runs import archive_existing, restore_existing

        kwargs = {"progress": False, "jobs": jobs}
    else:
        from scitex_session._lifecycle._archive import archive_existing, restore_existing

        kwargs = {}
    t0 = time.perf_counter()
    if op == "archive":
        summary = archive_existing(root, dry_run=False, **kwargs)
    else:
        summary = restore_existing(root, dry_run=False, **kwargs)
    seconds = time.perf_counter() - t0
    summary = {k: v for k, v in summary.items() if k != "errors"}
    print(json.dumps({"seconds": seconds, "summary": summary}))


# --------------------------------------------------------------------------------------------
# driver
# --------------------------------------------------------------------------------------------
def make_runs(root: Path, n: int) -> None:
    """Create ``n`` run folders named like run IDs with seven small files each (~1-4 KiB)."""
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        day, hour, minute, second = 1 + i // 86400 % 28, i // 3600 % 24, i // 60 % 60, i % 60
        run = root / f"2026Y-01M-{day:02d}D-{hour:02d}h{minute:02d}m{second:02d}s_b{i:04d}"
        (run / "logs").mkdir(parents=True)
        (run / "CONFIGS").mkdir()
        for j, name in enumerate(FILES):
            line = f"run {i} file {name} value {i * 7 + j}\n".encode()
            (run / name).write_bytes(line * (20 + 10 * j))


def bare_creation_rate(scratch: Path, n: int) -> float:
    """Runs per second of creating the same trees with bare ``os.mkdir``/``os.open`` calls.

    The floor for any restore on this disk: three folders and seven files per run, the same
    sizes, no archive read, no temporary folder, no check. Timed in this process, then removed.
    """
    scratch.mkdir()
    t0 = time.perf_counter()
    for i in range(n):
        run = os.path.join(scratch, f"run{i:05d}")
        os.mkdir(run)
        os.mkdir(os.path.join(run, "logs"))
        os.mkdir(os.path.join(run, "CONFIGS"))
        for j, name in enumerate(FILES):
            fd = os.open(os.path.join(run, name), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            os.write(fd, f"run {i} file {name} value {i * 7 + j}\n".encode() * (20 + 10 * j))
            os.close(fd)
    rate = n / (time.perf_counter() - t0)
    shutil.rmtree(scratch)
    return rate


def _clean_archives(root: Path) -> None:
    for path in root.iterdir():
        if path.is_file() and path.name.endswith(".tar.gz"):
            path.unlink()


def tree_digest(root: Path) -> str:
    """SHA-256 over every run folder's relative file paths and bytes (the restore check)."""
    digest = hashlib.sha256()
    for folder, dirs, files in os.walk(root):
        dirs.sort()
        for name in sorted(files):
            path = os.path.join(folder, name)
            digest.update(os.path.relpath(path, root).encode() + b"\0")
            with open(path, "rb") as f:
                digest.update(f.read())
    return digest.hexdigest()


def _run_worker(
    python: str, tool: str, op: str, root: Path, jobs: int | None, thread: bool = False
) -> dict:
    cmd = [python, __file__, "--worker", tool, "--op", op, "--root", str(root)]
    if jobs is not None:
        cmd += ["--jobs", str(jobs)]
    if thread:
        cmd += ["--thread"]
    env = dict(os.environ, MPLBACKEND="Agg")
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{tool} {op} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


TOOLS_LABSESSION = [
    ("labsession", None, False),
    ("labsession -j1", 1, False),
    ("labsession +thread", None, True),
]


def _interleave(tools: list[tuple], rep: int) -> list[tuple]:
    """Ours and theirs alternating (ours, peer, ours, peer...), reversed every other repeat."""
    ours = [t for t in tools if not t[0].startswith("scitex")]
    peer = [t for t in tools if t[0].startswith("scitex")]
    order = [t for o in ours for t in (o, *peer)]
    return order if rep % 2 == 0 else order[::-1]


def bench_bulk(args: argparse.Namespace, work: Path, n: int) -> dict[str, dict[str, list[float]]]:
    ours = TOOLS_LABSESSION if args.variants else TOOLS_LABSESSION[:1]
    tools = [(label, sys.executable, jobs, thread) for label, jobs, thread in ours]
    if args.scitex_python:
        tools.append(("scitex-session", args.scitex_python, None, False))
    rates: dict[str, dict[str, list[float]]] = {
        t: {"archive": [], "restore": []} for t, *_ in tools
    }
    # One set of folders for every tool: each archives them all, restores them all (checked
    # against the digest of the folders made), and its archives are removed before the next.
    root = work / f"runs{n}"
    t0 = time.perf_counter()
    make_runs(root, n)
    made = tree_digest(root)
    print(f"  created {n} runs x 7 files in {time.perf_counter() - t0:.1f} s")
    for rep in range(args.repeats):
        for label, python, jobs, thread in _interleave(tools, rep):
            tool = "scitex" if label.startswith("scitex") else "labsession"
            arch = _run_worker(python, tool, "archive", root, jobs, thread)
            assert arch["summary"]["archived"] == n, arch
            rest = _run_worker(python, tool, "restore", root, jobs, thread)
            assert rest["summary"]["restored"] == n, rest
            _clean_archives(root)
            assert tree_digest(root) == made, f"{label}: restored folders differ"
            rates[label]["archive"].append(n / arch["seconds"])
            rates[label]["restore"].append(n / rest["seconds"])
            print(
                f"  n={n} repeat {rep + 1} {label:18s} archive {n / arch['seconds']:7.0f}/s  "
                f"restore {n / rest['seconds']:7.0f}/s",
                flush=True,
            )
    rates["bare creation"] = {
        "archive": [float("nan")],
        "restore": [bare_creation_rate(work / "bare", n)],
    }
    shutil.rmtree(root)
    return rates


def _time_script(
    python: str, script: Path, runs: int
) -> tuple[list[float], list[float], list[float]]:
    inside, wall, imports = [], [], []
    out_file = script.with_suffix(".time")
    env = dict(os.environ, MPLBACKEND="Agg", BENCH_OUT=str(out_file))
    for _ in range(runs):
        t0 = time.perf_counter()
        done = subprocess.run(
            [python, str(script)],
            cwd=script.parent,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        wall.append(time.perf_counter() - t0)
        if done.returncode != 0:
            raise RuntimeError(f"{script} failed:\n{done.stderr[-3000:]}")
        session_s, import_s = map(float, out_file.read_text().split())
        inside.append(session_s)
        imports.append(import_s)
    return inside, wall, imports


def bench_overhead(args: argparse.Namespace, work: Path) -> dict[str, dict[str, float]]:
    folder = work / "overhead"
    folder.mkdir()
    results = {}
    baseline = []
    for _ in range(args.overhead_runs):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import numpy"], check=True)
        baseline.append(time.perf_counter() - t0)
    results["python -c 'import numpy'"] = {"wall": statistics.median(baseline)}
    candidates = [("labsession", sys.executable, LABSESSION_TRIVIAL)]
    if args.scitex_python:
        candidates.append(("scitex-session", args.scitex_python, SCITEX_TRIVIAL))
    for label, python, body in candidates:
        script = folder / f"trivial_{label.split('-')[0]}.py"
        script.write_text(textwrap.dedent(body))
        inside, wall, imports = _time_script(python, script, args.overhead_runs)
        results[label] = {
            "start+close": statistics.median(inside),
            "import": statistics.median(imports),
            "wall": statistics.median(wall),
        }
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--n",
        default="200,2000",
        help="run folders to archive/restore, comma-separated sizes (e.g. 200,2000,20000)",
    )
    parser.add_argument("--repeats", type=int, default=3, help="bulk repeats (medians reported)")
    parser.add_argument(
        "--overhead-runs", type=int, default=15, help="processes per overhead figure"
    )
    parser.add_argument(
        "--scitex-python",
        default="/tmp/scitex-venv/bin/python",
        help="Python of a venv with scitex-session ('' to skip the comparison)",
    )
    parser.add_argument("--workdir", default=None, help="scratch folder (default: a temp folder)")
    parser.add_argument("--worker", choices=["labsession", "scitex"], help=argparse.SUPPRESS)
    parser.add_argument("--op", choices=["archive", "restore"], help=argparse.SUPPRESS)
    parser.add_argument("--root", help=argparse.SUPPRESS)
    parser.add_argument("--jobs", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--thread", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--skip-overhead", action="store_true", help="bulk figures only")
    parser.add_argument(
        "--no-variants",
        dest="variants",
        action="store_false",
        help="time labsession's default call only (not -j1 and +thread): for large --n",
    )
    args = parser.parse_args()
    if args.worker:
        _worker(args.worker, args.op, args.root, args.jobs, args.thread)
        return
    sizes = [int(v) for v in str(args.n).split(",") if v.strip()]
    if args.scitex_python and not Path(args.scitex_python).exists():
        print(f"note: {args.scitex_python} not found; skipping the scitex-session comparison")
        args.scitex_python = ""
    work = Path(tempfile.mkdtemp(prefix="runs_bench_", dir=args.workdir))
    print(f"runs_bench: n={sizes}, repeats={args.repeats}, cpus={os.cpu_count()}, work={work}")
    print(f"load average at start: {os.getloadavg()}")
    overhead: dict[str, dict[str, float]] = {}
    all_rates: dict[int, dict[str, dict[str, list[float]]]] = {}
    try:
        if not args.skip_overhead:
            print("start+close overhead of a trivial @session function:")
            overhead = bench_overhead(args, work)
        print("bulk archive/restore, timed around the call:")
        for n in sizes:
            all_rates[n] = bench_bulk(args, work, n)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"load average at end: {os.getloadavg()}")

    if overhead:
        _print_overhead(args, overhead)
    for n, rates in all_rates.items():
        _print_bulk(args, n, rates)


def _print_overhead(args: argparse.Namespace, overhead: dict[str, dict[str, float]]) -> None:
    print(f"\n== start+close overhead (median over {args.overhead_runs} processes) ==")
    print(f"{'':28s} {'start+close':>12s} {'import':>9s} {'process wall':>13s}")
    for label, fig in overhead.items():
        sc = f"{fig['start+close'] * 1e3:9.1f} ms" if "start+close" in fig else ""
        im = f"{fig['import'] * 1e3:6.1f} ms" if "import" in fig else ""
        print(f"{label:28s} {sc:>12s} {im:>9s} {fig['wall'] * 1e3:10.1f} ms")
    if "scitex-session" in overhead:
        ratio = overhead["scitex-session"]["start+close"] / overhead["labsession"]["start+close"]
        print(f"start+close: labsession is {ratio:.1f}x faster than scitex-session")


def _print_bulk(args: argparse.Namespace, n: int, rates: dict[str, dict[str, list[float]]]) -> None:
    print(
        f"\n== bulk, {n} runs x 7 files, sessions/s around the call (median of {args.repeats}) =="
    )
    med = {
        label: {op: statistics.median(v) for op, v in ops.items()} for label, ops in rates.items()
    }
    for label, ops in med.items():
        if label == "bare creation":
            print(f"{label:18s} {'':17s}   mkdir/open {ops['restore']:5.0f}/s (restore's floor)")
            continue
        print(f"{label:18s} archive {ops['archive']:7.0f}/s   restore {ops['restore']:7.0f}/s")
    if "scitex-session" in med:
        for label, _jobs, _thread in TOOLS_LABSESSION:
            if label not in med:
                continue
            print(
                f"ratio {label} / scitex-session: archive "
                f"{med[label]['archive'] / med['scitex-session']['archive']:.2f}x, restore "
                f"{med[label]['restore'] / med['scitex-session']['restore']:.2f}x"
            )


if __name__ == "__main__":
    main()
