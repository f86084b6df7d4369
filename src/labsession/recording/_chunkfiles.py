"""The chunk files of one Zarr array on disk, listed and read with every check the container has.

A chunk lives in a session folder (one file per chunk key) or in a ``.session.zip`` (one member
per key). :class:`FolderChunkFiles` and :class:`ZipChunkFiles` list the keys present (a folder
listing, the archive's directory: never the declared shape) and return a chunk's bytes:

- from a zip, read with ``os.pread`` on a file handle of our own and checked against the CRC-32
  the archive's directory records for the member (stored or deflated members), unless the
  caller verifies the bytes itself: a chunk of zstd frames with content checksums, which the
  decoder checks, is not checked a second time;
- from a folder, as they are: a folder has no checksum of its own, so the chunk's codec must
  carry one (labsession writes zstd frames with a content checksum, which the decoder checks).

Sizes are checked before anything is read: a member or file larger than a chunk can compress to
is refused unread. A zip's directory is checked whole when the archive is first read
(:class:`ZipIndex`): every member where the directory says, under its own name, not overlapping
another or the directory itself.
"""

from __future__ import annotations

import os
import stat
import struct
import zipfile
import zlib
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from labsession.core.paths import file_kind, read_at_most
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
_UTF8_NAME = 0x800  # general purpose flag: the name is UTF-8 (else code page 437)
#: End of central directory record: signature, 4 counts, directory size and offset, comment length.
_END = struct.Struct("<4s4HIIH")
_END_SIGNATURE = b"PK\x05\x06"
_END_SEARCH = _END.size + (1 << 16)  # the record and the longest comment (as zipfile searches)
_END64 = struct.Struct("<4sQ2H2I2QQQ")  # ZIP64 end record: member count 7, directory size 8
_END64_SIGNATURE = b"PK\x06\x06"
_END64_LOCATOR = struct.Struct("<4sIQI")  # right before the end record, in a ZIP64 archive
_END64_LOCATOR_SIGNATURE = b"PK\x06\x07"
_OPEN_FLAGS = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC


