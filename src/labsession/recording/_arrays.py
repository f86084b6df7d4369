"""Zarr v3 arrays of a stream: creation with MyoGestic's codecs, opening, and the valid length.

Sample arrays are ``(n_samples, n_channels)`` in the stream's dtype, timestamps ``(n_samples,)``
float64, both chunked by one second and compressed with zstd as MyoGestic writes them, with
zstd's content checksum on (plain zstd frames any Zarr reads, MyoGestic included; the checksum
lets every read of a folder verify its chunks). The timestamp array's fill value is NaN: a
sample slot that was allocated but never written (a crash between growing the array and writing
its chunk) reads as NaN and is cut off by :func:`valid_length`, so a crashed recording never
shows invented samples. Every chunk is written, also one that is all fill value (Zarr leaves
those out by default), and the sample array says so in its ``zarr.json`` attributes
(:data:`~labsession.recording._chunks.EVERY_CHUNK_WRITTEN`): a sample chunk lost later (an
interrupted copy) is then refused on read, never read as zeros. A clean close records in both
arrays' attributes the rows they hold (:func:`set_closed_rows`), so chunks lost from their end
later are refused too, never read as a shorter session; a writer that goes on appending removes
the record first.
"""

from __future__ import annotations

import copy
import logging
import os
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import numpy as np
import zarr
import zarr.codecs

from labsession.recording._chunks import (
    CLOSED_ROWS,
    EVERY_CHUNK_WRITTEN,
    ArrayChunks,
    closed_rows,
    valid_rows,
)
from labsession.recording._layout import data_array_name, timestamps_array_name
from labsession.recording._records import StreamInfo

__all__ = [
    "create_stream_arrays",
    "open_stream_arrays",
    "recorded_closed_rows",
    "set_closed_rows",
    "use_zarrs",
    "valid_length",
]

log = logging.getLogger(__name__)

_PIPELINE = "codec_pipeline.path"
_ZARRS_PIPELINE = "zarrs.ZarrsCodecPipeline"
#: The pipeline in use before :func:`use_zarrs` switched to zarrs (restored by ``False``).
_previous_pipeline: str | None = None


def use_zarrs(enable: bool | None = None) -> bool:
    """Opt in to (or out of) the Rust ``zarrs`` codec pipeline for Zarr reads and writes.

    Zarr's codec pipeline is a setting of the whole process (``zarr.config``), shared with
    every other library using Zarr, so importing labsession never changes it: call this
    function (``pip install "labsession[zarrs]"`` first) to switch. It applies to what goes
    through Zarr: arrays in layouts labsession does not decode itself, and any other Zarr use
    in the process. Reading the layout MyoGestic and labsession write does not depend on it:
    labsession decodes and verifies those chunks itself.

    Parameters
    ----------
    enable
        True: use zarrs (if installed). False: go back to the pipeline in use before (Zarr's
        own). None (default): decided by the environment variable ``LABSESSION_ZARRS``
        (``1`` switches zarrs on, ``0`` off; unset or anything else changes nothing), read
        when this function is called, never at import.

    Returns
    -------
    bool
        Whether Zarr now uses the zarrs pipeline.

    Examples
    --------
    >>> from labsession.recording import use_zarrs
    >>> use_zarrs(True)  # doctest: +SKIP
    True
    """
    global _previous_pipeline
    if enable is None:
        enable = {"1": True, "0": False}.get(os.environ.get("LABSESSION_ZARRS", "").strip())
    current = zarr.config.get(_PIPELINE)
    if enable is True:
        if find_spec("zarrs") is None:
            log.warning(
                "zarrs is not installed (pip install 'labsession[zarrs]'); keeping %s", current
            )
        elif current != _ZARRS_PIPELINE:
            _previous_pipeline = current
            zarr.config.set({_PIPELINE: _ZARRS_PIPELINE})
    elif enable is False and current == _ZARRS_PIPELINE:
        restored = _previous_pipeline or _default_pipeline()
        if restored is not None:
            zarr.config.set({_PIPELINE: restored})
        _previous_pipeline = None
    return zarr.config.get(_PIPELINE) == _ZARRS_PIPELINE


def _default_pipeline() -> str | None:
    """Zarr's own default codec pipeline (from its configuration defaults)."""
    for defaults in getattr(zarr.config, "defaults", []):
        path = (defaults.get("codec_pipeline") or {}).get("path")
        if path:
            return str(path)
    return None


#: Array configuration of the arrays a session writes: no chunk is left out for being all fill
#: value (an all-zero chunk compresses to a few bytes).
WRITE_EVERY_CHUNK: dict[str, Any] = {"write_empty_chunks": True}


