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
    python benchmarks/windows_throughput.py --only layouts --minutes 2

The layouts section (``--only layouts``) records sessions as the issue describes them (64
channels at 2,048 Hz, a label every 1, 3 and 10 s), each in two layouts: as labsession writes it
(zstd frames with content checksums) and rewritten through zarr-python with its default codecs
(bytes + zstd level 0, no checksum), as MyoGestic writes them; each kept as a folder and as a
``.session.zip`` (ZIP_STORED, members at the root, as both tools pack). For every file, in
interleaved rounds (so swings of the machine's load hit every row alike): the decode floor (the
same chunks of samples and timestamps, already in memory, decoded one after the other and
nothing else, after ``zlib.crc32`` over each for a zip of frames without zstd checksums, as the
reader verifies them), labsession's iterator with views and with copies, and MyoGestic's
iterator (one fresh process per round, import not timed). Medians of ``--repeats`` rounds; load
average at the start and the end.

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

log = logging.getLogger("windows_throughput")

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
        "--only",
        choices=["throughput", "memory", "verify", "backward", "layouts"],
        default=None,
    )
    parser.add_argument("--memory-child", help=argparse.SUPPRESS)
    parser.add_argument("--copy", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        memory_child(args.memory_child, bool(args.copy))
        return
    logging.basicConfig(level=logging.ERROR)  # the generator outruns the disk on purpose

    base = Path(tempfile.mkdtemp(prefix="windows-bench-"))
    if args.only == "layouts":
        try:
            layouts(args, base)
        finally:
            shutil.rmtree(base, ignore_errors=True)
        return
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
        if args.only is None:
            layouts(args, base)
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


_ZSTD_CHECKSUM_FLAG = 0x04  # in a zstd frame's header descriptor (its 5th byte)


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
    """(wall, CPU) seconds to decode ``frames`` one after the other, CRC-32 each first when
    ``crc``.

    Each frame decodes into one buffer of its decoded size, reused by every frame of that size
    (decoding and nothing else): a buffer of its own per frame (63 MB for 2 minutes of 64
    channels, cold in cache) made the same decodes about 3x slower, slower than the reader
    itself, which decodes into blocks that stay in cache."""
    from numcodecs import zstd

    by_size: dict[int, bytearray] = {}
    buffers = []
    for frame in frames:
        size = len(zstd.decompress(frame))
        buffers.append(by_size.setdefault(size, bytearray(size)))
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


# -- layouts, label densities and the decode floor (issue 19) -------------------------------------
LAYOUT_FS = 2048.0
PERIODS = (1.0, 3.0, 10.0)  # seconds between labels


def pack_stored(folder: Path, zip_path: Path) -> Path:
    """``folder``'s files in a ZIP_STORED archive, members at the root (as both tools pack)."""
    with zipfile.ZipFile(zip_path, "w", compression=zipfile.ZIP_STORED) as zf:
        for file in sorted(f for f in folder.rglob("*") if f.is_file()):
            zf.write(file, file.relative_to(folder).as_posix())
    return zip_path


def rewrite_with_zarr_defaults(folder: Path, dest: Path) -> Path:
    """``folder`` copied to ``dest`` with every array rewritten by zarr-python with its default
    codecs (bytes + zstd level 0 without checksum), same shape, chunks, dtype and fill value."""
    import zarr

    shutil.copytree(folder, dest, ignore=shutil.ignore_patterns("*.zarr"))
    for source in sorted(folder.glob("*.zarr")):
        old = zarr.open_array(source, mode="r")
        new = zarr.create_array(
            store=dest / source.name,
            shape=old.shape,
            chunks=old.chunks,
            dtype=old.dtype,
            fill_value=old.fill_value,
            attributes=dict(old.attrs),
            zarr_format=3,
        )
        new[...] = old[...]
    return dest


def layout_sessions(base: Path, minutes: float, period: float) -> dict[tuple[str, str], Path]:
    """{(layout, container): path} of one recorded session with a label every ``period`` s."""
    from labsession.testing import record_synthetic_session

    repeats = max(1, round(minutes * 60 / period / 4))  # 4 labels per repeat with 3 classes
    folder = record_synthetic_session(
        base,
        n_channels=CHANNELS,
        fs=LAYOUT_FS,
        phase_seconds=period,
        repeats=repeats,
        aux_stream=None,
        pack=False,
    )
    defaults = rewrite_with_zarr_defaults(folder, base / "zarr-defaults")
    return {
        ("labsession", "folder"): folder,
        ("labsession", "zip"): pack_stored(folder, base / "labsession.session.zip"),
        ("zarr defaults", "folder"): defaults,
        ("zarr defaults", "zip"): pack_stored(defaults, base / "zarr-defaults.session.zip"),
    }


def measure_layout(path: Path, repeats: int, myogestic: str | None) -> dict[str, float]:
    """Median wall seconds per row (floor, views, copies, MyoGestic) in interleaved rounds."""
    from labsession.recording import iter_labeled_windows

    frames = chunk_bytes(path)
    # The floor verifies as the reader does: zstd checks the content checksum of frames that
    # carry one (folder or zip); a zip of frames without one is checked against its CRC-32.
    crc = path.suffix == ".zip" and not all(frame[4] & _ZSTD_CHECKSUM_FLAG for frame in frames)
    runs: dict[str, list[float]] = {}
    counts = set()
    for _ in range(repeats):
        runs.setdefault("floor", []).append(decode_floor(frames, crc=crc)[0])
        for copy in (False, True):
            t = time.perf_counter()
            counts.add(sum(1 for _ in iter_labeled_windows(path, "emg", WIN, HOP, copy=copy)))
            runs.setdefault("copies" if copy else "views", []).append(time.perf_counter() - t)
        if myogestic:
            myo = run_myogestic(myogestic, path, 1)
            if myo is not None:
                counts.add(myo["windows"])
                runs.setdefault("myogestic", []).append(myo["seconds"])
    result = {row: statistics.median(values) for row, values in runs.items()}
    result["windows"] = counts.pop() if len(counts) == 1 else float("nan")  # nan: counts differ
    return result


def layouts(args: argparse.Namespace, base: Path) -> None:
    print(
        f"\nlayouts and label densities: {args.minutes:g}-minute sessions, {CHANNELS} channels "
        f"at {LAYOUT_FS:.0f} Hz, windows {WIN * 1000:.0f}/{HOP * 1000:.0f} ms; median of "
        f"{args.repeats} interleaved rounds; wall seconds; load average at the start "
        f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
    )
    print(
        f"  {'layout':<14}{'file':<7}{'label':>6}{'windows':>8}{'floor':>7}{'views':>7}"
        f"{'x fl':>6}{'copies':>7}{'x fl':>6}{'Myo':>7}{'Myo/v':>7}{'Myo/c':>7}"
        f"{'Myo/fl':>7}{'win/s v':>9}"
    )
    for period in PERIODS:
        t = time.perf_counter()
        sessions = layout_sessions(base / f"every-{period:g}s", args.minutes, period)
        log.info("recorded in %.1f s", time.perf_counter() - t)
        for (layout, kind), path in sessions.items():
            m = measure_layout(path, args.repeats, args.myogestic_python)
            floor, views, copies = m["floor"], m["views"], m["copies"]
            myo = m.get("myogestic", float("nan"))
            print(
                f"  {layout:<14}{kind:<7}{period:>5g}s{m['windows']:>8.0f}{floor:>7.3f}"
                f"{views:>7.3f}{views / floor:>6.2f}{copies:>7.3f}{copies / floor:>6.2f}"
                f"{myo:>7.2f}{myo / views:>7.1f}{myo / copies:>7.1f}{myo / floor:>7.1f}"
                f"{m['windows'] / views:>9.0f}"
            )
        shutil.rmtree(base / f"every-{period:g}s", ignore_errors=True)
    print(f"  (load average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)")
    print(
        "  (floor: decode of the same chunks already in memory, crc32 first for a zip of "
        "frames without a zstd checksum, as the reader verifies them; "
        "x fl: labsession / floor; Myo/v, Myo/c: MyoGestic / labsession views, copies; "
        "Myo/fl: MyoGestic / floor; the floor decodes on one thread, so a reader decoding "
        "on n cores and doing nothing else could gain at most n times that)"
    )


if __name__ == "__main__":
    main()
