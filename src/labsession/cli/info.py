"""``labsession info PATH``: what a recorded session holds."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import numpy as np
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from labsession.cli._console import cli_console
from labsession.core.units import format_bytes

if TYPE_CHECKING:
    from labsession.recording import SessionStore
    from labsession.recording._integrity import StreamIntegrity

#: Gaps, disconnects and source errors listed per stream (the counts are always complete).
SHOWN = 3
#: Timestamps read per block when a record is computed from a session's stored timestamps.
BLOCK_SAMPLES = 1 << 20
#: How the note on a stream without a saved record begins (its disconnects are unknown).
NO_RECORD = "no record in meta.json"
#: Bytes of samples ``--verify`` reads at a time.
VERIFY_BYTES = 16 << 20


def info(
    path: Annotated[
        Path,
        typer.Argument(
            metavar="PATH", help="A session folder or .session.zip, or a folder of sessions."
        ),
    ],
    as_json: Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")] = False,
    verify: Annotated[
        bool,
        typer.Option(
            "--verify",
            help="Also read and check every chunk of every stream (reads the whole session; "
            "without it, info reads the session's metadata, not its samples).",
        ),
    ] = False,
) -> None:
    """Show a session's streams, labels, size and integrity, or list a folder of sessions.

    For one session: its streams, labels per class, size, whether it is packed, and per stream
    its integrity: samples, nominal vs effective rate, gaps, backward timestamps, disconnects
    and source errors (computed from the stored timestamps for sessions without a record).
    Given a folder of sessions, list them: one line each (name, duration, streams, labels, size).
    """
    from labsession.recording._folders import sessions_of

    if path.is_dir() and sessions_of(path) != [path]:  # a folder of sessions
        list_sessions(path, as_json=as_json, verify=verify)
        return
    summary, records = _session_facts(path)  # a SessionError: one line (root group)
    if verify:
        summary["verified_rows"] = verify_session(path)
    if as_json:
        summary["integrity"] = {
            name: {"recorded": note is None, **({"note": note} if note else {}), **record.to_meta()}
            for name, (record, note) in records.items()
        }
        typer.echo(json.dumps(summary, indent=2))
        return
    print_session(summary, records, cli_console())
    if verify:
        rows = summary["verified_rows"]
        typer.echo(f"verified: every chunk read and checked ({rows:,} rows of samples)")


def print_session(summary: dict, records: dict, console: Console) -> None:
    """What ``labsession info`` prints of one session: its summary, then each stream's
    integrity (``records``: ``{stream: (record, note)}`` from :func:`load_integrity`)."""
    print_summary(summary, console)
    for name, (record, note) in records.items():
        console.print(Text(format_integrity(name, record, computed_note=note)))


def print_info(path: Path, console: Console) -> None:
    """Print ``labsession info``'s text for the session ``path`` (a zip or a folder)."""
    print_session(*_session_facts(path), console)


def _session_facts(path: Path) -> tuple[dict, dict]:
    """``(session_summary, {stream: (integrity record, note)})`` (see :func:`load_integrity`)."""
    from labsession.recording import open_session_store, session_summary

    summary = session_summary(path)
    with open_session_store(path) as store:
        records = {name: load_integrity(store, name) for name in store.stream_names}
    return summary, records


