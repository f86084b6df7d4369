import io
import os
import tarfile
import zipfile

import pytest

from labsession.core.archive import (
    folder_manifest,
    pack_tar,
    pack_zip,
    safe_extract,
    verify_tar,
    verify_zip,
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


@pytest.mark.parametrize("suffix", ["tar", "tar.gz", "tar.bz2", "tar.xz"])
def test_pack_tar_round_trip(folder, tmp_path, suffix):
    out = pack_tar(folder, tmp_path / f"x.{suffix}")
    assert sorted(verify_tar(out)) == ["src/a.txt", "src/sub/b.bin"]
    dest = safe_extract(out, tmp_path / "restored")
    assert (dest / "src" / "sub" / "b.bin").read_bytes() == (folder / "sub" / "b.bin").read_bytes()


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
