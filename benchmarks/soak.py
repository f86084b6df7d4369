"""Soak: real LSL outlets in other processes -> App -> session, one outlet killed and restarted.

Each stream is an LSL outlet in its own process pushing float32 chunks every ``--push-ms`` ms.
Channels 0 and 1 carry a sample counter (low 22 bits, high bits: both exact in float32 for any
run length): the number of sample periods since the common start time, so an outlet restarted
after a SIGKILL continues where its predecessor would have been by wall time. Each sample is
timestamped with the LSL-clock time it was due (start + counter / fs), so a jump in the recorded
timestamps is a real gap, never push jitter. The App records every stream through ``LSLSource``.
At ``--kill-at`` of the run, stream ``--kill-stream``'s outlet is SIGKILLed; after
``--down-seconds`` an outlet with the same name and source id replaces it.

After the run the (packed) session is read back and, for every stream, the recorded counter is
checked sample by sample: it must start at 0, end at the last sample pushed, and step by 1
except once, across the killed outlet's downtime. Printed figures:

- samples lost outside that gap (must be 0), duplicates, and the gap as the session records it
  (counter and timestamps; ``store.integrity(name)`` too where the session has one);
- reconnection: kill -> restart -> first sample recorded again;
- memory: RSS of the recording process, at ``min(1 min, 25 %)`` of the run vs the end, and its
  slope (MB/min, least squares from then on);
- latency: the time spent in ``Session.append`` per call (the session instance's ``append`` is
  wrapped by this script, nothing else is changed), and due -> appended (age of each chunk's
  newest sample when ``append`` returns: push interval, LSL transfer, the source's poll);
  both in fixed-size log histograms, so measuring them costs no memory;
- disk: the session folder's growth (MB/s, compressed) vs the raw data rate, with the disk's
  own floor measured in the same run (sequential write of incompressible data, then fsync);
- CPU of the recording process (all threads, and by thread group: acquisition, Zarr, liblsl)
  and of the outlet processes.

Memory, CPU and latency include everything else the machine runs: state its load with the
figures (printed). ``_soak_measure.py`` holds the probes and the tables.

Exit status 1 if any sample is lost outside the gap, repeated, or the killed stream never came
back. Defaults (8 streams, 30 min, 27.6 MB/s raw: a 50 GB session, 100 GB free while it is
packed, or `--no-pack`) need a real machine and disk:

    python benchmarks/soak.py                       # 30 min, 8 streams
    python benchmarks/soak.py --minutes 2 --streams 4 --json
    python benchmarks/soak.py --rates 2000 --channels 64 --out /data/soak --keep
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from _soak_measure import (
    LogHistogram,
    cpu_by_group,
    cpu_seconds,
    disk_floor,
    print_report,
    rss_bytes,
    slope_per_minute,
    thread_cpu,
)

from labsession import App, Stream
from labsession.core.clock import local_clock
from labsession.core.paths import tree_size
from labsession.recording import open_session_store
from labsession.sources import LSLSource

#: Counter split: channel 0 holds ``counter % 2**22``, channel 1 ``counter >> 22``.
LOW_BITS = 22

#: An outlet: ``name n_ch fs push_ms``. Prints "ready" once imported; on a line "open" opens the
#: LSL outlet and prints "open"; on a line "t0 t_end" (time.monotonic of counter 0 and of the
#: end) pushes until t_end and prints "sent <counter after the last>"; then waits for a line on
#: stdin before exiting (so the recorder can pull everything).
OUTLET = """
import sys, time
import numpy as np
from mne_lsl.lsl import StreamInfo, StreamOutlet, local_clock
name, n_ch, fs, push_ms = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
per_push = max(1, round(fs * push_ms / 1e3))
block = np.random.default_rng(0).standard_normal((8192, n_ch)).astype(np.float32)
print("ready", flush=True)
sys.stdin.readline()
outlet = StreamOutlet(StreamInfo(name, "EMG", n_ch, fs, "float32", name), chunk_size=per_push)
print("open", flush=True)
line = sys.stdin.readline().split()
if not line:  # the recorder gave up before the start
    sys.exit(0)
