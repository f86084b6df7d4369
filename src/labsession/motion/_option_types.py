"""The vocabulary of :class:`~labsession.motion.OFOptions`: presets, data terms, output formats
and types, backend names (split from :mod:`labsession.motion._options`)."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

import numpy as np

#: min_level used by each quality preset (0 = full resolution).
PRESET_MIN_LEVEL = {"quality": 0, "balanced": 4, "fast": 6}

#: Other names accepted for a flow backend (pyflowreg's docs say "torch").
BACKEND_ALIASES = {"torch": "flowreg_torch"}

#: Flow backends that weigh the data term by a spatial ``weight`` map; others get each
#: channel's mean weight.
SPATIAL_WEIGHT_BACKENDS = frozenset({"flowreg", "flowreg_torch", "flowreg_cuda"})

#: pyflowreg's other names of the data terms.
_CONSTANCY_ALIASES = {"gradient": "gc", "brightness": "gray", "census": "cs"}

#: pyflowreg's (MATLAB's) ``output_typename`` values.
_TYPENAMES = {
    "single": "float32",
    "double": "float64",
    "uint8": "uint8",
    "uint16": "uint16",
    "int16": "int16",
    "int32": "int32",
}


def canonical_backend(name: str) -> str:
    """``name`` lower-cased, with an alias (``"torch"``) replaced by the backend it names."""
    key = name.strip().lower()
    return BACKEND_ALIASES.get(key, key)


def output_dtype(typename: str | None) -> np.dtype | None:
    """The numpy dtype an ``output_typename`` names; ``None`` for none (keep the input's).

    ``None`` is also returned for a name that is not a real or integer numpy type.
    """
    if typename is None or not typename.strip():
        return None
    name = typename.strip().lower()
    try:
        dtype = np.dtype(_TYPENAMES.get(name, name))
    except TypeError:
        return None
    return dtype if dtype.kind in "fiu" else None


class OutputFormat(StrEnum):
    """File format of the compensated video."""

    HDF5 = "HDF5"
    TIFF = "TIFF"
    MAT = "MAT"
    NPZ = "NPZ"
    ZARR = "ZARR"


def registered_output_format(value: Any) -> OutputFormat | str:
    """A video format name checked against the registry: a built-in one as its
    :class:`OutputFormat`, a registered one as its name (a pydantic ``before`` validator).

    Raises
    ------
    ValueError
        If ``value`` names no writable format (the message lists them).
    """
    from labsession.motion._formats import available_video_formats

    names = available_video_formats()
    if not isinstance(value, str) or str(value) not in names:
        listed = ", ".join(map(repr, names[:-1])) + f" or {names[-1]!r}"
        raise ValueError(
            f"must be one of {listed} (add one with labsession.motion.register_video_format)"
        )
    try:
        return OutputFormat(str(value))  # a built-in one stays an OutputFormat
    except ValueError:
        return str(value)


class QualitySetting(StrEnum):
    """Speed/accuracy preset: the finest pyramid level solved (``min_level``)."""

    QUALITY = "quality"
    BALANCED = "balanced"
    FAST = "fast"
    CUSTOM = "custom"


class ConstancyAssumption(StrEnum):
    """Data term: gray-value, (normalised) gradient or census constancy."""

    GRAY = "gray"
    GC = "gc"
    CS = "cs"


class ChannelNormalization(StrEnum):
    """Min-max normalisation over all channels together or each channel separately."""

    JOINT = "joint"
    SEPARATE = "separate"


class InterpolationMethod(StrEnum):
    """Interpolation used to warp the raw frames."""

    NEAREST = "nearest"
    LINEAR = "linear"
    CUBIC = "cubic"
