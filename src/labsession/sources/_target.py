"""A target trajectory for the subject to follow (force ramps, a cursor path), as a stream.

Regression models (force, cursor, joint angle) train on a continuous target: the subject
follows a trajectory shown on screen while EMG is recorded. :class:`TargetSource` generates
that trajectory, a protocol of phases (:class:`Ramp`, :class:`Hold`, :class:`Sine`, or your
own :class:`TargetPhase`), at a fixed rate and in real time, and records it as a stream of its
own: the value(s), then the index of the phase each sample belongs to (-1 while no protocol
runs). That is the layout :func:`~labsession.recording.iter_target_windows` reads dense targets
from (see :mod:`labsession.recording._target_track`).
"""

from __future__ import annotations

import abc
import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from labsession.recording import StreamInfo
from labsession.recording._target_track import IDLE_PHASE, PHASE_CHANNEL
from labsession.sources._paced import PacedSource

__all__ = ["Hold", "Ramp", "Sine", "TargetPhase", "TargetSource"]

Values = float | Sequence[float]


def _vector(name: str, value: Values) -> tuple[float, ...]:
    """``value`` as a non-empty tuple of finite floats (one per target dimension)."""
    items = [value] if isinstance(value, numbers.Real) else list(value)
    if not items or any(
        isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v)
        for v in items
    ):
        raise ValueError(f"{name} must be a finite number or a sequence of them, got {value!r}")
    return tuple(float(v) for v in items)


def _compatible(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    """Whether two vectors broadcast together: equal lengths, or one of them a single value."""
    return len(a) == len(b) or 1 in (len(a), len(b))


def _check_seconds(seconds: float) -> float:
    if isinstance(seconds, bool) or not isinstance(seconds, numbers.Real):
        raise TypeError(f"seconds must be a number, got {seconds!r}")
    if not (math.isfinite(seconds) and seconds > 0):
        raise ValueError(f"seconds must be a finite duration > 0, got {seconds!r}")
    return float(seconds)


class TargetPhase(abc.ABC):
    """One part of a target protocol: a duration and the values over it.

    Subclass it for a shape of your own: set ``seconds`` and implement :meth:`values`.
    """

    #: Duration of the phase (s).
    seconds: float

    @abc.abstractmethod
    def values(self, t: np.ndarray) -> np.ndarray:
        """Values at ``t`` (``(n,)`` seconds since the phase began, in ``[0, seconds)``).

        Returns
        -------
        ndarray
            ``(n, n_values)`` float64.
        """

    @property
    def n_values(self) -> int:
        """Target dimensions (1 for a force, 2 for a cursor's x and y)."""
        return int(self.values(np.zeros(1)).shape[1])


@dataclass(frozen=True)
class Ramp(TargetPhase):
    """From ``start`` to ``stop`` at a constant rate over ``seconds`` (value(s) or vectors)."""

    start: Values
    stop: Values
    seconds: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "start", _vector("start", self.start))
        object.__setattr__(self, "stop", _vector("stop", self.stop))
        object.__setattr__(self, "seconds", _check_seconds(self.seconds))
        if not _compatible(self.start, self.stop):
            raise ValueError(f"start {self.start} and stop {self.stop} differ in length")

    def values(self, t: np.ndarray) -> np.ndarray:
        """Linear from ``start`` (``t = 0``) towards ``stop`` (reached at ``t = seconds``)."""
        a, b = np.asarray(self.start), np.asarray(self.stop)
        return a + (b - a) * (np.asarray(t, dtype=np.float64)[:, None] / self.seconds)


@dataclass(frozen=True)
class Hold(TargetPhase):
    """A constant ``value`` for ``seconds``; a sequence of holds makes steps."""

    value: Values
    seconds: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "value", _vector("value", self.value))
        object.__setattr__(self, "seconds", _check_seconds(self.seconds))

    def values(self, t: np.ndarray) -> np.ndarray:
        """``value`` at every ``t``."""
        return np.broadcast_to(np.asarray(self.value), (len(t), len(self.value))).copy()


