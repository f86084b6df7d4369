"""Labelled-window throughput and peak memory: labsession's iterator against MyoGestic's.

Records a synthetic session (64 channels at 2 kHz, cues every 1.5 s) of ``--minutes`` (10) and
of ``--short-minutes`` (2), keeps each as a ``.session.zip`` and as the same files extracted to
a folder, then times ``iter_labeled_windows(path, "emg", 0.2, 0.05)`` over every window (best
of ``--repeats``), with ``copy=False`` (views) and ``copy=True``. Peak memory is measured in a
fresh process per file (tracemalloc peak of the iteration, and the process's max RSS), so the
figures for the short and the long session can be compared. When a MyoGestic venv is given
(``--myogestic-python``, default ``/tmp/myo/bin/python`` if present), MyoGestic's
``iter_labeled_windows(paths, "emg", 200, 50)`` runs on the same files in the same run, and the
speed-up is printed.

The verification section (``--only verify``) sets the iterator's windows/s (every chunk
verified: zip CRC-32, zstd content checksum) against the decode floor: the same chunks of samples
and timestamps, already in memory, decoded one after the other and nothing else, without and
with ``zlib.crc32`` over each (the zip check). Medians of ``--repeats`` runs, with the spread
(max - min) / median as the noise.

    python benchmarks/windows_throughput.py [--minutes 10] [--short-minutes 2] [--repeats 3]
    python benchmarks/windows_throughput.py --only verify --minutes 1 --short-minutes 0.5
    python benchmarks/windows_throughput.py --only backward --short-minutes 2

The backward section (``--only backward``) re-records the short session through ``Session`` as
an LSL inlet delivers it: 32-sample chunks stamped back from a push time that is late by 0-3 ms
(liblsl's stamping of chunks pushed without timestamps), so the source's stamps step backwards
between chunks. It times the iterator on the clean session, on that recording as labsession
stores it (strictly increasing, backward steps counted in the integrity record), and on the same
stamps stored as the source gave them (what was stored before the repair; the readers then fall
back to a full scan per label).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
import zipfile
import zlib
from pathlib import Path

WIN, HOP = 0.2, 0.05
CHANNELS, FS, PHASE = 64, 2000.0, 1.5

MYOGESTIC_SNIPPET = r"""
import json, sys, time
from myogestic.session import iter_labeled_windows
path, repeats = sys.argv[1], int(sys.argv[2])
best, cpu, count = float("inf"), float("inf"), 0
for _ in range(repeats):
    t, c = time.perf_counter(), time.process_time()
    count = sum(1 for _ in iter_labeled_windows([path], "emg", 200, 50))
    best = min(best, time.perf_counter() - t)
    cpu = min(cpu, time.process_time() - c)
hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM")]
rss = int(hwm[0].split()[1]) / 1024 if hwm else float("nan")
print(json.dumps({"windows": count, "seconds": best, "cpu": cpu, "maxrss_mb": rss}))
"""


def peak_rss_mb() -> float:
    """This process's peak resident memory (VmHWM; ru_maxrss would carry the parent's across
    fork and exec)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def make_session(base: Path, minutes: float) -> tuple[Path, Path]:
    """Record ``minutes`` of 64-channel EMG; return (zip, folder with the same files)."""
    from labsession.testing import record_synthetic_session

    repeats = max(1, round(minutes * 60 / PHASE / 4))  # 4 cues per repeat with 3 classes
    zip_path = record_synthetic_session(
        base, n_channels=CHANNELS, fs=FS, phase_seconds=PHASE, repeats=repeats, aux_stream=None
    )
    folder = base / zip_path.name.removesuffix(".session.zip")
    with zipfile.ZipFile(zip_path) as zf:
        zf.extractall(folder)
    return zip_path, folder


def time_ours(path: Path, *, copy: bool, repeats: int) -> tuple[int, float, float]:
    """(windows, best wall-clock s, best CPU s of all threads) over ``repeats`` runs."""
    from labsession.recording import iter_labeled_windows

    best, cpu, count = float("inf"), float("inf"), 0
    for _ in range(repeats):
        t, c = time.perf_counter(), time.process_time()
        count = sum(1 for _ in iter_labeled_windows(path, "emg", WIN, HOP, copy=copy))
        best = min(best, time.perf_counter() - t)
        cpu = min(cpu, time.process_time() - c)
    return count, best, cpu


