"""The chunk files of one Zarr array on disk, listed and read with every check the container has.

A chunk lives in a session folder (one file per chunk key) or in a ``.session.zip`` (one member
per key). :class:`FolderChunkFiles` and :class:`ZipChunkFiles` list the keys present (a folder
listing, the archive's directory: never the declared shape) and return a chunk's bytes:

- from a zip, read with ``os.pread`` on a file handle of our own and checked against the CRC-32
  the archive's directory records for the member (stored or deflated members);
- from a folder, as they are: a folder has no checksum of its own, so the chunk's codec must
  carry one (labsession writes zstd frames with a content checksum, which the decoder checks).

Sizes are checked before anything is read: a member or file larger than a chunk can compress to
is refused unread.
"""

from __future__ import annotations

import os
import struct
import zipfile
import zlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from labsession.errors import SessionError

__all__ = [
    "ChunkFiles",
    "ChunkKeys",
    "FolderChunkFiles",
    "ZipChunkFiles",
    "ZipIndex",
    "compressed_bound",
]

_LOCAL_HEADER = struct.Struct("<4s22xHH")  # signature, then name and extra field lengths
_LOCAL_SIGNATURE = b"PK\x03\x04"


def compressed_bound(n_bytes: int) -> int:
    """Most bytes a chunk of ``n_bytes`` can take once compressed by any codec labsession
    reads raw (zstd's ``ZSTD_compressBound`` with room for a deflate wrapper)."""
    return n_bytes + n_bytes // 128 + 1024


@dataclass(frozen=True)
class ChunkKeys:
    """Zarr chunk keys of one array (``chunk_key_encoding`` of its metadata).

    ``default`` keys are ``c/3/0`` (``/`` or ``.`` separated, with a leading ``c``); ``v2`` keys
    are ``3.0``.
    """

    name: str = "default"
    separator: str = "/"

    @classmethod
    def from_metadata(cls, meta: dict) -> ChunkKeys:
        """From an array's metadata dict (Zarr v3 ``chunk_key_encoding`` or v2
        ``dimension_separator``)."""
        encoding = meta.get("chunk_key_encoding")
        if isinstance(encoding, dict):
            name = str(encoding.get("name", "default"))
            config = encoding.get("configuration") or {}
            default_sep = "/" if name == "default" else "."
            return cls(name, str(config.get("separator", default_sep)))
        return cls("v2", str(meta.get("dimension_separator") or "."))

    def encode(self, coords: tuple[int, ...]) -> str:
        """The key of the chunk at ``coords`` (``(3, 0)`` -> ``c/3/0``)."""
        parts = [str(int(c)) for c in coords]
        if self.name == "default":
            return self.separator.join(["c", *parts])
        return self.separator.join(parts) or "0"

    def decode(self, key: str) -> tuple[int, ...] | None:
        """The chunk coordinates of ``key``, or None if it is not a chunk key of this encoding."""
        parts = key.split(self.separator)
        if self.name == "default":
            if not parts or parts[0] != "c":
                return None
            parts = parts[1:]
        if not parts or not all(p.isdigit() and p.isascii() for p in parts):
            return None
        return tuple(int(p) for p in parts)


class ChunkFiles(ABC):
    """Listing and checked reading of one array's chunk files.

    Parameters
    ----------
    label
        The array as messages name it: ``emg.zarr`` (folder) or the member prefix in the zip.
    """

    label: str

    @abstractmethod
    def present_blocks(self, keys: ChunkKeys, ndim: int) -> list[int]:
        """First-axis chunk indices that have at least one chunk file, in decreasing order."""

    @abstractmethod
    @contextmanager
    def opened(self) -> Iterator[Callable[[str, int], bytes | None]]:
        """A ``read(key, limit)`` for the duration of the block: the key's bytes (None when
        absent), checked against the container's checksum; a file larger than ``limit`` bytes
        is refused unread (:class:`SessionError` naming ``where``, the stream and the key).
        ``read`` may be called from several threads at once."""

    #: Set by the owner: what errors name (session path, stream).
    where: str = ""
    stream: str = ""

    def error(self, key: str, problem: str) -> SessionError:
        """A :class:`SessionError` naming the session, the stream and the chunk ``key``."""
        return SessionError(
            f"{self.where}: stream {self.stream!r} cannot be read: chunk {self.name(key)} {problem}"
        )

    def name(self, key: str) -> str:
        """``key`` as a path from the session's root (``emg.zarr/c/3/0``)."""
        return f"{self.label}/{key}"

    @property
    def verifies(self) -> bool:
        """True when the container itself checks every chunk's bytes (zip CRC)."""
        return False


