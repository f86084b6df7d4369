"""Completeness checks that decide whether a stage may skip a recording on resume.

Every stage writes its results atomically and records what it finished in ``status.json``
(written last, atomically). A recording is skipped only when the status says done *and* the
files are there, readable and consistent (frame counts equal the input's, arrays have the right
shape, the inputs they were computed from are unchanged); anything else is redone.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import re
import shutil
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from labsession.core.atomic import atomic_write_json, recover_replaced_dir

__all__ = [
    "COMPENSATED_NAME",
    "STATUS_NAME",
    "aligned_complete",
    "clean_partial_files",
    "file_digest",
    "final_complete",
    "input_fingerprint",
    "read_status",
    "stage1_complete",
    "stage1_options_record",
    "stage2_complete",
    "update_status",
    "video_frames",
]

logger = logging.getLogger(__name__)

STATUS_NAME = "status.json"
COMPENSATED_NAME = "compensated.hdf5"
VALID_NAME = "idx.hdf"
AVERAGE_NAME = "temporal_average.npy"
W_NAME = "w_to_reference.npz"
#: The session's final mask files in ``final_results`` (stage 3).
FINAL_NAMES = ("final_valid_idx.npz", "final_valid_idx.mat", "final_valid_idx.png")
#: Names of the temporaries writers make beside a target (``core.atomic._temp_names``).
_TEMPORARY = re.compile(r"\..+\.[0-9a-f]{8}\.(?:tmp|npy)")
#: An old output ``replace_dir`` set aside (``.<name>.<8 hex>.old``); group 1 is its name.
_ASIDE = re.compile(r"\.(.+)\.[0-9a-f]{8}\.old")


def read_status(folder: Path) -> dict[str, Any]:
    """``folder/status.json`` as a dict; ``{}`` when missing or unreadable (treated as not done)."""
    path = Path(folder) / STATUS_NAME
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        logger.warning("%s is unreadable (%s); its stages will be redone", path, exc)
        return {}
    return data if isinstance(data, dict) else {}


def update_status(folder: Path, **entries: Any) -> dict[str, Any]:
    """Merge ``entries`` into ``folder/status.json`` and rewrite it atomically."""
    status = read_status(folder)
    status.update(entries)
    atomic_write_json(Path(folder) / STATUS_NAME, status)
    return status


def input_fingerprint(path: Path) -> dict[str, Any]:
    """Size and modification time (ns) of an input file: a changed input is redone.

    The path is left out so a session folder moved or copied whole (with its times kept,
    ``cp -p``/``rsync -a``) still resumes.
    """
    stat = Path(path).stat()
    return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def file_digest(path: Path) -> str:
    """SHA-1 of a (small) file's bytes, to tie a result to the exact input it was made from."""
    digest = hashlib.sha1(usedforsecurity=False)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def video_frames(path: Path) -> tuple[int, int, int, int] | None:
    """Shape ``(T, H, W, C)`` of a readable video file, or ``None`` if it cannot be opened."""
    from labsession.motion import open_video

    try:
        with open_video(path) as reader:
            return tuple(int(s) for s in reader.shape)  # type: ignore[return-value]
    except Exception as exc:  # noqa: BLE001 - any failure to read means "redo"
        logger.info("%s is not readable (%s)", path, exc)
        return None


def clean_partial_files(folder: Path) -> list[Path]:
    """Remove the temporaries a killed writer left in ``folder``; return what was removed.

    Only names of the exact temporary pattern ``.<name>.<8 hex digits>.tmp`` (files of
    :func:`~labsession.core.atomic.atomic_path`, folders of Zarr and other folder formats
    before :func:`~labsession.core.atomic.replace_dir` swaps them in) and
    ``.<name>.<8 hex digits>.npy`` (the spools of the TIFF and NPZ writers) are removed; links
    are left alone. ``.<name>.<8 hex>.old`` is where ``replace_dir``, when it cannot swap
    folders in one call, sets the earlier output aside: if ``<name>`` is missing (killed between
    the two renames) it is renamed back, else it is removed
    (:func:`~labsession.core.atomic.recover_replaced_dir`). Removed ``.old`` entries are in the
    list; a restored one is logged.
    """
    removed: list[Path] = []
    if not folder.is_dir():
        return removed
    removed += _recover_asides(folder)
    for path in folder.iterdir():
        if not _TEMPORARY.fullmatch(path.name) or path.is_symlink():
            continue
        try:
            if path.is_dir():
                shutil.rmtree(path)
            elif path.is_file():
                path.unlink(missing_ok=True)
            else:
                continue
        except OSError as exc:  # not ours to remove (permissions): the run goes on
            logger.warning("could not remove the partial %s (%s)", path, exc)
            continue
        removed.append(path)
    if removed:
        logger.info("removed %d partial file(s) left in %s", len(removed), folder)
    return removed