def _is_index(name: str) -> bool:
    return name.isascii() and name.isdigit()


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
    def keys_of_rows(self, keys: ChunkKeys, ndim: int, indices: range) -> dict[int, list[str]]:
        """The keys of the chunk files of first-axis chunks ``indices``, for those that have
        any (entries of any kind: a named pipe in a chunk's place is listed)."""

    @abstractmethod
    def check_rows(
        self, keys: ChunkKeys, ndim: int, indices: range, limit: int, verify: bool
    ) -> set[int]:
        """Check the chunk files of first-axis chunks ``indices`` before Zarr reads them;
        return the indices that have any.

        Each must be a regular file of at most ``limit`` bytes; with ``verify``, a zip member is
        also read whole and checked against its CRC-32 (Zarr reads parts of a shard, and
        :mod:`zipfile` checks a CRC only when a read reaches the member's end). Raises
        :class:`SessionError` naming the chunk.
        """

    @abstractmethod
    @contextmanager
    def opened(self) -> Iterator[Callable[[str, int, bool], bytes | None]]:
        """A ``read(key, limit, verified_by_caller)`` for the duration of the block: the key's
        bytes (None when absent), checked against the container's checksum unless
        ``verified_by_caller`` (the caller checks them itself, e.g. zstd frames carrying content
        checksums); a file larger than ``limit`` bytes is refused unread (:class:`SessionError`
        naming ``where``, the stream and the key). ``read`` may be called from several threads
        at once."""

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
    """Chunk files of an array folder (``<session>/emg.zarr/``).

    Every entry named as a chunk counts as one, whatever it is: a named pipe, a device, a
    folder or a link in a chunk's place is listed, and reading it raises :class:`SessionError`
    (it is opened without blocking and refused unless it is a regular file), rather than the
    chunk reading as never written.
    """

    def __init__(self, root: Path, label: str):
        self.root, self.label = Path(root), label
        self._prefix = os.path.join(os.fspath(root), "")  # chunk paths joined as strings: fast

    def _default_keys(self, keys: ChunkKeys) -> bool:
        return keys.name == "default" and keys.separator == "/"

    def present_blocks(self, keys: ChunkKeys, ndim: int) -> list[int]:
        if not self._default_keys(keys):
            return sorted(self._walk(keys, ndim), reverse=True)
        # One listing of c/ (and, for 2-D arrays, of each c/<i>/).
        try:
            names = [e.name for e in os.scandir(self.root / "c") if _is_index(e.name)]
        except (FileNotFoundError, NotADirectoryError):
            return []
        indices = sorted((int(name) for name in names), reverse=True)
        if ndim <= 1:
            return indices
        return [i for i in indices if self._row_keys(ndim, i)]

    def _walk(self, keys: ChunkKeys, ndim: int) -> dict[int, list[str]]:
        """Every chunk key under the array's folder by first-axis index (one walk)."""
        found: dict[int, list[str]] = {}
        for folder, dirs, files in os.walk(self.root):
            rel = Path(folder).relative_to(self.root).as_posix()
            for name in files + dirs:
                key = name if rel == "." else f"{rel}/{name}"
                coords = keys.decode(key)
                if coords is not None and len(coords) == max(ndim, 1):
                    found.setdefault(coords[0], []).append(key)
        return found

    def _row_keys(self, ndim: int, index: int) -> list[str]:
        """Keys of chunk row ``index`` under default ``c/`` keys."""
        top = f"c/{index}"
        path = self.root / top
        if ndim <= 1 or not path.is_dir():
            # A file (or anything else) where c/<i>/ should be counts: reading it raises.
            return [top] if os.path.lexists(path) else []
        found: list[str] = []
        for folder, dirs, files in os.walk(path):
            rel = Path(folder).relative_to(path).parts
            if len(rel) == ndim - 2:
                found += ["/".join((top, *rel, n)) for n in files + dirs if _is_index(n)]
                dirs.clear()
            else:
                dirs[:] = [d for d in dirs if _is_index(d)]
        return found

    def keys_of_rows(self, keys: ChunkKeys, ndim: int, indices: range) -> dict[int, list[str]]:
        if not self._default_keys(keys):
            return {i: k for i, k in self._walk(keys, ndim).items() if i in indices}
        rows = {i: self._row_keys(ndim, i) for i in indices}
        return {i: k for i, k in rows.items() if k}

    def check_rows(
        self, keys: ChunkKeys, ndim: int, indices: range, limit: int, verify: bool
    ) -> set[int]:
        rows = self.keys_of_rows(keys, ndim, indices)
        for key in (key for found in rows.values() for key in found):
            try:
                st = os.stat(self.root / key)
            except OSError as exc:
                raise self.error(key, f"cannot be read ({exc.strerror})") from None
            if not stat.S_ISREG(st.st_mode):
                raise self.error(key, f"is {file_kind(st.st_mode)}, not a file")
            if st.st_size > limit:
                raise self.error(key, f"is {st.st_size} bytes, more than a chunk can be ({limit})")
        return set(rows)

    @contextmanager
    def opened(self) -> Iterator[Callable[[str, int, bool], bytes | None]]:
        yield self._read

    def _read(self, key: str, limit: int, verified_by_caller: bool = False) -> bytes | None:
        # A folder has no checksum of its own: ``verified_by_caller`` changes nothing here.
        try:
            # Without blocking: a named pipe opens at once, and is refused below.
            fd = os.open(self._prefix + key, _OPEN_FLAGS)
        except FileNotFoundError:
            if os.path.lexists(self.root / key):
                raise self.error(key, "is a link to nothing") from None
            return None
        except OSError as exc:  # a file where c/<i>/ should be, a loop of links, ...
            raise self.error(key, f"cannot be read ({exc.strerror})") from None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise self.error(key, f"is {file_kind(st.st_mode)}, not a file")
            if st.st_size > limit:
                raise self.error(key, f"is {st.st_size} bytes, more than a chunk can be ({limit})")
            raw = read_at_most(fd, limit, size=st.st_size)
        except OSError as exc:
            raise self.error(key, f"cannot be read ({exc.strerror})") from None
        finally:
            os.close(fd)
        if len(raw) > limit:
            raise self.error(key, f"grew past what a chunk can be ({limit} bytes)")
        return raw


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
                    infos = zf.infolist()
                self.members = {info.filename: info for info in infos}
                #: Where each member's bytes start in the archive, from its local header.
                self.data_starts = self._check_layout(file.fileno(), infos)
        except SessionError:
            raise
        except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
            raise SessionError(
                f"{self.archive}: the archive's directory cannot be read ({exc})"
            ) from exc

    def _check_layout(self, fd: int, infos: list[zipfile.ZipInfo]) -> dict[str, int]:
        """Each member's data offset, once every member is checked to be where the directory
        says: one name once, a local header naming that very member, bytes ending before the
        next member's header (the last member's before the central directory). A flipped bit
        in a name, an offset or a size then cannot hand out the bytes of another chunk (intact,
        so its own checksum passes) or of the directory under a member's name, or hide a chunk
        (which Zarr would read as its fill value). No member's bytes are read."""
        if len(self.members) != len(infos):
            counts = Counter(info.filename for info in infos)
            twice = next(name for name, count in counts.items() if count > 1)
            raise self._corrupt(f"the archive's directory lists {twice!r} twice")
        directory, listed = self._directory_start(fd)
        if listed != len(infos):  # a flipped length can make one entry swallow the next
            raise self._corrupt(
                f"the archive's directory holds {len(infos)} members where its end record "
                f"counts {listed}"
            )
        if not infos:
            return {}
        header_starts = sorted({info.header_offset for info in infos})
        following = dict(zip(header_starts, [*header_starts[1:], directory], strict=True))
        data_starts = {}
        for info in infos:
            name = info.filename.encode("utf-8" if info.flag_bits & _UTF8_NAME else "cp437")
            header = os.pread(fd, _LOCAL_HEADER.size + len(name), info.header_offset)
            if len(header) < _LOCAL_HEADER.size or header[:4] != _LOCAL_SIGNATURE:
                raise self._corrupt(f"member {info.filename!r} has no valid local header")
            _, name_len, extra_len = _LOCAL_HEADER.unpack(header[: _LOCAL_HEADER.size])
            if name_len != len(name) or header[_LOCAL_HEADER.size :] != name:
                raise self._corrupt(
                    f"member {info.filename!r} has a local header naming another member"
                )
            start = info.header_offset + _LOCAL_HEADER.size + name_len + extra_len
            bound = following[info.header_offset]
            if start + info.compress_size > bound:
                what = "the archive's directory" if bound == directory else "the next member"
                raise self._corrupt(f"member {info.filename!r} overlaps {what}")
            data_starts[info.filename] = start
        return data_starts

    def _directory_start(self, fd: int) -> tuple[int, int]:
        """Where the central directory starts (the directory's size before its end record, or
        the ZIP64 end record) and how many members the end record counts, found the way
        :mod:`zipfile` finds them (read from the records, not from ``zipfile``'s private
        state)."""
        size = self.identity.size
        tail = os.pread(fd, min(size, _END_SEARCH), max(size - _END_SEARCH, 0))
        at = len(tail) - _END.size  # no comment: the record ends the file
        if at < 0 or tail[at : at + 4] != _END_SIGNATURE or tail[-2:] != b"\0\0":
            at = tail.rfind(_END_SIGNATURE)
        if at < 0 or at + _END.size > len(tail):
            raise self._corrupt("the archive has no end of central directory record")
        end = size - len(tail) + at  # where the end record starts in the file
        _, _, _, _, count, directory_size, _, _ = _END.unpack_from(tail, at)
        zip64 = end - _END64_LOCATOR.size - _END64.size  # where the ZIP64 end record would be
        if zip64 >= 0:
            found = os.pread(fd, _END64.size + _END64_LOCATOR.size, zip64)
            if (
                found[:4] == _END64_SIGNATURE
                and found[_END64.size :][:4] == _END64_LOCATOR_SIGNATURE
            ):
                record = _END64.unpack_from(found)
                end, count, directory_size = zip64, record[7], record[8]
        return end - directory_size, count

    def _corrupt(self, problem: str) -> SessionError:
        return SessionError(f"{self.archive}: {problem} (corrupt archive)")

    def chunk_files(self, prefix: str) -> ZipChunkFiles:
        """The chunk members of the array stored under ``prefix`` (``emg.zarr``)."""
        return ZipChunkFiles(self, prefix)


