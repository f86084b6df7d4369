"""Pipeline: train a model on recorded sessions, then predict on the live stream."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from labsession.acquisition._app import App
    from labsession.acquisition._stream import Stream

__all__ = ["Pipeline"]

log = logging.getLogger(__name__)

TrainFn = Callable[[Any], Any]
PredictFn = Callable[[Any, np.ndarray], Any]


class Pipeline:
    """Train on recorded sessions, predict on each new window of a live stream.

    Parameters
    ----------
    app
        The app whose stream is predicted on; the pipeline registers itself with it and runs
        while ``app.run`` runs.
    stream
        Name of the stream whose windows are passed to the predict function.
    rate
        Predictions per second.
    window_seconds
        Window length passed to predict (default: the stream's ``window_seconds``).
    outlet
        If given, the name of an LSL outlet the predictions are pushed to (float32, one channel
        per output value).

    Notes
    -----
    Predictions start once the stream holds a whole window (``window_seconds`` of samples): the
    predict function never sees a shorter one, such as the empty window of a stream that has
    just connected.

    Examples
    --------
    >>> pipeline = Pipeline(app, stream="emg", rate=20)  # doctest: +SKIP
    >>> @pipeline.train
    ... def train(data):  # a TrainingData
    ...     X, y, groups = data.to_arrays("emg", 0.2, 0.05)
    ...     return LinearDiscriminantAnalysis().fit(X, y)
    >>> @pipeline.predict
    ... def predict(model, window):  # window: (n_channels, n_samples)
    ...     return int(model.predict(features(window[None]))[0])
    """

    def __init__(
        self,
        app: App,
        *,
        stream: str,
        rate: float = 10.0,
        window_seconds: float | None = None,
        outlet: str | None = None,
    ):
        if rate <= 0:
            raise ValueError(f"rate must be > 0 predictions per second, got {rate}")
        self.app = app
        self.stream = stream
        self.rate = float(rate)
        self.window_seconds = window_seconds
        self.outlet_name = outlet
        #: The sessions to train on (a ``labsession.recording.TrainingData``).
        self.training_data: Any = None
        self.model: Any = None
        self.n_predictions = 0
        self._train_fn: TrainFn | None = None
        self._predict_fn: PredictFn | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._outlet = None
        self._fitting: threading.Thread | None = None
        #: The exception of the last :meth:`fit_in_background` that failed (None after a success).
        self.fit_error: BaseException | None = None
        app.pipelines.append(self)

    def train(self, func: TrainFn) -> TrainFn:
        """Decorator: ``func(training_data) -> model``."""
        self._train_fn = func
        return func

    def predict(self, func: PredictFn) -> PredictFn:
        """Decorator: ``func(model, window (n_channels, n_samples)) -> prediction``."""
        self._predict_fn = func
        return func

    def fit(self, training_data: Any = None) -> Any:
        """Call the train function on ``training_data`` (default :attr:`training_data`).

        On success :attr:`model` is the new model and :attr:`training_data` the data it was
        trained on.
        """
        if self._train_fn is None:
            raise RuntimeError("no train function: decorate one with @pipeline.train")
        data = training_data if training_data is not None else self.training_data
        if data is None:
            raise RuntimeError("no training data: set pipeline.training_data or pass it to fit()")
        self.model = self._train_fn(data)
        self.training_data = data  # what the model was trained on
        return self.model

    def fit_in_background(self, training_data: Any = None) -> threading.Thread:
        """Run :meth:`fit` on a thread, so a window keeps drawing while the model trains.

        :attr:`training` is True until it ends; the new model then replaces :attr:`model` (the
        old one keeps predicting meanwhile), or :attr:`fit_error` holds what went wrong.

        Raises
        ------
        RuntimeError
            If a fit is already running.
        """
        if self.training:
            raise RuntimeError("the pipeline is already training; wait for it to finish")
        data = training_data if training_data is not None else self.training_data

        def fit() -> None:
            try:
                self.fit(data)
            except Exception as exc:
                log.exception("training failed")
                self.fit_error = exc
            else:
                self.fit_error = None

        self._fitting = threading.Thread(target=fit, name="labsession-train", daemon=True)
        self._fitting.start()
        return self._fitting

    @property
    def training(self) -> bool:
        """True while a :meth:`fit_in_background` runs."""
        return self._fitting is not None and self._fitting.is_alive()

    def predict_once(self) -> Any:
        """Predict on the stream's latest window now; store it in ``app.ctx.prediction``.

        Only a whole window is predicted on: until the stream has read ``window_seconds`` of
        samples (just after it connects), this returns None without calling the predict
        function, and ``app.ctx.prediction`` and :attr:`n_predictions` stay as they were.

        Raises
        ------
        RuntimeError
            No predict function, or the stream has not connected yet.
        ValueError
            The pipeline's ``window_seconds`` is longer than the stream keeps (twice the
            stream's ``window_seconds``): no window would ever be whole. The prediction thread
            logs this once and stops.
        """
        if self._predict_fn is None:
            raise RuntimeError("no predict function: decorate one with @pipeline.predict")
        stream = self.app.ctx.streams[self.stream]
        window, _ = stream.get_window(self.window_seconds)
        if window.shape[-1] < self._whole_window(stream):
            return None
        prediction = self._predict_fn(self.model, window)
        self.app.ctx.prediction = prediction
        self.n_predictions += 1
        if self.outlet_name is not None:
            self._push(prediction)
        return prediction

    def _whole_window(self, stream: Stream) -> int:
        """Samples in a whole window; ValueError if the stream never holds that many."""
        needed = stream.window_samples(self.window_seconds)
        if stream.ring is not None and needed > stream.ring.capacity:
            raise ValueError(
                f"the pipeline's window of {self.window_seconds:g} s ({needed} samples) is longer "
                f"than stream {self.stream!r} keeps ({stream.ring.capacity} samples, twice its "
                "window_seconds): raise the stream's window_seconds"
            )
        return needed

    def _push(self, prediction: Any) -> None:
        values = np.atleast_1d(np.asarray(prediction, dtype=np.float32))
        if self._outlet is None:
            from mne_lsl.lsl import StreamInfo, StreamOutlet

            info = StreamInfo(
                self.outlet_name, "Prediction", values.size, 0.0, "float32", self.outlet_name
            )
            self._outlet = StreamOutlet(info)
        self._outlet.push_sample(values)

    def start(self) -> None:
        """Run :meth:`predict_once` ``rate`` times per second on a thread (if a predict is set)."""
        if self._predict_fn is None or (self._thread is not None and self._thread.is_alive()):
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="labsession-predict", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop predicting."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5.0)

    def _loop(self) -> None:
        # A stream not added yet (or removed) is waited for: predictions start once it connects.
        said = False
        while not self._stop.is_set():
            stream = self.app.ctx.streams.get(self.stream)
            if stream is not None and stream.wait_connected(0.1):
                break
            if stream is None:
                if not said:
                    log.warning(
                        "pipeline: no stream %r in the app (%s): predictions start once it is "
                        "added and connects",
                        self.stream,
                        ", ".join(self.app.ctx.streams) or "no stream",
                    )
                    said = True
                self._stop.wait(0.1)
        if self._stop.is_set():
            return
        try:
            self._whole_window(stream)
        except ValueError as exc:  # it would fail at every prediction: say it once, stop
            log.error("no predictions: %s", exc)
            return
        period = 1.0 / self.rate
        next_time = time.monotonic()
        while not self._stop.is_set():
            try:
                self.predict_once()
            except Exception:
                log.exception("predict failed")
            next_time += period
            self._stop.wait(max(0.0, next_time - time.monotonic()))
