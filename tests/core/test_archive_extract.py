"""The one checked extractor (labsession.core.archive._extract) through safe_extract.

Real archives on disk, each crafted byte by byte where an attacker (or a corrupt disk) would
lie; every refusal must name the archive and the member and leave nothing beside the archive.
"""

import errno
import io
import os
import re
import stat
import struct
import tarfile
import warnings
import zipfile
import zlib

import pytest

from labsession.core.archive import (
    MAX_BYTES_FLOOR,
    check_link_text,
    check_member_name,
    default_max_bytes,
    safe_extract,
)
from labsession.errors import ArchiveError, UnsafeArchiveMemberError

MIB = 1024 * 1024


def _only(folder, *names):
    """The folder holds exactly ``names`` (no destination, no temporary folder left)."""
    assert sorted(p.name for p in folder.iterdir()) == sorted(names)


def _tar(path, members, *, mode="w"):
    """Write ``members`` [(TarInfo, data or None)] to ``path``."""
    with tarfile.open(path, mode) as tf:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tf.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def _info(name, kind=tarfile.REGTYPE, *, linkname="", mode=0o644):
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.mode = kind, linkname, mode
    return info


@pytest.fixture(scope="module")
def gzip_bomb(tmp_path_factory):
    """A ~200 kB .tar.gz whose one member really expands to 200 MiB of zeros.

    Built without compressing 200 MiB: after a full flush the compressor forgets what came
    before, so every 1 MiB block of zeros compresses to the very same bytes.
    """
    size = 200 * MIB
    header = _info("bomb.bin")
    header.size = size
    head = header.tobuf(format=tarfile.USTAR_FORMAT)
    tail = bytes(-size % 512 + 2 * 512 + 9 * 1024)  # padding and end blocks
    zero_block = bytes(MIB)
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    parts = [compressor.compress(head) + compressor.flush(zlib.Z_FULL_FLUSH)]
    piece = compressor.compress(zero_block) + compressor.flush(zlib.Z_FULL_FLUSH)
    parts += [piece] * (size // MIB)
    parts.append(compressor.compress(tail) + compressor.flush())
    crc = zlib.crc32(head)
    for _ in range(size // MIB):
        crc = zlib.crc32(zero_block, crc)
    crc = zlib.crc32(tail, crc)
    total = len(head) + size + len(tail)
    gzip_header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff"
    data = gzip_header + b"".join(parts) + struct.pack("<II", crc, total & 0xFFFFFFFF)
    path = tmp_path_factory.mktemp("bomb") / "bomb.tar.gz"
    path.write_bytes(data)
    # It really expands to 200 MiB (checked once, in bounded memory).
    decompressor = zlib.decompressobj(31)
    expanded, view = 0, data
    while view:
        expanded += len(decompressor.decompress(view, MIB))
        view = decompressor.unconsumed_tail
    assert expanded == total
    assert decompressor.eof
    assert len(data) < 300_000
    return path


def test_a_small_tar_that_expands_to_200_mib_is_refused_with_nothing_written(gzip_bomb, tmp_path):
    archive = tmp_path / gzip_bomb.name
    archive.write_bytes(gzip_bomb.read_bytes())
    assert default_max_bytes(archive.stat().st_size) < 200 * MIB
    with pytest.raises(ArchiveError, match="over the limit") as info:
        safe_extract(archive, tmp_path / "out")
    message = str(info.value)
    assert str(archive) in message
    assert "'bomb.bin'" in message
    assert str(200 * MIB) in message
    assert str(default_max_bytes(archive.stat().st_size)) in message
    _only(tmp_path, archive.name)


def test_the_size_is_refused_at_the_header_before_any_data_is_read(gzip_bomb, tmp_path):
    # The same bomb cut right after its header: had the data been read, this would fail as
    # truncated; the limit refuses it first.
    raw = zlib.decompressobj(31).decompress(gzip_bomb.read_bytes(), 4096)
    archive = tmp_path / "cut.tar"
    archive.write_bytes(raw[:1024])
    with pytest.raises(ArchiveError, match=r"'bomb\.bin' declares 209715200 bytes"):
        safe_extract(archive, tmp_path / "out")
    _only(tmp_path, archive.name)


def test_max_bytes_allows_a_large_archive_and_bounds_a_small_one(tmp_path):
    archive = _tar(tmp_path / "three.tar", [(_info(f"f{i}"), bytes(1000)) for i in range(3)])
    with pytest.raises(ArchiveError, match=r"'f1' declares 1000 bytes.*limit of 2500"):
        safe_extract(archive, tmp_path / "small", max_bytes=2500)  # 2 x (1000 + 512) > 2500
    _only(tmp_path, archive.name)
    out = safe_extract(archive, tmp_path / "big", max_bytes=3 * 1512)
    assert sorted(p.name for p in out.iterdir()) == ["f0", "f1", "f2"]
    assert default_max_bytes(1) == MAX_BYTES_FLOOR
    assert default_max_bytes(10 * MIB) == 1000 * MIB


def _patch_central_size(path, name, size):
    """Rewrite the uncompressed size the zip's central directory records for ``name``."""
    raw = bytearray(path.read_bytes())
    entry = raw.index(b"PK\x01\x02")
    while True:
        name_length = struct.unpack_from("<H", raw, entry + 28)[0]
        if raw[entry + 46 : entry + 46 + name_length] == name.encode():
            break
        entry = raw.index(b"PK\x01\x02", entry + 4)
    struct.pack_into("<I", raw, entry + 24, size)
    path.write_bytes(bytes(raw))


def test_a_zip_declaring_too_much_is_refused_before_anything_is_written(tmp_path):
    archive = tmp_path / "big.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("first.txt", "written first if nothing were checked")
        zf.writestr("huge.bin", bytes(1000))
    _patch_central_size(archive, "huge.bin", 3_000_000_000)
    with pytest.raises(ArchiveError, match=r"'huge\.bin' declares 3000000000 bytes"):
        safe_extract(archive, tmp_path / "out")
    _only(tmp_path, archive.name)


def test_a_zip_member_holding_more_than_declared_is_refused(tmp_path):
    archive = tmp_path / "liar.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("liar.bin", bytes(MIB))
    _patch_central_size(archive, "liar.bin", 10)
    with pytest.raises(ArchiveError, match=re.escape(str(archive))):
        safe_extract(archive, tmp_path / "out")
    _only(tmp_path, archive.name)


def test_an_over_long_name_is_an_archive_error_naming_the_member(tmp_path):
    long_name = "x" * 300  # over NAME_MAX (255) on every common file system
    archive = _tar(tmp_path / "long.tar.gz", [(_info("ok.txt"), b"ok"), (_info(long_name), b"1")])
    archive_zip = tmp_path / "long.zip"
    with zipfile.ZipFile(archive_zip, "w") as zf:
        zf.writestr(long_name, "1")
    for path in (archive, archive_zip):
        with pytest.raises(ArchiveError, match=repr(long_name)) as info:
            safe_extract(path, tmp_path / "out")
        assert str(path) in str(info.value)
        assert isinstance(info.value.__cause__, OSError)
        assert info.value.__cause__.errno == errno.ENAMETOOLONG
    _only(tmp_path, archive.name, archive_zip.name)


@pytest.mark.parametrize(
    ("members", "message"),
    [
        ([("a.txt", b"1"), ("a.txt", b"2")], "'a.txt' appears twice"),
        ([("d", b"file"), ("d/x", b"under a file")], "'d/x' appears twice, or both"),
    ],
)
def test_duplicate_and_conflicting_members_are_refused(tmp_path, members, message):
    archive = _tar(tmp_path / "dup.tar", [(_info(n), d) for n, d in members])
    with pytest.raises(ArchiveError, match=message):
        safe_extract(archive, tmp_path / "out")
    _only(tmp_path, archive.name)
    archive.unlink()
    zip_path = tmp_path / "dup.zip"
    with zipfile.ZipFile(zip_path, "w") as zf, warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Duplicate name", UserWarning)
        for name, data in members:
            zf.writestr(name, data)
    with pytest.raises(ArchiveError, match=message):
        safe_extract(zip_path, tmp_path / "out")
    _only(tmp_path, zip_path.name)


def _flip_in_second_header(path):
    raw = bytearray(path.read_bytes())
    raw[512 + 512 + 100] ^= 0x01  # the mode field of the second header: its checksum fails
    path.write_bytes(bytes(raw))


def test_a_corrupt_header_after_the_first_member_is_refused_not_ignored(tmp_path):
    # tarfile alone treats it as the end of the archive: the later members would be lost.
    archive = _tar(tmp_path / "c.tar", [(_info(f"f{i}"), b"x" * 10) for i in range(3)])
    _flip_in_second_header(archive)
    with pytest.raises(ArchiveError, match=r"after member 'f0'.*header is corrupt"):
        safe_extract(archive, tmp_path / "out")
    _only(tmp_path, archive.name)


def test_a_zeroed_header_and_a_missing_end_block_are_refused(tmp_path):
    archive = _tar(tmp_path / "z.tar", [(_info(f"f{i}"), b"x" * 10) for i in range(3)])
    raw = bytearray(archive.read_bytes())
    raw[1024:1536] = bytes(512)  # the second member's header, zeroed
    archive.write_bytes(bytes(raw))
    with pytest.raises(ArchiveError, match="data follows an end-of-archive block"):
        safe_extract(archive, tmp_path / "out")
    archive.write_bytes(bytes(raw[:1024]))  # cut after the first member: no end block
    with pytest.raises(ArchiveError, match="without its end-of-archive block"):
        safe_extract(archive, tmp_path / "out")
    _only(tmp_path, archive.name)


@pytest.mark.parametrize(
    ("info", "message"),
    [
        (_info("fifo", tarfile.FIFOTYPE), "device or special file"),
        (_info("blk", tarfile.BLKTYPE), "device or special file"),
        (_info("hard", tarfile.LNKTYPE, linkname="ok.txt"), "hard link to 'ok.txt'"),
        (_info("C:/windows.txt"), "absolute path"),
        (_info("..\\up.txt"), "'\\.\\.'"),
        (_info("./a/../../up.txt"), "'\\.\\.'"),
    ],
)
def test_special_members_and_escaping_names_are_refused(tmp_path, info, message):
    archive = _tar(tmp_path / "x.tar", [(_info("ok.txt"), b"ok"), (info, None)])
    with pytest.raises(UnsafeArchiveMemberError, match=message) as raised:
        safe_extract(archive, tmp_path / "out")
    assert repr(info.name) in str(raised.value)
    _only(tmp_path, archive.name)


def test_zip_device_member_is_refused(tmp_path):
    archive = tmp_path / "dev.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        info = zipfile.ZipInfo("dev")
        info.external_attr = (stat.S_IFCHR | 0o644) << 16
        zf.writestr(info, "")
    with pytest.raises(UnsafeArchiveMemberError, match="'dev' is a device"):
        safe_extract(archive, tmp_path / "out")
    _only(tmp_path, archive.name)


@pytest.mark.parametrize("name", ["", "a\x00b", "/abs", "\\\\server\\share", "d:x", "a/../.."])
def test_check_member_name_refuses(name):
    with pytest.raises(UnsafeArchiveMemberError):
        check_member_name(name)


@pytest.mark.parametrize("target", ["", "/etc", "C:\\x", "a\x00b", "b/../x", "a\\..\\x"])
def test_check_link_text_refuses(target):
    with pytest.raises(ArchiveError):
        check_link_text(target)


def _zip_links(path, links):
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("data/file.txt", "payload")
        for name, target in links:
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, target)
    return path


def test_zip_links_inside_are_restored_with_links_true_and_escapes_refused(tmp_path):
    good = _zip_links(tmp_path / "good.zip", [("latest", "data/file.txt")])
    out = safe_extract(good, tmp_path / "good", links=True)
    assert os.readlink(out / "latest") == "data/file.txt"
    assert (out / "latest").read_text() == "payload"
    bad = _zip_links(tmp_path / "bad.zip", [("s", "."), ("data/up", "../../..")])
    with pytest.raises(
        UnsafeArchiveMemberError, match=re.escape("'data/up' links to '../../..', out")
    ):
        safe_extract(bad, tmp_path / "bad", links=True)
    _only(tmp_path, good.name, bad.name, "good")


def test_extraction_never_merges_into_a_folder_but_fills_an_empty_one(tmp_path):
    archive = _tar(tmp_path / "a.tar", [(_info("new.txt"), b"new")])
    full = tmp_path / "full"
    full.mkdir()
    (full / "mine.txt").write_text("user data")
    with pytest.raises(FileExistsError, match="not an empty folder"):
        safe_extract(archive, full)
    assert sorted(p.name for p in full.iterdir()) == ["mine.txt"]
    empty = tmp_path / "empty"
    empty.mkdir()
    assert (safe_extract(archive, empty) / "new.txt").read_bytes() == b"new"
    with pytest.raises(FileNotFoundError, match="missing"):
        safe_extract(tmp_path / "missing.tar", tmp_path / "m")


def test_tar_modes_lose_set_id_and_group_write_and_follow_the_umask(tmp_path):
    probe = tmp_path / "probe"
    probe.mkdir(0o777)
    umask = 0o777 & ~stat.S_IMODE(probe.stat().st_mode)  # what this process's umask removes
    probe.rmdir()
    archive = _tar(
        tmp_path / "m.tar",
        [
            (_info("suid", mode=0o4777), b"#!/bin/sh\n"),
            (_info("private", mode=0o600), b"secret"),
            (_info("shared", mode=0o666), b"shared"),
        ],
    )
    out = safe_extract(archive, tmp_path / "out")

    def mode(name):
        return stat.S_IMODE((out / name).stat().st_mode)

    assert mode("suid") == 0o755 & ~umask
    assert mode("private") == 0o600 & ~umask | 0o600
    assert mode("shared") == 0o644 & ~umask


def test_a_plain_tar_ending_with_a_zip_member_is_read_as_the_tar(tmp_path):
    # zipfile.is_zipfile finds the inner zip's end record near the end of the tar.
    src = tmp_path / "src"
    src.mkdir()
    with zipfile.ZipFile(src / "z.zip", "w") as zf:
        zf.writestr("inner.txt", "inner")
    archive = tmp_path / "a.tar"
    with tarfile.open(archive, "w") as tf:
        tf.add(src, arcname="src")
    assert zipfile.is_zipfile(archive)
    out = safe_extract(archive, tmp_path / "out")
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*")) == ["src", "src/z.zip"]
    assert (out / "src" / "z.zip").read_bytes() == (src / "z.zip").read_bytes()


def test_an_old_v7_tar_ending_with_a_zip_member_is_read_as_the_tar(tmp_path):
    # No "ustar" magic in its headers: only the header's checksum says it is a tar.
    src = tmp_path / "src"
    src.mkdir()
    (src / "log.txt").write_text("the log")
    with zipfile.ZipFile(src / "z.zip", "w") as zf:
        zf.writestr("inner.txt", "inner")
    plain = io.BytesIO()
    with tarfile.open(fileobj=plain, mode="w", format=tarfile.USTAR_FORMAT) as tf:
        for name in ("log.txt", "z.zip"):
            tf.add(src / name, arcname=f"src/{name}")
    raw = bytearray(plain.getvalue())
    for offset in range(0, len(raw) - 1024, 512):  # each header, as `tar --format=v7` writes
        header = raw[offset : offset + 512]
        if header[257:262] == b"ustar":
            header[257:265] = bytes(8)
            header[148:156] = b" " * 8
            header[148:156] = b"%06o\0 " % sum(header)
            raw[offset : offset + 512] = header
    archive = tmp_path / "a.tar"
    archive.write_bytes(bytes(raw))
    assert zipfile.is_zipfile(archive)
    out = safe_extract(archive, tmp_path / "out")
    assert (out / "src" / "log.txt").read_text() == "the log"
    assert (out / "src" / "z.zip").read_bytes() == (src / "z.zip").read_bytes()


def test_a_tar_gz_failing_its_gzip_crc_is_refused(tmp_path):
    archive = _tar(tmp_path / "crc.tar.gz", [(_info("a.txt"), b"alpha" * 100)], mode="w:gz")
    raw = bytearray(archive.read_bytes())
    raw[-8] ^= 0xFF  # the CRC-32 in gzip's trailer
    archive.write_bytes(bytes(raw))
    with pytest.raises(ArchiveError, match=r"cannot extract \(CRC check failed"):
        safe_extract(archive, tmp_path / "out")
    _only(tmp_path, archive.name)


@pytest.mark.parametrize("kind", [tarfile.GNUTYPE_LONGNAME, tarfile.XHDTYPE])
def test_a_huge_extended_header_is_refused_before_it_is_read(tmp_path, kind):
    """tarfile reads a long name's or pax header's data whole: 256 MiB in a small .tar.bz2."""
    import bz2

    size = 256 << 20
    header = tarfile.TarInfo("././@LongLink" if kind == tarfile.GNUTYPE_LONGNAME else "pax")
    header.type, header.size = kind, size
    compressor = bz2.BZ2Compressor(9)
    archive = tmp_path / "bomb.tar.bz2"
    with archive.open("wb") as out:
        out.write(compressor.compress(header.tobuf(format=tarfile.GNU_FORMAT)))
        block = b"a" * (1 << 20)
        for _ in range(size >> 20):
            out.write(compressor.compress(block))
        out.write(compressor.compress(b"\0" * 1024))
        out.write(compressor.flush())
    assert archive.stat().st_size < 4096
    with pytest.raises(ArchiveError, match=r"extended header declares 268435456 bytes"):
        safe_extract(archive, tmp_path / "out")
    _only(tmp_path, "bomb.tar.bz2")


def test_a_zip_name_that_is_not_its_declared_utf8_is_an_archive_error(tmp_path):
    archive = tmp_path / "a.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("aaaa.txt", b"x")
    raw = bytearray(archive.read_bytes())
    for header, flags_at, name_at in ((b"PK\x03\x04", 6, 30), (b"PK\x01\x02", 8, 46)):
        at = raw.index(header)
        raw[at + flags_at + 1] |= 0x08  # general purpose bit 11: the name is UTF-8
        raw[at + name_at] = 0xFF  # ... which it is not
    archive.write_bytes(bytes(raw))
    with pytest.raises(ArchiveError, match="cannot extract"):
        safe_extract(archive, tmp_path / "out")
    _only(tmp_path, "a.zip")


def test_a_gzip_crc_failure_after_long_padding_is_still_caught(tmp_path):
    import gzip

    body = io.BytesIO()
    with tarfile.open(fileobj=body, mode="w") as tf:
        info = tarfile.TarInfo("f.txt")
        info.size = 100
        tf.addfile(info, io.BytesIO(b"x" * 100))
    packed = gzip.compress(body.getvalue() + b"\0" * (2 << 20))  # 2 MiB of zero padding
    broken = packed[:-8] + struct.pack("<I", zlib.crc32(b"other") & 0xFFFFFFFF) + packed[-4:]
    archive = tmp_path / "a.tar.gz"
    archive.write_bytes(broken)
    with pytest.raises(ArchiveError, match="CRC check failed"):
        safe_extract(archive, tmp_path / "out")
    _only(tmp_path, "a.tar.gz")


def test_a_private_folder_of_the_same_name_is_never_removed(tmp_path, monkeypatch):
    # the random name is taken (by another call): this one fails and leaves it alone
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.txt").write_text("a")
    archive = tmp_path / "a.tar"
    with tarfile.open(archive, "w") as tf:
        tf.add(src, arcname="src")
    dest = tmp_path / "out"
    taken = tmp_path / ".out.restoring-0123abcd"
    taken.mkdir()
    (taken / "theirs.txt").write_text("another call's")
    monkeypatch.setattr("secrets.token_hex", lambda n: "0123abcd")
    with pytest.raises(ArchiveError, match="cannot create the folder to extract into"):
        safe_extract(archive, dest)
    assert (taken / "theirs.txt").read_text() == "another call's"
    assert not dest.exists()