t0, t_end = map(float, line)
offset = local_clock() - time.monotonic()  # 0 where LSL's clock is CLOCK_MONOTONIC (Linux)
total = int((t_end - t0) * fs)
sent = min(max(0, int((time.monotonic() - t0) * fs)), total)
while sent < total:
    now = time.monotonic()
    due = min(int((now - t0) * fs), total)
    if due > sent:
        counter = np.arange(sent, due)
        data = block[counter % 8192]
        data[:, 0] = counter % (1 << {low})
        data[:, 1] = counter >> {low}
        outlet.push_chunk(data, t0 + offset + counter / fs)
        sent = due
    time.sleep(max(0.0, t0 + (sent + per_push) / fs - time.monotonic()))
print("sent", sent, flush=True)
sys.stdin.readline()
""".replace("{low}", str(LOW_BITS))

log = logging.getLogger("soak")


@dataclass
class Outlet:
    name: str
    n_ch: int
    fs: float
    proc: subprocess.Popen
    history: list[subprocess.Popen] = field(default_factory=list)


def spawn(name: str, n_ch: int, fs: float, push_ms: float) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-c", OUTLET, name, str(n_ch), str(fs), str(push_ms)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    expect(proc, "ready", name)
    return proc


def expect(proc: subprocess.Popen, word: str, name: str) -> str:
    line = proc.stdout.readline().strip()
    if not line.startswith(word):
        raise RuntimeError(f"outlet {name!r} said {line!r}, expected {word!r}")
    return line


def read_counter(store, name: str, n_ch: int) -> np.ndarray:
    """The recorded counter of stream ``name``, read in blocks of about 64 MB."""
    n = store.n_samples(name)
    block = max(1, (64 << 20) // (4 * n_ch))
    out = np.empty(n, np.int64)
    for a in range(0, n, block):
        cols = np.asarray(store.stores[name][a : min(n, a + block), :2]).astype(np.int64)
        out[a : a + len(cols)] = cols[:, 0] + (cols[:, 1] << LOW_BITS)
    return out


def check_stream(counter, ts, fs, sent, start, kill=None) -> dict:
    """Sample-exact check of one stream's recorded counter (``kill``: (t_kill, t_restart)).

    Timestamp steps under 0 or over 2.5 periods outside the gap are listed (the first 5, at
    seconds since ``start``, the LSL time of counter 0) with the counter step there.
    """
    steps = np.diff(counter)
    jumps = np.flatnonzero(steps > 1)
    gap = None
    if kill is not None and jumps.size:
        t_kill, t_restart = kill
        # The gap: the jump whose samples straddle the downtime (the victim's last sample
        # before the kill, the replacement's first one after the restart).
        inside = [j for j in jumps if ts[j] <= t_kill + 0.5 and ts[j + 1] >= t_restart - 0.5]
        if inside:
            j = inside[0]
            gap = {
                "index": int(j + 1),
                "last_before": int(counter[j]),
                "first_after": int(counter[j + 1]),
                "missing_samples": int(steps[j] - 1),
                "ts_gap_s": float(ts[j + 1] - ts[j]),
                "counter_gap_s": float(steps[j] / fs),
                "last_sample_before_kill_s": float(t_kill - ts[j]),
                "restart_to_first_sample_s": float(ts[j + 1] - t_restart),
            }
            jumps = jumps[jumps != j]
    lost_start = int(counter[0]) if len(counter) else sent
    lost_end = int(sent - 1 - counter[-1]) if len(counter) else 0
    lost_jumps = int(np.sum(steps[jumps] - 1))
    period = 1.0 / fs
    ts_steps = np.diff(ts)
    if gap is not None:
        ts_steps[gap["index"] - 1] = period  # the gap itself is not an unexplained one
    odd = np.flatnonzero((ts_steps < 0) | (ts_steps > 2.5 * period))
    return {
        "pushed": int(sent),
        "recorded": len(counter),
        "lost_in_gap": gap["missing_samples"] if gap else 0,
        "lost_outside_gap": lost_start + max(0, lost_end) + lost_jumps,
        "lost_at_start": lost_start,
        "lost_at_end": lost_end,
        "other_jumps": int(jumps.size),
        "repeated_or_backwards": int(np.count_nonzero(steps < 1)),
        "ts_gaps": int(np.count_nonzero(ts_steps > 2.5 * period)),
        "ts_backwards": int(np.count_nonzero(ts_steps < 0)),
        "ts_anomalies": [
            {
                "at_s": round(float(ts[k] - start), 3),
                "step_ms": round(float(ts_steps[k] * 1e3), 3),
                "counter_step": int(steps[k]),
            }
            for k in odd[:5]
        ],
        "gap": gap,
    }


def integrity_of(store, name: str):
    """``store.integrity(name)`` where the session records one (else None)."""
    reader = getattr(store, "integrity", None)
    if not callable(reader):
        return None
    try:
        record = reader(name)
    except Exception as exc:  # noqa: BLE001 - report it, the check above still stands
        return f"integrity({name!r}) failed: {type(exc).__name__}: {exc}"
    if hasattr(record, "to_dict"):
        record = record.to_dict()
    return json.loads(json.dumps(record, default=str))


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--streams", type=int, default=8)
    parser.add_argument(
        "--channels",
        default="256,128,64,256,128,64,256,128",
        help="channels per stream, comma-separated, cycled over the streams (>= 2)",
    )
    parser.add_argument(
        "--rates",
        default="10000,10000,10000,4000,4000,2000,2000,2000",
        help="Hz per stream, comma-separated, cycled over the streams",
    )
    parser.add_argument("--push-ms", type=float, default=10.0, help="outlet push interval")
    parser.add_argument("--kill-at", type=float, default=0.5, help="fraction of the run")
    parser.add_argument("--down-seconds", type=float, default=5.0)
    parser.add_argument("--kill-stream", type=int, default=0, help="index of the victim")
    parser.add_argument("--sample-every", type=float, default=2.0, help="seconds between samples")
    parser.add_argument("--floor-mb", type=int, default=512, help="disk floor test size (0: skip)")
    parser.add_argument("--out", type=Path, default=None, help="parent folder (default: tmp)")
    parser.add_argument("--keep", action="store_true", help="keep the session afterwards")
    parser.add_argument("--no-pack", action="store_true", help="check the folder, do not pack")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    chans = [int(c) for c in args.channels.split(",")]
    rates = [float(r) for r in args.rates.split(",")]
    args.layout = [(chans[i % len(chans)], rates[i % len(rates)]) for i in range(args.streams)]
    if min(c for c, _ in args.layout) < 2:
        parser.error("every stream needs >= 2 channels (the counter uses two)")
    if not 0 <= args.kill_stream < args.streams or not 0 < args.kill_at < 1:
        parser.error("--kill-stream must name a stream and --kill-at be in (0, 1)")
    return args


def main() -> int:
    args = parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s")
    seconds = args.minutes * 60
    rate = sum(4 * c * fs for c, fs in args.layout)
    parent = Path(args.out or tempfile.gettempdir())
    parent.mkdir(parents=True, exist_ok=True)
    need = rate * seconds * (1 if args.no_pack else 2) + (args.floor_mb << 20)
    free = shutil.disk_usage(parent).free
    if free < need:
        sys.exit(f"{parent}: {free / 1e9:.1f} GB free, this run needs ~{need / 1e9:.1f} GB")
    base = Path(tempfile.mkdtemp(prefix="soak-", dir=parent))
    try:
        return soak(args, base, seconds, rate)
    finally:
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)


def soak(args: argparse.Namespace, base: Path, seconds: float, rate: float) -> int:
    """Run the soak into ``base``, print the figures; the exit status (0: nothing lost)."""
    load_start = os.getloadavg()
    floor = disk_floor(base, args.floor_mb)

    tag = f"soak-{os.getpid()}-{int(time.time()) % 100000}"
    names = [f"s{i}" for i in range(args.streams)]
    append_hist = {n: LogHistogram() for n in names}
    age_hist = {n: LogHistogram() for n in names}
    samples: list[tuple[float, int, float, int]] = []
    stop = threading.Event()
    outlets: list[Outlet] = []
    finished = False
    app = App("soak")
    try:
        for i, (c, fs) in enumerate(args.layout):
            outlets.append(Outlet(f"{tag}-{i}", c, fs, spawn(f"{tag}-{i}", c, fs, args.push_ms)))
        for o in outlets:
            o.proc.stdin.write("open\n")
            o.proc.stdin.flush()
            expect(o.proc, "open", o.name)
        sources = [LSLSource(o.name, timeout=10.0) for o in outlets]
        app.streams(*(Stream(n, src) for n, src in zip(names, sources, strict=True)))
        rss_idle = rss_bytes()
        app.start()
        missing = app.wait_connected(30)
        rss_connected = rss_bytes()
        if missing:
            raise RuntimeError(f"outlets not found: {missing}")
        session = app.start_recording(base)
        original = session.append

        def timed_append(name, data, timestamps):
            start = time.perf_counter()
            original(name, data, timestamps)
            append_hist[name].add(time.perf_counter() - start)
            age_hist[name].add(local_clock() - float(timestamps[-1]))

        session.append = timed_append  # this instance only: what the streams call
        threads_before, cpu_before, t_before = thread_cpu(), cpu_seconds(), time.monotonic()

        def monitor() -> None:
            while not stop.is_set():
                t = time.monotonic()
                samples.append((t, rss_bytes(), cpu_seconds(), tree_size(session.path)))
                stop.wait(args.sample_every)

        t0 = time.monotonic() + 0.5
        t0_lsl = t0 + local_clock() - time.monotonic()
        t_end = t0 + seconds
        for o in outlets:
            o.proc.stdin.write(f"{t0} {t_end}\n")
            o.proc.stdin.flush()
        watcher = threading.Thread(target=monitor, name="soak-monitor", daemon=True)
        watcher.start()

        victim = outlets[args.kill_stream]
        time.sleep(max(0.0, t0 + args.kill_at * seconds - time.monotonic()))
        victim.proc.send_signal(signal.SIGKILL)
        t_kill = local_clock()
        killed = time.monotonic()
        victim.proc.wait()
        victim.history.append(victim.proc)
        # Start the interpreter now; the outlet opens (becomes visible) after the downtime.
        victim.proc = spawn(victim.name, victim.n_ch, victim.fs, args.push_ms)
        time.sleep(max(0.0, killed + args.down_seconds - time.monotonic()))
        victim.proc.stdin.write(f"open\n{t0} {t_end}\n")
        victim.proc.stdin.flush()
        t_restart = local_clock()
        expect(victim.proc, "open", victim.name)
        log.warning("killed %s, restarted it %.1f s later", victim.name, t_restart - t_kill)

        sent = [int(expect(o.proc, "sent", o.name).split()[1]) for o in outlets]
        t_pushed = time.monotonic()
        # Drained: every stream's newest sample is the last one pushed (or the wait times out).
        deadline = time.monotonic() + 60
        pending = set(names)
        while pending and time.monotonic() < deadline:
            for i, n in enumerate(names):
                stream = app.ctx.streams[n]
                if n in pending and stream.ring is not None and stream.n_samples:
                    last = stream.get_window(1.0 / stream.info.fs)[0][:2, -1].astype(np.int64)
                    if last[0] + (last[1] << LOW_BITS) >= sent[i] - 1:
                        pending.discard(n)
            time.sleep(0.02)
        drain_s = time.monotonic() - t_pushed
        t_flush = time.monotonic()
        session.flush()
        flush_s = time.monotonic() - t_flush
        by_thread = cpu_by_group(
            threads_before, thread_cpu(), cpu_seconds() - cpu_before, time.monotonic() - t_before
        )
        stop.set()
        watcher.join()
        samples.append((time.monotonic(), rss_bytes(), cpu_seconds(), tree_size(session.path)))
        health = {n: app.ctx.streams[n].health.snapshot().to_dict() for n in names}
        t_pack = time.perf_counter()
        app.stop_recording(pack=not args.no_pack)
        app.wait_idle()
        pack_s = time.perf_counter() - t_pack
        for stream in app.ctx.streams.values():
            stream.stop()
        finished = True
    finally:
        stop.set()
        for o in outlets:  # each waits for a line once it has pushed all (else: killed)
            if o.proc.poll() is None:
                try:
                    o.proc.stdin.write("\n")
                    o.proc.stdin.flush()
                    o.proc.wait(5 if finished else 0.1)
                except (OSError, subprocess.TimeoutExpired):
                    o.proc.kill()
                    o.proc.wait()
    load_end = os.getloadavg()
    children = os.times()

    path = app.ctx.packed[-1] if app.ctx.packed else session.path
    streams = {}
    with open_session_store(path) as store:
        for i, (n, o) in enumerate(zip(names, outlets, strict=True)):
            counter = read_counter(store, n, o.n_ch)
            ts = store.get_timestamps(n)
            kill = (t_kill, t_restart) if i == args.kill_stream else None
            streams[n] = {
                "lsl_name": o.name,
                "channels": o.n_ch,
                "fs": o.fs,
                "raw_mb_s": 4 * o.n_ch * o.fs / 1e6,
                **check_stream(counter, ts, o.fs, sent[i], t0_lsl, kill),
                "append_ms": append_hist[n].summary_ms(),
                "push_to_append_ms": age_hist[n].summary_ms(),
                "health": health[n],
                "integrity": integrity_of(store, n),
            }
    zip_mb = path.stat().st_size / 1e6 if path.is_file() else tree_size(path) / 1e6

    t = np.array([s[0] for s in samples]) - t0
    rss = np.array([s[1] for s in samples]) / 1e6
    cpu = np.array([s[2] for s in samples])
    size = np.array([s[3] for s in samples]) / 1e6
    warm = min(60.0, 0.25 * seconds)
    after = t >= warm
    rec_span = t[-1] - t[0]
    summary = {
        "rss_before_connect_mb": rss_idle / 1e6,
        "rss_connected_mb": rss_connected / 1e6,
        "rss_at_warm_mb": float(rss[after][0]) if after.any() else float("nan"),
        "warm_s": warm,
        "rss_end_mb": float(rss[-1]),
        "rss_peak_mb": float(rss.max()),
        "rss_slope_mb_per_min": slope_per_minute(t[after], rss[after]),
        "recorder_cpu_pct": float(100 * (cpu[-1] - cpu[0]) / rec_span),
        "outlets_cpu_pct": float(
            100 * (children.children_user + children.children_system) / rec_span
        ),
        "raw_mb_s": rate / 1e6,
        "folder_mb_s": float(np.polyfit(t, size, 1)[0]) if len(t) > 1 else float("nan"),
        "disk_floor_mb_s": floor,
        "session_mb": float(size[-1]),
        "packed_mb": zip_mb,
        "pack_s": pack_s,
        "drain_s": drain_s,
        "flush_s": flush_s,
        "recorder_cpu_by_thread_pct": by_thread,
        "append_ms": LogHistogram().merged(list(append_hist.values())).summary_ms(),
        "push_to_append_ms": LogHistogram().merged(list(age_hist.values())).summary_ms(),
        "lost_outside_gap": sum(s["lost_outside_gap"] for s in streams.values()),
        "repeated_or_backwards": sum(s["repeated_or_backwards"] for s in streams.values()),
        "reconnected": streams[names[args.kill_stream]]["gap"] is not None,
    }
    if summary["append_ms"]["n"] == 0:
        log.warning("no call of the session's append was seen: the latency figures are empty")
    report = {
        "config": {
            "minutes": args.minutes,
            "streams": args.streams,
            "push_ms": args.push_ms,
            "kill_stream": names[args.kill_stream],
            "kill_at_s": args.kill_at * seconds,
            "down_s": t_restart - t_kill,
            "cpus": os.cpu_count(),
            "load_start": load_start,
            "load_end": load_end,
            "session": str(path),
        },
        "summary": summary,
        "streams": streams,
        "timeline": {  # one row per --sample-every: seconds since start, MB, MB, CPU seconds
            "t_s": t.round(2).tolist(),
            "rss_mb": rss.round(1).tolist(),
            "folder_mb": size.round(1).tolist(),
            "cpu_s": (cpu - cpu[0]).round(2).tolist(),
        },
    }
    print_report(report, to_stderr=args.json)
    if args.json:
        print(json.dumps(report, indent=2, default=str))
    ok = summary["lost_outside_gap"] == 0 and summary["repeated_or_backwards"] == 0
    return 0 if ok and summary["reconnected"] else 1


if __name__ == "__main__":
    sys.exit(main())
