"""Recording throughput: append from one thread per stream, then pack and read back.

Each stream has its own thread appending 64-sample chunks, as acquisition threads do, paced at
``--fs`` (or as fast as possible with ``--fs 0``) for ``--seconds``. Prints samples/s and MB/s
reached on disk (until ``flush`` returns), append latency p50/p99/max, pack time, and
``get_continuous`` read MB/s from the folder and from the zip.

    python benchmarks/recording_throughput.py --streams 4 --channels 256 --fs 25000 --seconds 10
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from labsession.recording import Session, StreamInfo, open_session_store


def producer(session, name, block, fs, seconds, latencies, counts, start_event):
    n_block = 64
    start_event.wait()
    t0 = time.perf_counter()
    sent, offset = 0, 0
    while True:
        now = time.perf_counter() - t0
        if now >= seconds:
            break
        if fs > 0 and sent + n_block > now * fs:
            time.sleep(min(0.001, (sent + n_block) / fs - now))
            continue
        data = block[offset : offset + n_block]
        offset = (offset + n_block) % (block.shape[0] - n_block)
        ts = 1000.0 + (np.arange(sent, sent + n_block)) / (fs or 10_000.0)
        t = time.perf_counter()
        session.append(name, data, ts)
        latencies.append(time.perf_counter() - t)
        sent += n_block
    counts[name] = sent


def read_mb_per_s(path, names, repeats=3):
    best = []
    for _ in range(repeats):
        with open_session_store(path) as store:
            t = time.perf_counter()
            total = sum(store.get_continuous(n)[0].nbytes for n in names)
            best.append(total / (time.perf_counter() - t) / 1e6)
    return float(np.median(best))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=4)
    parser.add_argument("--channels", type=int, default=256)
    parser.add_argument("--fs", type=float, default=25_000.0, help="per stream; 0 = unpaced")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--dir", type=Path, default=None, help="where to write (default: tmp)")
    args = parser.parse_args()

    base = Path(tempfile.mkdtemp(dir=args.dir))
    rng = np.random.default_rng(0)
    block = (rng.standard_normal((1 << 16, args.channels)) * 100).astype(np.float32)
    names = [f"s{i}" for i in range(args.streams)]
    info = StreamInfo(args.channels, args.fs or 10_000.0)
    session = Session(base)
    for name in names:
        session.init_stream(name, info)

    latencies: dict[str, list[float]] = {n: [] for n in names}
    counts: dict[str, int] = {}
    start = threading.Event()
    threads = [
        threading.Thread(
            target=producer,
            args=(session, n, block, args.fs, args.seconds, latencies[n], counts, start),
        )
        for n in names
    ]
    for t in threads:
        t.start()
    t0 = time.perf_counter()
    start.set()
    for t in threads:
        t.join()
    session.flush()
    elapsed = time.perf_counter() - t0
    n_total = sum(counts.values())
    mbytes = n_total * args.channels * 4 / 1e6
    lat = np.concatenate([np.asarray(v) for v in latencies.values()]) * 1e3
    on_disk = sum(f.stat().st_size for f in session.path.rglob("*") if f.is_file()) / 1e6

    folder_read = read_mb_per_s(session.path, names)
    t = time.perf_counter()
    zip_path = session.pack_to_zip()
    pack_s = time.perf_counter() - t
    zip_read = read_mb_per_s(zip_path, names)

    print(
        f"config: {args.streams} streams x {args.channels} ch float32, fs {args.fs:g} Hz/stream,"
        f" {args.seconds:g} s, cpus {os.cpu_count()}"
    )
    print(
        f"appended: {n_total:,} samples ({n_total / elapsed:,.0f} samples/s), "
        f"{mbytes:,.1f} MB raw -> {on_disk:,.1f} MB on disk"
    )
    print(f"sustained to disk (until flush returned): {mbytes / elapsed:,.1f} MB/s")
    print(
        f"append latency ms: p50 {np.percentile(lat, 50):.3f}  p99 {np.percentile(lat, 99):.3f}"
        f"  max {lat.max():.3f}  (n={lat.size:,})"
    )
    print(
        f"pack_to_zip (incl. CRC + reopen verification): {pack_s:.2f} s "
        f"({mbytes / pack_s:,.0f} MB/s raw)"
    )
    print(
        f"get_continuous read (median of 3): folder {folder_read:,.0f} MB/s, "
        f"zip {zip_read:,.0f} MB/s"
    )
    shutil.rmtree(base)


if __name__ == "__main__":
    main()
