"""Bulk archive and restore finish what a stopped call left, and never what it did not."""

from __future__ import annotations

import gzip
import io
import os
import tarfile
import threading
import time
import types
from pathlib import Path

import pytest

from labsession.errors import ArchiveError
from labsession.runs import _archive, _bulk, archive_existing, restore_existing
from labsession.runs._archive import archive_path_for, pack_verified

from .conftest import make_run_dirs


def _contents(folder):
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _packed_not_removed(run):
    # what a call killed between renaming the archive into place and removing the folder leaves
    pack_verified(run, fmt="tar.gz", compresslevel=1, fsync=True)
    return archive_path_for(run, "tar.gz")


def _restored(archive, folder):
    restore_existing(archive.parent, pattern=archive.name, dry_run=False, progress=False)
    return _contents(folder)


def test_archive_finishes_folders_left_beside_their_archives(tmp_path):
    runs = make_run_dirs(tmp_path, 4)
    before = {r.name: _contents(r) for r in runs}
    _packed_not_removed(runs[0])
    _packed_not_removed(runs[1])
    removed_first = sorted(p for p in runs[1].rglob("*") if p.is_file())[-1]
    removed_first.unlink()  # removal had begun (children first) when the call was stopped

    summary = archive_existing(tmp_path, dry_run=False, jobs=2, progress=False)
    assert (summary["candidates"], summary["resumed"]) == (4, 2)
    assert (summary["archived"], summary["failed"]) == (4, 0), summary["errors"]
    assert not any(r.exists() for r in runs)
    for run in runs:  # every run is whole in its archive
        archive = archive_path_for(run, "tar.gz")
        assert archive.is_file()
        assert _restored(archive, run) == before[run.name]
        archive.unlink()


def test_a_folder_that_differs_from_its_archive_is_kept_with_the_archive(tmp_path):
    changed, added, corrupt = make_run_dirs(tmp_path, 3)
    archives = [_packed_not_removed(r) for r in (changed, added, corrupt)]
    target = sorted(p for p in changed.rglob("*") if p.is_file())[0]
    data = target.read_bytes()
    target.write_bytes(bytes([data[0] ^ 1]) + data[1:])  # same size, one bit
    (added / "written_later.txt").write_text("new")
    archives[2].write_bytes(archives[2].read_bytes()[:-20])  # truncated: its checksum is gone
    before = {r.name: _contents(r) for r in (changed, added, corrupt)}
    archived_bytes = [a.read_bytes() for a in archives]

    summary = archive_existing(tmp_path, dry_run=False, jobs=1, progress=False)
    assert (summary["resumed"], summary["archived"], summary["failed"]) == (3, 0, 3)
    errors = {e["path"]: e["error"] for e in summary["errors"]}
    assert target.relative_to(changed).as_posix() in errors[str(changed)]
    assert "written_later.txt" in errors[str(added)]
    assert "cannot extract" in errors[str(corrupt)]
    for run in (changed, added, corrupt):  # nothing changed, nothing removed
        assert _contents(run) == before[run.name]
    assert [a.read_bytes() for a in archives] == archived_bytes


def _clock_ahead(monkeypatch, seconds):
    """The bulk functions' clock runs ``seconds`` ahead (no file's times can be set back)."""
    real = time.time
    monkeypatch.setattr(_bulk, "time", types.SimpleNamespace(time=lambda: real() + seconds))


def test_temporary_files_untouched_for_an_hour_are_removed_others_kept(tmp_path, monkeypatch):
    (run,) = make_run_dirs(tmp_path, 1)
    temp_archives = [tmp_path / f".{run.name}.tar.gz.{h}.tmp" for h in ("0123abcd", "89abcdef")]
    other = tmp_path / ".notes.tar.gz.0123abcd.tmp"  # not a run's: never touched
    for path in (*temp_archives, other):
        path.write_bytes(b"half an archive")
    trial = tmp_path / f".{run.name}.restoring-0123abcd"  # a resume's check, stopped
    (trial / "logs").mkdir(parents=True)
    (trial / "logs" / "half.log").write_text("x")
    # old modification times, as a restore sets them: the status change (now) still counts
    old = time.time() - 2 * 3600
    for path in (*temp_archives, other, trial / "logs" / "half.log", trial / "logs", trial):
        os.utime(path, (old, old))
    assert archive_existing(tmp_path, progress=False)["temp_removed"] == 0

    _clock_ahead(monkeypatch, 3600 + 60)
    dry = archive_existing(tmp_path, progress=False)
    assert dry["temp_removed"] == 3
    assert all(p.exists() for p in (*temp_archives, trial))
    summary = archive_existing(tmp_path, dry_run=False, jobs=1, progress=False)
    assert (summary["temp_removed"], summary["archived"]) == (3, 1)
    assert not any(p.exists() for p in (*temp_archives, trial))
    assert other.exists()
    assert not [p.name for p in tmp_path.iterdir() if ".restoring-" in p.name]