def memory_child(path: str, copy: bool) -> None:
    """In a fresh process: tracemalloc peak of one iteration, and the process's max RSS."""
    from labsession.recording import iter_labeled_windows

    rss_before = peak_rss_mb()
    tracemalloc.start()
    count = sum(1 for _ in iter_labeled_windows(path, "emg", WIN, HOP, copy=copy))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    rss = peak_rss_mb()
    print(
        json.dumps(
            {
                "windows": count,
                "peak_mb": peak / 2**20,
                "maxrss_mb": rss,
                "rss_import_mb": rss_before,
            }
        )
    )


def memory_of(path: Path, copy: bool) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--memory-child", str(path), "--copy", str(int(copy))],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def run_myogestic(python: str, path: Path, repeats: int) -> dict | None:
    result = subprocess.run(
        [python, "-c", MYOGESTIC_SNIPPET, str(path), str(repeats)],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        print(f"  MyoGestic failed on {path.name}: {result.stderr.strip().splitlines()[-1:]}")
        return None
    return json.loads(result.stdout.strip().splitlines()[-1])


def stream_mb(minutes: float) -> float:
    return minutes * 60 * FS * CHANNELS * 4 / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--short-minutes", type=float, default=2.0)
    parser.add_argument("--repeats", type=int, default=3)
    default_myo = "/tmp/myo/bin/python" if Path("/tmp/myo/bin/python").exists() else None
    parser.add_argument("--myogestic-python", default=default_myo)
    parser.add_argument(
        "--only", choices=["throughput", "memory", "verify", "backward"], default=None
    )
    parser.add_argument("--memory-child", help=argparse.SUPPRESS)
    parser.add_argument("--copy", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        memory_child(args.memory_child, bool(args.copy))
        return
    logging.basicConfig(level=logging.ERROR)  # the generator outruns the disk on purpose

    base = Path(tempfile.mkdtemp(prefix="windows-bench-"))
    try:
        print(
            f"{CHANNELS} channels at {FS:.0f} Hz, windows {WIN * 1000:.0f} ms every "
            f"{HOP * 1000:.0f} ms; cores: {os.cpu_count()}; best of {args.repeats}; "
            f"files on {base} (page cache warm)"
        )
        sessions = {}
        for minutes in (args.short_minutes, args.minutes):
            t = time.perf_counter()
            sessions[minutes] = make_session(base / f"{minutes:g}min", minutes)
            print(
                f"recorded {minutes:g} min ({stream_mb(minutes):.0f} MB of samples) in "
                f"{time.perf_counter() - t:.1f} s"
            )

        if args.only in (None, "throughput"):
            throughput(args, sessions)
        if args.only in (None, "verify"):
            verification(args, sessions)
        if args.only in (None, "memory"):
            memory(args, sessions)
        if args.only in (None, "backward"):
            backward(args, sessions, base)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def throughput(args: argparse.Namespace, sessions: dict) -> None:
    print(f"\nthroughput, {args.minutes:g}-minute session:")
    print(
        f"  {'reader':<32}{'windows':>8}{'wall s':>8}{'windows/s':>10}{'vs Myo':>8}"
        f"{'CPU s':>7}{'vs Myo':>8}"
    )
    for kind, path in zip(("zip", "folder"), sessions[args.minutes], strict=True):
        myo = None
        if args.myogestic_python:
            myo = run_myogestic(args.myogestic_python, path, args.repeats)
        rows = []
        for copy in (False, True):
            count, seconds, cpu = time_ours(path, copy=copy, repeats=args.repeats)
            rows.append((f"labsession {kind} copy={copy}", count, seconds, cpu))
        if myo is not None:
            rows.append((f"MyoGestic 2.6.2 {kind}", myo["windows"], myo["seconds"], myo["cpu"]))
        for name, count, seconds, cpu in rows:
            ratios = ""
            if myo is not None:
                if count != myo["windows"]:
                    ratios = " (window counts differ!)"
                else:
                    ratios = f"{myo['seconds'] / seconds:7.1f}x{cpu:7.2f}{myo['cpu'] / cpu:7.1f}x"
            print(f"  {name:<32}{count:>8}{seconds:>8.3f}{count / seconds:>10.0f} {ratios}")
    print(f"  (load average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)")


def chunk_bytes(path: Path) -> list[bytes]:
    """The stored bytes of every chunk of ``emg`` and its timestamps (zstd frames)."""
    arrays = ("emg.zarr/c/", "emg_timestamps.zarr/c/")
    if path.is_dir():
        files = [f for a in arrays for f in sorted((path / a).rglob("*")) if f.is_file()]
        return [f.read_bytes() for f in files]
    with zipfile.ZipFile(path) as zf:
        return [zf.read(i) for i in zf.infolist() if i.filename.startswith(arrays)]


def decode_floor(
    frames: list[bytes], *, crc: bool = False, decode: bool = True
) -> tuple[float, float]:
    """(wall, CPU) seconds to decode ``frames`` one after the other, each into a buffer of its
    size (as the reader does), CRC-32 each first when ``crc``."""
    from numcodecs import zstd

    buffers = [bytearray(len(zstd.decompress(f))) for f in frames]
    t, c = time.perf_counter(), time.process_time()
    for frame, buffer in zip(frames, buffers, strict=True):
        if crc:
            zlib.crc32(frame)
        if decode:
            zstd.decompress(frame, buffer)
    return time.perf_counter() - t, time.process_time() - c


def without_checksums(frames: list[bytes]) -> list[bytes]:
    """The same chunks re-compressed as MyoGestic writes them (zstd level 0, no checksum)."""
    from numcodecs import zstd

    return [zstd.Zstd(level=0, checksum=False).encode(zstd.decompress(f)) for f in frames]


def noise(values: list[float]) -> str:
    median = statistics.median(values)
    return f"{median:.3f} (+-{(max(values) - min(values)) / median / 2:.0%})"


FLOORS = {  # row: (decode_floor keyword arguments, frames re-compressed without checksum)
    "floor: decode only": ({}, False),
    "floor: decode, frames without checksum": ({}, True),
    "floor: decode + crc32": ({"crc": True}, False),
    "crc32 alone": ({"crc": True, "decode": False}, False),
}


def measure_verification(path: Path, repeats: int) -> tuple[int, dict, dict, list[bytes]]:
    """(windows, {row: wall s per run}, {row: CPU s per run}, frames), rows interleaved so
    that swings of the machine's load hit every row alike."""
    from labsession.recording import iter_labeled_windows

    frames = chunk_bytes(path)
    plain = without_checksums(frames)
    wall: dict[str, list[float]] = {}
    cpu: dict[str, list[float]] = {}
    count = 0
    for _ in range(max(3, repeats)):
        t, c = time.perf_counter(), time.process_time()
        count = sum(1 for _ in iter_labeled_windows(path, "emg", WIN, HOP, copy=False))
        wall.setdefault("iter_labeled_windows, verified", []).append(time.perf_counter() - t)
        cpu.setdefault("iter_labeled_windows, verified", []).append(time.process_time() - c)
        for row, (kwargs, recompressed) in FLOORS.items():
            wall_s, cpu_s = decode_floor(plain if recompressed else frames, **kwargs)
            wall.setdefault(row, []).append(wall_s)
            cpu.setdefault(row, []).append(cpu_s)
    return count, wall, cpu, frames


def verification(args: argparse.Namespace, sessions: dict) -> None:
    print(f"\nverified reads against the decode floor, {args.minutes:g}-minute session:")
    print(
        f"  {'reader':<48}{'wall s (noise)':>16}{'CPU s (noise)':>16}{'windows/s':>10}"
        f"{'CPU x floor':>12}"
    )
    for kind, path in zip(("zip", "folder"), sessions[args.minutes], strict=True):
        count, wall, cpu, frames = measure_verification(path, args.repeats)
        floor = statistics.median(cpu["floor: decode only"])
        for row in wall:
            rate = "-" if row == "crc32 alone" else f"{count / statistics.median(wall[row]):.0f}"
            print(
                f"  {kind + ': ' + row:<48}{noise(wall[row]):>16}{noise(cpu[row]):>16}"
                f"{rate:>10}{statistics.median(cpu[row]) / floor:>12.2f}"
            )
        checksum = floor - statistics.median(cpu["floor: decode, frames without checksum"])
        print(
            f"  {kind}: {len(frames)} chunks, {sum(map(len, frames)) / 1e6:.0f} MB; crc32 "
            f"{min(cpu['crc32 alone']) * 1e3:.1f} ms (fastest run); zstd checksum "
            f"{checksum * 1e3:+.1f} ms (median difference)"
        )
    print(f"  (load average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)")


def rerecord_with_push_jitter(folder: Path, base: Path, *, repair: bool) -> tuple[Path, object]:
    """The session at ``folder`` recorded again with liblsl-like chunk stamps; (folder, record)."""
    import numpy as np

    from labsession.recording import Session, open_session_store

    rng = np.random.default_rng(0)
    with open_session_store(folder) as store:
        data, ts = store.get_continuous("emg")
        labels, info = store.label_track, store.stream_info("emg")
        class_names = store.class_names
    session = Session(base, class_names=class_names)
    session.init_stream("emg", info)
    if not repair:  # as sessions were stored before the repair (benchmark only)
        session._integrity["emg"].repair = False
    offsets = np.arange(32)[::-1] / FS
    for start in range(0, ts.size, 32):
        stop = min(ts.size, start + 32)
        push = ts[stop - 1] + rng.uniform(0.0, 0.003)  # pushed late by 0-3 ms
        session.append("emg", data[start:stop], push - offsets[32 - (stop - start) :])
    for label in labels:
        session.add_label(label.class_index, label.timestamp)
    session.close()
    return session.path, session.integrity("emg")


def backward(args: argparse.Namespace, sessions: dict, base: Path) -> None:
    import numpy as np

    from labsession.recording import open_session_store

    clean = sessions[args.short_minutes][1]
    print(f"\nbackward timestamp steps, {args.short_minutes:g}-minute folder session:")
    rows = [("clean stamps", clean, None)]
    for repair in (True, False):
        folder, record = rerecord_with_push_jitter(clean, base / f"jitter-{repair}", repair=repair)
        name = "push jitter, stored repaired" if repair else "push jitter, stored as given"
        rows.append((name, folder, record))
    print(f"  {'stored as':<34}{'backward steps':>15}{'stored steps < 0':>17}{'windows/s':>11}")
    for name, folder, record in rows:
        with open_session_store(folder) as store:
            stored_back = int(np.count_nonzero(np.diff(store.get_timestamps("emg")) < 0))
        count, seconds, _ = time_ours(folder, copy=False, repeats=args.repeats)
        steps = "-" if record is None else str(record.n_backward_steps)
        print(f"  {name:<34}{steps:>15}{stored_back:>17}{count / seconds:>11.0f}")
    print(f"  (load average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)")


def memory(args: argparse.Namespace, sessions: dict) -> None:
    print("\npeak memory of one iteration (fresh process per row):")
    print(f"  {'session':<22}{'samples MB':>11}{'tracemalloc MB':>16}{'max RSS MB':>12}")
    for minutes, (zip_path, folder) in sessions.items():
        for kind, path in (("zip", zip_path), ("folder", folder)):
            for copy in (False, True):
                m = memory_of(path, copy)
                label = f"{minutes:g} min {kind} copy={copy}"
                print(
                    f"  {label:<22}{stream_mb(minutes):>11.0f}{m['peak_mb']:>16.1f}"
                    f"{m['maxrss_mb']:>12.0f}"
                )
        if args.myogestic_python:
            myo = run_myogestic(args.myogestic_python, zip_path, 1)
            if myo is not None:
                print(
                    f"  {f'{minutes:g} min zip MyoGestic':<22}{stream_mb(minutes):>11.0f}"
                    f"{'-':>16}{myo['maxrss_mb']:>12.0f}"
                )
    print(
        "\n(tracemalloc: Python and NumPy allocations during the iteration (blocks of samples "
        "and timestamps, decode buffers); max RSS: the process's peak resident memory, "
        "interpreter and imports included)"
    )


if __name__ == "__main__":
    main()
