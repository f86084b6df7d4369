"""Options of the motion-correction engine (:class:`OFOptions`).

Field names and defaults follow Flow-Registration / pyflowreg's ``OF_options``, so configs users
already have keep working; unknown keys are rejected with an error naming them.
"""

from __future__ import annotations

import logging
from enum import StrEnum
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import ConfigDict, Field, field_validator, model_validator

from labsession.core.config import FileConfig, KeyedConfigError

__all__ = [
    "ChannelNormalization",
    "ConstancyAssumption",
    "InterpolationMethod",
    "OFOptions",
    "OutputFormat",
    "QualitySetting",
]

logger = logging.getLogger(__name__)

#: min_level used by each quality preset (0 = full resolution).
PRESET_MIN_LEVEL = {"quality": 0, "balanced": 4, "fast": 6}


class OutputFormat(StrEnum):
    """File format of the compensated video."""

    HDF5 = "HDF5"
    TIFF = "TIFF"
    MAT = "MAT"
    NPZ = "NPZ"
    ZARR = "ZARR"


class QualitySetting(StrEnum):
    """Speed/accuracy preset: the finest pyramid level solved (``min_level``)."""

    QUALITY = "quality"
    BALANCED = "balanced"
    FAST = "fast"
    CUSTOM = "custom"


class ConstancyAssumption(StrEnum):
    """Data term: gray-value constancy or (normalised) gradient constancy."""

    GRAY = "gray"
    GC = "gc"


class ChannelNormalization(StrEnum):
    """Min-max normalisation over all channels together or each channel separately."""

    JOINT = "joint"
    SEPARATE = "separate"


class InterpolationMethod(StrEnum):
    """Interpolation used to warp the raw frames."""

    NEAREST = "nearest"
    LINEAR = "linear"
    CUBIC = "cubic"