@dataclass(frozen=True)
class Sine(TargetPhase):
    """``offset + amplitude * sin(2 pi frequency t)`` for ``seconds`` (``frequency`` in Hz)."""

    amplitude: Values
    frequency: float
    seconds: float
    offset: Values = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "amplitude", _vector("amplitude", self.amplitude))
        object.__setattr__(self, "offset", _vector("offset", self.offset))
        (frequency,) = _vector("frequency", self.frequency)
        if frequency <= 0:
            raise ValueError(f"frequency must be > 0 Hz, got {self.frequency!r}")
        object.__setattr__(self, "frequency", frequency)
        object.__setattr__(self, "seconds", _check_seconds(self.seconds))
        if not _compatible(self.amplitude, self.offset):
            raise ValueError(
                f"amplitude {self.amplitude} and offset {self.offset} differ in length"
            )

    def values(self, t: np.ndarray) -> np.ndarray:
        """The sine at every ``t``."""
        wave = np.sin(2 * np.pi * self.frequency * np.asarray(t, dtype=np.float64))[:, None]
        return np.asarray(self.offset) + np.asarray(self.amplitude) * wave


#: The protocol of ``TargetSource()``: ramp up, hold, ramp down, rest (8 s, values 0 to 1).
DEFAULT_PHASES = (Ramp(0.0, 1.0, 2.0), Hold(1.0, 2.0), Ramp(1.0, 0.0, 2.0), Hold(0.0, 2.0))


