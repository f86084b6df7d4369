"""How fast the session manager lists a folder of many sessions (target: 500 in < 200 ms).

Writes ``--n`` (500) small sessions (2 channels at 100 Hz for 1 s, 5 labels: half packed to
``.session.zip``, half left as folders) into ``--dir`` (a temporary folder by default; reused
if it already holds sessions), then times, median of ``--repeats`` (7):

- cold scan without the cache file: a new ``SessionIndex(cache=False)`` lists and reads every
  session (meta.json, labels.json and each array's zarr.json; no Zarr). The OS page cache is
  warm after the first run (dropping it needs root), so the first run is also printed;
- first listing with the cache: a new ``SessionIndex`` (as in a new process) once a previous one
  wrote its rows to the cache file: a listing, a stat per entry and the file parsed, no read;
  then the same first scan in a fresh interpreter (``--processes`` of them; imports not timed);
- full rescan of a filled index (what ``###rescan`` does, on the background thread);
- warm re-list: a scan with nothing changed (a listing and a stat per entry, no read);
- the GUI: from a new ``SessionManager`` to all rows drawn (reading on its background thread),
  without and with the cache file, then the time of one frame drawing the 500-row list
  (``ImguiFrames``, no window);
- for comparison, ``labsession.recording.session_summary`` (opens Zarr) on ``--summary`` (50)
  of the sessions, scaled to ``--n``.

The cache files go to a temporary state folder (``$LABSESSION_STATE_DIR``), never the user's.

    python benchmarks/session_list.py [--n 500] [--repeats 7] [--processes 5] [--dir PATH]
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

#: A fresh interpreter's first scan of the folder ``sys.argv[1]``: prints wall and CPU seconds.
FIRST_SCAN = """
import sys, time
from labsession.widgets._session_index import SessionIndex
index = SessionIndex(sys.argv[1])
wall, cpu = time.perf_counter(), time.process_time()
rows = index.scan()
print(time.perf_counter() - wall, time.process_time() - cpu, len(rows), index.reads)
"""


def make_sessions(base: Path, n: int) -> int:
    """Write small sessions into ``base`` (half zips, half folders) until it holds ``n``;
    return how many it holds."""
    from labsession.testing import record_tiny_session

    have = sum(1 for p in base.iterdir() if not p.name.startswith(".")) if base.exists() else 0
    if have >= n:
        print(f"reusing the {have} sessions in {base}")
        return have
    start = time.perf_counter()
    for i in range(have, n):
        record_tiny_session(base, seed=i, pack=i % 2 == 0)
    print(f"wrote {n - have} sessions into {base} in {time.perf_counter() - start:.1f} s")
    return n


def timed(func, repeats: int) -> list[tuple[float, float]]:
    """Run ``func()`` ``repeats`` times; return the (wall-clock, process CPU) seconds of each."""
    out = []
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        func()
        out.append((time.perf_counter() - wall, time.process_time() - cpu))
    return out


def report(label: str, runs: list[tuple[float, float]], n: int | None = None) -> None:
    """Print the median wall and CPU time of ``runs`` (and per session when ``n`` is given)."""
    wall = [w for w, _ in runs]
    med, cpu = statistics.median(wall), statistics.median(c for _, c in runs)
    per = f"; {med / n * 1e6:.0f} us per session" if n else ""
    print(
        f"{label:<42} median {med * 1e3:7.1f} ms wall, {cpu * 1e3:7.1f} ms CPU "
        f"(wall min {min(wall) * 1e3:.1f}, max {max(wall) * 1e3:.1f}{per})"
    )


def wait_until_cacheable(base: Path) -> None:
    """Sleep until every session is older than ``RACY_NS``: rows read sooner after a write are
    not cached (sessions just written by :func:`make_sessions`)."""
    from labsession.widgets._session_cache import RACY_NS

    newest = max(p.stat().st_mtime_ns for p in [base, *base.rglob("*")])
    time.sleep(max(0.0, (newest + RACY_NS - time.time_ns()) / 1e9 + 0.1))


def bench_index(base: Path, n: int, repeats: int, processes: int) -> None:
    from labsession.widgets._session_index import SessionIndex

    def cold() -> None:
        rows = SessionIndex(base, cache=False).scan()
        if len(rows) != n or any(r.error for r in rows):
            raise RuntimeError(f"expected {n} readable sessions in {base}")

    first = timed(cold, 1)
    report("cold scan without cache, first run", first, n)
    report("cold scan without cache (page cache warm)", timed(cold, repeats), n)

    wait_until_cacheable(base)
    writer = SessionIndex(base)
    writer.scan()
    writer.close()

    def cached() -> None:
        index = SessionIndex(base)
        rows = index.scan()
        if len(rows) != n or index.reads:
            raise RuntimeError(f"the cache gave {len(rows)} rows and {index.reads} reads")

    report("first listing with the cache (new index)", timed(cached, repeats), n)
    runs = []
    for _ in range(processes):
        out = subprocess.run(
            [sys.executable, "-c", FIRST_SCAN, str(base)], capture_output=True, text=True
        )
        wall, cpu, rows, reads = out.stdout.split()
        if out.returncode or int(rows) != n or int(reads):
            raise RuntimeError(f"a new process listed {rows} rows with {reads} reads")
        runs.append((float(wall), float(cpu)))
    report("  the same, first scan in a new process", runs, n)

    index = SessionIndex(base, cache=False)
    index.scan()
    report("full rescan of a filled index", timed(lambda: index.scan(full=True), repeats), n)
    reads = index.reads
    report("warm re-list (nothing changed)", timed(index.scan, repeats), n)
    if index.reads != reads:
        raise RuntimeError("the warm re-list read sessions again")


def bench_gui(base: Path, n: int, label: str, *, frames_too: bool) -> None:
    from labsession.testing import ImguiFrames
    from labsession.widgets import SessionManager

    with ImguiFrames() as frames:
        manager = SessionManager(base)
        try:
            start = time.perf_counter()
            first = None
            while len(manager.rows) < n:  # frames paced at 60 Hz, as a window with vsync
                due = time.perf_counter() + 1 / 60
                frames.draw(manager.ui)
                if first is None and manager.rows:
                    first = time.perf_counter() - start
                time.sleep(max(0.0, due - time.perf_counter()))
            filled = time.perf_counter() - start
            print(
                f"{f'GUI: new manager to all rows drawn ({label})':<42} {filled * 1e3:8.1f} ms "
                f"(first rows after {first * 1e3:.0f} ms; frames at 60 Hz meanwhile)"
            )
            if not frames_too:
                return
            frames.draw(manager.ui, frames=10)
            frame = timed(lambda: frames.draw(manager.ui), 60)
            report("GUI: one frame (new_frame to render)", frame)
        finally:
            manager.close()


def bench_summary(base: Path, n: int, count: int) -> None:
    from labsession.recording import session_summary

    paths = sorted(p for p in base.iterdir() if not p.name.startswith("."))[:count]
    seconds = timed(lambda: [session_summary(p) for p in paths], 1)[0][0]
    print(
        f"{'session_summary (opens Zarr), scaled':<42} {seconds / count * n * 1e3:8.1f} ms "
        f"for {n} ({seconds / count * 1e6:.0f} us per session, measured on {count})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=500, help="sessions to list")
    parser.add_argument("--repeats", type=int, default=7, help="runs per figure (median)")
    parser.add_argument("--processes", type=int, default=5, help="new processes timed (median)")
    parser.add_argument("--summary", type=int, default=50, help="sessions session_summary reads")
    parser.add_argument("--dir", type=Path, default=None, help="folder of the sessions")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="session_list_") as tmp:
        base = args.dir if args.dir is not None else Path(tmp) / "sessions"
        print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        state = Path(tmp) / "state"
        os.environ["LABSESSION_STATE_DIR"] = str(state)  # the cache files: never the user's
        n = make_sessions(base, args.n)
        bench_index(base, n, args.repeats, args.processes)
        os.environ["LABSESSION_STATE_DIR"] = str(Path(tmp) / "empty_state")
        bench_gui(base, n, "no cache", frames_too=False)
        os.environ["LABSESSION_STATE_DIR"] = str(state)
        bench_gui(base, n, "cache", frames_too=True)
        bench_summary(base, n, args.summary)
        print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