def verify_session(path: Path) -> int:
    """Read every sample and timestamp chunk of every stream of ``path``, each checked as every
    read checks it (zstd checksum, or the zip's CRC-32), about ``VERIFY_BYTES`` of samples at a
    time; return the rows read.

    Raises
    ------
    SessionError
        At the first chunk that fails, naming the session, the stream and the chunk.
    """
    from labsession.recording import open_session_store

    rows = 0
    with open_session_store(path) as store:
        for name in store.stream_names:
            info = store.stream_info(name)
            n = store.n_samples(name)
            step = max(1, VERIFY_BYTES // (info.n_channels * np.dtype(info.dtype).itemsize))
            for start in range(0, n, step):
                stop = min(n, start + step)
                store.read_rows(name, start, stop)
                store.read_rows(name, start, stop, timestamps=True)
            rows += n
    return rows


def list_sessions(folder: Path, *, as_json: bool = False, verify: bool = False) -> None:
    """Print the sessions inside ``folder``, one line each (``--json``: a list of summaries).

    A session that cannot be read gets a line saying why; the others are still listed. With
    ``verify``, every chunk of each session is read and checked, and one that fails ends the
    command with exit status 1 once all are listed.

    Raises
    ------
    SessionError
        If ``folder`` holds no session (``"no sessions in ..."``).
    """
    from labsession.errors import SessionError
    from labsession.recording import session_summary
    from labsession.recording._folders import sessions_of

    summaries: list[dict] = []
    for session in sessions_of(folder):
        try:
            summary = session_summary(session)
            if verify:
                summary["verified_rows"] = verify_session(session)
            summaries.append(summary)
        except SessionError as exc:
            summaries.append({"path": str(session), "error": str(exc)})
    failed = sum("error" in s for s in summaries)
    if as_json:
        typer.echo(json.dumps(summaries, indent=2))
    else:
        total = sum(s.get("size_bytes", 0) for s in summaries)
        count = f"{len(summaries)} session{'s' if len(summaries) != 1 else ''}"
        typer.echo(f"{folder}: {count}, {format_bytes(total)}")
        for line in session_lines(summaries):
            typer.echo(line)
        if verify:
            typer.echo(
                f"verified: {len(summaries) - failed} read and checked, every chunk; "
                f"{failed} cannot be read"
            )
    if verify and failed:
        raise typer.Exit(1)


def session_lines(summaries: list[dict]) -> list[str]:
    """One aligned line per ``session_summary`` (or ``{"path", "error"}`` of an unreadable one):
    name, duration (longest stream), streams (channels and rate), label count and size."""
    names = [Path(s["path"]).name for s in summaries]
    width = max(map(len, names), default=0)
    rows: list[tuple[str, ...]] = []
    for name, s in zip(names, summaries, strict=True):
        if "error" in s:
            rows.append((name, f"cannot be read: {s['error']}"))
            continue
        streams = s["streams"]
        seconds = max((v["duration_s"] for v in streams.values()), default=0.0)
        described = ", ".join(
            f"{n} ({v['n_channels']} ch, {v['fs']:g} Hz)" for n, v in streams.items()
        )
        n_labels = s["n_labels"]
        rows.append(
            (
                name,
                _duration(seconds),
                described or "no streams",
                f"{n_labels} label{'s' if n_labels != 1 else ''}",
                format_bytes(s["size_bytes"]),
            )
        )
    widths = [max((len(r[i]) for r in rows if len(r) > 2), default=0) for i in range(1, 5)]
    lines = []
    for row in rows:
        if len(row) == 2:
            lines.append(f"  {row[0]:<{width}}  {row[1]}")
            continue
        duration, described, labels, size = row[1:]
        lines.append(
            f"  {row[0]:<{width}}  {duration:>{widths[0]}}  {described:<{widths[1]}}  "
            f"{labels:>{widths[2]}}  {size:>{widths[3]}}"
        )
    return lines


def _no_record(writer: object, saved: StreamIntegrity | None = None, n_samples: int = 0) -> str:
    if saved is not None:
        return (
            f"the record in meta.json covers {saved.n_samples:,} of the {n_samples:,} samples "
            "stored: the recording is still going or did not close (a crash); computed from "
            "the stored timestamps, disconnects and source errors as last saved"
        )
    by = writer if isinstance(writer, str) and writer else "MyoGestic or an older labsession"
    return f"{NO_RECORD}, written by {by}: computed from the stored timestamps"


def load_integrity(store: SessionStore, name: str) -> tuple[StreamIntegrity, str | None]:
    """Stream ``name``'s integrity record, and a note when it is not the one saved.

    The record saved while recording (``meta.json`` ``integrity[name]``) when there is one that
    covers every stored sample (note None); otherwise one computed from the stored timestamps,
    read in blocks of ``BLOCK_SAMPLES``, with a note saying why. Disconnects and source errors
    are not in the timestamps: they read 0, or as last saved when a record was saved before the
    last samples (a recording still going, or killed before it closed).

    Raises
    ------
    SessionError
        If the saved record is malformed (naming the file, the stream and the key).
    """
    from labsession.recording import IntegrityTracker

    saved = store.integrity(name)
    n = store.n_samples(name)
    if saved is not None and saved.n_samples >= n:
        return saved, None
    tracker = IntegrityTracker(store.stream_info(name).fs, repair=False)
    for start in range(0, n, BLOCK_SAMPLES):
        stop = min(n, start + BLOCK_SAMPLES)
        tracker.on_chunk(store.read_rows(name, start, stop, timestamps=True, dtype="float64"))
    computed = tracker.snapshot()
    if saved is None:
        return computed, _no_record(store.meta.get("writer"))
    # saved before the last samples: a recording still going, or one that did not close
    merged = replace(
        computed,
        n_disconnects=saved.n_disconnects,
        disconnects=saved.disconnects,
        n_source_errors=saved.n_source_errors,
        source_errors=saved.source_errors,
    )
    return merged, _no_record(None, saved, n)


def _duration(seconds: float) -> str:
    if seconds < 1:
        return f"{seconds * 1e3:.3g} ms"
    if seconds < 120:
        return f"{seconds:.3g} s"
    return f"{seconds / 60:.1f} min"


def _listed(items: list[str], total: int) -> str:
    shown = ", ".join(items[:SHOWN])
    more = total - min(len(items), SHOWN)
    return f"{shown}, ... (+{more} more)" if more > 0 else shown


def format_integrity(
    name: str, record: StreamIntegrity, *, computed_note: str | None = None
) -> str:
    """A short text block on one stream's integrity, for ``labsession info``.

    Times are seconds from the stream's first sample (``t=12.500``); LSL-clock values are in
    ``labsession info --json``.

    Parameters
    ----------
    name
        Stream name (the block's heading).
    record
        The stream's record.
    computed_note
        Said under the heading when the record was computed rather than saved while recording
        (e.g. ``"no record in meta.json, written by MyoGestic: computed from the stored
        timestamps"``).
    """
    r = record
    t0 = r.first_timestamp or 0.0

    def at(t: float) -> str:
        return f"t={t - t0:.3f}"

    lines = [f"{name}: integrity"]
    if computed_note is not None:
        lines.append(f"  ({computed_note})")
    rate = f"{r.effective_fs:.6g} Hz effective"
    if r.nominal_fs > 0:
        off = 100 * (r.effective_fs - r.nominal_fs) / r.nominal_fs if r.n_samples > 1 else 0.0
        off = 0.0 if abs(off) < 0.005 else off  # no "-0.00 %"
        rate += f" vs {r.nominal_fs:g} Hz nominal ({off:+.2f} %)"
    else:
        rate += " (irregular stream: no nominal rate)"
    lines.append(f"  samples         {r.n_samples:,} at {rate}")
    if r.n_gaps:
        gaps = [f"[{at(a)}, {at(b)}]" for a, b in r.gaps]
        lines.append(
            f"  gaps            {r.n_gaps:,}, {_duration(r.gap_seconds)} in all, about "
            f"{r.dropped_samples:,} samples missing: {_listed(gaps, r.n_gaps)}"
        )
    else:
        threshold = f" longer than {_duration(r.gap_threshold_s)}" if r.gap_threshold_s else ""
        lines.append(f"  gaps            none{threshold}")
    if r.n_backward_steps:
        back = f"{r.n_backward_steps:,} (largest {_duration(r.max_backward_s)})"
    else:
        back = "none"
    if r.n_repaired:
        back += (
            f"; {r.n_repaired:,} stored stamps moved forward by at most "
            f"{_duration(r.max_shift_s)} to keep them increasing"
        )
    if r.n_unrepaired:
        back += f"; {r.n_unrepaired:,} too large to repair, stored as given"
    lines.append(f"  backward steps  {back}")
    unknown = computed_note is not None and computed_note.startswith(NO_RECORD)
    if unknown and not (r.n_disconnects or r.n_source_errors):
        lines.append("  disconnects     unknown (not in the timestamps)")
        lines.append("  source errors   unknown (not in the timestamps)")
        return "\n".join(lines)
    if r.n_disconnects:
        lost = [
            f"{at(a)} to {at(b)}" if b is not None else f"{at(a)} (not back)"
            for a, b in r.disconnects
        ]
        lines.append(f"  disconnects     {r.n_disconnects:,}: {_listed(lost, r.n_disconnects)}")
    else:
        lines.append("  disconnects     none")
    if r.n_source_errors:
        t, message = r.source_errors[-1]
        lines.append(f"  source errors   {r.n_source_errors:,}, last at {at(t)}: {message}")
    else:
        lines.append("  source errors   none")
    return "\n".join(lines)


def print_summary(summary: dict, console: Console) -> None:
    """Render a ``session_summary`` as text and tables."""
    state = "packed (.session.zip)" if summary["packed"] else "folder (not packed)"
    named = f"name {escape(repr(summary['name']))}, " if summary.get("name") else ""
    console.print(
        f"[bold]{escape(summary['path'])}[/bold]\n{state}, {format_bytes(summary['size_bytes'])}, "
        f"{named}app {escape(repr(summary['app_name']))}, created {escape(str(summary['created']))}"
    )
    table = Table("stream", "fs (Hz)", "channels", "dtype", "samples", "duration (s)")
    for name, s in summary["streams"].items():
        table.add_row(
            Text(name),  # Text: shown as written, never read as markup
            f"{s['fs']:g}",
            str(s["n_channels"]),
            s["dtype"],
            str(s["n_samples"]),
            f"{s['duration_s']:.2f}",
        )
    console.print(table)
    labels = Table("class", "labels")
    for name, count in summary["labels"].items():
        labels.add_row(Text(name), str(count))  # a class named "[/]" is shown as written
    console.print(labels if summary["labels"] else "no labels")
