import contextlib
import io
import os
import re
import subprocess
import tarfile
import threading
import time
import types
import zipfile

import pytest

from labsession.core.archive import (
    folder_manifest,
    pack_tar,
    pack_zip,
    remove_packed,
    safe_extract,
    verify_tar,
    verify_zip,
    walk_folder,
)
from labsession.errors import ArchiveError, UnsafeArchiveMemberError


@pytest.fixture
def folder(tmp_path):
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "a.txt").write_text("alpha")
    (src / "sub" / "b.bin").write_bytes(os.urandom(5000))
    return src


def test_pack_zip_members_at_root_and_verified(folder, tmp_path):
    out = pack_zip(folder, tmp_path / "x.zip")
    assert sorted(verify_zip(out, expected=folder_manifest(folder))) == ["a.txt", "sub/b.bin"]
    with zipfile.ZipFile(out) as zf:
        assert all(i.compress_type == zipfile.ZIP_STORED for i in zf.infolist())
    assert not list(tmp_path.glob(".*.tmp"))


def test_verify_zip_detects_flipped_byte(folder, tmp_path):
    out = pack_zip(folder, tmp_path / "x.zip")
    raw = bytearray(out.read_bytes())
    offset = raw.find(b"alpha")
    raw[offset] ^= 0xFF
    out.write_bytes(bytes(raw))
    with pytest.raises(ArchiveError, match=r"a\.txt.*CRC"):
        verify_zip(out)


def test_verify_zip_detects_truncation(folder, tmp_path):
    out = pack_zip(folder, tmp_path / "x.zip")
    out.write_bytes(out.read_bytes()[:-100])
    with pytest.raises(ArchiveError, match="not a readable zip"):
        verify_zip(out)


def test_verify_zip_detects_missing_member(folder, tmp_path):
    out = pack_zip(folder, tmp_path / "x.zip")
    manifest = folder_manifest(folder) | {"extra.txt": 3}
    with pytest.raises(ArchiveError, match=r"missing \['extra\.txt'\]"):
        verify_zip(out, expected=manifest)


def _members(archive):
    with tarfile.open(archive) as tf:
        return [
            (
                m.name,
                m.type,
                m.size,
                m.mode,
                m.mtime,
                tf.extractfile(m).read() if m.isfile() else b"",
            )
            for m in tf.getmembers()
        ]


@pytest.mark.parametrize("suffix", ["tar", "tar.gz", "tar.bz2", "tar.xz"])
@pytest.mark.parametrize("memory_limit", [0, 10**9], ids=["streamed", "in-memory"])
def test_pack_tar_round_trip(folder, tmp_path, suffix, memory_limit):
    (folder / "sub" / "b.bin").chmod(0o750)
    out = pack_tar(folder, tmp_path / f"x.{suffix}", memory_limit=memory_limit)
    assert sorted(verify_tar(out)) == ["src/a.txt", "src/sub/b.bin"]
    dest = safe_extract(out, tmp_path / "restored")
    assert (dest / "src" / "sub" / "b.bin").read_bytes() == (folder / "sub" / "b.bin").read_bytes()
    assert not list(tmp_path.glob(".*.tmp"))


@pytest.mark.parametrize("suffix", ["tar", "tar.gz", "tar.bz2", "tar.xz"])
def test_pack_tar_in_memory_and_streamed_hold_the_same_members(folder, tmp_path, suffix):
    # A folder under the limit is packed in memory, one over it streamed: same archive content.
    (folder / "sub" / "b.bin").chmod(0o750)
    total = sum(folder_manifest(folder).values())
    in_memory = pack_tar(folder, tmp_path / f"m.{suffix}", memory_limit=total)
    streamed = pack_tar(folder, tmp_path / f"s.{suffix}", memory_limit=total - 1)
    assert _members(in_memory) == _members(streamed)
    names = [m[0] for m in _members(in_memory)]
    assert names == ["src", "src/a.txt", "src/sub", "src/sub/b.bin"]


