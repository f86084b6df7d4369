"""GUI frame rate: the live signal viewer against an empty window, while the App records.

Each configuration runs in a fresh process: a real ``App`` with a ``SyntheticSource`` at
``--fs`` Hz (``window_seconds=2.5``, so its ring holds the 5 s shown) records to a temporary
folder while its window (``App.run(mode="gui")``, 1280 x 800, on Xvfb + Mesa llvmpipe when no
display is set) draws, alternately for ``--phase`` s each, ``signal_viewer(ctx, "emg",
seconds=5)`` and an empty window (one line of text). Both are measured in the same run under
the same load, a second apart: the machine may be shared, and a slower minute would otherwise
pass for a slower widget. A thread changes the source's class and labels the recording every
second. Frames are timed in the ``@app.ui`` callback over ``--seconds`` after ``--warmup``
(frames that straddle a switch are left out); idling is off (the rate of a user working in
the window). ``--cap 60`` keeps the app's own limit (``FPS_MAX``), ``--cap 0`` lifts it.

``--alternatives`` measures, uncapped and in the same way, the ways not taken, drawn by ImPlot
from the same stream (``--alt-channels``): ``lines`` (one ``plot_line`` per channel through the
interleaved min/max of each pixel column), ``shaded`` (one ``plot_shaded`` band per channel
between min and max) and ``raw`` (one ``plot_line`` per channel of every sample). The numeric
costs of a frame (decimating a whole window, the notch variants) are timed in this process,
without a window.

After each run the recorded session is read back: samples on disk must equal what the
timestamps span (``round((t_last - t_first) * fs) + 1``), with no step longer than 1.5
sample periods, and the stream's health must count no gap and no dropped sample.

    python benchmarks/gui_fps.py                       # 8, 64, 256 channels, capped and not
    python benchmarks/gui_fps.py --channels 64 --cap 0 --repeats 3 --alternatives
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import nullcontext

import numpy as np

SECONDS_SHOWN = 5.0


def child(
    kind: str, n_channels: int, fs: float, cap: float, warmup: float, seconds: float, phase: float
) -> dict:
    """Run one window in this process, alternating empty and ``kind`` every ``phase`` s."""
    from imgui_bundle import hello_imgui, imgui

    import labsession.acquisition._window as window
    from labsession import App, Stream
    from labsession.recording import open_session_store
    from labsession.sources import SyntheticSource
    from labsession.widgets import signal_viewer

    window.FPS_MAX = cap  # App.run sets fps_max from it; 0 = uncapped
    source = SyntheticSource(n_channels=n_channels, fs=fs)
    app = App("gui-fps", class_names=["Rest", "Fist", "Open"])
    app.streams(Stream("emg", source=source, window_seconds=SECONDS_SHOWN / 2))
    frames: list[tuple[float, int]] = []  # (start of the frame's callback, 0 empty / 1 kind)
    decimate: list[float] = []
    paint: list[float] = []
    repaints = [0]
    t_start = [0.0]

    @app.ui
    def draw(ctx):
        now = time.perf_counter()
        elapsed = now - t_start[0] - warmup
        # During the warm-up, `kind` is drawn (its first frames build what it keeps).
        shown = 1 if elapsed < 0 else int(elapsed // phase) % 2
        if elapsed >= 0:
            frames.append((now, shown))
        if shown == 0:
            imgui.text(f"empty window ({n_channels} channels recorded)")
        elif kind == "viewer":
            viewer = signal_viewer(ctx, "emg", seconds=SECONDS_SHOWN)
            if elapsed >= 0 and viewer.last is not None:
                decimate.append(viewer.last.decimate_s)
                paint.append(viewer.last.paint_s)
                repaints[0] += viewer.last.repainted
        else:
            draw_alternative(kind, ctx.streams["emg"], round(SECONDS_SHOWN * fs), fs)

    stop = threading.Event()

    def labeller() -> None:
        i = 0
        while not stop.wait(1.0):
            i = (i + 1) % 3
            source.set_class(i)
            if app.ctx.state == "recording":
                app.add_label(i)

    with tempfile.TemporaryDirectory() as base:

        def start(app: App) -> None:
            app.start_recording(base)
            t_start[0] = time.perf_counter()
            threading.Thread(target=labeller, daemon=True).start()

        app.before_run_hooks.append(start)
        params = hello_imgui.RunnerParams()
        params.fps_idling.enable_idling = False
        params.fps_idling.vsync_to_monitor = False
        params.ini_disable = True
        app.run(mode="gui", duration=warmup + seconds, runner_params=params)
        stop.set()
        health = app.ctx.streams["emg"].health.snapshot()
        with open_session_store(app.ctx.packed[-1]) as store:
            _, ts = store.get_continuous("emg")
    steps = np.diff(ts)
    t = np.array([f[0] for f in frames])
    which = np.array([f[1] for f in frames])
    # A frame lasts until the next one starts; frames that straddle a switch are left out.
    durations, same = np.diff(t), which[1:] == which[:-1]
    figures = {}
    for name, code in (("empty", 0), (kind, 1)):
        d = durations[same & (which[:-1] == code)]
        figures[name] = {
            "fps": d.size / d.sum(),
            "frame_ms_p50": float(np.median(d) * 1e3),
            "frame_ms_p90": float(np.percentile(d, 90) * 1e3),
        }
    ms = np.asarray(decimate) * 1e3, np.asarray(paint) * 1e3
    return {
        "kind": kind,
        "channels": n_channels,
        "cap": cap,
        "fps": figures[kind]["fps"],
        "empty_fps": figures["empty"]["fps"],
        "ratio": figures[kind]["fps"] / figures["empty"]["fps"],
        "frame_ms_p50": figures[kind]["frame_ms_p50"],
        "frame_ms_p90": figures[kind]["frame_ms_p90"],
        "decimate_ms_p50": float(np.median(ms[0])) if decimate else None,
        "decimate_ms_max": float(ms[0].max()) if decimate else None,
        "paint_ms_p50": float(np.median(ms[1])) if paint else None,
        "paint_ms_max": float(ms[1].max()) if paint else None,
        "repaints": repaints[0],
        "on_disk": int(ts.size),
        "expected": round((ts[-1] - ts[0]) * fs) + 1,
        "file_gaps": int(np.count_nonzero(steps > 1.5 / fs)),
        "health_gaps": health.n_gaps,
        "health_dropped": health.dropped_samples,
        "load": os.getloadavg()[0],
    }


def draw_alternative(kind: str, stream, n_view: int, fs: float) -> None:
    """Draw the stream's latest window with ImPlot items, one per channel (the ways not taken)."""
    from imgui_bundle import imgui, implot

    from labsession.widgets._decimate import column_edges, minmax_columns

    data, _ = stream.ring.latest(n_view)
    n, n_channels = data.shape
    if n == 0:
        return
    clear = imgui.ImVec4(0, 0, 0, 0)  # the same transparent backgrounds as the viewer
    implot.push_style_color(implot.Col_.plot_bg, clear)
    implot.push_style_color(implot.Col_.frame_bg, clear)
    flags = implot.Flags_.no_legend | implot.Flags_.no_inputs
    if implot.begin_plot("##alternative", imgui.ImVec2(-1, -1), flags):
        implot.setup_axis_limits(implot.ImAxis_.x1, -n_view / fs, 0, implot.Cond_.always)
        implot.setup_axis_limits(implot.ImAxis_.y1, -1, n_channels, implot.Cond_.always)
        implot.setup_finish()
        offsets = n_channels - 1.0 - np.arange(n_channels)
        scale = 0.2 / max(float(np.abs(data[-2048:]).max()), 1e-9)
        if kind == "raw":
            x = (np.arange(n) - n) / fs
            y = data.T * scale + offsets[:, None]
            for k in range(n_channels):
                implot.plot_line(f"##{k}", x, np.ascontiguousarray(y[k]))
        else:
            width = max(1, round(implot.get_plot_size().x))
            g_end = n * width // n_view
            edges = column_edges(g_end - width, g_end, width, n_view)
            lo, hi = minmax_columns(data, 0, edges)
            lo = (lo * scale + offsets[:, None]).astype(np.float64)
            hi = (hi * scale + offsets[:, None]).astype(np.float64)
            x = (edges[:-1] - n) / fs
            if kind == "lines":
                xs = np.repeat(x, 2)
                ys = np.empty((n_channels, 2 * width))
                ys[:, 0::2], ys[:, 1::2] = lo, hi
                for k in range(n_channels):
                    implot.plot_line(f"##{k}", xs, ys[k])
            else:
                for k in range(n_channels):
                    implot.plot_shaded(f"##{k}", x, lo[k], hi[k])
        implot.end_plot()
    implot.pop_style_color(2)


