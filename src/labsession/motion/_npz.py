"""Arrays of a NumPy ``.npz`` file, memory-mapped where the zip stores them uncompressed.

``numpy.savez`` (and the NPZ video writer) store each array as an uncompressed ``.npy`` member,
whose bytes lie in one block of the zip file: such a member is opened with :class:`numpy.memmap`
at its offset, so a video is read frame by frame instead of loaded whole. Compressed members
(``numpy.savez_compressed``) are loaded.
"""

from __future__ import annotations

import dataclasses
import struct
import zipfile
from pathlib import Path

import numpy as np

__all__ = ["NpzMember", "npz_arrays"]

#: Fixed part of a zip local file header; name and extra-field lengths at bytes 26..29.
_LOCAL_HEADER = struct.Struct("<4s22xHH")


@dataclasses.dataclass(frozen=True)
class NpzMember:
    """One array of an ``.npz`` file: its shape and dtype, read from the ``.npy`` header."""

    path: Path
    key: str
    shape: tuple[int, ...]
    dtype: np.dtype
    fortran_order: bool
    offset: int | None  # of the array's bytes in the file; None when compressed

    def open(self) -> np.ndarray:
        """The array: a read-only memory map when stored uncompressed, else loaded."""
        if self.offset is not None:
            order = "F" if self.fortran_order else "C"
            return np.memmap(
                self.path, dtype=self.dtype, mode="r", offset=self.offset, shape=self.shape,
                order=order,
            )  # fmt: skip
        with np.load(self.path, allow_pickle=False) as data:
            return data[self.key]


def npz_arrays(path: Path) -> dict[str, NpzMember]:
    """The arrays of ``path`` by key, without reading their data.

    Raises
    ------
    ValueError
        If ``path`` is not a readable zip of ``.npy`` members.
    """
    try:
        with zipfile.ZipFile(path) as archive, open(path, "rb") as raw:
            return {
                info.filename[:-4]: _member(path, archive, raw, info)
                for info in archive.infolist()
                if info.filename.endswith(".npy")
            }
    except (zipfile.BadZipFile, OSError, ValueError, struct.error) as exc:
        raise ValueError(f"{path}: not a readable .npz file ({exc})") from None


def _member(path: Path, archive: zipfile.ZipFile, raw: object, info: zipfile.ZipInfo) -> NpzMember:
    with archive.open(info) as f:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
        else:
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
        header_size = f.tell()
    offset = None
    if info.compress_type == zipfile.ZIP_STORED and not dtype.hasobject:
        raw.seek(info.header_offset)  # type: ignore[attr-defined]
        signature, name_len, extra_len = _LOCAL_HEADER.unpack(raw.read(_LOCAL_HEADER.size))  # type: ignore[attr-defined]
        if signature != b"PK\x03\x04":
            raise ValueError(f"member {info.filename!r} has no local header")
        offset = info.header_offset + _LOCAL_HEADER.size + name_len + extra_len + header_size
    return NpzMember(path, info.filename[:-4], tuple(shape), dtype, bool(fortran), offset)