class ZipChunkFiles(ChunkFiles):
    """Chunk members of one array in a ``.session.zip``, each checked against its CRC-32
    unless the caller verifies it (see :meth:`ChunkFiles.opened`)."""

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

    def _rows(self, keys: ChunkKeys, ndim: int) -> dict[int, list[str]]:
        """The chunk keys by first-axis index (the members never change: built once)."""
        cached = self.__dict__.get("_rows_cache")
        if cached is None or cached[0] != (keys, ndim):
            found: dict[int, list[str]] = {}
            for key in self.members:
                coords = keys.decode(key)
                if coords is not None and len(coords) == max(ndim, 1):
                    found.setdefault(coords[0], []).append(key)
            cached = self.__dict__["_rows_cache"] = ((keys, ndim), found)
        return cached[1]

    def present_blocks(self, keys: ChunkKeys, ndim: int) -> list[int]:
        return sorted(self._rows(keys, ndim), reverse=True)

    def keys_of_rows(self, keys: ChunkKeys, ndim: int, indices: range) -> dict[int, list[str]]:
        rows = self._rows(keys, ndim)
        if len(indices) > len(rows):
            return {i: list(k) for i, k in rows.items() if i in indices}
        return {i: list(rows[i]) for i in indices if i in rows}

    def check_rows(
        self, keys: ChunkKeys, ndim: int, indices: range, limit: int, verify: bool
    ) -> set[int]:
        rows = self.keys_of_rows(keys, ndim, indices)
        if verify and rows:
            with self.opened() as read:
                for key in (key for found in rows.values() for key in found):
                    read(key, limit, False)
        return set(rows)

    @contextmanager
    def opened(self) -> Iterator[Callable[[str, int, bool], bytes | None]]:
        fd = os.open(self.index.archive, os.O_RDONLY | os.O_CLOEXEC)
        try:
            if _Identity.of(os.fstat(fd)) != self.index.identity:
                raise SessionError(
                    f"{self.index.archive}: the archive changed on disk after it was opened; "
                    f"open the session again"
                )
            yield lambda key, limit, verified_by_caller: self._read(
                fd, key, limit, verified_by_caller
            )
        finally:
            os.close(fd)

    def _read(self, fd: int, key: str, limit: int, verified_by_caller: bool) -> bytes | None:
        info = self.members.get(key)
        if info is None:
            return None
        if info.compress_size > compressed_bound(limit) or info.file_size > limit:
            raise self.error(
                key,
                f"is {info.file_size} bytes ({info.compress_size} in the archive), more than a "
                f"chunk can be ({limit})",
            )
        # Where the directory says (checked once, when the archive was opened: ZipIndex).
        raw = os.pread(fd, info.compress_size, self.index.data_starts[info.filename])
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
        if not verified_by_caller and zlib.crc32(data) != info.CRC:
            raise self.error(key, "fails its CRC check (corrupt archive)")
        return data