def numeric_costs(channels: list[int], fs: float) -> list[str]:
    """Median ms of what a frame may compute, per channel count, timed without a window."""
    return [f"  {n:4d} ch: " + _numeric_row(n, fs) for n in channels]


def _numeric_row(n: int, fs: float, repeats: int = 30) -> str:
    from scipy import signal

    from labsession.acquisition import RingBuffer
    from labsession.widgets._decimate import (
        IncrementalNotch,
        LiveColumns,
        column_edges,
        minmax_columns,
    )

    def median_ms(fn) -> float:
        fn()
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        return 1e3 * float(np.median(times))

    width, n_view = 1231, round(SECONDS_SHOWN * fs)  # the plot width in a 1280 x 800 window
    per_frame = round(fs / 30)  # samples arriving between two frames at 30 frames/s
    rng = np.random.default_rng(0)
    ring = RingBuffer(n_view, n)
    ring.write(rng.standard_normal((n_view, n)).astype(np.float32), np.arange(n_view) / fs)
    window, _ = ring.latest(n_view)
    edges = column_edges(0, width, width, n_view)
    sos = signal.tf2sos(*signal.iirnotch(50.0, 30.0, fs))
    notch = IncrementalNotch(50.0, fs)
    notch.start(window)
    live = LiveColumns(n, width, n_view, None)
    live.update(ring)
    written = [n_view]

    def live_frame() -> None:
        i = written[0]
        ring.write(window[:per_frame], np.arange(i, i + per_frame) / fs)
        written[0] += per_frame
        live.update(ring)

    figures = {
        "frame (new samples only)": median_ms(live_frame),
        "whole window": median_ms(lambda: minmax_columns(ring.latest(n_view)[0], 0, edges)),
        "notch, new samples": median_ms(lambda: notch.step(window[:per_frame])),
        "notch, window sosfilt": median_ms(lambda: signal.sosfilt(sos, window, axis=0)),
        "notch, window sosfiltfilt": median_ms(lambda: signal.sosfiltfilt(sos, window, axis=0)),
    }
    return "; ".join(f"{k} {v:.2f} ms" for k, v in figures.items())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--channels", type=int, nargs="+", default=[8, 64, 256])
    parser.add_argument("--fs", type=float, default=2048.0)
    parser.add_argument("--cap", type=float, nargs="+", default=[60.0, 0.0])
    parser.add_argument("--seconds", type=float, default=12.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--phase", type=float, default=1.0)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--alternatives", action="store_true")
    parser.add_argument("--alt-channels", type=int, default=64)
    parser.add_argument("--child", nargs=3, metavar=("KIND", "CHANNELS", "CAP"))
    args = parser.parse_args()
    if args.child:
        kind, n, cap = args.child
        result = child(kind, int(n), args.fs, float(cap), args.warmup, args.seconds, args.phase)
        print("RESULT " + json.dumps(result), flush=True)
        return

    from labsession.testing import xvfb_display

    print(f"{os.cpu_count()} CPUs; load average before: {os.getloadavg()[0]:.2f}")
    print(f"numeric costs per frame, {args.fs:g} Hz, {SECONDS_SHOWN:g} s in 1231 columns:")
    for row in numeric_costs(args.channels, args.fs):
        print(row, flush=True)
    runs = [(cap, "viewer", n) for cap in args.cap for n in args.channels]
    if args.alternatives:
        runs += [(0.0, kind, args.alt_channels) for kind in ("lines", "shaded", "raw")]
    results: list[dict] = []
    display = nullcontext() if os.environ.get("DISPLAY") else xvfb_display()
    with display:
        for repeat in range(args.repeats):
            for cap, kind, n in runs:
                cmd = [sys.executable, __file__, "--child", kind, str(n), str(cap)]
                for option in ("fs", "seconds", "warmup", "phase"):
                    cmd += [f"--{option}", str(getattr(args, option))]
                out = subprocess.run(cmd, capture_output=True, text=True, check=False)
                line = [x for x in out.stdout.splitlines() if x.startswith("RESULT ")]
                if out.returncode or not line:
                    print(f"{kind} {n} cap {cap:g} failed:\n{out.stderr[-3000:]}")
                    continue
                result = json.loads(line[0][7:]) | {"repeat": repeat}
                results.append(result)
                print(_row(result), flush=True)
    _summary(results)


