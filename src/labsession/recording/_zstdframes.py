"""What a chunk's zstd frames say about themselves, read from their headers (RFC 8878).

:func:`zstd_content_size` reads the size a frame declares (so a chunk claiming more than it may
hold is refused before it is decoded); :func:`check_zstd_frames` walks the frames of a chunk
and, where the array's ``zarr.json`` promises checksums, refuses a frame without one (zstd
verifies a checksum only where the frame carries it, so a chunk re-encoded without one would
otherwise come back unverified).
"""

from __future__ import annotations

__all__ = ["ZSTD_MAGIC", "check_zstd_frames", "zstd_content_size"]

ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"

_CHECKSUM_FLAG = 0x04  # Content_Checksum_flag of the Frame_Header_Descriptor
_RESERVED_BLOCK = 3
_RLE_BLOCK = 1


def _header_fields(descriptor: int) -> tuple[int, int]:
    """``(bytes after the descriptor before the size field, bytes of the size field)``."""
    fcs_flag, single_segment, dict_flag = descriptor >> 6, (descriptor >> 5) & 1, descriptor & 3
    before = (0 if single_segment else 1) + (0, 1, 2, 4)[dict_flag]
    return before, (single_segment, 2, 4, 8)[fcs_flag]


def zstd_content_size(frame: bytes) -> int | None:
    """The decompressed size a zstd frame's header declares, or None if it declares none.

    Raises ``ValueError`` for a header too short to hold the fields its flags announce.
    """
    if len(frame) < 5 or frame[:4] != ZSTD_MAGIC:
        return None
    before, size = _header_fields(frame[4])
    position = 5 + before
    if size == 0:
        return None
    if len(frame) < position + size:
        raise ValueError("the zstd frame header is truncated")
    value = int.from_bytes(frame[position : position + size], "little")
    return value + 256 if size == 2 else value


def check_zstd_frames(data: bytes, *, checksum: bool) -> None:
    """Check that ``data`` is whole zstd frames and, with ``checksum``, that each carries its
    content checksum.

    Only the frame and block headers are read (a few per chunk); the blocks themselves are
    decoded, and the checksums verified, by zstd.

    Raises
    ------
    ValueError
        Naming the offset and what is wrong: no frame, a skippable or unknown frame, a frame
        without the checksum flag, a reserved block type, or frames running past the end.
    """
    size, position = len(data), 0
    if not size:
        raise ValueError("it holds no zstd frame")
    while position < size:
        if data[position : position + 4] != ZSTD_MAGIC:
            raise ValueError(f"the bytes at offset {position} are not a zstd frame")
        if position + 5 > size:
            raise ValueError(f"the zstd frame at offset {position} is truncated")
        descriptor = data[position + 4]
        if checksum and not descriptor & _CHECKSUM_FLAG:
            raise ValueError(
                f"the zstd frame at offset {position} has no content checksum, which the "
                f"array's zarr.json promises (checksum: true)"
            )
        before, fcs = _header_fields(descriptor)
        position += 5 + before + fcs
        while True:
            if position + 3 > size:
                raise ValueError("the zstd frame is truncated (a block header is cut off)")
            header = int.from_bytes(data[position : position + 3], "little")
            kind = (header >> 1) & 3
            if kind == _RESERVED_BLOCK:
                raise ValueError(f"the zstd block at offset {position} has the reserved type")
            position += 3 + (1 if kind == _RLE_BLOCK else header >> 3)
            if header & 1:  # Last_Block
                break
        position += 4 if descriptor & _CHECKSUM_FLAG else 0
    if position > size:
        raise ValueError("the zstd frame is truncated")
