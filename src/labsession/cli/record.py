"""``labsession record`` (headless cue-driven recording) and ``labsession synth`` (LSL outlet)."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path
from typing import Annotated

import typer

from labsession.cli._sources import (
    ChannelsOption,
    ClassesOption,
    FsOption,
    OutOption,
    SeedOption,
    SourcesOption,
    make_source,
    parse_classes,
)
from labsession.cli._validate import non_blank, ranged


def record(
    source: SourcesOption = ["synthetic"],  # noqa: B006 - typer needs a list default
    classes: ClassesOption = "Rest,Fist,Open",
    cycle: Annotated[float, ranged(help="Seconds per cue.", gt=0)] = 3.0,
    repeats: Annotated[int, ranged(help="Cycles through the classes.", ge=1)] = 4,
    out: OutOption = Path("sessions"),
    channels: ChannelsOption = 8,
    fs: FsOption = 2048.0,
    seed: SeedOption = 0,
    connect_timeout: Annotated[
        float, ranged(help="Seconds to wait for the sources to connect.", gt=0)
    ] = 10.0,
    app_name: Annotated[
        str, typer.Option(help="app_name written to meta.json.", callback=non_blank)
    ] = "labsession-record",
) -> None:
    """Record a cue-driven session headless: rest, each class, rest, ... labelled as cued.

    Ctrl-C (or SIGTERM) stops it early: the session is saved and packed, exit status 0.
    """
    from labsession.acquisition import App, Stream, cue_schedule, run_cued_recording
    from labsession.cli._console import cli_console
    from labsession.cli._lsl_log import quiet_liblsl
    from labsession.cli.info import print_info
    from labsession.core.progress import make_progress
    from labsession.sources import SyntheticSource

    console = cli_console()
    class_names = parse_classes(classes)
    if any(spec.startswith("lsl:") for spec in source):
        quiet_liblsl()
    app = App(app_name, class_names=class_names)
    synthetic = []
    for spec in source:
        name, src = make_source(spec, channels, fs, class_names, seed)
        if isinstance(src, SyntheticSource):
            synthetic.append(src)
        app.streams(Stream(name, src))
    # From here to the end, Ctrl-C and SIGTERM stop the recording, which is then saved and
    # packed; one arriving while it is being saved is noted, not obeyed.
    stop, saving, ignored = threading.Event(), threading.Event(), []

    def on_signal(signum: int, frame: object) -> None:
        if saving.is_set():
            ignored.append(signal.Signals(signum).name)
            return
        stop.set()
        app.request_stop()  # also ends a wait for the sources

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:  # the handlers stay until the command returns: the summary is printed too
        session, completed, started = None, False, time.monotonic()
        try:
            app.start()
            waited = time.monotonic()
            missing = app.wait_connected(min(1.0, connect_timeout))
            if missing and not stop.is_set():
                console.print(
                    f"waiting up to {connect_timeout:g} s for {', '.join(missing)} to connect"
                )
                left = connect_timeout - (time.monotonic() - waited)
                missing = app.wait_connected(max(0.0, left))
            if stop.is_set():
                console.print("stopped while waiting for the sources: nothing was recorded")
                return
            if len(missing) == len(source):
                raise TimeoutError(
                    f"no source connected within {connect_timeout:g} s (--connect-timeout): "
                    f"{', '.join(missing)}"
                )
            schedule = cue_schedule(len(class_names), repeats)
            session = app.start_recording(out)
            console.print(f"recording to {session.path} ({len(schedule)} cues of {cycle:g} s)")

            progress = make_progress(unit="cues")  # on stderr, when it is a terminal
            task = progress.add_task("recording", total=len(schedule))

            def on_cue(step: int, class_index: int) -> None:
                for src in synthetic:
                    src.set_class(class_index)
                progress.update(task, completed=step)
                console.print(  # above the bar on a terminal (rich redirects stdout there)
                    f"[{step + 1:>3}/{len(schedule)}] cue: [bold]{class_names[class_index]}[/bold]"
                )

            started = time.monotonic()
            with progress:
                completed = run_cued_recording(app, schedule, cycle, on_cue=on_cue, stop=stop)
                if completed:
                    progress.update(task, completed=len(schedule))
        finally:
            saving.set()
            if session is not None:
                app.stop_recording()
                app.wait_idle()
            for stream in app.ctx.streams.values():
                stream.stop()
        if not completed:
            console.print(f"stopped after {time.monotonic() - started:.1f} s; the session is saved")
        zip_path = app.ctx.packed[-1]
        console.print(f"packed: {zip_path}")
        print_info(zip_path, console)  # what `labsession info` says: summary and integrity
        if ignored:
            names = ", ".join(dict.fromkeys(ignored))
            console.print(f"received {names} while saving: the session was saved first")
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


#: Seconds between two pushes of ``synth``: whole chunks (~41 samples at 2048 Hz), never single
#: samples (mne-lsl warns on each single-sample chunk).
PUSH_INTERVAL = 0.02


def _synth_classes(classes: str) -> str:
    parse_classes(classes, minimum=1)
    return classes


def synth(
    lsl: Annotated[
        str,
        typer.Option("--lsl", help="Name of the LSL outlet to publish.", callback=non_blank),
    ] = "labsession-synth",
    channels: Annotated[int, ranged(help="Channels.", ge=1)] = 8,
    fs: Annotated[float, ranged(help="Rate (Hz).", gt=0)] = 2048.0,
    classes: Annotated[
        str,
        typer.Option(help="Comma-separated unique class names.", callback=_synth_classes),
    ] = "Rest,Fist,Open",
    cycle: Annotated[
        float, ranged(help="Seconds per class before switching (0 = rest only).", ge=0)
    ] = 3.0,
    duration: Annotated[float, ranged(help="Seconds to run (0 = until Ctrl-C).", ge=0)] = 0.0,
    seed: Annotated[int, ranged(help="Seed.", ge=0)] = 0,
) -> None:
    """Publish the synthetic EMG source as an LSL outlet, cycling through the classes.

    Samples are pushed in chunks every 20 ms. liblsl's and mne-lsl's log lines stay out of the
    terminal unless ``labsession -v synth ...``.
    """
    from labsession.cli._lsl_log import quiet_liblsl

    quiet_liblsl()
    from mne_lsl.lsl import StreamInfo, StreamOutlet

    from labsession.sources import SyntheticSource

    names = parse_classes(classes, minimum=1)
    source = SyntheticSource(channels, fs, classes=names, seed=seed)
    info = StreamInfo(lsl, "EMG", channels, fs, "float32", f"labsession-synth-{lsl}")
    outlet = StreamOutlet(info, chunk_size=32)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    typer.echo(f"publishing LSL stream {lsl!r}: {channels} channels at {fs:g} Hz")
    source.connect()
    start = time.monotonic()
    while not stop.is_set() and (duration <= 0 or time.monotonic() - start < duration):
        if cycle > 0:
            source.set_class(int((time.monotonic() - start) / cycle) % len(names))
        chunk = source.read()
        if chunk is not None:
            data, stamps = chunk
            if len(data) == 1:  # a slow stream: one sample per tick
                outlet.push_sample(data[0], float(stamps[0]))
            else:
                outlet.push_chunk(data, stamps)
        stop.wait(PUSH_INTERVAL)
    source.close()