def _codecs() -> dict[str, Any]:
    # As MyoGestic writes them, plus zstd's content checksum (a flag in each frame, which any
    # zstd reader verifies), so a folder's chunks are verified on every read.
    return {
        "serializer": zarr.codecs.BytesCodec(endian="little"),
        "compressors": [zarr.codecs.ZstdCodec(level=0, checksum=True)],
    }


def create_stream_arrays(
    folder: Path, name: str, info: StreamInfo
) -> tuple[zarr.Array, zarr.Array]:
    """Create the empty sample and timestamp arrays of stream ``name`` in ``folder``.

    Both write every chunk, also one that is all fill value; the sample array is marked so
    (:data:`~labsession.recording._chunks.EVERY_CHUNK_WRITTEN` in its attributes).
    """
    chunk = info.chunk_samples
    data = zarr.create_array(
        store=str(folder / data_array_name(name)),
        shape=(0, info.n_channels),
        chunks=(chunk, info.n_channels),
        dtype=info.dtype,
        fill_value=0,
        zarr_format=3,
        # A copy: Zarr keeps the dict as the array's attributes, changed in place later.
        attributes=copy.deepcopy(EVERY_CHUNK_WRITTEN),
        config=WRITE_EVERY_CHUNK,
        **_codecs(),
    )
    ts = zarr.create_array(
        store=str(folder / timestamps_array_name(name)),
        shape=(0,),
        chunks=(chunk,),
        dtype=np.float64,
        fill_value=np.nan,
        zarr_format=3,
        config=WRITE_EVERY_CHUNK,
        **_codecs(),
    )
    return data, ts


def set_closed_rows(data: zarr.Array, ts: zarr.Array, rows: int | None) -> None:
    """Record in both arrays of a stream that it was closed with ``rows`` rows (None: remove
    the record, before rows are appended again), keeping every other attribute.

    Only attributes change (``{"labsession": {"closed_rows": rows}}``; ``zarr.json`` is
    rewritten atomically, and not at all when nothing changes): Zarr, MyoGestic included, reads
    the arrays as before. labsession's readers refuse a stream whose record says more rows than
    are found (chunks lost from the end), instead of reading a shorter session.
    """
    for array in (data, ts):
        attributes = dict(array.metadata.attributes)
        ours = attributes.get("labsession")
        ours = dict(ours) if isinstance(ours, dict) else {}
        if rows is None:
            if CLOSED_ROWS not in ours:
                continue
            del ours[CLOSED_ROWS]
        elif ours.get(CLOSED_ROWS) == rows:
            continue
        else:
            ours[CLOSED_ROWS] = int(rows)
        if ours:
            attributes["labsession"] = ours
        else:
            attributes.pop("labsession", None)
        array.attrs.put(attributes)


def recorded_closed_rows(data: zarr.Array, ts: zarr.Array) -> int | None:
    """The rows a stream must hold by the record of its clean close (:func:`set_closed_rows`),
    as its readers take it: the rows recorded, or fewer where a ``zarr.json`` declares fewer;
    None if neither array carries a record."""
    found = [closed_rows(array.metadata.attributes) for array in (data, ts)]
    records = [rows for rows in found if rows is not None]
    return min(data.shape[0], ts.shape[0], *records) if records else None


def open_stream_arrays(
    name: str, *, store: Any = None, folder: Path | None = None, prefix: str = "", mode: str = "r"
) -> tuple[zarr.Array, zarr.Array]:
    """Open stream ``name``'s arrays from a folder or from an open store (zip) under ``prefix``."""
    if folder is not None:
        data = zarr.open_array(str(folder / data_array_name(name)), mode=mode)
        ts = zarr.open_array(str(folder / timestamps_array_name(name)), mode=mode)
    else:
        data = zarr.open_array(store=store, path=prefix + data_array_name(name), mode=mode)
        ts = zarr.open_array(store=store, path=prefix + timestamps_array_name(name), mode=mode)
    return data, ts


def valid_length(data: zarr.Array, ts: zarr.Array) -> int:
    """Number of leading samples present in both arrays with a finite timestamp.

    Equal to both lengths for a session closed normally; shorter after a crash mid-write.
    Bounded by the timestamp chunks that exist (a folder listing or the archive's directory),
    reading only the last of them (back to the last one holding a finite timestamp); see
    :func:`labsession.recording._chunks.valid_rows`.
    """
    store, path = data.store_path.store, data.store_path.path
    # The session: the zip, or the folder holding the array's folder.
    root = Path(getattr(store, "path", None) or getattr(store, "root", "."))
    where = str(root if path or not root.name.endswith(".zarr") else root.parent)
    stream = Path(path or root.name).name.removesuffix(".zarr")
    indexes: dict = {}
    return valid_rows(
        ArrayChunks.open(data, where=where, stream=stream, zip_indexes=indexes),
        ArrayChunks.open(ts, where=where, stream=stream, zip_indexes=indexes),
    )