def test_pack_tar_in_memory_gzip_reads_with_the_tar_command(folder, tmp_path):
    out = pack_tar(folder, tmp_path / "x.tar.gz")
    listed = subprocess.run(
        ["tar", "-tzvf", str(out)], capture_output=True, text=True, check=True
    ).stdout
    line = next(line for line in listed.splitlines() if line.endswith("src/sub/b.bin"))
    assert " 5000 " in line
    dest = tmp_path / "by-tar"
    dest.mkdir()
    subprocess.run(["tar", "-xzf", str(out), "-C", str(dest)], check=True)
    assert (dest / "src" / "a.txt").read_text() == "alpha"


def _packed_in_memory(gz_archive):
    # The in-memory path writes a gzip header without a time stamp (mtime 0); tarfile's
    # streaming writer stamps the current time.
    return int.from_bytes(gz_archive.read_bytes()[4:8], "little") == 0


def test_pack_tar_bounds_memory_by_the_tar_not_the_file_data(tmp_path):
    # 200 empty files hold no data, but their tar takes over 100 KiB of headers.
    src = tmp_path / "many"
    src.mkdir()
    for i in range(200):
        (src / f"empty{i:03d}").touch()
    small = pack_tar(src, tmp_path / "small.tar.gz", memory_limit=50_000)
    large = pack_tar(src, tmp_path / "large.tar.gz", memory_limit=10**6)
    assert not _packed_in_memory(small)
    assert _packed_in_memory(large)
    assert len(verify_tar(small)) == len(verify_tar(large)) == 200


@pytest.mark.parametrize("memory_limit", [0, 10**9], ids=["streamed", "in-memory"])
@pytest.mark.parametrize(("suffix", "level"), [("tar.gz", 10), ("tar.gz", -2), ("tar.bz2", 0)])
def test_pack_tar_bad_compresslevel_is_a_value_error(folder, tmp_path, memory_limit, suffix, level):
    with pytest.raises(ValueError, match="compresslevel"):
        pack_tar(folder, tmp_path / f"x.{suffix}", compresslevel=level, memory_limit=memory_limit)
    assert list(tmp_path.iterdir()) == [folder]


@pytest.mark.parametrize("memory_limit", [0, 10**9], ids=["streamed", "in-memory"])
def test_pack_tar_refuses_a_file_that_shrank_after_listing(folder, tmp_path, memory_limit):
    entries = walk_folder(folder)
    (folder / "sub" / "b.bin").write_bytes(b"short")
    with pytest.raises(ArchiveError, match=r"b\.bin: shorter than when the folder was listed"):
        pack_tar(folder, tmp_path / "x.tar.gz", entries=entries, memory_limit=memory_limit)
    assert list(tmp_path.iterdir()) == [folder]
    assert (folder / "sub" / "b.bin").read_bytes() == b"short"


@pytest.mark.parametrize("memory_limit", [0, 10**9], ids=["streamed", "in-memory"])
def test_pack_tar_never_packs_through_a_file_swapped_for_a_link(folder, tmp_path, memory_limit):
    secret = tmp_path / "secret.txt"
    secret.write_text("S" * 5)  # as long as a.txt, so only the swap can tell them apart
    entries = walk_folder(folder)
    (folder / "a.txt").unlink()
    os.symlink(secret, folder / "a.txt")
    with pytest.raises(ArchiveError, match=r"a\.txt: changed since the folder was listed"):
        pack_tar(folder, tmp_path / "x.tar.gz", entries=entries, memory_limit=memory_limit)
    assert not (tmp_path / "x.tar.gz").exists()


