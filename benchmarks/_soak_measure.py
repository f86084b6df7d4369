"""Measurements and the printed tables of ``soak.py`` (process probes, latency histograms)."""

from __future__ import annotations

import bisect
import os
import threading
import time
from pathlib import Path

import numpy as np


class LogHistogram:
    """Counts of positive values in log-spaced bins (1.2 % wide, 0.1 us to 1000 s)."""

    EDGES = np.geomspace(1e-7, 1e3, 2001)
    _edges = EDGES.tolist()

    def __init__(self) -> None:
        self.counts = np.zeros(len(self.EDGES) + 1, np.int64)
        self.n, self.max = 0, 0.0

    def add(self, value: float) -> None:
        self.counts[bisect.bisect_right(self._edges, value)] += 1
        self.n += 1
        self.max = max(self.max, value)

    def merged(self, others: list[LogHistogram]) -> LogHistogram:
        out = LogHistogram()
        for h in [self, *others]:
            out.counts += h.counts
            out.n += h.n
            out.max = max(out.max, h.max)
        return out

    def quantile(self, q: float) -> float:
        """Upper edge of the bin holding quantile ``q`` (over-estimates by < 1.2 %)."""
        if self.n == 0:
            return float("nan")
        i = int(np.searchsorted(np.cumsum(self.counts), q * self.n))
        return float(self.EDGES[min(i, len(self.EDGES) - 1)])

    def summary_ms(self) -> dict[str, float]:
        q = {f"p{p:g}": 1e3 * self.quantile(p / 100) for p in (50, 99, 99.9)}
        return {**q, "max": 1e3 * self.max, "n": self.n}


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system


def thread_cpu() -> dict[int, tuple[str, float]]:
    """``{thread id: (name, CPU seconds)}`` of this process's threads (Python names if any)."""
    names = {t.native_id: t.name for t in threading.enumerate()}
    out = {}
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/stat") as f:
                stat = f.read()
        except OSError:  # the thread ended meanwhile
            continue
        fields = stat[stat.rindex(")") + 2 :].split()  # utime, stime: fields 14, 15
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        out[int(tid)] = (names.get(int(tid), comm), cpu)
    return out


def thread_group(name: str) -> str:
    for prefix, group in (
        ("labsession-acq", "acquisition threads (LSL pull, Session.append)"),
        ("labsession-writer", "session writer thread (Zarr, compression)"),
        ("asyncio", "zarr's event loop (asyncio_*)"),
        ("zarr_io", "zarr's I/O pool (zarr_io_*)"),
        ("python", "unnamed native threads (liblsl, zarrs codecs)"),
        ("MainThread", "this script (main, monitor)"),
        ("soak-monitor", "this script (main, monitor)"),
    ):
        if name.startswith(prefix):
            return group
    return name.rstrip("0123456789-_ ")


def cpu_by_group(before: dict, after: dict, total: float, span: float) -> dict[str, float]:
    """Percent of one core per thread group between two :func:`thread_cpu` snapshots."""
    groups: dict[str, float] = {}
    for tid, (name, cpu) in after.items():
        used = cpu - before.get(tid, (name, 0.0))[1]
        groups[thread_group(name)] = groups.get(thread_group(name), 0.0) + used
    groups["threads that ended (killed stream's inlet, ...)"] = total - sum(groups.values())
    return {g: round(100 * v / span, 1) for g, v in sorted(groups.items(), key=lambda i: -i[1])}


