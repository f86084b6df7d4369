"""The in-memory tar builder writes exactly what tarfile writes, and its walk reads it back."""

import io
import os
import tarfile

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from labsession.core.archive import pack_tar, walk_folder
from labsession.core.archive._tar import _add_entries, _tar_in_memory
from labsession.core.archive._ustar import TarBuilder, member_header, walk_members

names = st.text(
    alphabet=st.characters(min_codepoint=1, max_codepoint=0x2FF, exclude_characters="/"),
    min_size=1,
    max_size=120,
)
owners = st.text(alphabet=st.characters(min_codepoint=1, max_codepoint=0x17F), max_size=40)


@st.composite
def tar_infos(draw):
    info = tarfile.TarInfo(draw(names))
    info.type = draw(st.sampled_from([tarfile.REGTYPE, tarfile.DIRTYPE, tarfile.SYMTYPE]))
    info.mode = draw(st.integers(0, 0o177777))
    info.uid = draw(st.integers(0, 8**8))  # past the 7 octal digits of the ustar field
    info.gid = draw(st.integers(0, 8**8))
    info.mtime = draw(st.integers(0, 8**12))
    info.uname, info.gname = draw(owners), draw(owners)
    if info.type == tarfile.SYMTYPE:
        info.linkname = draw(names)
    elif info.type == tarfile.REGTYPE:
        info.size = draw(st.integers(0, 8**12))
    return info


@settings(max_examples=400, deadline=None)
@given(tar_infos())
def test_member_header_is_the_header_tarfile_writes(info):
    # The reference: the bytes TarFile.addfile writes for the member (PAX, the default).
    reference = info.tobuf(tarfile.PAX_FORMAT, tarfile.ENCODING, "surrogateescape")
    assert member_header(info) == reference


@pytest.mark.parametrize("records", [{"comment": "hi"}, {"path": "other"}])
def test_a_member_with_its_own_pax_records_gets_tarfiles_header(records):
    info = tarfile.TarInfo("run/a.txt")
    info.pax_headers = dict(records)
    reference = info.tobuf(tarfile.PAX_FORMAT, tarfile.ENCODING, "surrogateescape")
    assert len(reference) > tarfile.BLOCKSIZE  # a PAX record, then the header
    assert member_header(info) == reference


def _reference_tar(infos_and_data):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tf:
        for info, data in infos_and_data:
            tf.addfile(info, io.BytesIO(data) if data else None)
    return buffer.getvalue()


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(names, st.binary(max_size=3000)), max_size=12))
def test_builder_writes_the_archive_tarfile_writes_and_walks_it_back(files):
    members = []
    for i, (name, data) in enumerate(files):
        info = tarfile.TarInfo(f"{i}-{name}")
        info.size, info.mtime, info.mode = len(data), 1_700_000_000 + i, 0o640
        members.append((info, data))
    builder = TarBuilder()
    for info, data in members:
        builder.add(info, data)
    raw = builder.finish()
    assert raw == _reference_tar(members)
    expected = {info.name: len(data) for info, data in members}
    walked = walk_members(raw)
    if builder.plain:
        assert walked == expected
    else:  # a PAX record: the walk declines, tarfile reads it
        assert walked is None
    with tarfile.open(fileobj=io.BytesIO(raw)) as tf:
        assert {m.name: m.size for m in tf} == expected


def _folder(tmp_path):
    src = tmp_path / "2026Y-01M-01D-00h00m00s_run"
    (src / "logs").mkdir(parents=True)
    (src / "CONFIGS").mkdir()
    (src / "logs" / "stdout.log").write_bytes(os.urandom(3000))
    (src / "CONFIGS" / "config.yaml").write_text("seed: 42\n")
    (src / "empty.txt").touch()
    (src / "é-non-ascii.txt").write_text("x" * 700)  # a PAX record for its name
    (src / ("long" * 30 + ".txt")).write_text("y")  # over 100 bytes with the folder name
    os.symlink("logs/stdout.log", src / "latest.log")
    return src


def test_a_folder_in_memory_is_byte_for_byte_tarfiles_tar(tmp_path):
    src = _folder(tmp_path)
    entries = walk_folder(src, links=True)
    raw, plain = _tar_in_memory(src, src.name, entries)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tf:
        _add_entries(tf, src, src.name, entries)
    assert raw == buffer.getvalue()
    assert not plain  # the non-ASCII and long names need PAX records
    (src / "é-non-ascii.txt").unlink()
    (src / ("long" * 30 + ".txt")).unlink()
    entries = walk_folder(src, links=True)
    raw, plain = _tar_in_memory(src, src.name, entries)
    assert plain
    assert walk_members(raw) == {
        f"{src.name}/{name}": st.st_size
        for name, st, link in entries
        if link is None and not os.path.isdir(src / name)
    }


def test_walk_refuses_a_flipped_byte_a_cut_end_and_a_missing_end_block(tmp_path):
    builder = TarBuilder()
    info = tarfile.TarInfo("run/a.txt")
    info.size = 700
    builder.add(info, b"a" * 700)
    raw = builder.finish()
    flipped = bytearray(raw)
    flipped[10] ^= 0x01  # in the name: the checksum no longer matches
    with pytest.raises(tarfile.ReadError, match="checksum"):
        walk_members(bytes(flipped))
    with pytest.raises(tarfile.ReadError, match="past the end"):
        walk_members(raw[:1024])
    with pytest.raises(tarfile.ReadError, match="end-of-archive"):
        walk_members(raw[: 512 + 1024 + 512])  # one zero block of two
    garbage = bytearray(raw)
    garbage[-1] = 1  # a byte after the end blocks
    with pytest.raises(tarfile.ReadError, match="end-of-archive"):
        walk_members(bytes(garbage))


def test_pack_tar_in_memory_reads_back_with_the_tar_command_and_tarfile(tmp_path):
    src = _folder(tmp_path)
    out = pack_tar(src, tmp_path / "x.tar.gz", links=True)
    with tarfile.open(out) as tf:
        names = sorted(m.name for m in tf)
    assert f"{src.name}/é-non-ascii.txt" in names
    assert f"{src.name}/latest.log" in names