@pytest.mark.parametrize("memory_limit", [0, 10**9], ids=["streamed", "in-memory"])
def test_pack_tar_refuses_a_file_replaced_after_listing(folder, tmp_path, memory_limit):
    entries = walk_folder(folder)
    (tmp_path / "new.txt").write_text("other")  # same size, another file...
    os.replace(tmp_path / "new.txt", folder / "a.txt")  # ...moved over it, as atomic writers do
    with pytest.raises(ArchiveError, match=r"a\.txt: replaced since the folder was listed"):
        pack_tar(folder, tmp_path / "x.tar.gz", entries=entries, memory_limit=memory_limit)


def _pack_without_waiting(folder, out, entries, memory_limit) -> list[BaseException | None]:
    """``pack_tar`` on a thread that must finish within 10 s (a named pipe opened for reading
    would wait for a writer); ``[None]`` or ``[the exception raised]``."""
    outcome: list[BaseException | None] = []

    def pack() -> None:
        try:
            pack_tar(folder, out, entries=entries, memory_limit=memory_limit)
            outcome.append(None)
        except BaseException as exc:  # noqa: BLE001 - handed back to the test
            outcome.append(exc)

    worker = threading.Thread(target=pack, daemon=True)
    worker.start()
    worker.join(10.0)
    assert not worker.is_alive(), "blocked: packing opened the named pipe, waiting for a writer"
    return outcome


@pytest.mark.parametrize("memory_limit", [0, 10**9], ids=["streamed", "in-memory"])
def test_pack_tar_refuses_a_file_swapped_for_a_named_pipe_without_blocking(
    folder, tmp_path, memory_limit
):
    """A named pipe put where a listed file was is refused at once: opening it must not wait
    for a writer that never comes."""
    entries = walk_folder(folder)
    (folder / "a.txt").unlink()
    os.mkfifo(folder / "a.txt")
    outcome = _pack_without_waiting(folder, tmp_path / "x.tar.gz", entries, memory_limit)
    assert isinstance(outcome[0], ArchiveError)
    assert "a.txt: replaced since the folder was listed" in str(outcome[0])
    assert not (tmp_path / "x.tar.gz").exists()


def _open_fds() -> int:
    return len(os.listdir("/dev/fd"))


@pytest.mark.parametrize("memory_limit", [0, 10**9], ids=["streamed", "in-memory"])
def test_pack_tar_never_opens_a_file_through_a_folder_swapped_for_a_link(
    folder, tmp_path, memory_limit
):
    """A listed folder moved out of the run and linked back in its place still holds the very
    files listed, but packing opens each folder on the way without following links: the link
    is refused, naming it, and nothing outside the run folder is opened."""
    entries = walk_folder(folder)
    os.rename(folder / "sub", tmp_path / "elsewhere")
    os.symlink(tmp_path / "elsewhere", folder / "sub")
    before = _open_fds()
    pattern = re.escape(f"{folder / 'sub'}: changed since the folder was listed")
    with pytest.raises(ArchiveError, match=pattern):
        pack_tar(folder, tmp_path / "x.tar.gz", entries=entries, memory_limit=memory_limit)
    assert not (tmp_path / "x.tar.gz").exists()
    assert _open_fds() == before


@pytest.mark.parametrize("memory_limit", [0, 10**9], ids=["streamed", "in-memory"])
def test_pack_tar_refuses_a_folder_swapped_for_a_link_to_a_named_pipe_without_blocking(
    folder, tmp_path, memory_limit
):
    """A listed folder swapped for a link to a folder whose file of the listed name is a named
    pipe: the link is refused at once, before the pipe (outside the run) is opened."""
    entries = walk_folder(folder)
    (tmp_path / "pipes").mkdir()
    os.mkfifo(tmp_path / "pipes" / "b.bin")
    (folder / "sub" / "b.bin").unlink()
    (folder / "sub").rmdir()
    os.symlink(tmp_path / "pipes", folder / "sub")
    outcome = _pack_without_waiting(folder, tmp_path / "x.tar.gz", entries, memory_limit)
    assert isinstance(outcome[0], ArchiveError)
    # The folder is refused, not the pipe found through it.
    assert f"{folder / 'sub'}: changed since the folder was listed" in str(outcome[0])
    assert "b.bin" not in str(outcome[0])
    assert not (tmp_path / "x.tar.gz").exists()