def _summary(results: list[dict]) -> None:
    print(
        "\nmedians over repeats (frames/s, and as a share of the empty window's in the same run):"
    )
    for cap, kind, n in sorted({(r["cap"], r["kind"], r["channels"]) for r in results}):
        runs = [r for r in results if (r["cap"], r["kind"], r["channels"]) == (cap, kind, n)]
        fps, empty = [r["fps"] for r in runs], [r["empty_fps"] for r in runs]
        text = (
            f"  cap {cap:2g}: {kind:6s} {n:4d} ch {np.median(fps):5.1f} frames/s, empty "
            f"{np.median(empty):5.1f}: {100 * np.median([r['ratio'] for r in runs]):3.0f} % "
            f"(runs: {_fmt([100 * r['ratio'] for r in runs])} %)"
        )
        if kind == "viewer":
            dec = np.median([r["decimate_ms_p50"] for r in runs])
            paint = np.median([r["paint_ms_p50"] for r in runs])
            text += f"; decimation {dec:.2f} ms, paint {paint:.2f} ms per frame"
        print(text)
    lost = [r for r in results if not _recording_ok(r)]
    print(
        f"recording: {len(results) - len(lost)} of {len(results)} runs lost no sample "
        "(samples on disk == samples the timestamps span, no gap; health: 0 gaps, 0 dropped)"
    )
    for r in lost:
        print(f"  LOST in {r['kind']} {r['channels']} ch cap {r['cap']:g}: {r}")
    print(f"load average after: {os.getloadavg()[0]:.2f}")