class FolderChunkFiles(ChunkFiles):
    """Chunk files of an array folder (``<session>/emg.zarr/``)."""

    def __init__(self, root: Path, label: str):
        self.root, self.label = Path(root), label

    def present_blocks(self, keys: ChunkKeys, ndim: int) -> list[int]:
        if keys.name == "default" and keys.separator == "/":
            # One listing of c/; for 2-D arrays each c/<i>/ is looked into only from the end
            # back, until one holds a chunk file (normally the first).
            try:
                entries = [e for e in os.scandir(self.root / "c") if e.name.isdigit()]
            except (FileNotFoundError, NotADirectoryError):
                return []
            if ndim <= 1:
                return sorted((int(e.name) for e in entries if e.is_file()), reverse=True)
            dirs = sorted((int(e.name) for e in entries if e.is_dir()), reverse=True)
            return [i for i in dirs if self._has_chunk(self.root / "c" / str(i), keys, ndim - 1)]
        found = set()
        for folder, _, files in os.walk(self.root):
            rel = Path(folder).relative_to(self.root).as_posix()
            for file in files:
                coords = keys.decode(file if rel == "." else f"{rel}/{file}")
                if coords is not None and len(coords) == max(ndim, 1):
                    found.add(coords[0])
        return sorted(found, reverse=True)

    def _has_chunk(self, folder: Path, keys: ChunkKeys, depth: int) -> bool:
        for folder_now, _, files in os.walk(folder):
            rel = Path(folder_now).relative_to(folder).parts
            if len(rel) == depth - 1 and any(f.isdigit() for f in files):
                return True
        return False

    @contextmanager
    def opened(self) -> Iterator[Callable[[str, int], bytes | None]]:
        def read(key: str, limit: int) -> bytes | None:
            try:
                file = open(self.root / key, "rb")  # noqa: SIM115 - closed below
            except (FileNotFoundError, NotADirectoryError):
                return None
            with file:
                size = os.fstat(file.fileno()).st_size
                if size > limit:
                    raise self.error(key, f"is {size} bytes, more than a chunk can be ({limit})")
                data = file.read(limit + 1)
            if len(data) > limit:
                raise self.error(key, f"grew past what a chunk can be ({limit} bytes)")
            return data

        yield read


@dataclass(frozen=True)
class _Identity:
    """What tells one file at a path from another written there later."""

    device: int
    inode: int
    size: int
    mtime_ns: int

    @classmethod
    def of(cls, st: os.stat_result) -> _Identity:
        return cls(st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


class ZipIndex:
    """The members of a ``.session.zip`` (its central directory, read once) by name.

    Only the public :mod:`zipfile` API is used (``ZipFile.infolist``, ``ZipInfo.header_offset``,
    ``compress_size``, ``file_size``, ``CRC``); members are read on file handles of our own.
    """

    def __init__(self, archive: Path):
        self.archive = Path(archive)
        try:
            with open(self.archive, "rb") as file:
                self.identity = _Identity.of(os.fstat(file.fileno()))
                with zipfile.ZipFile(file) as zf:
                    self.members = {info.filename: info for info in zf.infolist()}
        except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
            raise SessionError(
                f"{self.archive}: the archive's directory cannot be read ({exc})"
            ) from exc

    def chunk_files(self, prefix: str) -> ZipChunkFiles:
        """The chunk members of the array stored under ``prefix`` (``emg.zarr``)."""
        return ZipChunkFiles(self, prefix)


class ZipChunkFiles(ChunkFiles):
    """Chunk members of one array in a ``.session.zip``, each checked against its CRC-32."""

    def __init__(self, index: ZipIndex, prefix: str):
        self.index, self.label = index, prefix.rstrip("/")
        start = self.label + "/"
        self.members = {
            name[len(start) :]: info
            for name, info in index.members.items()
            if name.startswith(start) and not info.is_dir()
        }

    @property
    def verifies(self) -> bool:
        return True

    @property
    def readable(self) -> bool:
        """True if every chunk member is stored or deflated and not encrypted."""
        return all(
            info.compress_type in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED)
            and not info.flag_bits & 0x1
            for info in self.members.values()
        )

    def present_blocks(self, keys: ChunkKeys, ndim: int) -> list[int]:
        found = set()
        for key in self.members:
            coords = keys.decode(key)
            if coords is not None and len(coords) == max(ndim, 1):
                found.add(coords[0])
        return sorted(found, reverse=True)

    @contextmanager
    def opened(self) -> Iterator[Callable[[str, int], bytes | None]]:
        fd = os.open(self.index.archive, os.O_RDONLY)
        try:
            if _Identity.of(os.fstat(fd)) != self.index.identity:
                raise SessionError(
                    f"{self.index.archive}: the archive changed on disk after it was opened; "
                    f"open the session again"
                )
            yield lambda key, limit: self._read(fd, key, limit)
        finally:
            os.close(fd)

    def _read(self, fd: int, key: str, limit: int) -> bytes | None:
        info = self.members.get(key)
        if info is None:
            return None
        if info.compress_size > compressed_bound(limit) or info.file_size > limit:
            raise self.error(
                key,
                f"is {info.file_size} bytes ({info.compress_size} in the archive), more than a "
                f"chunk can be ({limit})",
            )
        header = os.pread(fd, _LOCAL_HEADER.size, info.header_offset)
        if len(header) != _LOCAL_HEADER.size or header[:4] != _LOCAL_SIGNATURE:
            raise self.error(key, "has no valid local header (corrupt archive)")
        _, name_len, extra_len = _LOCAL_HEADER.unpack(header)
        start = info.header_offset + _LOCAL_HEADER.size + name_len + extra_len
        raw = os.pread(fd, info.compress_size, start)
        if len(raw) != info.compress_size:
            raise self.error(
                key, f"is truncated ({len(raw)} of {info.compress_size} bytes; corrupt archive)"
            )
        if info.compress_type == zipfile.ZIP_DEFLATED:
            inflater = zlib.decompressobj(-zlib.MAX_WBITS)
            try:
                data = inflater.decompress(raw, info.file_size)
            except zlib.error as exc:
                raise self.error(key, f"cannot be inflated ({exc}; corrupt archive)") from None
            if len(data) != info.file_size or inflater.unconsumed_tail or not inflater.eof:
                raise self.error(
                    key, f"does not inflate to its {info.file_size} bytes (corrupt archive)"
                )
        elif info.compress_type == zipfile.ZIP_STORED:
            data = raw
        else:  # pragma: no cover - ArrayChunks reads such archives through Zarr
            raise self.error(key, f"uses zip compression method {info.compress_type}")
        if zlib.crc32(data) != info.CRC:
            raise self.error(key, "fails its CRC check (corrupt archive)")
        return data