@pytest.mark.parametrize("memory_limit", [0, 10**9], ids=["streamed", "in-memory"])
def test_pack_tar_through_nested_folders_closes_every_folder_it_opened(tmp_path, memory_limit):
    src = tmp_path / "run"
    for rel in ["a/b/c/f.txt", "a/b/g.txt", "a/h.txt", "a-b/i.txt", "x/y/j.txt", "k.txt"]:
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_text(rel)
    before = _open_fds()
    out = pack_tar(src, tmp_path / "x.tar", memory_limit=memory_limit)
    assert _open_fds() == before
    with tarfile.open(out) as tf:
        files = {m.name: tf.extractfile(m).read().decode() for m in tf if m.isfile()}
    assert files == {f"run/{rel}": rel for rel in folder_manifest(src)}
    assert len(files) == 6


_DEPTH = 1100  # deeper than Python's recursion limit, longer than PATH_MAX


@pytest.fixture
def deep_run(tmp_path):
    """A run folder ``_DEPTH`` folders ``d`` deep with ``leaf.txt`` at the bottom, made (and,
    whatever the test left, removed) through descriptors: its full path is too long to name."""
    src = tmp_path / "run"
    src.mkdir()
    fd = os.open(src, os.O_RDONLY)
    for _ in range(_DEPTH):
        os.mkdir("d", dir_fd=fd)
        inner = os.open("d", os.O_RDONLY, dir_fd=fd)
        os.close(fd)
        fd = inner
    leaf = os.open("leaf.txt", os.O_WRONLY | os.O_CREAT, dir_fd=fd)
    os.write(leaf, b"deep")
    os.close(leaf)
    os.close(fd)
    yield src
    if src.exists():  # pytest's own clean-up of old temporary folders would recurse
        fds = [os.open(src, os.O_RDONLY)]
        with contextlib.suppress(FileNotFoundError):
            while True:
                fds.append(os.open("d", os.O_RDONLY, dir_fd=fds[-1]))
        for name in os.listdir(fds[-1]):
            os.unlink(name, dir_fd=fds[-1])
        while len(fds) > 1:
            os.close(fds.pop())
            os.rmdir("d", dir_fd=fds[-1])
        os.close(fds.pop())


def test_a_run_nested_deeper_than_the_recursion_limit_is_packed_and_removed(deep_run, tmp_path):
    """Folders are opened one level at a time, without recursion: a run deeper than Python's
    recursion limit packs (streamed and in memory) and is removed."""
    entries = walk_folder(deep_run)
    before = _open_fds()
    for memory_limit in (0, 1 << 30):
        out = pack_tar(
            deep_run, tmp_path / f"x{memory_limit}.tar", entries=entries, memory_limit=memory_limit
        )
        with tarfile.open(out) as tf:
            (member,) = [m for m in tf if m.isfile()]
            assert member.name == "run/" + "d/" * _DEPTH + "leaf.txt"
            assert tf.extractfile(member).read() == b"deep"
    assert _open_fds() == before
    assert remove_packed(deep_run, entries) == []
    assert not deep_run.exists()


def test_pack_tar_unknown_suffix(folder, tmp_path):
    with pytest.raises(ArchiveError, match="unknown archive suffix"):
        pack_tar(folder, tmp_path / "x.rar")
    assert not list(tmp_path.glob("*.rar"))


def test_folder_with_symlink_is_refused(folder, tmp_path):
    (folder / "link").symlink_to(folder / "a.txt")
    with pytest.raises(ArchiveError, match="symbolic link"):
        pack_zip(folder, tmp_path / "x.zip")
    assert not (tmp_path / "x.zip").exists()


