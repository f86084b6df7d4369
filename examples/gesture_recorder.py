"""Record labelled gestures in a window, tick sessions, train, and watch live predictions.

    python examples/gesture_recorder.py [--base-path sessions]

Click Record, click a class button (or press 1-3) each time the subject changes gesture, click
Stop. Tick sessions in the list, click Train, and the prediction panel follows the signal. The
synthetic source stands in for an amplifier: use ``LSLSource("Quattrocento")`` for a real one.
``labsession gui`` is the same recorder with more options.
"""

from __future__ import annotations

import argparse

from imgui_bundle import imgui
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

from labsession import App, Pipeline, Stream
from labsession.recording.features import feature_matrix
from labsession.sources import SyntheticSource
from labsession.widgets import (
    Grid,
    prediction_panel,
    recording_controls,
    session_manager,
    signal_viewer,
    stream_health,
)

CLASSES = ["Rest", "Fist", "Open"]
FEATURES = ["rms", "wl", "zc", "ssc"]


def build_app(base_path: str = "sessions") -> App:
    """The recorder: one synthetic EMG stream, the widgets, an LDA trained on ticked sessions."""
    source = SyntheticSource(8, 2048.0, classes=CLASSES)
    app = App("gesture-recorder", class_names=CLASSES, base_path=base_path)
    app.streams(Stream("emg", source=source, window_seconds=5.0))
    pipeline = Pipeline(app, stream="emg", rate=20, window_seconds=0.2)
    grid = Grid(2, 2, row_heights=[0.55, 0.45], col_widths=[0.4, 0.6])

    @pipeline.train
    def train(data):
        x, y, _ = data.to_arrays("emg", 0.2, 0.05, features=FEATURES)
        return LinearDiscriminantAnalysis().fit(x, y)

    @pipeline.predict
    def predict(model, window):  # window: (n_channels, n_samples)
        if model is None or window.shape[1] < 0.2 * 2048:
            return None
        return int(model.predict(feature_matrix(window[None], FEATURES))[0])

    @app.ui
    def ui(ctx):
        with grid[0, 0]:
            recording_controls(
                ctx,
                CLASSES,
                on_record=app.start_recording,
                on_stop=app.stop_recording,
                on_gesture=source.set_class,
            )
            stream_health(ctx)
        with grid[0, 1]:
            signal_viewer(ctx, "emg")
        with grid[1, 0]:
            data = session_manager(base_path, CLASSES, ctx=ctx)
        with grid[1, 1]:
            if imgui.button("Train###train") and data is not None and not pipeline.training:
                pipeline.fit_in_background(data)  # on a thread: the window keeps drawing
            prediction_panel(ctx)

    return app


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-path", default="sessions")
    build_app(parser.parse_args().base_path).run()
