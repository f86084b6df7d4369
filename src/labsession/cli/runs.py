"""``labsession runs``: list, archive and restore the run folders of ``@session`` scripts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from labsession.cli._validate import choice, ranged

app = typer.Typer(
    help="List, archive and restore run sessions (<script>_out/ folders).",
    no_args_is_help=True,
)

_ROOT = typer.Argument(
    help="A <script>_out folder, one of its status folders, or a folder above them.",
    exists=True,
    file_okay=False,
    metavar="ROOT",
)
_JOBS = ranged("--jobs", "-j", help="Worker processes (default: all CPUs).", ge=1)
_DRY = typer.Option("--dry-run/--no-dry-run", help="Only report what would be done (default).")
_FORMATS = ("tar.gz", "tar", "tar.bz2", "tar.xz")
#: What each bulk command works on, for its dry-run footer.
_ITEMS = {"archived": ("archive", "run", "runs"), "restored": ("restore", "archive", "archives")}
#: Why a bulk command skips a candidate (the one reason each has).
_RESUMED = {
    "archived": "folder left beside its archive",
    "restored": "archive left beside its folder",
}


def _print_summary(summary: dict[str, Any], done_key: str, dry_run: bool) -> None:
    from labsession.cli._console import cli_console
    from labsession.core.units import format_bytes

    console = cli_console()
    verb = f"would be {done_key}" if dry_run else done_key
    console.print(
        f"scanned {summary['scanned']}, candidates {summary['candidates']}, "
        f"{verb} {summary['candidates'] if dry_run else summary[done_key]}"
        + (f" ({summary['resumed']} resumed: {_RESUMED[done_key]})" if summary["resumed"] else "")
        + f", skipped {summary['skipped']}"
        + (" (its folder exists)" if summary["skipped"] else "")
        + f", failed {summary['failed']}"
    )
    if summary["temp_removed"]:
        console.print(
            f"{'would remove' if dry_run else 'removed'} {summary['temp_removed']} temporary "
            "file(s) left by a stopped call"
        )
    if summary["bytes_in"] or summary["bytes_out"]:
        console.print(
            f"bytes in {format_bytes(summary['bytes_in'])}, "
            f"bytes out {format_bytes(summary['bytes_out'])}"
        )
    for failure in summary["errors"]:
        console.print(f"[red]failed[/red] {failure['path']}: {failure['error']}", markup=True)
    if dry_run:
        verb, one, many = _ITEMS[done_key]
        n = summary["candidates"]
        if n == 0:
            console.print(f"dry run: nothing to {verb}")
        else:
            console.print(
                f"dry run: nothing {done_key}; run again with --no-dry-run to {verb} "
                f"{n} {one if n == 1 else many}"
            )


@app.command("list")
def list_runs(
    root: Annotated[Path, _ROOT],
    as_json: Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")] = False,
) -> None:
    """List the runs under ROOT with their status (interrupted = process gone while RUNNING)."""
    from rich.table import Table

    from labsession.cli._console import cli_console
    from labsession.runs import SessionManager

    records = SessionManager().list_sessions(root)
    if as_json:
        typer.echo(json.dumps([r.to_dict() for r in records.values()], indent=2))
        return
    table = Table()
    table.add_column("ID", no_wrap=True)
    for name in ("status", "exit", "pid", "archived"):
        table.add_column(name)
    table.add_column("path", overflow="fold")
    colours = {"success": "green", "error": "red", "interrupted": "yellow", "running": "cyan"}
    for record in records.values():
        colour = colours.get(record.status, "white")
        table.add_row(
            record.session_id,
            f"[{colour}]{record.status}[/{colour}]",
            "" if record.exit_code is None else str(record.exit_code),
            "" if record.pid is None else str(record.pid),
            "yes" if record.archived else "",
            str(record.path or ""),
        )
    if records:
        cli_console().print(table)
        return
    from labsession.runs import is_run_id

    said = f"no runs under {root}"
    if is_run_id(root.resolve().name):  # one run's folder: its runs list is its parent's
        parent = root.parent if root.name not in ("", ".", "..") else root.resolve().parent
        said += f": it is a run folder itself; list its folder: labsession runs list {parent}"
    cli_console().print(said)


@app.command("archive")
def archive(
    root: Annotated[
        Path,
        typer.Argument(
            help="A folder of run folders, e.g. fit_out/FINISHED_SUCCESS.",
            exists=True,
            file_okay=False,
            metavar="ROOT",
        ),
    ],
    older_than_days: Annotated[
        float | None, ranged("--older-than-days", help="Only runs older than N days.", ge=0)
    ] = None,
    dry_run: Annotated[bool, _DRY] = True,
    jobs: Annotated[int | None, _JOBS] = None,
    fmt: Annotated[
        str,
        typer.Option("--format", help="tar.gz, tar, tar.bz2 or tar.xz.", callback=choice(_FORMATS)),
    ] = "tar.gz",
    pattern: Annotated[
        str | None, typer.Option("--pattern", help="Only run folders whose name contains this.")
    ] = None,
    max_dirs: Annotated[int | None, ranged("--max", help="At most N runs.", ge=1)] = None,
    track_bytes: Annotated[bool, typer.Option("--bytes", help="Report bytes in and out.")] = False,
) -> None:
    """Pack each run folder directly under ROOT into one verified archive, then remove it."""
    from labsession.runs import archive_existing

    _run_bulk(
        archive_existing,
        "archived",
        root,
        older_than_days=older_than_days,
        format=fmt,
        pattern=pattern,
        dry_run=dry_run,
        max_dirs=max_dirs,
        track_bytes=track_bytes,
        jobs=jobs,
    )


@app.command("restore")
def restore(
    root: Annotated[
        Path,
        typer.Argument(
            help="The folder holding run archives.", exists=True, file_okay=False, metavar="ROOT"
        ),
    ],
    pattern: Annotated[str, typer.Option("--pattern", help="Glob of archive names.")] = "*.tar.gz",
    dest_root: Annotated[
        Path | None,
        typer.Option("--dest", help="Where to restore (default: beside).", file_okay=False),
    ] = None,
    remove_archive: Annotated[
        bool, typer.Option("--remove-archive", help="Remove each archive once restored.")
    ] = False,
    dry_run: Annotated[bool, _DRY] = True,
    jobs: Annotated[int | None, _JOBS] = None,
    max_files: Annotated[int | None, ranged("--max", help="At most N archives.", ge=1)] = None,
    track_bytes: Annotated[bool, typer.Option("--bytes", help="Report bytes in and out.")] = False,
    max_bytes: Annotated[
        int | None,
        ranged(
            "--max-bytes",
            help="Refuse an archive declaring more bytes than this "
            "(default: max(64 MiB, 100x the archive's size)).",
            ge=1,
        ),
    ] = None,
) -> None:
    """Extract each run archive directly under ROOT into a folder of the same name."""
    from labsession.runs import restore_existing

    _run_bulk(
        restore_existing,
        "restored",
        root,
        pattern=pattern,
        dest_root=dest_root,
        remove_archive=remove_archive,
        dry_run=dry_run,
        max_files=max_files,
        track_bytes=track_bytes,
        jobs=jobs,
        max_bytes=max_bytes,
    )


def _run_bulk(bulk: Any, verb: str, root: Path, *, dry_run: bool, **kwargs: Any) -> None:
    """Run a bulk archive/restore and print its summary; exit 1 if one failed."""
    summary = bulk(root, dry_run=dry_run, **kwargs)
    _print_summary(summary, verb, dry_run)
    if not summary["candidates"]:
        hint = _status_folder_hint(root, verb, kwargs.get("pattern"))
        if hint:
            typer.echo(hint)
    if summary["failed"]:
        raise typer.Exit(1)


def _status_folder_hint(root: Path, verb: str, pattern: str | None) -> str | None:
    """What to type when ROOT is a ``<script>_out`` folder: archive and restore act on the
    runs directly under ROOT, and there they sit one level down, in the status folders."""
    from fnmatch import fnmatch

    from labsession.runs._ids import STATUS_FOLDERS, is_run_id

    command = "archive" if verb == "archived" else "restore"
    counts = []
    for name in STATUS_FOLDERS:
        try:
            entries = list((root / name).iterdir())
        except OSError:  # no such folder (or not one): nothing there
            continue
        if command == "archive":
            n = sum(1 for e in entries if is_run_id(e.name) and e.is_dir())
        else:
            n = sum(1 for e in entries if fnmatch(e.name, pattern or "*.tar.gz") and e.is_file())
        if n:
            unit = "run" if command == "archive" else "archive"
            counts.append(f"labsession runs {command} {root / name} ({n} {unit}{'s' * (n > 1)})")
    if not counts:
        return None
    what = "run folders" if command == "archive" else "run archives"
    return (
        f"{root} holds status folders, not runs: {command} acts on the {what} directly under "
        f"ROOT; give the status folder, e.g. " + "; ".join(counts)
    )