def _recover_asides(folder: Path) -> list[Path]:
    """Put back or remove the ``.old`` entries of ``replace_dir`` in ``folder``; the removed."""
    targets = {
        folder / match.group(1)
        for path in folder.iterdir()
        if (match := _ASIDE.fullmatch(path.name)) and not path.is_symlink()
    }
    removed: list[Path] = []
    for target in sorted(targets):
        try:
            restored, gone = recover_replaced_dir(target)
        except OSError as exc:  # not ours to move or remove (permissions): the run goes on
            logger.warning("could not recover %s from its set-aside copy (%s)", target, exc)
            continue
        if restored is not None:
            logger.warning(
                "%s was missing (a run was killed while replacing it): restored the earlier "
                "output from %s",
                target,
                restored.name,
            )
        removed += gone
    return removed


#: Option fields that only route files (where the input is, where the output goes): a session
#: folder moved whole keeps its results.
_ROUTING_OPTIONS = ("input_file", "output_path")


def stage1_options_record(options: Any) -> dict[str, Any]:
    """The stage-1 :class:`~labsession.motion.OFOptions` as stored in ``status.json``, to tell
    when they change: every field but the file routing, as JSON values; an in-memory reference
    image or weight map by shape, dtype and SHA-1, a reference image file by size and mtime."""
    from labsession.motion._options_io import options_data

    data = options_data(options, for_file=False)
    for key in _ROUTING_OPTIONS:
        data.pop(key, None)
    for key in ("reference_frames", "weight"):
        value = getattr(options, key)
        if isinstance(value, np.ndarray):  # its content, not "<array shape=...>"
            array = np.ascontiguousarray(value)
            digest = hashlib.sha1(array.tobytes(), usedforsecurity=False).hexdigest()
            data[key] = {"shape": list(array.shape), "dtype": str(array.dtype), "sha1": digest}
        elif key == "reference_frames" and isinstance(value, str | Path) and str(value).strip():
            # The image file, not where it is: a session folder moved whole (its times kept)
            # keeps its results, a reference image rewritten in place does not.
            with contextlib.suppress(OSError):  # unreadable: stage 1 says so; path kept
                data[key] = {"file": input_fingerprint(Path(value).expanduser())}
    return json.loads(json.dumps(data))  # the values a read of status.json gives back