def test_restore_with_removal_finishes_folders_left_beside_their_archives(tmp_path, monkeypatch):
    runs = make_run_dirs(tmp_path, 3)
    before = {r.name: _contents(r) for r in runs}
    archive_existing(tmp_path, dry_run=False, jobs=1, progress=False)
    archives = [archive_path_for(r, "tar.gz") for r in runs]
    # run 0: restored, archive not yet removed; run 1: a different folder of the same name
    restore_existing(tmp_path, pattern=archives[0].name, dry_run=False, progress=False)
    runs[1].mkdir()
    (runs[1] / "other.txt").write_text("another folder")
    stale = tmp_path / f".{runs[2].name}.restoring-0123abcd"
    (stale / "sub").mkdir(parents=True)
    (stale / "sub" / "half.txt").write_text("x")

    with monkeypatch.context() as patch:
        _clock_ahead(patch, 3600 + 60)
        kept = restore_existing(tmp_path, dry_run=False, jobs=1, progress=False)
    assert (kept["skipped"], kept["restored"], kept["temp_removed"]) == (2, 1, 1)
    assert not stale.exists()

    runs[2].joinpath("result.csv").unlink()  # restored, then changed: not its archive's any more
    summary = restore_existing(tmp_path, dry_run=False, remove_archive=True, progress=False)
    assert (summary["resumed"], summary["restored"], summary["failed"]) == (3, 1, 2)
    assert not archives[0].exists()
    assert _contents(runs[0]) == before[runs[0].name]
    assert archives[1].exists()
    assert archives[2].exists()
    assert _contents(runs[1]) == {"other.txt": b"another folder"}
    assert {e["path"] for e in summary["errors"]} == {str(archives[1]), str(archives[2])}