class OFOptions(FileConfig):
    """Options of :func:`~labsession.motion.compensate_recording` and the flow backends.

    Parameters mirror Flow-Registration's (Flotho et al., 2022). Arrays (``input_file``,
    ``reference_frames``) are accepted in memory but not written to config files.

    Attributes
    ----------
    input_file
        Video path (TIFF, HDF5, MAT v7.3, NPY, Zarr) or array ``(T, H, W[, C])``.
    output_path
        Output folder (created if missing).
    output_format
        Format of ``compensated.*``: HDF5 (default), TIFF, MAT, NPZ or ZARR.
    dataset_name
        Dataset to read from HDF5/MAT inputs; ``None`` picks the largest 3-D/4-D dataset.
    channel_idx
        Channels to keep (0-based); ``None`` keeps all.
    alpha
        Smoothness weight, one value or ``(alpha_x, alpha_y)``.
    weight
        Data-term weight per channel; normalised to sum to 1. Missing channels get ``1/C``.
    levels, min_level, eta
        Pyramid: at most ``levels`` levels shrinking by ``eta``; solve down to ``min_level``
        (``-1`` = from ``quality_setting``: quality 0, balanced 4, fast 6).
    update_lag, iterations, a_smooth, a_data
        Refresh the non-linear weights every ``update_lag`` of ``iterations`` SOR sweeps per
        level; penaliser exponents (1 = quadratic, 0.5 = L1-like).
    sigma
        Gaussian pre-filter ``[sx, sy, st]`` in pixels/frames, one or one per channel.
    buffer_size
        Frames read, registered and written at a time (bounds memory).
    reference_frames
        Frame indices (default 50..499, clipped to the video), an image path, or an array.
    """

    model_config = ConfigDict(
        extra="forbid", validate_assignment=True, arbitrary_types_allowed=True
    )

    input_file: str | Path | np.ndarray | None = None
    output_path: Path = Path("results")
    output_format: OutputFormat = OutputFormat.HDF5
    dataset_name: str | None = None
    channel_idx: list[int] | None = None
    alpha: tuple[float, float] = (1.5, 1.5)
    weight: list[float] = Field(default_factory=lambda: [0.5, 0.5])
    levels: int = Field(100, ge=1)
    min_level: int = Field(-1, ge=-1)
    quality_setting: QualitySetting = QualitySetting.QUALITY
    eta: float = Field(0.8, gt=0.0, lt=1.0)
    update_lag: int = Field(5, ge=1)
    iterations: int = Field(50, ge=1)
    a_smooth: float = Field(1.0, gt=0.0, le=1.0)
    a_data: float = Field(0.45, gt=0.0, le=1.0)
    sigma: list[list[float]] = Field(default_factory=lambda: [[1.0, 1.0, 0.1], [1.0, 1.0, 0.1]])
    bin_size: int = Field(1, ge=1)
    buffer_size: int = Field(400, ge=1)
    reference_frames: list[int] | str | Path | np.ndarray = Field(
        default_factory=lambda: list(range(50, 500))
    )
    update_reference: bool = False
    update_initialization_w: bool = True
    save_w: bool = False
    save_valid_mask: bool = False
    save_valid_idx: bool = False
    save_meta_info: bool = True
    interpolation_method: InterpolationMethod = InterpolationMethod.CUBIC
    cc_initialization: bool = False
    cc_up: int = Field(1, ge=1)
    constancy_assumption: ConstancyAssumption = ConstancyAssumption.GC
    channel_normalization: ChannelNormalization = ChannelNormalization.JOINT
    flow_backend: str = "flowreg"
    backend_params: dict[str, Any] = Field(default_factory=dict)

    @field_validator("alpha", mode="before")
    @classmethod
    def _alpha_pair(cls, value: Any) -> Any:
        if isinstance(value, int | float):
            return (float(value), float(value))
        return value

    @field_validator("alpha")
    @classmethod
    def _alpha_positive(cls, value: tuple[float, float]) -> tuple[float, float]:
        if min(value) <= 0:
            raise ValueError("must be > 0 (one value, or a pair [alpha_x, alpha_y])")
        return value

    @field_validator("weight", mode="before")
    @classmethod
    def _weight_list(cls, value: Any) -> Any:
        if isinstance(value, int | float):
            return [float(value)]
        if isinstance(value, np.ndarray):
            return value.astype(float).ravel().tolist()
        return value

    @field_validator("weight")
    @classmethod
    def _weight_valid(cls, value: list[float]) -> list[float]:
        if not value or min(value) < 0 or sum(value) <= 0:
            raise ValueError("must be non-negative numbers with a positive sum")
        return value

    @field_validator("sigma", mode="before")
    @classmethod
    def _sigma_rows(cls, value: Any) -> Any:
        rows = "must be [sx, sy, st] (numbers) or one such row per channel"
        try:
            arr = np.asarray(value, dtype=float)
        except (TypeError, ValueError):
            raise ValueError(rows) from None
        if arr.ndim == 1:
            arr = arr[None, :]
        if arr.ndim != 2 or arr.shape[1] != 3:
            raise ValueError(rows)
        if (arr < 0).any():
            raise ValueError("must be >= 0")
        return arr.tolist()

    @field_validator("input_file")
    @classmethod
    def _input_not_folder(cls, value: Any) -> Any:
        if isinstance(value, str | Path) and str(value).strip():
            path = Path(value).expanduser()
            if path.is_dir() and path.suffix.lower() != ".zarr":
                raise KeyedConfigError(
                    f"input_file {str(path)!r} is a folder; give a video file (TIFF, HDF5, "
                    f"MAT v7.3, NPY or a .zarr array) or use `labsession motion run` for a "
                    f"folder of recordings"
                )
        return value

    @field_validator("flow_backend")
    @classmethod
    def _backend_name(cls, value: str) -> str:
        return value.strip().lower()

    @model_validator(mode="after")
    def _check_paths(self) -> OFOptions:
        if isinstance(self.input_file, np.ndarray) and self.input_file.ndim not in (3, 4):
            raise ValueError(
                f"input_file array must be (T, H, W) or (T, H, W, C), got shape "
                f"{self.input_file.shape}"
            )
        return self

    @classmethod
    def _prepare(cls, data: dict[str, Any], *, base_dir: Path) -> dict[str, Any]:
        """Resolve the relative paths written in an options file against the file's folder."""
        data = dict(data)
        for key in ("input_file", "output_path", "reference_frames"):
            value = data.get(key)
            if isinstance(value, str) and value.strip() and not Path(value).is_absolute():
                data[key] = str((base_dir / value).resolve())
        return data

    # -- derived values --------------------------------------------------------------------
    @property
    def effective_min_level(self) -> int:
        """Finest pyramid level solved: ``min_level`` if set (>= 0), else the preset's."""
        if self.min_level >= 0:
            return self.min_level
        return PRESET_MIN_LEVEL.get(self.quality_setting.value, 0)

    def channel_weights(self, n_channels: int) -> np.ndarray:
        """Per-channel data weights ``(C,)`` float32 summing to 1."""
        given = np.asarray(self.weight, dtype=np.float64)[:n_channels]
        weights = np.full(n_channels, 1.0 / n_channels)
        weights[: given.size] = given
        if weights.sum() <= 0:
            raise ValueError(f"weights for the {n_channels} channels sum to zero: {self.weight}")
        return (weights / weights.sum()).astype(np.float32)

    def channel_sigma(self, n_channels: int) -> np.ndarray:
        """Gaussian ``[sx, sy, st]`` per channel ``(C, 3)``; missing rows repeat the first."""
        rows = np.asarray(self.sigma, dtype=np.float64)
        out = np.repeat(rows[:1], n_channels, axis=0)
        out[: min(n_channels, rows.shape[0])] = rows[:n_channels]
        return out

    def metadata(self) -> dict[str, Any]:
        """The options as JSON-ready values (arrays summarised), stored with every output."""
        data = self.model_dump(mode="json", exclude={"input_file", "reference_frames"})
        data["effective_min_level"] = self.effective_min_level
        for key in ("input_file", "reference_frames"):
            value = getattr(self, key)
            if isinstance(value, np.ndarray):
                data[key] = f"<array shape={value.shape} dtype={value.dtype}>"
            elif isinstance(value, Path):
                data[key] = str(value)
            else:
                data[key] = value
        return data

    def to_file(self, path: str | Path) -> Path:
        """Write the options as TOML, YAML or JSON (by suffix); in-memory arrays are left out."""
        from labsession.core.config import dump_mapping

        data = self.model_dump(mode="json", exclude={"input_file", "reference_frames"})
        for key in ("input_file", "reference_frames"):
            value = getattr(self, key)
            if value is not None and not isinstance(value, np.ndarray):
                data[key] = str(value) if isinstance(value, Path) else value
            elif isinstance(value, np.ndarray):
                logger.warning("%s is an in-memory array and is not written to %s", key, path)
        data = {k: v for k, v in data.items() if v is not None}
        return dump_mapping(data, path)