def _changed_options(recorded: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """The fields whose value differs. A field the record lacks (added to OFOptions since it
    was written) counts as its default; a field only the record has (removed since) is not
    compared: upgrading labsession alone redoes no recording."""
    from labsession.motion import OFOptions

    defaults = stage1_options_record(OFOptions())
    return sorted(k for k, v in current.items() if recorded.get(k, defaults.get(k)) != v)


def stage1_complete(
    folder: Path, input_file: Path, n_frames: int, options: dict[str, Any] | None = None
) -> tuple[bool, str]:
    """Whether stage 1 of one recording is complete, and why not.

    Complete means: ``status.json`` says ``stage1 == "done"`` for this very input (same size
    and modification time) and, when ``options`` (:func:`stage1_options_record`) is given, for
    the same options; ``compensated.hdf5`` and ``idx.hdf`` open and hold ``n_frames`` frames,
    and ``temporal_average.npy`` loads with the frames' ``(H, W, C)`` shape. A status written
    before the options were recorded (labsession before 2026-12) is not checked against them.
    """
    status = read_status(folder)
    if status.get("stage1") != "done":
        return False, f"status stage1 is {status.get('stage1')!r}"
    if status.get("input") != input_fingerprint(input_file):
        return False, "the input file changed since stage 1 ran"
    recorded = status.get("stage1_options")
    if options is not None and isinstance(recorded, dict) and recorded != options:
        changed = _changed_options(recorded, options)
        if changed:
            return False, f"the stage-1 options changed since it ran: {', '.join(changed)}"
    shape = video_frames(folder / COMPENSATED_NAME)
    if shape is None:
        return False, f"{COMPENSATED_NAME} missing or unreadable"
    if shape[0] != n_frames:
        return False, f"{COMPENSATED_NAME} has {shape[0]} frames, the input {n_frames}"
    valid = video_frames(folder / VALID_NAME)
    if valid is None or valid[:3] != shape[:3]:
        return False, f"{VALID_NAME} missing, unreadable or of shape {valid}"
    try:
        average = np.load(folder / AVERAGE_NAME, allow_pickle=False)
    except (OSError, ValueError) as exc:
        return False, f"{AVERAGE_NAME} unreadable ({exc})"
    if average.shape != shape[1:]:
        return False, f"{AVERAGE_NAME} has shape {average.shape}, expected {shape[1:]}"
    return True, "complete"


def stage2_complete(folder: Path, expected: dict[str, Any], shape: tuple[int, int]) -> bool:
    """Whether ``w_to_reference.npz`` is done for the same inputs (``expected`` == ``stage2``)."""
    status = read_status(folder)
    if status.get("stage2") != "done" or status.get("stage2_inputs") != expected:
        return False
    try:
        with np.load(folder / W_NAME, allow_pickle=False) as data:
            return data["u"].shape == shape and data["v"].shape == shape
    except (OSError, ValueError, KeyError):
        return False


def aligned_complete(
    path: Path, folder: Path, expected: dict[str, Any], n_frames: int
) -> tuple[bool, str]:
    """Whether the re-projected video ``path`` is complete for the same inputs."""
    status = read_status(folder)
    if status.get("stage3_aligned") != expected:
        return False, "status does not record this re-projection"
    shape = video_frames(path)
    if shape is None:
        return False, f"{path.name} missing or unreadable"
    if shape[0] != n_frames:
        return False, f"{path.name} has {shape[0]} frames, expected {n_frames}"
    return True, "complete"


def final_complete(
    final_dir: Path, recordings: list[str], middle_idx: int, inputs: list[dict[str, Any] | None]
) -> tuple[bool, str]:
    """Whether the session's final mask files are complete and made from the current results.

    Complete means: ``final_results/status.json`` says ``stage3 == "done"`` for the same
    recordings, center and per-recording inputs (``inputs``: each recording's
    ``stage3_aligned`` record as stage 3 would compute it now, ``None`` where its stage 3 is not
    done); ``final_valid_idx.npz`` loads with an ``(H, W)`` ``final_valid`` mask of
    ``valid_pixels`` pixels, ``final_valid_idx.mat`` loads whole with that ``final_valid`` and
    ``final_valid_idx.png`` decodes to the mask's size. A status written before the inputs
    were recorded (labsession before 2026-12) is checked against the rest.
    """
    status = read_status(final_dir)
    if status.get("stage3") != "done":
        return False, f"status stage3 is {status.get('stage3')!r}"
    if status.get("recordings") != recordings:
        return False, f"made from the recordings {status.get('recordings')}, now {recordings}"
    if status.get("middle_idx") != middle_idx:
        return False, f"made with center {status.get('middle_idx')}, now {middle_idx}"
    undone = [name for name, record in zip(recordings, inputs, strict=True) if record is None]
    if undone:
        return False, f"stage 3 of {', '.join(undone)} is not done for the current results"
    recorded = status.get("inputs")
    if recorded is not None and recorded != inputs:
        return False, "made from other stage-1 or stage-2 results than the current ones"
    npz, mat, png = (Path(final_dir) / name for name in FINAL_NAMES)
    try:
        with open(npz, "rb") as f, np.load(f, allow_pickle=False) as data:
            mask = data["final_valid"]
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        return False, f"{npz.name} missing or unreadable ({exc})"
    if mask.ndim != 2 or int(np.count_nonzero(mask)) != status.get("valid_pixels"):
        return False, f"{npz.name} holds a mask of shape {mask.shape}, not the one recorded"
    try:
        import scipy.io

        stored = scipy.io.loadmat(mat).get("final_valid")  # whole: a cut file is caught
    except Exception as exc:  # noqa: BLE001 - scipy raises MatReadError and others on damage
        return False, f"{mat.name} missing or unreadable ({exc})"
    if stored is None:
        return False, f"{mat.name} holds no final_valid"
    if not np.array_equal(np.asarray(stored).astype(bool), mask.astype(bool)):
        return False, f"{mat.name} holds another mask than {npz.name}"
    try:
        from PIL import Image

        with Image.open(png) as image:
            image.load()
            size = image.size
    except (OSError, ValueError) as exc:
        return False, f"{png.name} missing or unreadable ({exc})"
    if size != (mask.shape[1], mask.shape[0]):
        return False, f"{png.name} is {size[0]}x{size[1]}, the mask {mask.shape[1]}x{mask.shape[0]}"
    return True, "complete"
