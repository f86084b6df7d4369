"""A table of each stream's health: the numbers a user needs to trust a recording."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from imgui_bundle import imgui

from labsession.acquisition._health import StreamHealthSnapshot
from labsession.recording._integrity import GAP_MIN_S, GAP_PERIODS
from labsession.widgets._instances import widget_instance

if TYPE_CHECKING:
    from labsession.acquisition._context import AppContext

__all__ = ["HealthRow", "StreamHealthPanel", "assess_health", "stream_health"]

Severity = Literal["warn", "error"]

GREEN = (0.30, 0.80, 0.35, 1.0)
YELLOW = (0.95, 0.75, 0.20, 1.0)
RED = (0.95, 0.30, 0.30, 1.0)
COLOURS = {"warn": YELLOW, "error": RED}

#: Relative difference between effective and nominal rate above which the rate is flagged.
RATE_TOLERANCE = 0.05
#: Seconds after a stream's first sample before its rate is judged (the rate window fills).
WARMUP_S = 2.0
#: Seconds without a sample (on a regular-rate stream) after which the age is flagged.
STALE_S = 1.0
#: Characters of the last error shown in the table (the tooltip has all of it).
ERROR_CHARS = 48

_GAP_RULE = f"longer than {GAP_PERIODS:g} sample periods and {GAP_MIN_S * 1e3:g} ms"

#: Columns: key, header, what the number means (the header's tooltip).
COLUMNS = (
    ("stream", "Stream", "Name of the stream in the app and in the session."),
    ("status", "Status", "Whether the source is delivering samples now."),
    (
        "rate",
        "Rate (Hz)",
        "Effective rate: samples per second received over the last 2 s, against the nominal "
        "rate the source declares. Flagged when they differ by more than 5 %.",
    ),
    ("samples", "Samples", "Samples received since the stream started."),
    (
        "gaps",
        "Gaps",
        f"Timestamp jumps {_GAP_RULE}: samples the device or network lost. "
        "The cell shows how many, and the length of the latest.",
    ),
    ("dropped", "Dropped", "Samples missing in those gaps (estimated from the nominal rate)."),
    (
        "backwards",
        "Backwards",
        "Timestamps earlier than the one before them, and the largest such step. LSL "
        "chunks pushed without timestamps are stamped back from their push time, so their "
        "jitter shows here; a session stores its stamps strictly increasing and records these.",
    ),
    (
        "errors",
        "Errors",
        "Exceptions raised by the source's read; acquisition retries each with a backoff.",
    ),
    ("age", "Last sample", "Time since the latest chunk of samples arrived."),
    ("last_error", "Last error", "The latest source error (hover for all of it)."),
)


@dataclass(frozen=True)
class HealthRow:
    """One stream's row as the panel drew it.

    Attributes
    ----------
    name
        Stream name.
    snapshot
        The counters read from ``stream.health.snapshot()`` this frame.
    status
        ``"connected"``, ``"disconnected"`` (it delivered before) or ``"not connected"``
        (never connected yet).
    problems
        Column key -> ``"warn"`` (yellow) or ``"error"`` (red) for each flagged number.
    notes
        Column key -> the sentence shown in that cell's tooltip when it is flagged.
    """

    name: str
    snapshot: StreamHealthSnapshot
    status: str
    problems: dict[str, Severity] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)


def assess_health(
    name: str, snapshot: StreamHealthSnapshot, *, ever_connected: bool, judge_rate: bool
) -> HealthRow:
    """Flag the problems in one stream's counters (pure; no imgui).

    Parameters
    ----------
    name
        Stream name.
    snapshot
        Its counters.
    ever_connected
        Whether the source has connected at least once (``Stream.connected``).
    judge_rate
        Whether the stream has delivered long enough (``WARMUP_S``) for its rate to be judged.
    """
    s = snapshot
    problems: dict[str, Severity] = {}
    notes: dict[str, str] = {}
    if s.connected:
        status = "connected"
    elif ever_connected:
        status = "disconnected"
        problems["status"] = "error"
        notes["status"] = (
            f"The source stopped delivering ({s.n_disconnects} disconnect(s) so far); "
            "samples are lost until it comes back."
        )
    else:
        status = "not connected"
        problems["status"] = "error"
        notes["status"] = (
            "The source has not connected yet; the stream keeps retrying. "
            "A recording started now skips this stream."
        )
    if judge_rate and s.nominal_rate > 0 and s.connected:
        off = abs(s.effective_rate - s.nominal_rate) / s.nominal_rate
        if off > RATE_TOLERANCE:
            problems["rate"] = "error" if off > 4 * RATE_TOLERANCE else "warn"
            notes["rate"] = (
                f"Receiving {s.effective_rate:.1f} Hz, {100 * off:.0f} % off the nominal "
                f"{s.nominal_rate:g} Hz: samples are late, lost or the clock is wrong."
            )
    for key, count, what in (
        ("gaps", s.n_gaps, f"timestamp jump(s) {_GAP_RULE}"),
        ("dropped", s.dropped_samples, "sample(s) missing in the gaps"),
        ("backwards", s.n_backwards, "timestamp(s) earlier than the previous one"),
    ):
        if count > 0:
            problems[key] = "warn"
            notes[key] = f"{count} {what} so far."
    if s.n_gaps > 0:
        notes["gaps"] += f" {s.gap_seconds:.3g} s in all."
        if s.last_gap is not None:
            start, end = s.last_gap
            notes["gaps"] += f" Latest: {end - start:.3g} s, LSL time {start:.3f} to {end:.3f}."
    if s.n_backwards > 0:
        notes["backwards"] += f" Largest step back: {_seconds(s.max_backward_s)}."
    if s.n_source_errors > 0:
        problems["errors"] = problems["last_error"] = "error"
        notes["errors"] = notes["last_error"] = (
            f"The source's read raised {s.n_source_errors} time(s); latest: {s.last_error}"
        )
    if s.nominal_rate > 0 and s.last_sample_age is not None and s.last_sample_age > STALE_S:
        problems["age"] = "warn"
        notes["age"] = f"No sample for {_age(s.last_sample_age)}."
    return HealthRow(name, snapshot, status, problems, notes)


def _seconds(seconds: float) -> str:
    """``"1.2 ms"``, ``"530 ms"``, ``"12.3 s"``."""
    return f"{seconds * 1e3:.3g} ms" if seconds < 1 else f"{seconds:.1f} s"


def _age(seconds: float | None) -> str:
    """``"12 ms ago"``, ``"3.4 s ago"``, ``"2 min ago"``, ``"never"``."""
    if seconds is None:
        return "never"
    if seconds < 1:
        return f"{seconds * 1e3:.0f} ms ago"
    if seconds < 120:
        return f"{seconds:.1f} s ago"
    return f"{seconds / 60:.0f} min ago"


def _span(gap: tuple[float, float]) -> str:
    return _seconds(gap[1] - gap[0])


def _cells(row: HealthRow) -> dict[str, str]:
    """The text of each column of ``row``."""
    s = row.snapshot
    rate = f"{s.effective_rate:.1f} / {s.nominal_rate:g}" if s.nominal_rate > 0 else "-"
    error = s.last_error or ""
    if len(error) > ERROR_CHARS:
        error = error[: ERROR_CHARS - 1] + "…"
    return {
        "stream": row.name,
        "status": row.status,
        "rate": rate,
        "samples": f"{s.n_samples:,}",
        "gaps": str(s.n_gaps) if s.last_gap is None else f"{s.n_gaps}, last {_span(s.last_gap)}",
        "dropped": str(s.dropped_samples),
        "backwards": str(s.n_backwards)
        if s.n_backwards == 0
        else f"{s.n_backwards}, max {_seconds(s.max_backward_s)}",
        "errors": str(s.n_source_errors),
        "age": _age(s.last_sample_age),
        "last_error": error,
    }


class StreamHealthPanel:
    """A table with one row per stream of ``ctx.streams``: is it delivering, and how well.

    Per stream: status (connected / disconnected / not connected), effective against nominal
    rate, samples, gaps (timestamp jumps: count and length of the latest), dropped samples,
    backwards timestamps (count and largest step), source errors with the latest error's text,
    and the age of the latest sample ("last sample 12 ms ago"). The numbers are read from
    ``stream.health.snapshot()``, never recomputed: they are counted by the same
    ``IntegrityTracker`` rules as the ``integrity`` record a session saves in ``meta.json``.
    Problems are coloured (yellow: worth a look; red: data is being lost or not recorded) and
    their tooltip says what the number means: a disconnected stream, an effective rate more
    than 5 % off the nominal one once the stream has delivered for 2 s, gaps, dropped
    samples, backwards timestamps, source errors, and no sample for over 1 s. Each header's
    tooltip explains its column.

    Parameters
    ----------
    warmup_s
        Seconds after the panel first sees a stream's samples before it judges the stream's
        rate (the effective rate is measured over the last 2 s, so it settles by then).

    Attributes
    ----------
    rows
        The rows drawn in the latest frame (:class:`HealthRow`), for scripts and tests.

    Notes
    -----
    IDs (public API): the table is ``###stream_health``.

    Examples
    --------
    >>> from labsession import App
    >>> app = App("demo")
    >>> health = StreamHealthPanel()
    >>> @app.ui
    ... def ui(ctx):
    ...     health.ui(ctx)  # or stream_health(ctx)
    """

    def __init__(self, *, warmup_s: float = WARMUP_S) -> None:
        if not warmup_s >= 0:
            raise ValueError(f"warmup_s must be >= 0 seconds, got {warmup_s}")
        self.warmup_s = float(warmup_s)
        self.rows: list[HealthRow] = []
        self._first_sample: dict[str, float] = {}

    def ui(self, ctx: AppContext) -> list[HealthRow]:
        """Draw the table for ``ctx.streams``; return its rows."""
        now = time.monotonic()
        self.rows = []
        for name, stream in ctx.streams.items():
            snapshot = stream.health.snapshot()
            if snapshot.n_samples > 0:
                self._first_sample.setdefault(name, now)
            since = self._first_sample.get(name)
            judge_rate = since is not None and now - since >= self.warmup_s
            self.rows.append(
                assess_health(
                    name, snapshot, ever_connected=stream.connected, judge_rate=judge_rate
                )
            )
        if not self.rows:
            imgui.text_disabled("No streams: add one with app.streams(Stream(...)).")
            return self.rows
        flags = (
            imgui.TableFlags_.borders_inner_v.value
            | imgui.TableFlags_.row_bg.value
            | imgui.TableFlags_.sizing_fixed_fit.value
            | imgui.TableFlags_.scroll_x.value
        )
        style = imgui.get_style()
        row_height = imgui.get_text_line_height() + 2 * style.cell_padding.y
        height = (len(self.rows) + 1) * row_height + style.scrollbar_size + 2
        if imgui.begin_table("###stream_health", len(COLUMNS), flags, imgui.ImVec2(0, height)):
            for _, header, _ in COLUMNS:
                imgui.table_setup_column(header)
            imgui.table_next_row(imgui.TableRowFlags_.headers.value)
            for i, (_, header, meaning) in enumerate(COLUMNS):
                imgui.table_set_column_index(i)
                imgui.table_header(header)
                imgui.set_item_tooltip(meaning)
            for row in self.rows:
                self._draw_row(row)
            imgui.end_table()
        return self.rows

    @staticmethod
    def _draw_row(row: HealthRow) -> None:
        imgui.table_next_row()
        for i, (text, (key, _, meaning)) in enumerate(
            zip(_cells(row).values(), COLUMNS, strict=True)
        ):
            imgui.table_set_column_index(i)
            severity = row.problems.get(key)
            if severity is not None:
                imgui.text_colored(imgui.ImVec4(*COLOURS[severity]), text)
            elif key == "status":
                imgui.text_colored(imgui.ImVec4(*GREEN), text)
            else:
                imgui.text_unformatted(text)
            note = row.notes.get(key)
            tooltip = meaning if note is None else f"{note}\n\n{meaning}"
            if key == "last_error" and row.snapshot.last_error:
                tooltip = f"{row.snapshot.last_error}\n\n{tooltip}"
            imgui.set_item_tooltip(tooltip)


def stream_health(ctx: AppContext) -> list[HealthRow]:
    """Draw a :class:`StreamHealthPanel` for ``ctx`` (one kept per place in the frame).

    The function form of :class:`StreamHealthPanel`; returns the rows drawn.

    Notes
    -----
    IDs (public API): the table is ``###stream_health``.
    """
    panel = widget_instance("stream_health", "", StreamHealthPanel, ctx)
    return panel.ui(ctx)