def _tar_bytes(folder, *, top, extra=()):
    """An uncompressed tar of ``folder`` under ``top``, then the ``extra`` (TarInfo, bytes)."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tf:
        tf.add(folder, arcname=top)
        for info, data in extra:
            info.size = len(data) if info.isfile() else 0
            tf.addfile(info, io.BytesIO(data) if info.isfile() else None)
    return out.getvalue()


def _member(name, *, kind=tarfile.REGTYPE, link=""):
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    return info


def _unrestorable(run):
    """Archives of ``run`` (all it holds, and more) that restoring refuses or lays out otherwise."""
    a_file = sorted(p for p in run.rglob("*") if p.is_file())[0].relative_to(run).as_posix()
    whole = _tar_bytes(run, top=run.name)
    return {
        "hard link": _tar_bytes(
            run,
            top=run.name,
            extra=[(_member(f"{run.name}/copy", kind=tarfile.LNKTYPE, link=a_file), b"")],
        ),
        "absolute name": _tar_bytes(run, top=run.name, extra=[(_member("/tmp/x.txt"), b"x")]),
        "member outside the run": _tar_bytes(
            run, top=run.name, extra=[(_member("other_run/x.txt"), b"x")]
        ),
        "data after the end block": whole
        + _tar_bytes(run, top=run.name, extra=[(_member(f"{run.name}/later.txt"), b"y")]),
        # members the folder lacks (removal had begun) that restoring refuses together
        "file and folder of one name": _tar_bytes(
            run,
            top=run.name,
            extra=[(_member(f"{run.name}/f"), b"file"), (_member(f"{run.name}/f/g"), b"in f")],
        ),
        "link where a file is": _tar_bytes(
            run,
            top=run.name,
            extra=[
                (_member(f"{run.name}/l"), b"file"),
                (_member(f"{run.name}/l", kind=tarfile.SYMTYPE, link=a_file), b""),
            ],
        ),
        "link out through a name it lacks": _tar_bytes(
            run,
            top=run.name,
            extra=[(_member(f"{run.name}/l", kind=tarfile.SYMTYPE, link="../outside.txt"), b"")],
        ),
    }


@pytest.mark.parametrize(
    "case",
    [
        "hard link",
        "absolute name",
        "member outside the run",
        "data after the end block",
        "file and folder of one name",
        "link where a file is",
        "link out through a name it lacks",
    ],
)
def test_a_folder_is_kept_beside_an_archive_restoring_refuses(tmp_path, case):
    (run,) = make_run_dirs(tmp_path, 1)
    before = _contents(run)
    archive = archive_path_for(run, "tar.gz")
    archive.write_bytes(gzip.compress(_unrestorable(run)[case]))

    summary = archive_existing(tmp_path, dry_run=False, jobs=1, progress=False)
    assert (summary["resumed"], summary["archived"], summary["failed"]) == (1, 0, 1)
    assert str(archive) in summary["errors"][0]["error"]
    assert _contents(run) == before


def test_restore_keeps_an_archive_holding_more_than_its_restored_folder(tmp_path):
    concatenated, file_on_top = make_run_dirs(tmp_path, 2)
    # a restored folder beside an archive with members after its first end-of-archive block
    archive = archive_path_for(concatenated, "tar.gz")
    later = _tar_bytes(
        concatenated, top=concatenated.name, extra=[(_member(f"{concatenated.name}/x"), b"y")]
    )
    archive.write_bytes(gzip.compress(_tar_bytes(concatenated, top=concatenated.name) + later))
    # an empty folder beside an archive whose one member is a file named like the folder
    for path in sorted(file_on_top.rglob("*"), reverse=True):
        path.unlink() if path.is_file() else path.rmdir()
    other = archive_path_for(file_on_top, "tar.gz")
    other.write_bytes(gzip.compress(_file_named(file_on_top.name)))
    archived = {a: a.read_bytes() for a in (archive, other)}

    summary = restore_existing(tmp_path, dry_run=False, remove_archive=True, progress=False)
    assert (summary["resumed"], summary["restored"], summary["failed"]) == (2, 0, 2)
    assert {a: a.read_bytes() for a in (archive, other)} == archived
    assert {e["path"] for e in summary["errors"]} == {str(archive), str(other)}


def _file_named(name):
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tf:
        info = _member(name)
        info.size = 4
        tf.addfile(info, io.BytesIO(b"data"))
    return out.getvalue()


@pytest.mark.parametrize("inner", ["same name", "another run's name"])
def test_restore_keeps_an_archive_whose_restore_lays_its_folder_out_otherwise(tmp_path, inner):
    # the folder holds <run>/<inner>/x.txt; restoring strips or unwraps <inner> away
    (run,) = make_run_dirs(tmp_path, 1, n_files=1)
    name = run.name if inner == "same name" else run.name[:-4] + "zzzz"
    for path in sorted(run.rglob("*"), reverse=True):
        path.unlink() if path.is_file() else path.rmdir()
    (run / name).mkdir()
    (run / name / "x.txt").write_text("payload")
    archive = archive_path_for(run, "tar.gz")
    archive.write_bytes(gzip.compress(_tar_bytes(run / name, top=name)))
    archived = archive.read_bytes()

    summary = restore_existing(tmp_path, dry_run=False, remove_archive=True, progress=False)
    assert (summary["resumed"], summary["restored"], summary["failed"]) == (1, 0, 1)
    assert "differs" in summary["errors"][0]["error"]
    assert archive.read_bytes() == archived
    assert _contents(run) == {f"{name}/x.txt": b"payload"}


def test_a_run_packing_over_100_fold_is_resumed_beyond_the_default_restore_limit(tmp_path):
    # 70 MiB of zeros packs to ~0.3 MB: over the default limit of a restore (max 64 MiB or 100x
    # the archive); the resume's check is bounded by the free space alone.
    (run,) = make_run_dirs(tmp_path, 1, n_files=1)
    zeros = run / "zeros.bin"
    with open(zeros, "wb") as f:
        f.truncate(70 << 20)
    archive = _packed_not_removed(run)
    summary = archive_existing(tmp_path, dry_run=False, jobs=1, progress=False)
    assert (summary["resumed"], summary["archived"]) == (1, 1), summary["errors"]
    assert not run.exists()
    assert archive.is_file()


def _paused_before(monkeypatch, module, name):
    """Make ``module.name`` wait, once called, until the test lets it go (a thread's pause)."""
    reached, go = threading.Event(), threading.Event()
    original = getattr(module, name)

    def paused(*args, **kwargs):
        reached.set()
        assert go.wait(60), "never let go"
        return original(*args, **kwargs)

    monkeypatch.setattr(module, name, paused)
    return reached, go


def test_an_archive_call_never_removes_a_folder_a_restore_is_about_to_remove_the_archive_of(
    tmp_path, monkeypatch
):
    # A restore with remove_archive has its folder in place, its archive not yet
    # removed; an archive call at the same time finds folder and archive, checks them equal
    # and would remove the folder: it must leave it (the restore holds the archive).
    (run,) = make_run_dirs(tmp_path, 1)
    before = _contents(run)
    archive_existing(tmp_path, dry_run=False, jobs=1, progress=False)
    reached, go = _paused_before(monkeypatch, _bulk, "flush_trees")  # in place, not yet removed
    restoring = {}
    thread = threading.Thread(
        target=lambda: restoring.update(
            restore_existing(tmp_path, dry_run=False, remove_archive=True, progress=False)
        )
    )
    thread.start()
    assert reached.wait(60)
    assert _contents(run) == before  # in place, archive still there
    archiving = archive_existing(tmp_path, dry_run=False, jobs=1, progress=False)
    go.set()
    thread.join(60)
    assert (archiving["resumed"], archiving["archived"], archiving["failed"]) == (1, 0, 1)
    assert "another call" in archiving["errors"][0]["error"]
    assert (restoring["restored"], restoring["failed"]) == (1, 0), restoring["errors"]
    assert _contents(run) == before
    assert not archive_path_for(run, "tar.gz").exists()


def test_a_restore_never_removes_an_archive_whose_folder_an_archive_call_is_removing(
    tmp_path, monkeypatch
):
    # An archive call has checked folder and archive and is removing the folder; a restore
    # with remove_archive at the same time must keep the archive.
    (run,) = make_run_dirs(tmp_path, 1)
    before = _contents(run)
    archive = _packed_not_removed(run)
    reached, go = _paused_before(monkeypatch, _archive, "remove_packed")  # archive held
    archiving = {}
    thread = threading.Thread(
        target=lambda: archiving.update(
            archive_existing(tmp_path, dry_run=False, jobs=1, progress=False)
        )
    )
    thread.start()
    assert reached.wait(60)
    restoring = restore_existing(tmp_path, dry_run=False, remove_archive=True, progress=False)
    go.set()
    thread.join(60)
    assert (restoring["resumed"], restoring["restored"], restoring["failed"]) == (1, 0, 1)
    assert "another call" in restoring["errors"][0]["error"]
    assert (archiving["archived"], archiving["failed"]) == (1, 0), archiving["errors"]
    assert not run.exists()
    assert _restored(archive, run) == before


def test_an_archive_call_never_removes_a_folder_one_restore_is_about_to_remove_the_archive_of(
    tmp_path, monkeypatch
):
    # the same with restore_session_archive(remove_archive=True), one run
    from labsession.runs import restore_session_archive

    (run,) = make_run_dirs(tmp_path, 1)
    before = _contents(run)
    archive_existing(tmp_path, dry_run=False, jobs=1, progress=False)
    archive = archive_path_for(run, "tar.gz")
    reached, go = _paused_before(monkeypatch, _archive, "fsync_dir")  # in place, archive held
    thread = threading.Thread(target=restore_session_archive, args=(archive, None, True))
    thread.start()
    assert reached.wait(60)
    archiving = archive_existing(tmp_path, dry_run=False, jobs=1, progress=False)
    go.set()
    thread.join(60)
    assert (archiving["resumed"], archiving["archived"], archiving["failed"]) == (1, 0, 1)
    assert "another call" in archiving["errors"][0]["error"]
    assert _contents(run) == before
    assert not archive.exists()


def test_a_restore_removing_its_archive_holds_it_from_before_reading_it(tmp_path, monkeypatch):
    # While one restore reads the archive, another (which could finish the run, let it be
    # archived anew, and so have the first remove a newer archive) is refused.
    from labsession.runs import restore_session_archive

    (run,) = make_run_dirs(tmp_path, 1)
    before = _contents(run)
    archive_existing(tmp_path, dry_run=False, jobs=1, progress=False)
    archive = archive_path_for(run, "tar.gz")
    reached, go = _paused_before(monkeypatch, _archive, "staged_extract")
    errors = []

    def first():
        try:
            restore_session_archive(archive, None, True)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    thread = threading.Thread(target=first)
    thread.start()
    assert reached.wait(60)
    with pytest.raises(ArchiveError, match="another call"):
        restore_session_archive(archive, tmp_path / "second", True)
    go.set()
    thread.join(60)
    assert errors == []
    assert _contents(run) == before
    assert not archive.exists()
    assert not (tmp_path / "second").exists()


def test_a_bulk_restore_holds_a_bounded_number_of_archives_and_survives_one_it_cannot_remove(
    tmp_path, monkeypatch
):
    # one chunk of 10 runs (a Dask task holds hundreds), 4 archives held open at a time
    runs = make_run_dirs(tmp_path, 10, n_files=2)
    archive_existing(tmp_path, dry_run=False, jobs=1, progress=False)
    pairs = [(str(archive_path_for(r, "tar.gz")), str(r)) for r in runs]
    monkeypatch.setattr(_bulk, "_HELD_AT_ONCE", 4)
    batches = []
    flush = _bulk.flush_trees

    def flush_and_count(roots):
        batches.append(len(roots))
        return flush(roots)

    monkeypatch.setattr(_bulk, "flush_trees", flush_and_count)
    stuck = archive_path_for(runs[5], "tar.gz")
    unlink = Path.unlink

    def unlink_or_fail(path, *args, **kwargs):
        if path == stuck:
            raise PermissionError(13, "Permission denied", str(path))
        return unlink(path, *args, **kwargs)

    monkeypatch.setattr(Path, "unlink", unlink_or_fail)
    outcomes = _bulk._restore_chunk(pairs, True, False, None)
    assert batches == [4, 4, 2]
    failed = [o for o in outcomes if not o.ok]
    assert len(outcomes) == 10
    assert [o.source for o in failed] == [str(stuck)]
    assert "could not be removed" in failed[0].error
    assert all(r.is_dir() for r in runs)
    assert [p.name for p in tmp_path.glob("*.tar.gz")] == [stuck.name]


@pytest.mark.parametrize("change", ["mode", "time"])
def test_restore_keeps_an_archive_whose_folder_s_file_modes_or_times_changed(tmp_path, change):
    # the archive alone would keep the file's mode and modification time as they were
    (run,) = make_run_dirs(tmp_path, 1)
    archive_existing(tmp_path, dry_run=False, jobs=1, progress=False)
    archive = archive_path_for(run, "tar.gz")
    restore_existing(tmp_path, dry_run=False, progress=False)
    target = run / "result.csv"
    if change == "mode":
        target.chmod(0o400)  # owner write taken away (group and other follow the umask)
    else:
        os.utime(target, ns=(0, target.stat().st_mtime_ns + 1_000_000_000))
    summary = restore_existing(tmp_path, dry_run=False, remove_archive=True, progress=False)
    assert (summary["resumed"], summary["restored"], summary["failed"]) == (1, 0, 1)
    assert "differs" in summary["errors"][0]["error"]
    assert archive.exists()


def test_restore_finishes_a_folder_restored_under_another_umask(tmp_path):
    # group and other permission bits follow each restore's umask: not a change of the folder
    (run,) = make_run_dirs(tmp_path, 1)
    before = _contents(run)
    archive_existing(tmp_path, dry_run=False, jobs=1, progress=False)
    old = os.umask(0o077)
    try:
        restore_existing(tmp_path, dry_run=False, jobs=1, progress=False)
    finally:
        os.umask(old)
    assert (run / "result.csv").stat().st_mode & 0o077 == 0
    summary = restore_existing(tmp_path, dry_run=False, remove_archive=True, progress=False)
    assert (summary["resumed"], summary["restored"], summary["failed"]) == (1, 1, 0)
    assert _contents(run) == before


def test_restore_finishes_a_folder_whose_archive_holds_a_time_the_system_cannot_set(tmp_path):
    # each extraction then gives the file its own time: not a change of the folder
    (run,) = make_run_dirs(tmp_path, 1, n_files=1)
    archive = archive_path_for(run, "tar.gz")
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tf:
        info = _member(f"{run.name}/far_future.txt")
        info.size, info.mtime = 4, 1e20
        tf.addfile(info, io.BytesIO(b"data"))
    archive.write_bytes(gzip.compress(out.getvalue()))
    for path in sorted(run.rglob("*"), reverse=True):
        path.unlink() if path.is_file() else path.rmdir()
    run.rmdir()
    restore_existing(tmp_path, dry_run=False, jobs=1, progress=False)
    assert (run / "far_future.txt").read_bytes() == b"data"
    summary = restore_existing(tmp_path, dry_run=False, remove_archive=True, progress=False)
    assert (summary["resumed"], summary["restored"], summary["failed"]) == (1, 1, 0)
    assert not archive.exists()
