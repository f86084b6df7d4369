"""How fast the session manager lists a folder of many sessions (target: 500 in < 200 ms).

Writes ``--n`` (500) small sessions (2 channels at 100 Hz for 1 s, 5 labels: half packed to
``.session.zip``, half left as folders) into ``--dir`` (a temporary folder by default; reused
if it already holds sessions), then times, median of ``--repeats`` (7):

- cold scan: a new ``SessionIndex`` lists and reads every session (meta.json, labels.json and
  each array's zarr.json; no Zarr). The OS page cache is warm after the first run (dropping it
  needs root), so the first run is also printed;
- full rescan of a filled index (what ``###rescan`` does, on the background thread);
- warm re-list: a scan with nothing changed (a listing and a stat per entry, no read);
- the GUI: from a new ``SessionManager`` to all rows drawn (reading on its background thread),
  then the time of one frame drawing the 500-row list (``ImguiFrames``, no window);
- for comparison, ``labsession.recording.session_summary`` (opens Zarr) on ``--summary`` (50)
  of the sessions, scaled to ``--n``.

    python benchmarks/session_list.py [--n 500] [--repeats 7] [--dir PATH]
"""

from __future__ import annotations

import argparse
import logging
import statistics
import tempfile
import time
from pathlib import Path


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


def bench_index(base: Path, n: int, repeats: int) -> None:
    from labsession.widgets._session_index import SessionIndex

    def cold() -> None:
        rows = SessionIndex(base).scan()
        if len(rows) != n or any(r.error for r in rows):
            raise RuntimeError(f"expected {n} readable sessions in {base}")

    first = timed(cold, 1)
    report("cold scan, first run", first, n)
    report("cold scan (new index, page cache warm)", timed(cold, repeats), n)
    index = SessionIndex(base)
    index.scan()
    report("full rescan of a filled index", timed(lambda: index.scan(full=True), repeats), n)
    reads = index.reads
    report("warm re-list (nothing changed)", timed(index.scan, repeats), n)
    if index.reads != reads:
        raise RuntimeError("the warm re-list read sessions again")


def bench_gui(base: Path, n: int) -> None:
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
                f"{'GUI: new manager to all rows drawn':<42} {filled * 1e3:8.1f} ms "
                f"(first rows after {first * 1e3:.0f} ms; frames at 60 Hz meanwhile)"
            )
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
    parser.add_argument("--summary", type=int, default=50, help="sessions session_summary reads")
    parser.add_argument("--dir", type=Path, default=None, help="folder of the sessions")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="session_list_") as tmp:
        base = args.dir if args.dir is not None else Path(tmp) / "sessions"
        n = make_sessions(base, args.n)
        bench_index(base, n, args.repeats)
        bench_gui(base, n)
        bench_summary(base, n, args.summary)


if __name__ == "__main__":
    main()