class TargetSource(PacedSource):
    """A target trajectory (phases of ramps, holds, sines) generated in real time.

    Each sample is ``(value_1, ..., value_d, phase)``: the target value(s) and, in the last
    channel (named ``"phase"``), the index of its phase in ``phases``, or -1 while no protocol
    runs (idle: before :meth:`start`, after :meth:`stop` or the end of a protocol that does
    not loop; the values are then ``idle_value``). The stream never pauses, so idle time is
    recorded as such and not left as a hole that reads like a dropout. Sample ``k`` is at
    ``t0 + k / fs`` on the LSL clock (``t0``: :meth:`connect`); samples are produced on demand,
    paced by the clock as :class:`SyntheticSource` is. Protocol sample ``m`` (counted from the
    protocol's start) belongs to the phase whose time span holds ``m / fs``: a phase ``[a, b)``
    s into the protocol has the samples with ``a <= m / fs < b``, exactly (no rounding drift).

    Record it next to the EMG (``Stream("force", TargetSource(...))``) and show
    :attr:`current` to the subject; :func:`~labsession.recording.iter_target_windows` then
    gives each EMG window the target at its end.

    Parameters
    ----------
    phases
        The protocol, in order (default :data:`DEFAULT_PHASES`: ramp 0 to 1 in 2 s, hold
        2 s, ramp down 2 s, rest 2 s). Every phase has the same number of values ``d``, or
        one value (used for every dimension).
    fs
        Rate of the target stream (Hz): that of the display or the force sensor, e.g. 100.
    loop
        True (default): the protocol repeats (its phase indices with it) until :meth:`stop`;
        a lap lasts ``ceil(total seconds * fs)`` samples. False: it runs once, then idle.
    autostart
        True (default): the protocol starts at :meth:`connect`. False: idle until
        :meth:`start` (when the operator starts the block).
    idle_value
        The value(s) while idle (default 0).
    value_names
        Names of the value channels (default ``"target"``, or ``"target0"``, ``"target1"``,
        ... for several).
    name
        Stream name suggested to the app.

    Raises
    ------
    ValueError
        ``phases`` empty or with different numbers of values, ``fs`` not > 0,
        ``value_names`` of the wrong length.
    TypeError
        A phase that is not a :class:`TargetPhase`.

    Examples
    --------
    >>> source = TargetSource([Ramp(0, 1, 2.0), Hold(1, 3.0), Ramp(1, 0, 2.0)], fs=100.0)
    >>> source.samples(0, 3)  # rows (value, phase) of protocol samples 0, 1, 2
    array([[0.   , 0.   ],
           [0.005, 0.   ],
           [0.01 , 0.   ]], dtype=float32)
    """

    def __init__(
        self,
        phases: Sequence[TargetPhase] = DEFAULT_PHASES,
        fs: float = 100.0,
        *,
        loop: bool = True,
        autostart: bool = True,
        idle_value: Values = 0.0,
        value_names: Sequence[str] | None = None,
        name: str = "target",
    ):
        super().__init__()
        self.phases = tuple(phases)
        if not self.phases:
            raise ValueError("phases is empty: give at least one TargetPhase (Ramp, Hold, Sine)")
        for i, phase in enumerate(self.phases):
            if not isinstance(phase, TargetPhase):
                raise TypeError(
                    f"phases[{i}] must be a TargetPhase (Ramp, Hold, Sine), got {phase!r}"
                )
        sizes = [phase.n_values for phase in self.phases]
        self.n_values = max(sizes)
        if any(size not in (1, self.n_values) for size in sizes):
            raise ValueError(
                f"the phases have {sizes} values: each must have the same number, or one (for "
                f"every dimension)"
            )
        idle = _vector("idle_value", idle_value)
        if len(idle) not in (1, self.n_values):
            raise ValueError(f"idle_value has {len(idle)} values for {self.n_values}")
        self._idle = np.broadcast_to(np.asarray(idle, dtype=np.float32), (self.n_values,))
        if value_names is None:
            value_names = (
                ["target"] if self.n_values == 1 else [f"target{i}" for i in range(self.n_values)]
            )
        if len(value_names) != self.n_values:
            raise ValueError(
                f"value_names has {len(value_names)} names for {self.n_values} target values"
            )
        self.info = StreamInfo(
            self.n_values + 1, fs, channel_names=(*map(str, value_names), PHASE_CHANNEL)
        )
        self.loop = bool(loop)
        self.autostart = bool(autostart)
        self.name = name
        # Sample boundaries of the phases, exactly: phase j holds samples [edges[j], edges[j+1]).
        rate = Fraction(repr(self.info.fs))
        ends = np.cumsum([Fraction(repr(p.seconds)) for p in self.phases])
        self._edges = np.array([0] + [math.ceil(end * rate) for end in ends], dtype=np.int64)
        self._starts = np.array([0.0] + [float(end) for end in ends[:-1]])
        #: Samples per lap of the protocol.
        self.lap_samples = int(self._edges[-1])
        self._run_from: int | None = None  # stream sample at which the protocol (re)started
        self._current: tuple[np.ndarray, int] | None = None

    # -- the trajectory ------------------------------------------------------------------------
    def samples(self, start: int, stop: int) -> np.ndarray:
        """Samples ``[start, stop)`` of the protocol, counted from its start.

        Returns
        -------
        ndarray
            ``(stop - start, n_values + 1)`` float32: the value(s), then the phase index
            (-1 and ``idle_value`` past the end of a protocol that does not loop).
        """
        k = np.arange(start, stop, dtype=np.int64)
        in_lap = k % self.lap_samples if self.loop else k
        phase = np.searchsorted(self._edges, in_lap, side="right") - 1
        phase[in_lap >= self.lap_samples] = IDLE_PHASE
        out = np.empty((k.size, self.n_values + 1), dtype=np.float32)
        out[:, :-1] = self._idle
        for j in np.unique(phase[phase >= 0]):
            rows = phase == j
            local = in_lap[rows] / self.info.fs - self._starts[j]
            out[rows, :-1] = self.phases[j].values(local)
        out[:, -1] = phase
        return out

    @property
    def running(self) -> bool:
        """True while the protocol runs (False while idle)."""
        return self._run_from is not None

    @property
    def t0(self) -> float | None:
        """Time of stream sample 0 on the LSL clock (s), set by :meth:`connect`; None when
        closed."""
        return self._t0

    @property
    def current(self) -> tuple[np.ndarray, int] | None:
        """The last sample read: ``(values (n_values,) float32, phase)``, or None before one.

        What to show the subject (the acquisition thread reads; a GUI draws this).
        """
        return self._current

    # -- task control --------------------------------------------------------------------------
    def start(self) -> None:
        """(Re)start the protocol from its beginning at the next sample (at :meth:`connect`
        when not connected yet)."""
        with self._lock:
            if self._t0 is None:
                self.autostart = True
            else:
                self._run_from = self._emitted

    def stop(self) -> None:
        """End the protocol at the next sample: idle samples follow (the stream goes on)."""
        with self._lock:
            self._run_from = None
            if self._t0 is None:
                self.autostart = False

    # -- Source --------------------------------------------------------------------------------
    def started(self) -> None:
        """At :meth:`connect`: the protocol starts now, with ``autostart``."""
        self._current = None
        self._run_from = 0 if self.autostart else None

    def claimed(self, start: int, n: int) -> int | None:
        """The sample the protocol (re)started at, or None while idle; a protocol that does
        not loop ends within these samples if its lap does."""
        run_from = self._run_from
        if run_from is not None and not self.loop and start + n - run_from >= self.lap_samples:
            self._run_from = None
        return run_from

    def make(self, start: int, n: int, state: int | None) -> np.ndarray:
        """Samples ``[start, start + n)`` of the stream: the protocol's from ``state`` on, or
        idle ones; the last becomes :attr:`current`."""
        if state is None:
            data = np.empty((n, self.n_values + 1), dtype=np.float32)
            data[:, :-1] = self._idle
            data[:, -1] = IDLE_PHASE
        else:
            data = self.samples(start - state, start - state + n)
        self._current = (data[-1, :-1].copy(), int(data[-1, -1]))
        return data
