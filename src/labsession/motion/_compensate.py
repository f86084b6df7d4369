"""Motion compensation of whole videos: in memory and streamed from/to files."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from labsession.core.atomic import atomic_save_npy, atomic_save_npz, atomic_write_json
from labsession.core.paths import output_folder
from labsession.core.progress import make_progress
from labsession.motion._backends import get_backend, map_frame_blocks
from labsession.motion._checks import as_image, as_video
from labsession.motion._options import OFOptions, output_dtype
from labsession.motion._preprocess import intensity_range, preprocess, preprocess_mix
from labsession.motion._readers import open_video
from labsession.motion._reference import cc_initial_flow, reference_from_options
from labsession.motion._writers import SUFFIXES, VideoWriter
from labsession.motion.warping import _float_dtype, _warp_frames_into, valid_masks

__all__ = ["CompensationResult", "compensate_arr", "compensate_recording"]

logger = logging.getLogger(__name__)

#: Frames of the first buffer whose mean flow initialises the registration (Flow-Registration).
_N_INIT = 20


class _Engine:
    """Registers buffers of raw frames ``(n, H, W, C)`` to one reference."""

    def __init__(self, reference: np.ndarray, options: OFOptions) -> None:
        self.options = options
        n_ch = reference.shape[-1]
        self.reference = reference.astype(np.float32)
        self.weight = options.channel_weights(n_ch)
        self.sigma = options.channel_sigma(n_ch)
        separate = options.channel_normalization.value == "separate"
        self.low, self.high = intensity_range(self.reference, separate=separate)
        self.backend = get_backend(options)
        # Backends that only see the weighted channel mix (diso) get it preprocessed as one
        # channel of weight 1: normalising and smoothing the mix once is cheaper than doing
        # each channel, and the same when all channels share one sigma.
        self.mix_only = bool(getattr(self.backend, "uses_channel_mix", False)) and bool(
            np.all(self.sigma == self.sigma[:1])
        )
        self.flow_weight = np.ones(1, dtype=np.float32) if self.mix_only else self.weight
        # without smoothing along time each frame is preprocessed on its own
        self.per_frame = not np.any((4.0 * self.sigma[:, 2] + 0.5).astype(int) >= 1)
        self.reference_proc = self._prep(self.reference)
        self.w_init: np.ndarray | None = None

    def _prep(self, frames: np.ndarray) -> np.ndarray:
        if frames.ndim == 4 and self.per_frame:
            shape = (*frames.shape[:-1], 1) if self.mix_only else frames.shape
            return _by_frames(self._prep_frames, np.empty(shape, dtype=np.float32), frames)
        return self._prep_frames(frames)

    def _prep_frames(self, frames: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        if self.mix_only:
            return preprocess_mix(
                frames, low=self.low, high=self.high, weight=self.weight, sigma=self.sigma, out=out
            )
        return preprocess(frames, low=self.low, high=self.high, sigma=self.sigma, out=out)

    def process(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        opts = self.options
        proc = self._prep(batch)
        init = None
        if opts.cc_initialization:
            init = cc_initial_flow(self.reference_proc, proc, self.flow_weight, upsample=opts.cc_up)
        elif opts.update_initialization_w:
            if self.w_init is None:  # first buffer: start from the mean flow of its first frames
                first = self.backend(self.reference_proc, proc[:_N_INIT], weight=self.flow_weight)
                self.w_init = first.mean(axis=0)
            # a read-only broadcast view: backends copy what they need
            init = np.broadcast_to(self.w_init, (len(batch), *self.w_init.shape))
        w = self.backend(self.reference_proc, proc, weight=self.flow_weight, w_init=init)
        if np.shape(w) != (*batch.shape[:3], 2):  # a plug-in backend's mistake, named here
            raise ValueError(
                f"flow backend {opts.flow_backend!r} returned w of shape {np.shape(w)} for "
                f"frames of shape {batch.shape}; expected {(*batch.shape[:3], 2)}"
            )
        registered = _by_frames(
            lambda part, part_w, out: _warp_frames_into(
                part, part_w, opts.interpolation_method.value, self.reference, out
            ),
            np.empty(batch.shape, dtype=np.float32),
            batch,
            w,
        ).astype(_float_dtype(batch.dtype), copy=False)  # as warp_video returns
        if opts.update_initialization_w:
            self.w_init = w[-20:].mean(axis=0)
        if opts.update_reference:
            # Slow exponential update: the template follows gradual changes (bleaching).
            self.reference = 0.9 * self.reference + 0.1 * registered.mean(axis=0)
            self.reference_proc = self._prep(self.reference)
        return registered, w


def _by_frames(function: Callable[..., object], out: np.ndarray, *videos: np.ndarray) -> np.ndarray:
    """``function(*videos, out)`` computed on blocks of frames on threads; returns ``out``.

    For frame-by-frame work (preprocessing without temporal smoothing, the final warp) whose
    OpenCV and numpy calls release the GIL: these ran on one core while the flow kernels use
    all (``NUMBA_NUM_THREADS``). ``videos`` and ``out`` share their first axis ``(T, ...)``;
    each block's ``function`` writes its frames of ``out`` (the same numbers as one call, and
    no copy of each block's result).
    """
    n = len(videos[0])

    def run(start: int, stop: int) -> None:
        function(*(video[start:stop] for video in videos), out[start:stop])

    map_frame_blocks(run, n)
    return out


def spatial_bin(frames: np.ndarray, factor: int) -> np.ndarray:
    """Mean over ``factor x factor`` pixel blocks of ``(..., H, W, C)`` (edges cropped)."""
    if factor == 1:
        return frames
    *lead, height, width, n_ch = frames.shape
    h, w = height // factor, width // factor
    if h < 2 or w < 2:
        raise ValueError(f"bin_size {factor} leaves frames of {h}x{w} pixels from {height}x{width}")
    blocks = frames[..., : h * factor, : w * factor, :].reshape(*lead, h, factor, w, factor, n_ch)
    return blocks.mean(axis=(-4, -2), dtype=np.float32)


def _correlation(frames: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Pearson correlation ``(n,)`` of each frame with the reference over all pixels."""
    flat = frames.reshape(len(frames), -1).astype(np.float64)
    ref = reference.ravel().astype(np.float64)
    flat = flat - flat.mean(axis=1, keepdims=True)
    ref = ref - ref.mean()
    denom = np.linalg.norm(flat, axis=1) * np.linalg.norm(ref)
    return np.divide(flat @ ref, denom, out=np.zeros(len(frames)), where=denom > 0)