def _zip_with(tmp_path, name, *, symlink=False):
    path = tmp_path / "evil.zip"
    with zipfile.ZipFile(path, "w") as zf:
        info = zipfile.ZipInfo(name)
        if symlink:
            info.external_attr = 0o120777 << 16
        zf.writestr(info, "payload")
        zf.writestr("ok.txt", "fine")
    return path


@pytest.mark.parametrize(
    ("member", "message"),
    [("../escape.txt", "'\\.\\.'"), ("/etc/evil", "absolute"), ("a/../../b", "'\\.\\.'")],
)
def test_zip_traversal_refused_and_nothing_written(tmp_path, member, message):
    archive = _zip_with(tmp_path, member)
    dest = tmp_path / "dest"
    with pytest.raises(UnsafeArchiveMemberError, match=message):
        safe_extract(archive, dest)
    assert not dest.exists()
    assert not (tmp_path / "escape.txt").exists()


def test_zip_symlink_refused(tmp_path):
    with pytest.raises(UnsafeArchiveMemberError, match="symbolic link"):
        safe_extract(_zip_with(tmp_path, "link", symlink=True), tmp_path / "dest")


def _tar_with(tmp_path, info, data=b""):
    path = tmp_path / "evil.tar"
    with tarfile.open(path, "w") as tf:
        tf.addfile(info, io.BytesIO(data))
    return path


def test_tar_link_and_device_refused(tmp_path):
    link = tarfile.TarInfo("ln")
    link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
    with pytest.raises(UnsafeArchiveMemberError, match="link to '/etc/passwd'"):
        safe_extract(_tar_with(tmp_path, link), tmp_path / "d1")
    dev = tarfile.TarInfo("dev")
    dev.type = tarfile.CHRTYPE
    with pytest.raises(UnsafeArchiveMemberError, match="device"):
        safe_extract(_tar_with(tmp_path, dev), tmp_path / "d2")
    up = tarfile.TarInfo("../up.txt")
    up.size = 2
    with pytest.raises(UnsafeArchiveMemberError, match=r"up\.txt"):
        safe_extract(_tar_with(tmp_path, up, b"hi"), tmp_path / "d3")
    assert not (tmp_path / "up.txt").exists()


def _packed_run(tmp_path):
    """A run folder with files, a sub-folder and inside links, packed; returns (run, listing)."""
    run = tmp_path / "run"
    (run / "logs").mkdir(parents=True)
    (run / "logs" / "stdout.log").write_text("log\n")
    (run / "result.csv").write_text("1,2\n")
    os.symlink("logs/stdout.log", run / "latest.log")
    os.symlink("stdout.log", run / "logs" / "current")
    entries = walk_folder(run, links=True)
    pack_tar(run, tmp_path / "run.tar", entries=entries)
    return run, entries


def test_remove_packed_removes_everything_listed(tmp_path):
    run, entries = _packed_run(tmp_path)
    assert remove_packed(run, entries) == []
    assert not run.exists()


def test_remove_packed_keeps_a_link_replaced_by_a_file_or_folder(tmp_path):
    run, entries = _packed_run(tmp_path)
    os.unlink(run / "latest.log")
    (run / "latest.log").write_text("written after packing\n")
    os.unlink(run / "logs" / "current")
    (run / "logs" / "current").mkdir()
    kept = remove_packed(run, entries)
    assert {"latest.log", "logs/current", "logs", "."} <= set(kept)
    assert (run / "latest.log").read_text() == "written after packing\n"
    assert (run / "logs" / "current").is_dir()