def disk_floor(folder: Path, megabytes: int) -> float:
    """MB/s of writing ``megabytes`` of random bytes to a file in ``folder``, fsync included."""
    if megabytes <= 0:
        return float("nan")
    block = os.urandom(8 << 20)
    path = folder / ".soak-floor.bin"
    start = time.perf_counter()
    with open(path, "wb") as f:
        for _ in range(max(1, megabytes // 8)):
            f.write(block)
        f.flush()
        os.fsync(f.fileno())
    elapsed = time.perf_counter() - start
    path.unlink()
    return max(1, megabytes // 8) * 8 * (1 << 20) / elapsed / 1e6


def slope_per_minute(t: np.ndarray, y: np.ndarray) -> float:
    """Least-squares slope of ``y`` against ``t`` (seconds), per minute."""
    if len(t) < 2 or np.ptp(t) == 0:
        return float("nan")
    return float(np.polyfit(t, y, 1)[0] * 60)


def print_report(report: dict, *, to_stderr: bool) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(stderr=to_stderr)
    if not console.is_terminal:
        console.width = 150
    cfg, s = report["config"], report["summary"]
    console.print(
        f"{cfg['streams']} streams, {s['raw_mb_s']:.1f} MB/s raw float32, {cfg['minutes']:g} min; "
        f"{cfg['kill_stream']} SIGKILLed at {cfg['kill_at_s']:.0f} s, down {cfg['down_s']:.1f} s; "
        f"{cfg['cpus']} CPUs, load {cfg['load_start'][0]:.1f} -> {cfg['load_end'][0]:.1f}"
    )
    table = Table(title="per stream")
    for col in (
        "stream",
        "ch x Hz",
        "pushed",
        "recorded",
        "lost in gap",
        "lost outside",
        "rep/back",
        "ts gaps",
        "disc.",
        "append p50/p99/max ms",
        "due->appended p99/max ms",
    ):
        table.add_column(col, justify="right")
    for name, st in report["streams"].items():
        a, g = st["append_ms"], st["push_to_append_ms"]
        table.add_row(
            name,
            f"{st['channels']} x {st['fs']:g}",
            f"{st['pushed']:,}",
            f"{st['recorded']:,}",
            f"{st['lost_in_gap']:,}",
            f"[bold]{st['lost_outside_gap']:,}[/bold]",
            str(st["repeated_or_backwards"]),
            str(st["ts_gaps"]),
            str(st["health"]["n_disconnects"]),
            f"{a['p50']:.3f} / {a['p99']:.2f} / {a['max']:.0f}",
            f"{g['p99']:.0f} / {g['max']:.0f}",
        )
    console.print(table)
    for name, st in report["streams"].items():
        if st["gap"]:
            gp = st["gap"]
            console.print(
                f"gap in {name}: {gp['missing_samples']:,} samples (counter "
                f"{gp['last_before']:,} -> {gp['first_after']:,}, {gp['counter_gap_s']:.3f} s; "
                f"timestamps {gp['ts_gap_s']:.3f} s); last sample "
                f"{gp['last_sample_before_kill_s']:.3f} s before the kill, first one "
                f"{gp['restart_to_first_sample_s']:.2f} s after the restart"
            )
        if st["ts_anomalies"]:
            console.print(f"timestamp steps in {name} outside the gap: {st['ts_anomalies']}")
        if st["integrity"] is not None:
            console.print(f"integrity({name!r}): {st['integrity']}")
    a, g = s["append_ms"], s["push_to_append_ms"]
    figures = Table(title="soak figures")
    figures.add_column("figure")
    figures.add_column("measured", justify="right")
    figures.add_column("reference / floor", justify="right")
    rows = [
        ("samples lost outside the gap", f"[bold]{s['lost_outside_gap']}[/bold]", "must be 0"),
        ("killed stream reconnected", str(s["reconnected"]), "must be True"),
        (
            "RSS before connecting -> connected, not recording",
            f"{s['rss_before_connect_mb']:.0f} -> {s['rss_connected_mb']:.0f} MB",
            "imports; LSL inlets (liblsl buffers)",
        ),
        (
            "RSS at warm-up -> end (peak)",
            f"{s['rss_at_warm_mb']:.0f} -> {s['rss_end_mb']:.0f} ({s['rss_peak_mb']:.0f}) MB",
            f"warm-up = first {s['warm_s']:.0f} s",
        ),
        ("RSS slope after warm-up", f"{s['rss_slope_mb_per_min']:+.2f} MB/min", "~0"),
        (
            "append latency p50 / p99 / p99.9 / max",
            f"{a['p50']:.3f} / {a['p99']:.3f} / {a['p99.9']:.2f} / {a['max']:.0f} ms",
            f"{a['n']:,} calls",
        ),
        (
            "sample due -> appended p50 / p99 / max",
            f"{g['p50']:.0f} / {g['p99']:.0f} / {g['max']:.0f} ms",
            "push interval + LSL transfer + read poll",
        ),
        (
            "session folder growth",
            f"{s['folder_mb_s']:.1f} MB/s",
            f"raw {s['raw_mb_s']:.1f} MB/s; disk floor {s['disk_floor_mb_s']:.0f} MB/s (fsync)",
        ),
        ("recorder CPU (all threads)", f"{s['recorder_cpu_pct']:.0f} % of a core", ""),
        ("outlet processes CPU", f"{s['outlets_cpu_pct']:.0f} % of a core", "load generator"),
        (
            "last push -> pulled / flushed; pack",
            f"{s['drain_s']:.2f} s / +{s['flush_s']:.2f} s; {s['pack_s']:.1f} s",
            f"{s['session_mb']:.0f} MB folder -> {s['packed_mb']:.0f} MB",
        ),
    ]
    for row in rows:
        figures.add_row(*row)
    console.print(figures)
    threads = Table(title="recorder CPU by thread (% of one core)")
    threads.add_column("threads")
    threads.add_column("CPU", justify="right")
    for group, pct in s["recorder_cpu_by_thread_pct"].items():
        threads.add_row(group, f"{pct:.1f}")
    console.print(threads)