def _recording_ok(r: dict) -> bool:
    return (
        r["on_disk"] == r["expected"]
        and r["file_gaps"] == 0
        and r["health_gaps"] == 0
        and r["health_dropped"] == 0
    )


def _row(r: dict) -> str:
    extra = ""
    if r["kind"] == "viewer":
        extra = (
            f" decimate {r['decimate_ms_p50']:.2f} (max {r['decimate_ms_max']:.1f}) ms,"
            f" paint {r['paint_ms_p50']:.2f} (max {r['paint_ms_max']:.1f}) ms,"
            f" {r['repaints']} repaints;"
        )
    return (
        f"{r['kind']:6s} {r['channels']:4d} ch cap {r['cap']:2g}: {r['fps']:5.1f} frames/s "
        f"(frame p50 {r['frame_ms_p50']:.1f} ms, p90 {r['frame_ms_p90']:.1f} ms), empty "
        f"{r['empty_fps']:5.1f}: {100 * r['ratio']:3.0f} %;{extra} recorded "
        f"{r['on_disk']:,}/{r['expected']:,}, gaps {r['file_gaps']}/{r['health_gaps']}, "
        f"dropped {r['health_dropped']}; load {r['load']:.2f}"
    )


def _fmt(values: list[float]) -> str:
    return ", ".join(f"{v:.0f}" for v in values)


if __name__ == "__main__":
    main()