def test_remove_packed_keeps_an_empty_folder_put_in_the_place_of_one_packed(tmp_path):
    """An empty folder made after packing where an empty packed one was (a lock folder, say)
    is not the folder listed: it is kept, even though removing it would lose no file."""
    run = tmp_path / "run"
    (run / "lock").mkdir(parents=True)
    (run / "result.csv").write_text("1,2\n")
    entries = walk_folder(run)
    pack_tar(run, tmp_path / "run.tar", entries=entries)
    (run / "lock.new").mkdir()  # made while the old one exists: another inode for sure
    (run / "lock").rmdir()
    os.rename(run / "lock.new", run / "lock")
    assert set(remove_packed(run, entries)) == {"lock", "."}
    assert (run / "lock").is_dir()
    assert not (run / "result.csv").exists()


def test_remove_packed_never_follows_a_folder_swapped_for_a_link(tmp_path):
    run, entries = _packed_run(tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "stdout.log").write_text("not the run's\n")
    (elsewhere / "current").write_text("not the run's either\n")
    os.rename(run / "logs", tmp_path / "logs.moved")
    os.symlink(elsewhere, run / "logs")
    remove_packed(run, entries)
    assert (elsewhere / "stdout.log").read_text() == "not the run's\n"
    assert (elsewhere / "current").read_text() == "not the run's either\n"


def test_a_settled_listing_tells_a_same_size_rewrite_right_after_it(tmp_path):
    """A file written, listed (settled), packed, then rewritten in place at once with the same
    size: the rewrite changes its times, so it is kept, new bytes and all (without the wait it
    could fall in the step of the listed times and be removed after its old bytes were
    packed)."""
    for attempt in range(20):  # each one in a fresh step of the clock
        run = tmp_path / f"run{attempt}"
        run.mkdir()
        (run / "result.csv").write_text("1,2\n")
        t0 = time.time_ns()
        entries = walk_folder(run, settled=True)
        newest = max(max(st.st_mtime_ns, st.st_ctime_ns) for _, st, _ in entries)
        assert time.time_ns() >= newest + 2 * 10_000_000  # waited past two 10 ms steps
        assert time.time_ns() - t0 < 1_000_000_000  # and not much longer
        pack_tar(run, tmp_path / f"run{attempt}.tar", entries=entries)
        with open(run / "result.csv", "r+") as f:  # in place: same inode, same size
            f.write("9,9\n")
        assert "result.csv" in remove_packed(run, entries)
        assert (run / "result.csv").read_text() == "9,9\n"


def test_a_settled_listing_waits_only_for_fresh_changes(tmp_path, monkeypatch):
    """The wait is for files changed in the last two steps of the clock; a folder whose newest
    change (status changes included) is older is listed without any."""
    from labsession.core.archive import _manifest

    run = tmp_path / "run"
    run.mkdir()
    (run / "a.txt").write_text("fresh")
    st = os.stat(run / "a.txt")
    # The listing's clock, of this test's own: it reads the time of the write (however long
    # this test waited for a CPU since) and moves only as the listing sleeps. The real module
    # stays untouched: other threads' sleeps are not counted.
    now = [max(st.st_mtime_ns, st.st_ctime_ns)]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += round(seconds * 1e9)

    monkeypatch.setattr(
        _manifest, "time", types.SimpleNamespace(time_ns=lambda: now[0], sleep=sleep)
    )
    walk_folder(run, settled=True)
    assert len(slept) == 1
    assert 0 < slept[0] <= 0.02
    walk_folder(run, settled=True)  # the steps have passed since
    assert len(slept) == 1
    walk_folder(run)  # not settled: never waits
    assert len(slept) == 1


def test_remove_packed_keeps_a_replacement_with_the_same_size_and_times(tmp_path):
    run, entries = _packed_run(tmp_path)
    st = os.stat(run / "result.csv")
    replacement = run / ".result.csv.new"
    replacement.write_text("9,9\n")  # same size
    os.utime(replacement, ns=(st.st_atime_ns, st.st_mtime_ns))  # as cp -p or rsync -t keep them
    os.replace(replacement, run / "result.csv")
    kept = remove_packed(run, entries)
    assert "result.csv" in kept
    assert (run / "result.csv").read_text() == "9,9\n"
