"""End-to-end acquisition: LSL outlets in other processes -> App -> session on disk.

Each outlet process pushes ``--channels`` float32 channels at ``--fs`` Hz for ``--seconds``
(channel 0 is a sample counter), timestamped with the LSL clock at push time. The App records
every stream. Prints samples lost (must be 0), latency from push to on-disk (sample present in
the Zarr arrays, polled every 20 ms), and CPU use of the recording process.

    python benchmarks/acquisition_e2e.py --streams 1 --channels 256 --fs 10000 --seconds 60
    python benchmarks/acquisition_e2e.py --streams 4 --channels 256 --fs 10000 --seconds 60
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import threading
import time
import uuid

import numpy as np

from labsession import App, Stream
from labsession.core.clock import local_clock
from labsession.recording import open_session_store
from labsession.sources import LSLSource

OUTLET = """
import sys, time
import numpy as np
from mne_lsl.lsl import StreamInfo, StreamOutlet, local_clock
name, n_ch, fs, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
outlet = StreamOutlet(StreamInfo(name, "EMG", n_ch, fs, "float32", name), chunk_size=100)
rng = np.random.default_rng(0)
block = rng.standard_normal((10_000, n_ch)).astype(np.float32)
print("ready", flush=True)
sys.stdin.readline()
t0, sent, total = time.monotonic(), 0, int(fs * seconds)
while sent < total:
    due = min(int((time.monotonic() - t0) * fs), total)
    if due - sent >= 100 or due == total:
        data = block[sent % 9_000 : sent % 9_000 + (due - sent)].copy()
        data[:, 0] = np.arange(sent, due)
        now = local_clock()
        outlet.push_chunk(data, now - (due - sent - 1 - np.arange(due - sent)) / fs)
        sent = due
    else:
        time.sleep(0.001)
print("sent", sent, flush=True)
sys.stdin.readline()
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=1)
    parser.add_argument("--channels", type=int, default=256)
    parser.add_argument("--fs", type=float, default=10_000.0)
    parser.add_argument("--seconds", type=float, default=60.0)
    args = parser.parse_args()

    names = [f"bench-{uuid.uuid4().hex[:6]}-{i}" for i in range(args.streams)]
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", OUTLET, n, str(args.channels), str(args.fs), str(args.seconds)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for n in names
    ]
    for p in procs:
        assert p.stdout.readline().strip() == "ready"

    app = App("e2e-bench")
    app.streams(*(Stream(f"s{i}", LSLSource(n)) for i, n in enumerate(names)))
    app.start()
    assert app.wait_connected(20) == [], "outlets not found"
    base = tempfile.mkdtemp()
    session = app.start_recording(base)

    seen: dict[str, list[tuple[float, int]]] = {f"s{i}": [] for i in range(args.streams)}
    stop = threading.Event()

    def monitor() -> None:
        while not stop.is_set():
            now = local_clock()
            for name in seen:
                seen[name].append((now, session.n_samples(name)))
            stop.wait(0.02)

    watcher = threading.Thread(target=monitor)
    usage0, wall0 = resource.getrusage(resource.RUSAGE_SELF), time.monotonic()
    watcher.start()
    for p in procs:
        p.stdin.write("\n")
        p.stdin.flush()
    sent = [int(p.stdout.readline().split()[1]) for p in procs]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and any(
        app.ctx.streams[f"s{i}"].n_samples < sent[i] for i in range(args.streams)
    ):
        time.sleep(0.01)
    session.flush()
    time.sleep(0.05)
    stop.set()
    watcher.join()
    usage1, wall1 = resource.getrusage(resource.RUSAGE_SELF), time.monotonic()
    app.stop_recording()
    app.wait_idle()
    for s in app.ctx.streams.values():
        s.stop()
    for p in procs:
        p.stdin.write("\n")
        p.stdin.flush()
        p.wait()

    cpu = (usage1.ru_utime + usage1.ru_stime - usage0.ru_utime - usage0.ru_stime) / (wall1 - wall0)
    print(
        f"config: {args.streams} stream(s) x {args.channels} ch float32 at {args.fs:g} Hz for "
        f"{args.seconds:g} s ({args.streams * args.channels * 4 * args.fs / 1e6:.1f} MB/s)"
    )
    with open_session_store(app.ctx.packed[-1]) as store:
        for i in range(args.streams):
            name = f"s{i}"
            data, ts = store.get_continuous(name)
            counter = data[:, 0].astype(np.int64)
            lost = sent[i] - len(np.unique(counter))
            in_order = bool(np.array_equal(counter, np.arange(len(counter))))
            times = np.array([t for t, _ in seen[name]])
            counts = np.array([c for _, c in seen[name]])
            first_seen = times[np.searchsorted(counts, np.arange(len(ts)), side="right")]
            latency = (first_seen - ts) * 1e3
            print(
                f"{name}: pushed {sent[i]:,}, recorded {len(ts):,}, lost {lost}, "
                f"in order {in_order}; push->disk latency ms p50 {np.median(latency):.0f} "
                f"p99 {np.percentile(latency, 99):.0f} max {latency.max():.0f}"
            )
    print(f"recording process CPU: {100 * cpu:.0f} % of one core (2 cores available)")


if __name__ == "__main__":
    main()
