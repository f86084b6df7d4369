from __future__ import annotations

import io
import os
import tarfile

import pytest

from labsession.core.archive import remove_packed, walk_folder
from labsession.errors import ArchiveError, UnsafeArchiveMemberError
from labsession.runs import archive_session_dir, restore_session_archive

from .conftest import make_run_dirs

RUN = "2026Y-01M-02D-03h04m05s_abcd"


def _snapshot(folder):
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _evil_tar(path, member: tarfile.TarInfo, data: bytes = b""):
    with tarfile.open(path, "w:gz") as tf:
        ok = tarfile.TarInfo(f"{RUN}/ok.txt")
        ok.size = 2
        tf.addfile(ok, io.BytesIO(b"ok"))
        member.size = len(data) if member.isfile() else 0
        tf.addfile(member, io.BytesIO(data) if data else None)
    return path


@pytest.mark.parametrize("fmt", ["tar.gz", "tar", "tar.xz", "tar.bz2"])
def test_round_trip(tmp_path, fmt):
    (run,) = make_run_dirs(tmp_path, 1)
    (run / "empty_dir").mkdir()
    before = _snapshot(run)
    archive = archive_session_dir(run, format=fmt)
    assert archive == tmp_path / f"{run.name}.{fmt}"
    assert not run.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp left
    restored = restore_session_archive(archive)
    assert restored == run
    assert _snapshot(restored) == before
    assert (restored / "empty_dir").is_dir()
    assert archive.exists()  # kept unless asked


def test_keep_source_and_remove_archive(tmp_path):
    (run,) = make_run_dirs(tmp_path, 1)
    archive = archive_session_dir(run, remove_src=False)
    assert run.is_dir()
    dest = restore_session_archive(archive, tmp_path / "copy", remove_archive=True)
    assert _snapshot(dest) == _snapshot(run)
    assert not archive.exists()


def test_never_overwrites(tmp_path):
    (run,) = make_run_dirs(tmp_path, 1)
    archive = tmp_path / f"{run.name}.tar.gz"
    archive.write_bytes(b"older archive")
    with pytest.raises(FileExistsError, match="already exists"):
        archive_session_dir(run)
    assert archive.read_bytes() == b"older archive"
    assert run.is_dir()
    archive.unlink()
    archive_session_dir(run, remove_src=False)
    with pytest.raises(FileExistsError, match="destination exists"):
        restore_session_archive(archive)


def test_folder_with_a_link_is_not_archived(tmp_path):
    (run,) = make_run_dirs(tmp_path, 1)
    os.symlink("/etc/passwd", run / "link")
    with pytest.raises(ArchiveError, match="symbolic link"):
        archive_session_dir(run)
    assert run.is_dir()
    assert (run / "result.csv").is_file()
    assert not list(tmp_path.glob("*.tar.gz"))
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_folder_with_a_relative_link_out_is_not_archived(tmp_path):
    (run,) = make_run_dirs(tmp_path, 1)
    (tmp_path / "outside.txt").write_text("not the run's")
    os.symlink("../outside.txt", run / "escape")
    with pytest.raises(ArchiveError, match="points out of"):
        archive_session_dir(run)
    assert (run / "escape").is_symlink()
    assert not list(tmp_path.glob("*.tar.gz"))


def test_a_link_that_climbs_out_and_back_in_through_the_run_name_is_not_archived(tmp_path):
    """It points inside here, but not from the restore's temporary folder nor under a new name."""
    (run,) = make_run_dirs(tmp_path, 1)
    os.symlink(f"../{run.name}/result.csv", run / "latest")
    with pytest.raises(ArchiveError, match="points out of"):
        archive_session_dir(run)
    assert (run / "result.csv").is_file()
    assert not list(tmp_path.glob("*.tar.gz"))


def test_a_link_that_climbs_after_a_name_is_not_archived(tmp_path):
    """It could not be restored safely (``b/..`` climbs from wherever ``b`` points)."""
    (run,) = make_run_dirs(tmp_path, 1)
    os.symlink("logs/../result.csv", run / "twisted")
    with pytest.raises(ArchiveError, match="climbs after a name"):
        archive_session_dir(run)
    assert (run / "result.csv").is_file()
    assert not list(tmp_path.glob("*.tar.gz"))


