"""Fuzzing the readers with damaged bytes: flipped, zeroed, overwritten, inserted or cut bytes
of any file of a session folder or of its ``.session.zip`` (the contract: ``_fuzz_harness.py``)."""

import functools
import io
import zipfile
from pathlib import Path

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from ._fuzz_harness import FUZZ, fuzz_example


# -- raw bytes -----------------------------------------------------------------------------------
def damage_bytes(raw: bytes, action: str, where: float, length: int, seed: int) -> bytes:
    """Flip, zero, overwrite, cut at, or insert garbage at fraction ``where`` of ``raw``."""
    if not raw:
        return b"\x00" if action == "insert" else raw
    at = min(int(where * len(raw)), len(raw) - 1)
    rng = np.random.default_rng(seed)
    garbage = rng.integers(0, 256, size=length, dtype=np.uint8).tobytes()
    out = bytearray(raw)
    if action == "flip":
        for i in rng.integers(0, len(raw), size=length):
            out[i] ^= 1 << int(rng.integers(0, 8))
        out[at] ^= 0xFF
    elif action == "zero":
        out[at : at + length] = bytes(len(out[at : at + length]))
    elif action == "overwrite":
        out[at : at + length] = garbage[: len(out[at : at + length])]
    elif action == "truncate":
        del out[at:]
    else:
        out[at:at] = garbage
    return bytes(out)


byte_damage = st.tuples(
    st.sampled_from(["flip", "zero", "overwrite", "truncate", "insert"]),
    st.floats(0, 1),
    st.integers(1, 64),
    st.integers(0, 2**32 - 1),
)


@functools.cache
def zip_landmarks(raw: bytes) -> list[float]:
    """Fractions of the archive where its structures start (headers, directory, end record)."""
    spots = [raw.find(sig) for sig in (b"PK\x01\x02", b"PK\x05\x06")]
    with zipfile.ZipFile(io.BytesIO(raw)) as zf:
        spots += [info.header_offset for info in zf.infolist()]
    return sorted({max(0, s) / len(raw) for s in spots})


@settings(FUZZ, max_examples=100)
@given(
    damage=st.lists(byte_damage, min_size=1, max_size=3),
    landmark=st.none() | st.integers(0, 10**6),
    shift=st.integers(0, 60),
)
def test_fuzz_zip_bytes(fuzz_scratch, damage, landmark, shift):
    marks = zip_landmarks(fuzz_scratch.zip_bytes)
    size = len(fuzz_scratch.zip_bytes)

    def corrupt(target: Path):
        raw = target.read_bytes()
        for i, (action, where, length, seed) in enumerate(damage):
            if i == 0 and landmark is not None:  # aim the first at a header
                where = min(1.0, marks[landmark % len(marks)] + shift / size)
            raw = damage_bytes(raw, action, where, length, seed)
        target.write_bytes(raw)

    fuzz_example(fuzz_scratch, "zip", corrupt)


@settings(FUZZ, max_examples=100)
@given(
    file_index=st.integers(0, 10**6),
    damage=st.lists(byte_damage, min_size=1, max_size=2),
    remove=st.booleans(),
)
def test_fuzz_folder_bytes(fuzz_scratch, file_index, damage, remove):
    files = sorted(fuzz_scratch.files)

    def corrupt(target: Path):
        file = target / files[file_index % len(files)]
        if remove and len(damage) == 1 and damage[0][0] == "truncate":
            file.unlink()
            return
        raw = file.read_bytes()
        for action, where, length, seed in damage:
            raw = damage_bytes(raw, action, where, length, seed)
        file.write_bytes(raw)

    fuzz_example(fuzz_scratch, "folder", corrupt)
