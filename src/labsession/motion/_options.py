"""Options of the motion-correction engine (:class:`OFOptions`).

Field names and defaults follow Flow-Registration / pyflowreg's ``OF_options``, so configs users
already have keep working; unknown keys are rejected with an error naming them.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import ConfigDict, Field, field_validator, model_validator

from labsession.core.config import FileConfig, KeyedConfigError
from labsession.motion._option_types import (  # noqa: F401 - re-exported
    _CONSTANCY_ALIASES,
    _TYPENAMES,
    BACKEND_ALIASES,
    PRESET_MIN_LEVEL,
    SPATIAL_WEIGHT_BACKENDS,
    ChannelNormalization,
    ConstancyAssumption,
    InterpolationMethod,
    OutputFormat,
    QualitySetting,
    canonical_backend,
    output_dtype,
    registered_output_format,
)

if TYPE_CHECKING:
    from labsession.motion._readers import VideoReader

__all__ = [
    "ChannelNormalization",
    "ConstancyAssumption",
    "InterpolationMethod",
    "OFOptions",
    "OutputFormat",
    "QualitySetting",
]

logger = logging.getLogger(__name__)


class OFOptions(FileConfig):
    """Options of :func:`~labsession.motion.compensate_recording` and the flow backends.

    Parameters mirror Flow-Registration's (Flotho et al., 2022). Arrays (``input_file``,
    ``reference_frames``) are accepted in memory but not written to config files.

    Attributes
    ----------
    input_file
        Video path (TIFF, HDF5, MAT v7.3, NPZ, NPY, Zarr or a registered format, a folder
        for a folder format) or array ``(T, H, W[, C])``.
    output_path
        Output folder (created if missing).
    output_format
        Format of ``compensated.*``: HDF5 (default), TIFF, MAT, NPZ, ZARR or a format added
        with :func:`~labsession.motion.register_video_format` (upper-case name, as
        ``available_video_formats()`` lists it). The built-in ones are :class:`OutputFormat`
        members, another a ``str``.
    dataset_name
        Dataset to read from HDF5/MAT inputs; ``None`` picks the largest 3-D/4-D dataset.
    channel_idx
        Channels to keep (0-based); ``None`` keeps all.
    alpha
        Smoothness weight, one value or ``(alpha_x, alpha_y)`` (a list of one value counts as
        both, as in pyflowreg).
    weight
        Data-term weight per channel ``(C,)``; normalised to sum to 1. Missing channels get
        ``1/C``. Or a spatial map ``(H, W)`` (all channels) or ``(H, W, C)`` of the frames'
        size, used as given (not normalised, as in pyflowreg; :meth:`get_weight_at`): the
        ``flowreg`` backends weigh each pixel's and channel's data term by it, resized to each
        pyramid level; other backends use each channel's mean weight (with a warning).
    constancy_assumption
        Data term: ``gc`` (normalised gradient constancy, default), ``gray`` (gray-value) or
        ``cs`` (census: robust to brightness changes that keep the order of neighbouring
        values); pyflowreg's ``gradient``, ``brightness`` and ``census`` are accepted too.
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
    output_typename
        dtype of :func:`~labsession.motion.compensate_arr`'s registered video: ``None`` or
        ``""`` (default) keeps the input's dtype; pyflowreg's ``"single"``, ``"double"``,
        ``"uint8"``, ``"uint16"``, ``"int16"``, ``"int32"`` or a numpy name (``"float32"``).
        Integer types are rounded and clipped to their range (MATLAB's ``cast``). Files written
        by ``compensate_recording`` stay float32 (as pyflowreg's).
    """

    model_config = ConfigDict(
        extra="forbid", validate_assignment=True, arbitrary_types_allowed=True
    )

    input_file: str | Path | np.ndarray | None = None
    output_path: Path = Path("results")
    output_format: OutputFormat | str = OutputFormat.HDF5
    dataset_name: str | None = None
    channel_idx: list[int] | None = None
    alpha: tuple[float, float] = (1.5, 1.5)
    weight: list[float] | np.ndarray = Field(default_factory=lambda: [0.5, 0.5])
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
    output_typename: str | None = None
    flow_backend: str = "flowreg"
    backend_params: dict[str, Any] = Field(default_factory=dict)

    @field_validator("alpha", mode="before")
    @classmethod
    def _alpha_pair(cls, value: Any) -> Any:
        if isinstance(value, int | float):
            return (float(value), float(value))
        if isinstance(value, list | tuple | np.ndarray) and len(value) == 1:
            return (value[0], value[0])  # pyflowreg: [a] means (a, a)
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
        if isinstance(value, list | tuple) and any(isinstance(v, list | tuple) for v in value):
            value = np.asarray(value)  # nested lists (a spatial map read from a file)
        if isinstance(value, np.ndarray):
            if value.ndim <= 1:
                return value.astype(float).ravel().tolist()
            if value.ndim > 3:
                raise ValueError(
                    f"has {value.ndim} dimensions; give one weight per channel (C,), or a "
                    "spatial map (H, W) or (H, W, C)"
                )
            try:
                spatial = np.array(value, dtype=np.float64)  # a private copy
            except (TypeError, ValueError):
                raise ValueError("must be numbers") from None
            spatial.flags.writeable = False
            return spatial
        return value

    @field_validator("weight")
    @classmethod
    def _weight_valid(cls, value: list[float] | np.ndarray) -> list[float] | np.ndarray:
        if isinstance(value, np.ndarray):
            bad = not np.isfinite(value).all() or (value < 0).any() or value.sum() <= 0
        else:
            bad = not value or min(value) < 0 or sum(value) <= 0
        if bad:
            raise ValueError("must be non-negative numbers with a positive sum")
        return value

    @field_validator("constancy_assumption", mode="before")
    @classmethod
    def _constancy_alias(cls, value: Any) -> Any:
        if isinstance(value, str):  # as pyflowreg: any case, and its aliases
            key = value.strip().lower()
            return _CONSTANCY_ALIASES.get(key, key)
        return value

    @field_validator("output_typename", mode="before")
    @classmethod
    def _typename_known(cls, value: Any) -> Any:
        if value is None or (isinstance(value, str) and not value.strip()):
            return None  # pyflowreg and MATLAB write "" for "the input's type"
        if not isinstance(value, str) or output_dtype(value) is None:
            raise ValueError(
                f"must be empty (the input's dtype), one of {sorted(_TYPENAMES)} or a numpy "
                "number dtype name such as 'float32'"
            )
        return value.strip().lower()

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
            if path.is_dir():
                from labsession.motion._formats import format_for_path, readable_description

                fmt = format_for_path(path, required=False)
                if fmt is None or not fmt.folder:  # a folder format (Zarr) is one video
                    raise KeyedConfigError(
                        f"input_file {str(path)!r} is a folder; give a video file "
                        f"({readable_description()}) or use `labsession motion run` for a "
                        f"folder of recordings"
                    )
        return value

    @field_validator("output_format", mode="before")
    @classmethod
    def _format_registered(cls, value: Any) -> Any:
        return registered_output_format(value)

    @field_validator("flow_backend")
    @classmethod
    def _backend_name(cls, value: str) -> str:
        return canonical_backend(value)

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
        """Per-channel data weights ``(C,)`` float32 summing to 1, as the flow backends use them.

        Given weights beyond ``n_channels`` are dropped, missing ones get ``1 / n_channels``,
        then all are normalised. A spatial ``weight`` map is reduced to each channel's mean
        weight (an ``(H, W)`` map weighs all channels alike): the weights of the channel mix
        (cross-correlation initialisation, ``diso``). The ``flowreg`` backends use the map
        itself; with another ``flow_backend`` a warning says that the map is reduced.
        """
        weight = self.weight
        if isinstance(weight, np.ndarray):
            if canonical_backend(self.flow_backend) not in SPATIAL_WEIGHT_BACKENDS:
                logger.warning(
                    "weight is a spatial map of shape %s; flow_backend %r uses each channel's "
                    "mean weight (spatial weights need flowreg, flowreg_torch or flowreg_cuda)",
                    weight.shape,
                    self.flow_backend,
                )
            weight = weight.mean(axis=(0, 1)) if weight.ndim == 3 else np.zeros(0)
        given = np.asarray(weight, dtype=np.float64)[:n_channels]
        weights = np.full(n_channels, 1.0 / n_channels)
        weights[: given.size] = given
        if weights.sum() <= 0:
            raise ValueError(f"weights for the {n_channels} channels sum to zero: {self.weight}")
        return (weights / weights.sum()).astype(np.float32)

    def get_weight_at(self, i: int, n_channels: int) -> float | np.ndarray:
        """The data weight of channel ``i`` (0-based) of ``n_channels`` (pyflowreg's method).

        Returns
        -------
        float or numpy.ndarray
            For per-channel weights, ``channel_weights(n_channels)[i]``. For a spatial map,
            its ``(H, W)`` plane for channel ``i``: the map itself when it is ``(H, W)``,
            ``weight[..., i]`` when ``(H, W, C)`` (``1 / n_channels`` everywhere for a channel
            beyond ``C``), float64.

        Raises
        ------
        IndexError
            If ``i`` is not in ``0 .. n_channels - 1``.
        """
        if not 0 <= i < n_channels:
            raise IndexError(f"channel {i} is out of range for {n_channels} channel(s)")
        weight = self.weight
        if not isinstance(weight, np.ndarray):
            return float(self.channel_weights(n_channels)[i])
        if weight.ndim == 2:
            return np.array(weight)
        if i < weight.shape[2]:
            return np.array(weight[..., i])
        return np.full(weight.shape[:2], 1.0 / n_channels)

    def channel_sigma(self, n_channels: int) -> np.ndarray:
        """Gaussian ``[sx, sy, st]`` per channel ``(C, 3)``; missing rows repeat the first."""
        rows = np.asarray(self.sigma, dtype=np.float64)
        out = np.repeat(rows[:1], n_channels, axis=0)
        out[: min(n_channels, rows.shape[0])] = rows[:n_channels]
        return out

    def to_dict(self) -> dict[str, Any]:
        """The flow parameters as pyflowreg's ``OFOptions.to_dict`` gives them.

        Keys ``alpha``, ``weight``, ``levels``, ``min_level`` (the effective one), ``eta``,
        ``iterations``, ``update_lag``, ``a_data``, ``a_smooth`` and ``const_assumption``.
        """
        return {
            "alpha": self.alpha,
            "weight": self.weight,
            "levels": self.levels,
            "min_level": self.effective_min_level,
            "eta": self.eta,
            "iterations": self.iterations,
            "update_lag": self.update_lag,
            "a_data": self.a_data,
            "a_smooth": self.a_smooth,
            "const_assumption": self.constancy_assumption.value,
        }

    def metadata(self) -> dict[str, Any]:
        """The options as JSON-ready values (arrays summarised), stored with every output."""
        from labsession.motion._options_io import options_data

        data = options_data(self, for_file=False)
        data["effective_min_level"] = self.effective_min_level
        return data

    # -- files -----------------------------------------------------------------------------
    @classmethod
    def from_file(cls, path: str | Path) -> OFOptions:
        """Read TOML, YAML or JSON (by suffix), including pyflowreg's ``save_options`` files.

        Relative paths (``input_file``, ``output_path``, a ``reference_frames`` image) of a
        hand-written file resolve against the file's folder. A file in ``save_options``' form
        (a ``Compensation options <date>`` line, then JSON: written by pyflowreg, MATLAB or
        :meth:`save_options`) is read as pyflowreg reads it: paths exactly as written, a
        relative one relative to the working directory (labsession writes absolute ones). Keys
        pyflowreg writes that have no field here are accepted when they hold pyflowreg's default
        (``verbose`` always).
        """
        from labsession.motion._options_io import is_saved_form, read_options_mapping

        path = Path(path)
        data = read_options_mapping(path)
        if not is_saved_form(path):
            data = cls._prepare(data, base_dir=path.parent)
        return cls.from_mapping(data, source=str(path))

    @classmethod
    def load_options(cls, filepath: str | Path) -> OFOptions:
        """pyflowreg's name for :meth:`from_file` (reads its dated-header JSON too, paths as
        written, as pyflowreg)."""
        return cls.from_file(filepath)

    def to_file(self, path: str | Path) -> Path:
        """Write the options as TOML, YAML or JSON (by suffix), paths made absolute (so
        :meth:`from_file` gives back the same files); in-memory arrays are left out."""
        from labsession.core.config import dump_mapping
        from labsession.motion._options_io import options_data

        return dump_mapping(options_data(self, for_file=True), path)

    def save_options(self, filepath: str | Path | None = None) -> Path:
        """Write the options as pyflowreg does: a dated header line, then JSON.

        Parameters
        ----------
        filepath
            Target file; default ``<output_path>/options.json``.

        Returns
        -------
        pathlib.Path
            The file written (atomically), its paths absolute (pyflowreg writes them as
            given), so :meth:`load_options`, here or in pyflowreg, gives back the same files
            from any working directory. An in-memory ``reference_frames`` image is saved
            beside it as ``reference_frames.tif`` and named by path; an in-memory
            ``input_file`` is left out (with a warning).
        """
        from labsession.motion._options_io import write_options_json

        path = Path(filepath) if filepath is not None else Path(self.output_path) / "options.json"
        return write_options_json(self, path)

    def get_video_reader(self) -> VideoReader:
        """Open ``input_file`` (path or array) for lazy reading, ``(T, H, W, C)`` float32.

        Honours ``dataset_name`` and ``channel_idx``. Unlike pyflowreg's, the reader is new on
        each call and not stored in ``input_file``: close it, or use it in a ``with`` block.

        Raises
        ------
        ValueError
            If ``input_file`` is not set.
        """
        if self.input_file is None:
            raise ValueError("input_file is not set: give a video path or array")
        from labsession.motion._readers import open_video

        return open_video(
            self.input_file, dataset_name=self.dataset_name, channel_idx=self.channel_idx
        )
