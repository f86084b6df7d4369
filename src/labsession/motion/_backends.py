"""Flow backends behind one interface, and the registry users extend.

A backend is built from :class:`OFOptions` by a factory and called on a buffer of frames:

>>> backend = get_backend(options)  # doctest: +SKIP
>>> w = backend(reference, frames, weight=weights, w_init=None)  # (N, H, W, 2)

Built in: ``flowreg`` (variational flow, numba, Flotho et al. 2022 / Brox et al. 2004),
``diso`` (OpenCV's Dense Inverse Search, Kroeger et al. 2016), ``flowreg_torch`` (the same
model as ``flowreg`` in PyTorch, needs the ``labsession[torch]`` extra; alias ``torch``) and
``flowreg_cuda`` (pyflowreg's name for its GPU backend: ``flowreg_torch`` on a CUDA device).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ClassVar, Protocol, TypeVar, runtime_checkable

import numpy as np

from labsession.errors import ConfigError
from labsession.motion._checks import check_backend_params
from labsession.motion._options import BACKEND_ALIASES, OFOptions, canonical_backend

_T = TypeVar("_T")

__all__ = [
    "FlowBackend",
    "available_backends",
    "get_backend",
    "get_displacement",
    "register_backend",
]

logger = logging.getLogger(__name__)


@runtime_checkable
class FlowBackend(Protocol):
    """Estimates the displacement from each moving frame to a reference.

    Called with ``reference`` (H, W, C) float32 and ``moving`` (N, H, W, C) float32, both
    preprocessed (normalised to about [0, 1] and smoothed), ``weight`` (C,) summing to 1 and
    ``w_init`` (N, H, W, 2) or ``None`` (possibly a read-only view). Returns ``w``
    (N, H, W, 2) float32 in pixels with ``w[..., 0] = u`` (x) and ``w[..., 1] = v`` (y) such that
    ``moving[y + v, x + u] ~ reference[y, x]`` (backward warping).
    """

    def __call__(
        self,
        reference: np.ndarray,
        moving: np.ndarray,
        *,
        weight: np.ndarray,
        w_init: np.ndarray | None = None,
    ) -> np.ndarray: ...


BackendFactory = Callable[[OFOptions], FlowBackend]
_REGISTRY: dict[str, BackendFactory] = {}


def register_backend(name: str, factory: BackendFactory, *, overwrite: bool = False) -> None:
    """Make ``factory(options) -> FlowBackend`` available as ``flow_backend=name``.

    Raises
    ------
    ValueError
        If ``name`` is taken and ``overwrite`` is false.
    """
    key = name.strip().lower()
    if key in BACKEND_ALIASES:
        raise ValueError(
            f"flow backend name {key!r} is an alias of {BACKEND_ALIASES[key]!r}; pick another name"
        )
    if key in _REGISTRY and not overwrite:
        raise ValueError(
            f"flow backend {key!r} is already registered; pass overwrite=True to replace it"
        )
    _REGISTRY[key] = factory


def available_backends() -> list[str]:
    """Names of the registered flow backends, sorted."""
    return sorted(_REGISTRY)


def get_backend(options: OFOptions) -> FlowBackend:
    """Build the backend named by ``options.flow_backend``.

    Raises
    ------
    ConfigError
        If no backend of that name (or alias, ``"torch"``) is registered, or the backend cannot
        run here (``flowreg_cuda`` without a CUDA GPU, ``flowreg_torch`` without PyTorch).
    """
    name = canonical_backend(options.flow_backend)
    if name not in _REGISTRY:
        raise ConfigError(
            f"unknown flow_backend {name!r}; registered backends: {available_backends()} "
            "(add one with labsession.motion.register_backend)"
        )
    return _REGISTRY[name](options)


def get_displacement(
    reference: np.ndarray,
    moving: np.ndarray,
    options: OFOptions | None = None,
    w_init: np.ndarray | None = None,
) -> np.ndarray:
    """Displacement field from ``moving`` to ``reference`` with the configured backend.

    Parameters
    ----------
    reference, moving
        Images ``(H, W)`` or ``(H, W, C)``, intensities scaled to about [0, 1] (the
        regularisation ``alpha`` is tuned for that range; ``compensate_arr`` normalises).
    options
        Flow parameters (backend, alpha, pyramid, ...); defaults to ``OFOptions()``.
    w_init
        Initial displacement ``(H, W, 2)`` in pixels, or ``None`` for zero.

    Returns
    -------
    numpy.ndarray
        ``(H, W, 2)`` float32, ``[u, v]`` in pixels with ``moving[y + v, x + u] ~
        reference[y, x]``.
    """
    from labsession.motion._checks import as_image

    options = options or OFOptions()
    ref = as_image(reference, name="reference")
    mov = as_image(moving, name="moving")
    if ref.shape != mov.shape:
        raise ValueError(
            f"reference and moving must have the same shape, got {ref.shape} and {mov.shape}"
        )
    init = None
    if w_init is not None:
        init = np.asarray(w_init, dtype=np.float32)
        if init.shape != (*ref.shape[:2], 2):
            raise ValueError(f"w_init must have shape {(*ref.shape[:2], 2)}, got {init.shape}")
        init = init[None]
    backend = get_backend(options)
    weight = options.channel_weights(ref.shape[2])
    return backend(ref, mov[None], weight=weight, w_init=init)[0]


class FlowregBackend:
    """Variational optical flow (numba): coarse-to-fine warping, robust data and smoothness.

    References
    ----------
    Flotho, P., Nomura, S., Kuhn, B., Strauss, D. J. (2022). Software for non-parametric image
    registration of 2-photon imaging data. J. Biophotonics 15(8), e202100330.
    https://doi.org/10.1002/jbio.202100330

    Brox, T., Bruhn, A., Papenberg, N., Weickert, J. (2004). High accuracy optical flow
    estimation based on a theory for warping. ECCV 2004, LNCS 3024, 25-36.
    https://doi.org/10.1007/978-3-540-24673-2_3

    Hafner, D., Demetz, O., Weickert, J. (2013). Why is the census transform good for robust
    optic flow computation? SSVM 2013, LNCS 7893, 210-221.
    https://doi.org/10.1007/978-3-642-38267-3_18

    A spatial ``weight`` map in the options (``(H, W)`` or ``(H, W, C)``) takes the place of
    the per-channel ``weight`` passed in (:func:`~labsession.motion._weight_maps.data_weight`).
    """

    def __init__(self, options: OFOptions) -> None:
        # every parameter of the model is an OFOptions field: backend_params take no key
        check_backend_params("flowreg", options.backend_params, ())
        self.options = options

    def __call__(
        self,
        reference: np.ndarray,
        moving: np.ndarray,
        *,
        weight: np.ndarray,
        w_init: np.ndarray | None = None,
    ) -> np.ndarray:
        from labsession.motion._flowreg_batch import FlowPlan
        from labsession.motion._kernel_compile import announce_compilation
        from labsession.motion._weight_maps import data_weight

        opts = self.options
        # The kernel takes plain, writable, C-contiguous float32, channel first: a read-only or
        # strided array would be another type signature, compiled again (seconds to tens of
        # seconds) on a cold cache.
        fixed = _channels_first(reference)
        moving = np.asarray(moving)  # (N, H, W, C): each thread copies its frames channel first
        n, height, width, n_ch = moving.shape
        weight = data_weight(opts, np.asarray(weight), n_ch, height, width)
        if w_init is None:
            init = np.zeros((1, 2, height, width), dtype=np.float32)
            index = np.zeros(n, dtype=np.int64)
        else:
            w_init = np.asarray(w_init)
            if w_init.strides[0] == 0:  # one flow broadcast to all frames: pass it once
                init = _channels_first(w_init[:1])
                index = np.zeros(n, dtype=np.int64)
            else:
                init = _channels_first(w_init)
                index = np.arange(n, dtype=np.int64)
        params = (
            # a map from data_weight is channel first already
            _channels_first(weight) if weight.ndim == 1 else weight,
            float(opts.alpha[0]),
            float(opts.alpha[1]),
            float(opts.eta),
            int(opts.levels),
            int(opts.effective_min_level),
            int(opts.iterations),
            int(opts.update_lag),
            float(opts.a_data),
            float(opts.a_smooth),
            opts.constancy_assumption.value,
        )

        # each thread writes its frames' flows channel last (no serial transposed copy)
        w = np.empty((n, height, width, 2), dtype=np.float32)
        with announce_compilation():  # the reference's pyramid compiles kernels too
            plan = FlowPlan(fixed, *params)  # built once for all blocks

            def run(start: int, stop: int) -> None:
                frames = _channels_first(moving[start:stop])
                plan.run(frames, init, index[start:stop], w[start:stop])

            map_frame_blocks(run, n, plan.block)
        return w


def _channels_first(array: np.ndarray) -> np.ndarray:
    """A writable C-contiguous float32 copy: ``(..., H, W, C)`` as ``(..., C, H, W)``, 1-D as is."""
    array = np.asarray(array)
    if array.ndim > 1:
        array = np.moveaxis(array, -1, -3)
    return np.array(array, dtype=np.float32, order="C")


def _flow_threads() -> int:
    """Threads for the ``flowreg`` kernel: numba's setting (``NUMBA_NUM_THREADS``,
    ``numba.set_num_threads``), which the former ``prange`` kernel followed too."""
    import numba

    return max(1, int(numba.get_num_threads()))


def frame_blocks(
    n: int, most: int | None = None, threads: int | None = None
) -> list[tuple[int, int]]:
    """``[(start, stop), ...]``: ``n`` frames in contiguous blocks for ``threads`` threads
    (default: those of :func:`_flow_threads`) to take in turn, about 4 per thread (at most
    ``most`` frames each; ``[(0, n)]`` on one thread).

    A thread that falls behind (the other cores busy, a slower frame) then takes fewer blocks,
    where with one fixed span per thread the others waited for it at the end.
    """
    threads = max(1, min(n, _flow_threads() if threads is None else threads))
    if threads == 1 and most is None:
        return [(0, n)]
    size = max(1, -(-n // (4 * threads)))
    if most is not None:
        size = max(1, min(size, most))
    return [(start, min(start + size, n)) for start in range(0, n, size)]


def map_frame_blocks(
    function: Callable[[int, int], _T], n: int, most: int | None = None
) -> list[_T]:
    """``function(start, stop)`` for each block of :func:`frame_blocks`, on the threads of
    :func:`_flow_threads`, which take the blocks in turn; the results in block order."""
    blocks = frame_blocks(n, most)
    threads = min(len(blocks), _flow_threads())
    if threads <= 1:
        return [function(start, stop) for start, stop in blocks]
    with ThreadPoolExecutor(max_workers=threads) as pool:
        return list(pool.map(lambda block: function(*block), blocks))


_DIS_PRESETS = {"ultrafast": 0, "fast": 1, "medium": 2}


class DisoBackend:
    """OpenCV's Dense Inverse Search optical flow on the weighted channel mix.

    ``backend_params``: ``preset`` (ultrafast, fast, medium; default from ``quality_setting``:
    quality -> medium, balanced -> fast, fast -> ultrafast), and any of ``finest_scale``,
    ``patch_size``, ``patch_stride``, ``gradient_descent_iterations``,
    ``variational_refinement_iterations``, ``variational_refinement_alpha`` (OpenCV's setters of
    the same names).

    References
    ----------
    Kroeger, T., Timofte, R., Dai, D., Van Gool, L. (2016). Fast optical flow using dense
    inverse search. ECCV 2016. https://doi.org/10.1007/978-3-319-46493-0_29
    """

    #: Only the weighted channel mix is used: the engine may hand over the preprocessed mix
    #: as a single channel of weight 1 (see ``_Engine``).
    uses_channel_mix: ClassVar[bool] = True

    _SETTERS: ClassVar[dict[str, str]] = {
        "finest_scale": "setFinestScale",
        "patch_size": "setPatchSize",
        "patch_stride": "setPatchStride",
        "gradient_descent_iterations": "setGradientDescentIterations",
        "variational_refinement_iterations": "setVariationalRefinementIterations",
        "variational_refinement_alpha": "setVariationalRefinementAlpha",
    }

    def __init__(self, options: OFOptions) -> None:
        params = dict(options.backend_params)
        default = {"fast": "ultrafast", "balanced": "fast"}.get(
            options.quality_setting.value, "medium"
        )
        preset = str(params.pop("preset", default)).lower()
        if preset not in _DIS_PRESETS:
            raise ConfigError(
                f"backend_params.preset {preset!r} unknown for diso; use one of "
                f"{sorted(_DIS_PRESETS)}"
            )
        check_backend_params("diso", params, ("preset", *self._SETTERS))
        self.preset = _DIS_PRESETS[preset]
        self.params = params

    def _make(self):
        import cv2

        dis = cv2.DISOpticalFlow_create(self.preset)
        for key, value in self.params.items():
            getattr(dis, self._SETTERS[key])(value)
        return dis

    def __call__(
        self,
        reference: np.ndarray,
        moving: np.ndarray,
        *,
        weight: np.ndarray,
        w_init: np.ndarray | None = None,
    ) -> np.ndarray:
        dis = self._make()
        ref8 = _to_uint8(_mix(reference, weight))
        out = np.empty((*moving.shape[:3], 2), dtype=np.float32)
        for t in range(moving.shape[0]):
            # DIS writes into the flow it is given: pass a private copy of the initial flow
            init = None if w_init is None else np.array(w_init[t], np.float32, order="C")
            out[t] = dis.calc(ref8, _to_uint8(_mix(moving[t], weight)), init)
        return out


def _mix(image: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """``image @ weight`` for ``(H, W, C)``; a view of the plane when it is one channel of 1."""
    if image.shape[-1] == 1 and float(weight[0]) == 1.0:
        return image[..., 0]
    return image @ weight


def _to_uint8(image: np.ndarray) -> np.ndarray:
    return (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def _torch_factory(options: OFOptions) -> FlowBackend:
    from labsession.motion._flowreg_torch import TorchFlowregBackend

    return TorchFlowregBackend(options)


def _cuda_factory(options: OFOptions) -> FlowBackend:
    """``flowreg_cuda`` (pyflowreg's GPU backend name): the PyTorch solver on a CUDA device.

    pyflowreg runs it with CuPy; labsession has one GPU solver, the PyTorch one, which it uses
    whether or not CuPy is installed. ``backend_params`` are ``flowreg_torch``'s; ``device``
    defaults to ``"cuda"`` and must name a CUDA device.
    """
    try:
        import torch
    except ImportError as exc:
        raise ConfigError(
            "flow_backend 'flowreg_cuda' runs the flowreg model on a CUDA GPU through PyTorch, "
            "which is not installed: pip install 'labsession[torch]' (a CUDA build of torch), or "
            "use flow_backend 'flowreg' on the CPU"
        ) from exc
    params = dict(options.backend_params)
    device = str(params.get("device", "cuda"))
    if not device.startswith("cuda"):
        raise ConfigError(
            f"flow_backend 'flowreg_cuda' runs on a CUDA device, but backend_params.device is "
            f"{device!r}; leave it out, or use flow_backend 'flowreg_torch' for device {device!r}"
        )
    if not torch.cuda.is_available():
        raise ConfigError(
            "flow_backend 'flowreg_cuda' needs a CUDA GPU, and PyTorch sees none here "
            f"(torch {torch.__version__}, built for CUDA {torch.version.cuda}); use flow_backend "
            "'flowreg' (CPU) or 'flowreg_torch' (CPU, or the GPU where there is one)"
        )
    from labsession.motion._flowreg_torch import TorchFlowregBackend

    params["device"] = device
    return TorchFlowregBackend(options.model_copy(update={"backend_params": params}))


register_backend("flowreg", FlowregBackend)
register_backend("diso", DisoBackend)
register_backend("flowreg_torch", _torch_factory)
register_backend("flowreg_cuda", _cuda_factory)
