"""``labsession gui``: the recorder window: record, label, pick sessions, train, see predictions."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

from labsession.cli._classifier import predict_class, train_lda
from labsession.cli._sources import (
    BasePathOption,
    ChannelsOption,
    ClassesOption,
    FsOption,
    SeedOption,
    SourcesOption,
    make_source,
    parse_classes,
    parse_source,
)
from labsession.cli._validate import ranged


class Recorder:
    """The app behind ``labsession gui``: every widget of ``labsession.widgets`` in one window.

    Left: recording controls (Record, Stop, a button per class, cue mode), stream health, and the
    session manager. Right: a live signal viewer per stream; below it Train (``###train``),
    which fits the demo's classifier (LDA on four EMG features per channel) on the ticked
    sessions on a thread, the prediction panel, and, when LSL sources are used, a launcher for
    synthetic LSL outlets of the same names (to try the recorder without a device).
    """

    def __init__(
        self,
        sources: list[str],
        class_names: list[str],
        base_path: Path,
        *,
        channels: int = 8,
        fs: float = 2048.0,
        seed: int = 0,
    ):
        from labsession.acquisition import App, Pipeline, Stream
        from labsession.sources import SyntheticSource
        from labsession.widgets import Grid, ProcessLauncher

        self.class_names = class_names
        self.base_path = base_path
        self.app = App("labsession-gui", class_names=class_names, base_path=base_path)
        self.synthetic: list[Any] = []
        launch = []
        for spec in sources:
            name, source = make_source(spec, channels, fs, class_names, seed)
            if isinstance(source, SyntheticSource):
                self.synthetic.append(source)
            else:
                lsl_name = parse_source(spec).lsl_name or ""
                argv = [sys.executable, "-m", "labsession.cli", "synth", "--lsl", lsl_name]
                argv += ["--channels", str(channels), "--fs", f"{fs:g}"]
                launch.append((f"synthetic outlet {lsl_name!r}", argv))
            self.app.streams(Stream(name, source, window_seconds=5.0))
        self.stream_names = list(self.app.ctx.streams)
        self.primary = self.stream_names[0]
        self.pipeline = Pipeline(self.app, stream=self.primary, rate=20.0, window_seconds=0.2)
        self.pipeline.train(lambda data: train_lda(data, self.primary))
        self.pipeline.predict(self._predict)
        self.launcher = ProcessLauncher(launch) if launch else None
        self.grid = Grid(3, 2, row_heights=[0.34, 0.22, 0.44], col_widths=[0.4, 0.6])
        self.app.ui(self.ui)

    def _predict(self, model: Any, window: Any) -> int | None:
        info = self.app.ctx.streams[self.primary].info
        return None if info is None else predict_class(model, window, info.fs)

    def _on_gesture(self, class_index: int) -> None:
        for source in self.synthetic:
            source.set_class(class_index)

    def ui(self, ctx: Any) -> None:
        """Draw one frame."""
        from imgui_bundle import imgui

        from labsession.widgets import (
            prediction_panel,
            recording_controls,
            session_manager,
            signal_viewer,
            stream_health,
        )

        with self.grid[0, 0]:
            recording_controls(
                ctx,
                self.class_names,
                on_record=lambda: self.app.start_recording(self.base_path),
                on_stop=self.app.stop_recording,
                on_gesture=self._on_gesture,
            )
        with self.grid[1, 0]:
            stream_health(ctx)
        with self.grid[2, 0]:
            data = session_manager(self.base_path, self.class_names, ctx=ctx)
        with self.grid[0:2, 1]:
            height = imgui.get_content_region_avail().y / len(self.stream_names)
            for name in self.stream_names:
                imgui.begin_child(f"###view_{name}", imgui.ImVec2(0, height))
                signal_viewer(ctx, name)
                imgui.end_child()
        with self.grid[2, 1]:
            self._train_row(data)
            prediction_panel(ctx)
            if self.launcher is not None:
                imgui.separator()
                self.launcher.ui()

    def _train_row(self, data: Any) -> None:
        from imgui_bundle import imgui

        pipeline = self.pipeline
        imgui.begin_disabled(data is None or pipeline.training)
        if imgui.button("Train on ticked sessions###train"):
            pipeline.fit_in_background(data)
        imgui.end_disabled()
        imgui.same_line()
        if pipeline.training:
            imgui.text("training...")
        elif pipeline.fit_error is not None:
            imgui.text_colored(
                imgui.ImVec4(0.9, 0.3, 0.3, 1), f"training failed: {pipeline.fit_error}"
            )
        elif pipeline.model is not None:
            model = pipeline.model
            imgui.text(
                f"trained on {model.n_windows_} windows, "
                f"training accuracy {model.training_accuracy_:.0%}"
            )
        elif data is None:
            imgui.text("tick sessions to train on")

    def run(self, duration: float | None = None) -> None:
        """Open the window (returns when it is closed, or after ``duration`` s)."""
        try:
            self.app.run(mode="gui", duration=duration)
        finally:
            if self.launcher is not None:
                self.launcher.close()


def gui(
    source: SourcesOption = ["synthetic"],  # noqa: B006 - typer needs a list default
    classes: ClassesOption = "Rest,Fist,Open",
    base_path: BasePathOption = Path("sessions"),
    channels: ChannelsOption = 8,
    fs: FsOption = 2048.0,
    seed: SeedOption = 0,
    duration: Annotated[
        float | None,
        ranged(help="Close the window after this many seconds.", ge=0, hidden=True),
    ] = None,
) -> None:
    """Open the recorder window: record and label sessions, tick some, train, see predictions."""
    from labsession.cli._lsl_log import quiet_liblsl
    from labsession.errors import DisplayError

    class_names = parse_classes(classes)
    if any(parse_source(spec).lsl_name is not None for spec in source):
        quiet_liblsl()
    recorder = Recorder(source, class_names, base_path, channels=channels, fs=fs, seed=seed)
    try:
        recorder.run(duration)
    except DisplayError as exc:
        from labsession.acquisition._window import _HEADLESS_HINT

        # The app's hint speaks to a script (app.run(mode='headless'), xvfb-run python ...).
        said = str(exc).replace(
            _HEADLESS_HINT, "open it on a virtual display: xvfb-run -a labsession gui"
        )
        raise DisplayError(f"{said}; `labsession record` records without a window") from exc