def test_links_inside_the_run_and_file_modes_survive_a_round_trip(tmp_path):
    (run,) = make_run_dirs(tmp_path, 1)
    os.symlink("logs/stdout.log", run / "latest.log")
    os.symlink("../CONFIGS", run / "logs" / "configs")  # a folder, one level up but inside
    script = run / "rerun.sh"
    script.write_text("#!/bin/sh\necho again\n")
    script.chmod(0o750)
    (run / "result.csv").chmod(0o640)
    archive = archive_session_dir(run)
    assert not run.exists()
    restored = restore_session_archive(archive)
    assert os.readlink(restored / "latest.log") == "logs/stdout.log"
    assert (restored / "latest.log").read_text() == (restored / "logs" / "stdout.log").read_text()
    assert os.readlink(restored / "logs" / "configs") == "../CONFIGS"
    assert (restored / "logs" / "configs" / "CONFIG.yaml").is_file()
    assert (restored / "rerun.sh").stat().st_mode & 0o777 == 0o750
    assert (restored / "result.csv").stat().st_mode & 0o777 == 0o640


def test_a_chain_of_links_that_resolves_out_is_refused(tmp_path):
    """``s -> .`` and ``a -> s/..``: each target looks harmless as text; ``a`` resolves out."""
    archive = tmp_path / f"{RUN}.tar.gz"
    with tarfile.open(archive, "w:gz") as tf:
        for name, target in (("s", "."), ("a", "s/..")):
            tf.addfile(_member(f"{RUN}/{name}", tarfile.SYMTYPE, target))
    dest = tmp_path / "restore"
    with pytest.raises(UnsafeArchiveMemberError, match=r"'s/\.\.' climbs after a name"):
        restore_session_archive(archive, dest)
    assert not dest.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [archive.name]


def test_a_link_re_pointed_by_a_later_link_creates_nothing_outside(tmp_path):
    """``a -> b/../evil`` then ``b -> .`` would make ``a`` climb out; a link under ``a`` would be
    created through it. Nothing may appear beside the destination."""
    parent = tmp_path / "FINISHED_SUCCESS"
    (parent / "evil").mkdir(parents=True)
    archive = parent / f"{RUN}.tar"
    with tarfile.open(archive, "w") as tf:
        tf.addfile(_member(f"{RUN}", tarfile.DIRTYPE))
        for name, target in (("a", "b/../evil"), ("b", "."), ("a/sub/x", "../../../etc/passwd")):
            tf.addfile(_member(f"{RUN}/{name}", tarfile.SYMTYPE, target))
    before = sorted(parent.rglob("*"))
    with pytest.raises(UnsafeArchiveMemberError, match="refused"):
        restore_session_archive(archive)
    assert sorted(parent.rglob("*")) == before


def test_a_link_under_another_link_is_refused(tmp_path):
    archive = tmp_path / f"{RUN}.tar.gz"
    with tarfile.open(archive, "w:gz") as tf:
        tf.addfile(_member(f"{RUN}/d", tarfile.DIRTYPE))
        tf.addfile(_member(f"{RUN}/up", tarfile.SYMTYPE, "d"))
        tf.addfile(_member(f"{RUN}/up/x", tarfile.SYMTYPE, "y"))
    with pytest.raises(UnsafeArchiveMemberError, match="under a link"):
        restore_session_archive(archive, tmp_path / "restore")
    assert sorted(p.name for p in tmp_path.iterdir()) == [archive.name]