def compensate_arr(
    video: np.ndarray,
    reference: np.ndarray,
    options: OFOptions | None = None,
    progress_callback: Callable[[int, int], None] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Register every frame of an in-memory video to ``reference``.

    Parameters
    ----------
    video
        ``(T, H, W, C)``, ``(T, H, W)`` (one channel) or ``(H, W)`` (one frame), any real
        dtype (registered in float32). A single multi-channel frame goes in as ``frame[None]``.
    reference
        ``(H, W)`` or ``(H, W, C)``, same frame shape as ``video``.
    options
        Flow and warping options; ``buffer_size`` sets how many frames go to the backend at
        once, ``output_typename`` the dtype returned. Defaults to ``OFOptions()``.
    progress_callback
        Called as ``progress_callback(done, total)`` after each buffer with the frames
        registered so far and the frame count (pyflowreg's argument).

    Returns
    -------
    registered : numpy.ndarray
        Each frame warped onto the reference, with ``video``'s shape (spatially binned when
        ``bin_size > 1``) and dtype, or ``output_typename``'s; integer types are rounded and
        clipped to their range. Pixels whose source is outside the field of view take the
        reference's value.
    w : numpy.ndarray
        ``(T, H, W, 2)`` float32 displacements ``[u, v]`` (x, y) in pixels (``(H, W, 2)`` for a
        single ``(H, W)`` frame): ``registered[t, y, x] = video[t, y + v, x + u]``.
    """
    options = options or OFOptions()
    source = np.asarray(video)
    single_frame = source.ndim == 2
    frames = spatial_bin(as_video(source[None] if single_frame else source), options.bin_size)
    ref = spatial_bin(as_image(reference, name="reference"), options.bin_size)
    if ref.shape != frames.shape[1:]:
        hint = ""
        if source.ndim == 3 and source.shape == ref.shape:
            hint = " (a 3-D video is (T, H, W); give a single multi-channel frame as frame[None])"
        raise ValueError(
            f"reference has shape {ref.shape} but the video's frames are {frames.shape[1:]}{hint}"
        )
    engine = _Engine(ref, options)
    total = len(frames)
    if total <= options.buffer_size:
        # one buffer: its results are the outputs, not copied into them (two whole videos;
        # np.require copies only what the backend did not make for us: a view, another dtype)
        # (the engine checks the backend's w for every buffer)
        registered, w = engine.process(frames)
        registered = np.require(registered, np.float32, ["C", "W", "O"])
        w = np.require(w, np.float32, ["C", "W", "O"])
        if registered.shape != frames.shape:
            raise ValueError(
                f"flow backend {options.flow_backend!r} returned a registered video of shape "
                f"{registered.shape} for frames of shape {frames.shape}; expected {frames.shape}"
            )
        if progress_callback is not None:
            progress_callback(total, total)
    else:
        registered = np.empty_like(frames)
        w = np.empty((*frames.shape[:3], 2), dtype=np.float32)
        for start in range(0, total, options.buffer_size):
            stop = min(start + options.buffer_size, total)
            registered[start:stop], w[start:stop] = engine.process(frames[start:stop])
            if progress_callback is not None:
                progress_callback(stop, total)
    dtype = output_dtype(options.output_typename) or _result_dtype(source.dtype)
    registered = cast_frames(registered, dtype)
    if source.ndim == 3 or single_frame:
        registered = registered[..., 0]
    if single_frame:
        return registered[0], w[0]
    return registered, w


def _result_dtype(dtype: np.dtype) -> np.dtype:
    """The input's dtype for real numbers; float32 for booleans (weights of an average)."""
    return np.dtype(np.float32) if dtype == np.bool_ else np.dtype(dtype)


def cast_frames(frames: np.ndarray, dtype: np.dtype | str) -> np.ndarray:
    """``frames`` as ``dtype``: integers rounded to nearest and clipped to the type's range.

    Parameters
    ----------
    frames
        Float array, any shape.
    dtype
        Target dtype.

    Returns
    -------
    numpy.ndarray
        ``frames`` itself when it already has ``dtype``, else a new array.
    """
    dtype = np.dtype(dtype)
    if frames.dtype == dtype:
        return frames
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        return np.clip(np.rint(frames), info.min, info.max).astype(dtype)
    return frames.astype(dtype)


@dataclasses.dataclass(frozen=True)
class CompensationResult:
    """What :func:`compensate_recording` wrote.

    Attributes
    ----------
    files
        Output name -> path: ``compensated``, ``average``, ``reference``, ``statistics``,
        ``options`` and, when asked, ``w`` and ``valid``.
    reference, average, average_raw
        ``(H, W, C)`` float32: the template and the temporal means of the compensated and of
        the raw video.
    statistics
        Per-frame arrays ``(T,)``: ``mean_displacement``, ``max_displacement``, ``mean_u``,
        ``mean_v``, ``corr_before``, ``corr_after``; and ``frames_per_second``.
    """

    files: dict[str, Path]
    reference: np.ndarray
    average: np.ndarray
    average_raw: np.ndarray
    statistics: dict[str, np.ndarray]


def compensate_recording(
    options: OFOptions,
    *,
    reference: np.ndarray | None = None,
    progress: bool | None = None,
    on_frames: Callable[[int, int], None] | None = None,
) -> CompensationResult:
    """Motion-correct ``options.input_file`` into ``options.output_path``, buffer by buffer.

    Reads ``buffer_size`` frames at a time, registers them to the reference (built from
    ``reference_frames`` unless ``reference`` ``(H, W[, C])`` is given), warps them and
    appends them to the output, so memory is bounded by the buffer, not the video. Files in
    ``output_path`` (each written atomically, carrying the options as metadata):
    ``compensated.<h5|tif|mat|npz|zarr>`` (dataset ``mov``, ``(T, H, W, C)`` float32; or
    the suffix of a format added with :func:`~labsession.motion.register_video_format`),
    ``average.npy`` and ``reference.npy`` ``(H, W, C)``, ``statistics.npz``, ``options.json``,
    ``w.h5`` (dataset ``w``, ``(T, H, W, 2)``) when ``save_w`` and ``idx.hdf`` (dataset
    ``valid``, ``(T, H, W)`` uint8 1 = inside the field of view) when ``save_valid_idx`` or
    ``save_valid_mask``.

    A frame progress bar goes to stderr: ``progress=None`` shows it only when stderr is a
    terminal, ``True`` always, ``False`` never. ``on_frames(done, total)`` is called after each
    buffer with the frames registered so far and the video's frame count.

    ``output_path`` is created if missing; a call that fails (or is interrupted) before writing
    anything there removes it again, and every file is written whole or not at all.
    """
    if options.input_file is None:
        raise ValueError("options.input_file is not set: give a video path or array")
    with output_folder(options.output_path) as out_dir:
        return _compensate_into(out_dir, options, reference, progress, on_frames)


def _compensate_into(
    out_dir: Path,
    options: OFOptions,
    reference: np.ndarray | None,
    progress: bool | None,
    on_frames: Callable[[int, int], None] | None,
) -> CompensationResult:
    with open_video(
        options.input_file, dataset_name=options.dataset_name, channel_idx=options.channel_idx
    ) as reader:
        n_frames, height, width, n_ch = reader.shape
        if reference is None:
            ref = spatial_bin(reference_from_options(reader, options), options.bin_size)
        else:
            ref = as_image(reference, name="reference")
            if ref.shape != (height, width, n_ch):
                raise ValueError(
                    f"reference has shape {ref.shape}; frames are {(height, width, n_ch)}"
                )
            ref = spatial_bin(ref, options.bin_size)
        height, width = ref.shape[:2]
        out_shape = (n_frames, height, width, n_ch)
        meta = options.metadata()
        fmt = str(options.output_format)  # a built-in OutputFormat or a registered name
        files = {"compensated": out_dir / f"compensated{SUFFIXES[fmt]}"}
        stats: dict[str, list[np.ndarray]] = {
            k: []
            for k in (
                "mean_displacement",
                "max_displacement",
                "mean_u",
                "mean_v",
                "corr_before",
                "corr_after",
            )
        }
        engine = _Engine(ref, options)
        total = np.zeros((height, width, n_ch), dtype=np.float64)
        total_raw = np.zeros_like(total)
        started = time.perf_counter()
        with contextlib.ExitStack() as stack:
            video_out = stack.enter_context(
                VideoWriter(files["compensated"], fmt, shape=out_shape, metadata=meta)
            )
            w_out = valid_out = None
            if options.save_w:
                files["w"] = out_dir / "w.h5"
                w_out = stack.enter_context(
                    VideoWriter(
                        files["w"],
                        "HDF5",
                        shape=(n_frames, height, width, 2),
                        metadata=meta,
                        dataset="w",
                    )
                )
            if options.save_valid_idx or options.save_valid_mask:
                files["valid"] = out_dir / "idx.hdf"
                valid_out = stack.enter_context(
                    VideoWriter(
                        files["valid"],
                        "HDF5",
                        shape=(n_frames, height, width, 1),
                        metadata=meta,
                        dataset="valid",
                        dtype="uint8",
                    )
                )
            bar = stack.enter_context(make_progress(unit="frames", progress=progress))
            task = bar.add_task("motion correction", total=n_frames)
            for start in range(0, n_frames, options.buffer_size):
                batch = spatial_bin(reader[start : start + options.buffer_size], options.bin_size)
                registered, w = engine.process(batch)
                video_out.write(registered)
                if w_out is not None:
                    w_out.write(w)
                if valid_out is not None:
                    valid_out.write(valid_masks(w)[..., None].astype(np.uint8))
                total += registered.sum(axis=0, dtype=np.float64)
                total_raw += batch.sum(axis=0, dtype=np.float64)
                magnitude = np.hypot(w[..., 0], w[..., 1])
                stats["mean_displacement"].append(magnitude.mean(axis=(1, 2)))
                stats["max_displacement"].append(magnitude.max(axis=(1, 2)))
                stats["mean_u"].append(w[..., 0].mean(axis=(1, 2)))
                stats["mean_v"].append(w[..., 1].mean(axis=(1, 2)))
                stats["corr_before"].append(_correlation(batch, ref))
                stats["corr_after"].append(_correlation(registered, ref))
                done = start + len(batch)
                rate = done / max(time.perf_counter() - started, 1e-9)
                bar.update(task, advance=len(batch), description=f"motion {rate:.1f} frames/s")
                if on_frames is not None:
                    on_frames(done, n_frames)
                logger.debug("%d/%d frames, %.1f frames/s", done, n_frames, rate)
        elapsed = time.perf_counter() - started
    fps = n_frames / max(elapsed, 1e-9)
    logger.info("registered %d frames in %.1f s (%.1f frames/s)", n_frames, elapsed, fps)
    statistics = {k: np.concatenate(v).astype(np.float32) for k, v in stats.items()}
    statistics["frames_per_second"] = np.float64(fps)
    average = (total / n_frames).astype(np.float32)
    files["average"] = atomic_save_npy(out_dir / "average.npy", average)
    files["reference"] = atomic_save_npy(out_dir / "reference.npy", engine.reference)
    files["statistics"] = atomic_save_npz(out_dir / "statistics.npz", **statistics)
    files["options"] = atomic_write_json(out_dir / "options.json", meta)
    return CompensationResult(
        files=files,
        reference=engine.reference,
        average=average,
        average_raw=(total_raw / n_frames).astype(np.float32),
        statistics=statistics,
    )
