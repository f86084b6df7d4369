"""Recognising an archive and reading a tar strictly (for the checked extractor)."""

from __future__ import annotations

import lzma
import os
import tarfile
import zipfile
import zlib
from typing import IO

__all__ = [
    "COMPRESSION_MAGIC",
    "MAX_HEADER_DATA",
    "CheckedTarInfo",
    "CorruptTar",
    "archive_kind",
    "read_leading_member",
]


class CorruptTar(Exception):
    """A tar header after the first is invalid or missing (tarfile would end there silently)."""


#: Most bytes of data an extended tar header (GNU long name or link, pax) may hold.
MAX_HEADER_DATA = 1 << 20
_EXTENDED_HEADERS = (
    tarfile.GNUTYPE_LONGNAME,
    tarfile.GNUTYPE_LONGLINK,
    tarfile.XHDTYPE,
    tarfile.XGLTYPE,
    tarfile.SOLARIS_XHDTYPE,
)


class CheckedTarInfo(tarfile.TarInfo):
    """A TarInfo that refuses the archive at a corrupt header instead of ending it there.

    ``tarfile`` treats an invalid or truncated header after the first member, or a missing
    end-of-archive block, as the end of the archive: the members after it would silently be
    lost (and a restore that removes its archive would lose them for good). Extended headers
    holding more than :data:`MAX_HEADER_DATA` bytes and sparse members are refused before their
    data is read (tarfile would read it whole into memory).
    """

    def _proc_member(self, tarfile_: tarfile.TarFile) -> tarfile.TarInfo:
        # tarfile reads a long name's, long link's or pax header's data whole into memory, and
        # a GNU sparse map block by block without end: bound them before anything is read.
        if self.type in _EXTENDED_HEADERS and self.size > MAX_HEADER_DATA:
            raise CorruptTar(
                f"an extended header declares {self.size} bytes of data "
                f"(more than {MAX_HEADER_DATA})"
            )
        if self.type == tarfile.GNUTYPE_SPARSE:
            raise CorruptTar("it holds a sparse member (not supported)")
        return super()._proc_member(tarfile_)

    def _proc_gnusparse_10(self, *args: object) -> None:
        raise CorruptTar("it holds a sparse member (not supported)")

    @classmethod
    def frombuf(cls, buf: bytes, encoding: str, errors: str) -> tarfile.TarInfo:
        try:
            return super().frombuf(buf, encoding, errors)
        except tarfile.EOFHeaderError:  # the end-of-archive block: a proper end
            raise
        except tarfile.EmptyHeaderError:
            raise CorruptTar("it ends without its end-of-archive block (truncated?)") from None
        except tarfile.HeaderError as exc:
            raise CorruptTar(f"a header is corrupt ({exc})") from None


#: Leading bytes of each compression a tar may come in (the ``tarfile`` mode suffix).
COMPRESSION_MAGIC = {b"\x1f\x8b": "gz", b"BZh": "bz2", b"\xfd7zXZ\x00": "xz"}


def archive_kind(file: IO[bytes]) -> str:
    """``"zip"``, or the compression of a tar: ``"gz"``, ``"bz2"``, ``"xz"`` or ``""``.

    Decided from the leading bytes, not by :func:`zipfile.is_zipfile` alone: that looks for a
    zip's end record near the end of the file, which a plain tar whose last member is a
    ``.zip`` also holds: a file starting with a valid tar header (its checksum checked, any
    tar format) is a tar.
    """
    head = file.read(512)
    file.seek(0)
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return "zip"
    for magic, compression in COMPRESSION_MAGIC.items():
        if head.startswith(magic):
            return compression
    if not _is_tar_header(head) and zipfile.is_zipfile(file):  # a zip with data before it
        file.seek(0)
        return "zip"
    file.seek(0)
    return ""


def _is_tar_header(block: bytes) -> bool:
    """Whether ``block`` is a tar header with a valid checksum (ustar, GNU or old v7)."""
    try:
        tarfile.TarInfo.frombuf(block, "utf-8", "surrogateescape")
    except tarfile.HeaderError:
        return False
    return True


def read_leading_member(
    archive: str | os.PathLike[str],
    names: set[str],
    *,
    max_members: int = 64,
    max_bytes: int = 16 << 20,
    max_size: int = 1 << 20,
) -> bytes | None:
    """The bytes of the first regular file named in ``names`` near the start of a tar archive.

    For a small file an archive's writer puts first (a run's ``CONFIGS/CONFIG.json``): the
    archive is read from its start, strictly (:class:`CheckedTarInfo`), through at most
    ``max_members`` members and ``max_bytes`` of their data, so a listing of many archives
    stays fast and bounded however large or hostile they are.

    Parameters
    ----------
    archive
        A tar archive (plain, gz, bz2 or xz).
    names
        Member names to look for (a leading ``./`` is ignored).
    max_members, max_bytes
        How far to look.
    max_size
        Largest member returned (bytes).

    Returns
    -------
    bytes or None
        None if no such member was found within those bounds, or the file is not a readable
        tar archive.
    """
    seen = 0
    try:
        with open(archive, "rb") as file:
            kind = archive_kind(file)
            if kind == "zip":
                return None
            with tarfile.open(fileobj=file, mode=f"r:{kind}", tarinfo=CheckedTarInfo) as tf:
                for count, member in enumerate(tf):
                    name = member.name.removeprefix("./")
                    if name in names and member.isfile() and member.size <= max_size:
                        data = tf.extractfile(member)
                        return data.read() if data is not None else None
                    seen += member.size
                    if count + 1 >= max_members or seen > max_bytes:
                        return None
    except (CorruptTar, tarfile.TarError, EOFError, OSError, zlib.error, lzma.LZMAError):
        return None
    return None