def test_a_file_under_a_link_name_is_never_written_through_the_link(tmp_path):
    archive = tmp_path / f"{RUN}.tar.gz"
    with tarfile.open(archive, "w:gz") as tf:
        tf.addfile(_member(f"{RUN}/up", tarfile.SYMTYPE, ".."))
        late = tarfile.TarInfo(f"{RUN}/up/written-through-the-link.txt")
        late.size = 5
        tf.addfile(late, io.BytesIO(b"pwned"))
    with pytest.raises(UnsafeArchiveMemberError):
        restore_session_archive(archive, tmp_path / "restore")
    assert not (tmp_path / "written-through-the-link.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [archive.name]


def test_bad_inputs_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing"):
        archive_session_dir(tmp_path / "nothing")
    (tmp_path / "f").write_text("x")
    with pytest.raises(NotADirectoryError, match="not a folder"):
        archive_session_dir(tmp_path / "f")
    with pytest.raises(ValueError, match="unknown archive format 'rar'"):
        archive_session_dir(tmp_path, format="rar")
    with pytest.raises(FileNotFoundError, match=r"missing\.tar\.gz"):
        restore_session_archive(tmp_path / "missing.tar.gz")


def _member(name, kind=tarfile.REGTYPE, linkname=""):
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    return info


@pytest.mark.parametrize(
    ("member", "message"),
    [
        (_member(f"{RUN}/../../escaped.txt"), "climbs out"),
        (_member("/tmp/absolute.txt"), "absolute path"),
        (_member(f"{RUN}/link", tarfile.SYMTYPE, "../../../etc/passwd"), "out of the folder"),
        (_member(f"{RUN}/abs", tarfile.SYMTYPE, "/etc/passwd"), "absolute path"),
        (_member(f"{RUN}/hard", tarfile.LNKTYPE, "/etc/passwd"), "hard link"),
        (_member(f"{RUN}/dev", tarfile.CHRTYPE), "device"),
    ],
)
def test_traversal_members_are_refused(tmp_path, member, message):
    archive = _evil_tar(tmp_path / f"{RUN}.tar.gz", member, b"pwned" if member.isfile() else b"")
    dest = tmp_path / "deep" / "restore"
    with pytest.raises(UnsafeArchiveMemberError, match=message) as info:
        restore_session_archive(archive, dest)
    assert repr(member.name) in str(info.value)  # the member is named
    assert not dest.exists()
    assert not list(dest.parent.iterdir())  # the temporary folder is gone too
    assert not (tmp_path / "escaped.txt").exists()
    assert archive.exists()


def test_corrupt_archive_is_refused_and_nothing_left(tmp_path):
    (run,) = make_run_dirs(tmp_path, 1)
    (run / "big.bin").write_bytes(os.urandom(200_000))
    archive = archive_session_dir(run)
    archive.write_bytes(archive.read_bytes()[:-5000])
    with pytest.raises(ArchiveError, match=run.name):
        restore_session_archive(archive)
    assert not run.exists()
    assert [p.name for p in tmp_path.iterdir()] == [archive.name]


def test_restores_archives_with_members_at_the_root(tmp_path):
    archive = tmp_path / f"{RUN}.tar"
    with tarfile.open(archive, "w") as tf:
        for name, data in (("logs/stdout.log", b"hi\n"), ("CONFIGS/CONFIG.yaml", b"ID: x\n")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    dest = restore_session_archive(archive)
    assert dest == tmp_path / RUN
    assert (dest / "logs" / "stdout.log").read_bytes() == b"hi\n"


def test_restores_a_renamed_archive_of_one_run(tmp_path):
    (run,) = make_run_dirs(tmp_path / "src", 1)
    before = _snapshot(run)
    archive = archive_session_dir(run)
    renamed = archive.rename(tmp_path / "backup.tar.gz")
    dest = restore_session_archive(renamed)
    assert dest == tmp_path / "backup"
    assert _snapshot(dest) == before


def test_files_written_or_added_after_packing_are_kept(tmp_path, caplog):
    """Only what the archive holds is removed: a log still being written loses nothing."""
    from labsession.runs._archive import pack_verified, remove_source

    (run,) = make_run_dirs(tmp_path, 1)
    target, entries = pack_verified(run, fmt="tar.gz", compresslevel=1, fsync=True)
    with open(run / "logs" / "stdout.log", "a") as f:
        f.write("a line written after packing\n")
    (run / "logs" / "late.log").write_text("new file")
    remove_source(run, target, entries, checked=target.stat())
    assert sorted(p.relative_to(run).as_posix() for p in run.rglob("*")) == [
        "logs",
        "logs/late.log",
        "logs/stdout.log",
    ]
    assert (run / "logs" / "stdout.log").read_text().endswith("a line written after packing\n")
    assert "kept 2 path(s)" in caplog.text  # the changed log and the folder holding the new one
    assert "logs/stdout.log" in caplog.text
    restored = restore_session_archive(target, tmp_path / "restored")
    assert (restored / "result.csv").is_file()
    assert "after packing" not in (restored / "logs" / "stdout.log").read_text()


def test_an_archive_declaring_more_than_max_bytes_is_refused_and_kept(tmp_path):
    (run,) = make_run_dirs(tmp_path, 1)
    (run / "big.bin").write_bytes(bytes(300_000))  # zeros: the archive is a few hundred bytes
    archive = archive_session_dir(run)
    with pytest.raises(ArchiveError, match=r"'[^']*big\.bin' declares 300000 bytes") as info:
        restore_session_archive(archive, max_bytes=100_000, remove_archive=True)
    assert str(archive) in str(info.value)
    assert [p.name for p in tmp_path.iterdir()] == [archive.name]  # kept, nothing else
    restored = restore_session_archive(archive)  # the default limit: 64 MiB at least
    assert (restored / "big.bin").stat().st_size == 300_000


def test_an_os_error_while_restoring_is_an_archive_error_and_nothing_is_left(tmp_path):
    archive = tmp_path / f"{RUN}.tar.gz"
    with tarfile.open(archive, "w:gz") as tf:
        for name in ("ok.txt", "n" * 300):  # the second name is over NAME_MAX
            info = tarfile.TarInfo(f"{RUN}/{name}")
            info.size = 2
            tf.addfile(info, io.BytesIO(b"hi"))
    with pytest.raises(ArchiveError, match="File name too long") as info:
        restore_session_archive(archive)
    assert repr(f"{RUN}/{'n' * 300}") in str(info.value)
    assert isinstance(info.value.__cause__, OSError)
    assert [p.name for p in tmp_path.iterdir()] == [archive.name]


def test_a_lone_link_named_like_a_run_is_not_taken_for_the_run_folder(tmp_path):
    """Only a real folder is unwrapped: a link ``<run id> -> .`` renamed into place would
    make the destination point at its parent."""
    archive = tmp_path / "backup.tar"
    with tarfile.open(archive, "w") as tf:
        tf.addfile(_member(RUN, tarfile.SYMTYPE, "."))
    dest = restore_session_archive(archive)
    assert not dest.is_symlink()
    assert os.readlink(dest / RUN) == "."


RUN_A = "2026Y-05M-17D-14h23m05s_a1B2"
RUN_B = "2026Y-05M-17D-14h23m06s_c3D4"


def _run_tar(path, members):
    """A tar.gz of ``(name, kind, payload)``: kind "dir", "link" (payload: target) or "file"."""
    with tarfile.open(path, "w:gz") as tf:
        for name, kind, payload in members:
            info = tarfile.TarInfo(name)
            if kind == "dir":
                info.type = tarfile.DIRTYPE
                tf.addfile(info)
            elif kind == "link":
                info.type, info.linkname = tarfile.SYMTYPE, payload
                tf.addfile(info)
            else:
                info.size = len(payload)
                tf.addfile(info, io.BytesIO(payload))


def test_a_link_inside_an_unwrapped_run_folder_must_stay_inside_it(tmp_path):
    """Archive A holding one run folder B: B's content is restored as A, so a link ``B/up ->
    ..`` (inside the extraction folder, but out of B) would point at A's siblings."""
    (tmp_path / "secret.txt").write_text("sibling data")
    archive = tmp_path / f"{RUN_A}.tar.gz"
    _run_tar(
        archive,
        [
            (f"{RUN_B}/", "dir", None),
            (f"{RUN_B}/log.txt", "file", b"x"),
            (f"{RUN_B}/up", "link", ".."),
        ],
    )
    before = _snapshot(tmp_path)
    with pytest.raises(ArchiveError, match="points out of"):
        restore_session_archive(archive)
    assert _snapshot(tmp_path) == before  # nothing restored, nothing left behind


def test_a_run_holding_one_run_named_folder_keeps_its_layout(tmp_path):
    archive = tmp_path / f"{RUN_A}.tar.gz"
    _run_tar(archive, [(f"{RUN_A}/{RUN_B}/log.txt", "file", b"kept where it was")])
    restored = restore_session_archive(archive)
    assert restored == tmp_path / RUN_A
    assert (restored / RUN_B / "log.txt").read_bytes() == b"kept where it was"


def test_a_destination_appearing_during_the_restore_is_never_replaced(tmp_path, monkeypatch):
    import labsession.runs._archive as run_archive

    archive = tmp_path / f"{RUN_A}.tar.gz"
    _run_tar(archive, [(f"{RUN_A}/log.txt", "file", b"archived")])
    dest = tmp_path / RUN_A
    flush = run_archive.flush_trees

    def another_process_makes_the_folder(roots):
        dest.mkdir()  # empty, as another restore would start it
        flush(roots)

    monkeypatch.setattr(run_archive, "flush_trees", another_process_makes_the_folder)
    with pytest.raises(FileExistsError, match="appeared while restoring"):
        restore_session_archive(archive, remove_archive=True)
    assert list(dest.iterdir()) == []  # the other process's folder, untouched
    assert archive.is_file()  # kept: nothing was restored
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([archive.name, RUN_A])


def test_a_dangling_link_inside_the_run_is_restored_and_the_archive_removed(tmp_path):
    # flushing the restored files before removing the archive must not follow the link
    (run,) = make_run_dirs(tmp_path, 1)
    os.symlink("results/not_yet_written.csv", run / "latest")
    archive = archive_session_dir(run)
    restored = restore_session_archive(archive, remove_archive=True)
    assert os.readlink(restored / "latest") == "results/not_yet_written.csv"
    assert not archive.exists()


def test_a_folder_with_hard_linked_files_is_removed_whole(tmp_path):
    # Removing one name of a hard-linked file changes the other's status change time: the
    # other was kept as "changed since packing" and the folder stayed beside its archive.
    (run,) = make_run_dirs(tmp_path, 1)
    os.link(run / "result.csv", run / "result-copy.csv")
    data = (run / "result.csv").read_bytes()
    archive = archive_session_dir(run)
    assert not run.exists()
    restored = restore_session_archive(archive)
    assert (restored / "result.csv").read_bytes() == data
    assert (restored / "result-copy.csv").read_bytes() == data


def test_a_hard_linked_file_rewritten_after_packing_is_kept(tmp_path):
    (run,) = make_run_dirs(tmp_path, 1)
    os.link(run / "result.csv", run / "result-copy.csv")
    entries = walk_folder(run, links=True)
    (run / "result.csv").write_bytes(b"rewritten")  # both names see the new bytes
    kept = remove_packed(run, entries)
    assert sorted(kept) == [".", "result-copy.csv", "result.csv"]
    assert (run / "result-copy.csv").read_bytes() == b"rewritten"


def test_a_hard_linked_file_rewritten_between_its_names_removals_is_kept(tmp_path, monkeypatch):
    # The second name was compared without its status change time: a rewrite that put the
    # modification time back (as rsync -t or cp -p do) was removed, new bytes lost.
    import labsession.core.archive._manifest as manifest

    (run,) = make_run_dirs(tmp_path, 1)
    os.link(run / "result.csv", run / "result-copy.csv")
    real = manifest._unlink_keeping_identity

    def unlink_then_rewrite(name, parent_fd, checked):
        left = real(name, parent_fd, checked)
        (other,) = {"result.csv", "result-copy.csv"} - {name}
        before = os.stat(run / other)
        (run / other).write_bytes(b"X" * before.st_size)  # same size, same times
        os.utime(run / other, ns=(before.st_atime_ns, before.st_mtime_ns))
        return left

    monkeypatch.setattr(manifest, "_unlink_keeping_identity", unlink_then_rewrite)
    entries = walk_folder(run, links=True)
    kept = remove_packed(run, entries)
    (left,) = [p for p in run.iterdir() if p.name.startswith("result")]
    assert left.name in kept
    assert left.read_bytes().startswith(b"XXX")


def test_a_runs_record_is_at_the_start_of_its_archive(tmp_path):
    # Readers look for CONFIGS/CONFIG.json and rng_checksums.json near the start (runs list,
    # rngg.verify): 70 files sorting before CONFIGS/ hid them.
    (run,) = make_run_dirs(tmp_path, 1)
    (run / "0_frames").mkdir()
    for i in range(70):
        (run / "0_frames" / f"{i:03d}.png").write_bytes(b"png")
    archive = archive_session_dir(run)
    with tarfile.open(archive) as tf:
        names = tf.getnames()
    top = run.name
    assert names[:3] == [top, f"{top}/CONFIGS", f"{top}/CONFIGS/CONFIG.json"]
    assert len(names) == len(set(names)) == 1 + 3 + 6 + 1 + 70  # each member once
    restored = restore_session_archive(archive)
    assert len(list((restored / "0_frames").iterdir())) == 70
