"""Configuration of a multi-recording motion session (:class:`SessionConfig`).

Field names and defaults follow pyflowreg's ``SessionConfig`` so its TOML/YAML files load
unchanged (plus ``stage2_constancy_assumption``, ``dask_address`` and ``dask_cluster``).

Relative paths (pyflowreg's rules, plus one): a relative ``output_root`` or ``final_results``
stays relative and lives under ``root`` (:meth:`SessionConfig.resolve_output_paths`). A relative
``root`` written in a config *file* resolves against that file's folder (in Python, against the
working directory). A relative ``flow_options`` file is looked for in the config file's folder
(in Python, the working directory), then under ``root`` (pyflowreg's place).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from labsession.core.config import (
    FileConfig,
    KeyedConfigError,
    describe_validation_error,
)
from labsession.motion._options import (
    ConstancyAssumption,
    OFOptions,
    OutputFormat,
    QualitySetting,
    canonical_backend,
    registered_output_format,
)

__all__ = ["DaskClusterSpec", "SessionConfig"]

logger = logging.getLogger(__name__)

#: OFOptions fields the session sets per recording; a user may not override them.
ROUTED_FIELDS = ("input_file", "output_path")
#: Session keys that set a stage-1 option, and the option each sets.
SESSION_FLOW_KEYS = {
    "flow_backend": "flow_backend",
    "backend_params": "backend_params",
    "stage1_quality_setting": "quality_setting",
}


def _same_option(name: str, a: Any, b: Any) -> bool:
    """Whether two values of the OFOptions field ``name`` mean the same (``torch`` is
    ``flowreg_torch``, ``"fast"`` is ``QualitySetting.FAST``)."""
    try:
        return bool(getattr(OFOptions(**{name: a}), name) == getattr(OFOptions(**{name: b}), name))
    except (ValidationError, ValueError):
        return a == b


class DaskClusterSpec(BaseModel):
    """The Dask cluster to start when no ``dask_address`` is given.

    Attributes
    ----------
    cls
        Import path of the cluster class (key ``class`` in files), e.g.
        ``"dask_jobqueue.SLURMCluster"``; default ``"distributed.LocalCluster"``.
    kwargs
        Keyword arguments of the class (for a LocalCluster the default is one single-threaded
        worker process per ``n_workers``).
    scale
        Workers (or jobs) to request with ``cluster.scale(n)`` after creation, if set.
    """

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    cls: str = Field("distributed.LocalCluster", alias="class")
    kwargs: dict[str, Any] = Field(default_factory=dict)
    scale: int | None = Field(None, ge=1)


class SessionConfig(FileConfig):
    """Settings of :func:`run_stage1`, :func:`run_stage2` and :func:`run_stage3`.

    Attributes
    ----------
    root
        Folder holding the recordings (must exist).
    pattern
        Glob, relative to ``root``, selecting the recordings (``"*.tif"``).
    center
        File name (relative to ``root``) of the recording the others are aligned to; ``None``
        takes the middle one in sorted order (index ``ceil(n / 2) - 1``, as the MATLAB scripts).
    output_root, final_results
        Folders of the per-recording outputs (``<output_root>/<stem>/``) and of the session
        results; relative ones stay relative and live under ``root`` (as in pyflowreg), also
        when written in a config file elsewhere.
    resume
        Skip a recording (or result) only when its outputs are verified complete.
    scheduler
        ``"local"`` (process pool), ``"array"`` (one recording per HPC array task) or
        ``"dask"`` (a Dask distributed cluster), or a name added with
        :func:`~labsession.motion.session.register_executor`.
    n_workers
        Processes for the local pool (``-1`` = all cores); also the LocalCluster size for dask.
    flow_backend, backend_params
        Flow backend of every stage (``labsession.motion.available_backends()``, or the alias
        ``"torch"``). ``"flowreg_cuda"`` is accepted anywhere and needs a CUDA GPU where the
        stages run. In stage 1, ``flow_options`` and ``of_options_override`` / ``--of-params``
        setting ``flow_backend`` or ``backend_params`` win (as in pyflowreg); stage 2 keeps
        these.
    flow_options
        Stage-1 :class:`~labsession.motion.OFOptions` overrides: a mapping, or the path of an
        options file (TOML/YAML/JSON, or pyflowreg's ``save_options`` JSON); a relative path is
        looked for in the config file's folder, then under ``root``. They win over the session
        keys above and below; a value that disagrees with a session key set too is logged as a
        warning naming both.
    stage1_quality_setting
        Quality preset of stage 1 (``fast``, ``balanced``, ``quality``); ``None`` keeps
        ``flow_options``'s, and a ``quality_setting`` in ``flow_options`` wins over it.
    cc_upsample
        Sub-pixel factor of the phase cross-correlation that pre-aligns the averages.
    sigma_smooth
        Gaussian sigma (pixels) applied to the averages before stage-2 alignment.
    alpha_between, iterations_between, stage2_constancy_assumption
        Flow parameters of the average-to-reference refinement.
    align_chunk_size
        Frames re-projected at a time in stage 3.
    align_output_format
        Format of the re-projected videos ``aligned_<stem>.<ext>``.
    dask_address
        Address of a running Dask scheduler (``"tcp://host:8786"``).
    dask_cluster
        Cluster to start when ``dask_address`` is unset (:class:`DaskClusterSpec`); ``None``
        starts a LocalCluster with ``n_workers`` single-threaded processes.
    """

    root: Path
    pattern: str = "*.tif"
    center: str | None = None
    output_root: Path = Path("compensated_outputs")
    final_results: Path = Path("final_results")
    resume: bool = True
    scheduler: str = "local"
    n_workers: int = -1
    flow_backend: str = "flowreg"
    backend_params: dict[str, Any] = Field(default_factory=dict)
    flow_options: dict[str, Any] | Path | None = None
    stage1_quality_setting: QualitySetting | None = None
    cc_upsample: int = Field(4, ge=1)
    sigma_smooth: float = Field(6.0, ge=0.0)
    alpha_between: float = Field(25.0, gt=0.0)
    iterations_between: int = Field(100, ge=1)
    stage2_constancy_assumption: ConstancyAssumption = ConstancyAssumption.GC
    align_chunk_size: int = Field(64, ge=1)
    align_output_format: OutputFormat | str = OutputFormat.TIFF
    dask_address: str | None = None
    dask_cluster: DaskClusterSpec | None = None

    # -- validation ------------------------------------------------------------------------
    @field_validator("align_output_format", mode="before")
    @classmethod
    def _format_registered(cls, value: Any) -> Any:
        return registered_output_format(value)

    @field_validator("root")
    @classmethod
    def _root_is_folder(cls, value: Path) -> Path:
        value = value.expanduser().resolve()
        if not value.is_dir():
            found = "a file" if value.exists() else "nothing"
            raise ValueError(f"must be an existing folder of recordings; found {found} at {value}")
        return value

    @field_validator("pattern")
    @classmethod
    def _pattern_relative(cls, value: str) -> str:
        if not value.strip() or Path(value).is_absolute():
            raise ValueError("must be a non-empty glob relative to root, e.g. '*.tif'")
        return value

    @field_validator("n_workers")
    @classmethod
    def _workers(cls, value: int) -> int:
        if value == 0 or value < -1:
            raise ValueError("must be -1 (all cores) or >= 1")
        return value

    @field_validator("scheduler")
    @classmethod
    def _scheduler_known(cls, value: str) -> str:
        from labsession.motion.session._executors import available_executors

        value = value.strip().lower()
        names = available_executors()
        if value not in names:
            listed = ", ".join(repr(name) for name in names[:-1])
            raise ValueError(f"must be one of {listed} or {names[-1]!r}")
        return value

    @field_validator("flow_backend")
    @classmethod
    def _backend_known(cls, value: str) -> str:
        from labsession.motion import available_backends

        value = canonical_backend(value)
        if value not in available_backends():
            raise ValueError(
                f"must be one of the registered backends {available_backends()} (or 'torch')"
            )
        return value

    @field_validator("flow_options", mode="before")
    @classmethod
    def _flow_options_form(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = value.strip()
            return Path(value) if value else None
        return value

    @field_validator("flow_options")
    @classmethod
    def _flow_options_valid(cls, value: dict[str, Any] | Path | None, info: ValidationInfo) -> Any:
        if value is None:
            return None
        if isinstance(value, Path):
            path = value.expanduser()
            root = info.data.get("root")
            candidates = [path]
            if not path.is_absolute() and root is not None:
                candidates.append(root / path)  # pyflowreg resolves it under root
            for candidate in candidates:
                if candidate.is_file():
                    return candidate.resolve()
            raise ValueError(
                f"options file not found: {' or '.join(str(c) for c in candidates)} (a relative "
                "path is looked for beside the config file, or the working directory, then "
                "under root)"
            )
        routed = sorted(set(value) & set(ROUTED_FIELDS))
        if routed:
            one = len(routed) == 1
            raise KeyedConfigError(
                f"flow_options: {' and '.join(routed)} {'is' if one else 'are'} set per recording "
                f"by the session; remove {'it' if one else 'them'}"
            )
        try:
            OFOptions.model_validate(value)
        except ValidationError as exc:
            text = describe_validation_error(exc, OFOptions, prefix="flow_options")
            raise KeyedConfigError(text) from None
        return value

    def stage1_disagreements(self) -> list[str]:
        """Each stage-1 option that ``flow_options`` (or ``--of-params``) sets against a session
        key set too, as one sentence; :func:`run_stage1` logs them as warnings.

        The session's own defaults (``flow_backend = "flowreg"`` when not written) never count.
        """
        overrides = self.flow_overrides() if self.flow_options is not None else {}
        session = self._session_flow_settings()
        found = []
        for key, option in SESSION_FLOW_KEYS.items():
            if key not in self.model_fields_set or option not in overrides:
                continue
            if option not in session or _same_option(option, overrides[option], session[option]):
                continue
            found.append(
                f"stage-1 option {option} = {_shown(overrides[option])!r} (flow_options or "
                f"--of-params) overrides the session's {key} = {_shown(getattr(self, key))!r}, "
                "as in pyflowreg; set it in one place"
            )
        if self._backend_params_left_behind(session, overrides):
            found.append(
                f"the session's backend_params {session['backend_params']} are for its "
                f"flow_backend = {self.flow_backend!r}: stage 1 runs "
                f"{_shown(overrides['flow_backend'])!r} without them"
            )
        return found

    @staticmethod
    def _backend_params_left_behind(session: dict[str, Any], overrides: dict[str, Any]) -> bool:
        """Whether ``flow_options`` / ``--of-params`` pick another backend than the session's
        without backend_params of their own: the session's are then not passed on."""
        return (
            "backend_params" in session
            and "backend_params" not in overrides
            and "flow_backend" in overrides
            and not _same_option("flow_backend", overrides["flow_backend"], session["flow_backend"])
        )

    def _session_flow_settings(self) -> dict[str, Any]:
        """The stage-1 options the session's own keys give (``SESSION_FLOW_KEYS``)."""
        data: dict[str, Any] = {"flow_backend": self.flow_backend}
        if self.backend_params:
            data["backend_params"] = dict(self.backend_params)
        if self.stage1_quality_setting is not None:
            data["quality_setting"] = self.stage1_quality_setting
        return data

    @classmethod
    def _prepare(cls, data: dict[str, Any], *, base_dir: Path) -> dict[str, Any]:
        """Resolve a relative ``root`` (and a ``flow_options`` file found there) against the
        config file's folder; ``output_root`` and ``final_results`` stay relative to ``root``."""
        data = dict(data)
        root = data.get("root")
        if isinstance(root, str) and root.strip() and not Path(root).expanduser().is_absolute():
            data["root"] = str((base_dir / root).resolve())
        flow = data.get("flow_options")
        if isinstance(flow, str) and flow.strip() and not Path(flow).expanduser().is_absolute():
            found = beside = (base_dir / flow).resolve()
            if not beside.is_file() and isinstance(data.get("root"), str):
                under_root = (Path(data["root"]).expanduser() / flow).resolve()  # pyflowreg's place
                found = under_root if under_root.is_file() else beside
            data["flow_options"] = str(found)
        return data

    # -- derived values --------------------------------------------------------------------
    def resolve_output_paths(self) -> tuple[Path, Path]:
        """``(output_root, final_results)`` made absolute: relative ones under ``root``.

        pyflowreg's method; the same folders as :attr:`output_dir` and :attr:`final_dir`.
        """
        return self.output_dir, self.final_dir

    @property
    def output_dir(self) -> Path:
        """Absolute folder of the per-recording outputs (a relative ``output_root`` under root)."""
        return self.root / self.output_root.expanduser()

    @property
    def final_dir(self) -> Path:
        """Absolute folder of the session results (a relative ``final_results`` under root)."""
        return self.root / self.final_results.expanduser()

    def resolve_center_file(self, input_files: list[Path]) -> tuple[int, Path]:
        """Index and path of the center recording among ``input_files`` (pyflowreg's method).

        ``center`` (relative to ``root``) if set, else the middle file in sorted order
        (index ``ceil(n / 2) - 1``).

        Raises
        ------
        ConfigError
            If ``center`` is not among ``input_files`` (a ``ValueError``, as pyflowreg's).
        """
        from labsession.motion.session._discover import resolve_center

        return resolve_center(self, sorted(Path(p) for p in input_files))

    @property
    def effective_workers(self) -> int:
        """``n_workers`` with ``-1`` replaced by the number of usable cores."""
        if self.n_workers > 0:
            return self.n_workers
        try:
            return max(1, len(os.sched_getaffinity(0)))
        except AttributeError:  # pragma: no cover - macOS, Windows
            return max(1, os.cpu_count() or 1)

    def flow_overrides(self) -> dict[str, Any]:
        """The ``flow_options`` overrides as a mapping (read from the file if a path: the keys
        the file sets)."""
        if self.flow_options is None:
            return {}
        if isinstance(self.flow_options, dict):
            return dict(self.flow_options)
        options = OFOptions.from_file(self.flow_options)
        data = options.model_dump(exclude_unset=True, exclude=set(ROUTED_FIELDS))
        return data

    def get_flow_options_override(self) -> dict[str, Any]:
        """pyflowreg's name for :meth:`flow_overrides`: the stage-1 OFOptions overrides.

        A copy the caller may change. From a file, only the keys the file sets (pyflowreg
        returns every field of the loaded options); ``input_file`` and ``output_path`` never.
        """
        return self.flow_overrides()

    def with_flow_overrides(self, overrides: dict[str, Any]) -> SessionConfig:
        """A copy whose ``flow_options`` also holds ``overrides`` (validated; CLI ``--of-params``).

        Raises
        ------
        ConfigError
            If an override is not a valid OFOptions field or value.
        """
        data = self.model_dump(exclude_unset=True, by_alias=True)
        current = self.flow_overrides()
        for key, value in overrides.items():
            if key in current and not _same_option(key, value, current[key]):
                logger.warning(
                    "--of-params %s = %r overrides flow_options %s = %r",
                    key,
                    _shown(value),
                    key,
                    _shown(current[key]),
                )
        data["flow_options"] = {**current, **overrides}
        return type(self).from_mapping(data, source="--of-params")

    def stage1_options(self, input_file: Path, output_path: Path) -> OFOptions:
        """The :class:`OFOptions` of one recording in stage 1.

        Precedence, as pyflowreg's: OFOptions defaults < session settings (``flow_backend``,
        non-empty ``backend_params``, ``stage1_quality_setting``) < ``flow_options`` <
        ``of_options_override`` / ``--of-params`` (merged into ``flow_options`` by
        :meth:`with_flow_overrides`) < the routing the session needs (input, output folder,
        HDF5 output, valid masks saved). :meth:`stage1_disagreements` names the values that
        disagree.
        """
        data = self._session_flow_settings()
        overrides = self.flow_overrides()
        if self._backend_params_left_behind(data, overrides):
            del data["backend_params"]  # they are for the session's backend, not the other one
        data.update(overrides)
        data.update(
            input_file=Path(input_file),
            output_path=Path(output_path),
            output_format="HDF5",
            save_valid_idx=True,
        )
        return OFOptions.from_mapping(data, source="stage-1 options")

    def stage2_options(self) -> OFOptions:
        """:class:`OFOptions` of the average-to-reference refinement (stage 2)."""
        data: dict[str, Any] = {
            "alpha": self.alpha_between,
            "iterations": self.iterations_between,
            "constancy_assumption": self.stage2_constancy_assumption,
            "flow_backend": self.flow_backend,
            "backend_params": dict(self.backend_params),
            "quality_setting": "quality",
            "weight": self.flow_overrides().get("weight", [0.5, 0.5]),
        }
        return OFOptions.from_mapping(data, source="stage-2 options")


def _shown(value: Any) -> Any:
    """A value as a config file writes it (an enum by its value)."""
    return getattr(value, "value", value)
