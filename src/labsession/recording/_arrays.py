"""Zarr v3 arrays of a stream: creation with MyoGestic's codecs, opening, and the valid length.

Sample arrays are ``(n_samples, n_channels)`` in the stream's dtype, timestamps ``(n_samples,)``
float64, both chunked by one second and compressed with zstd, exactly as MyoGestic writes them.
The timestamp array's fill value is NaN: a sample slot that was allocated but never written (a
crash between growing the array and writing its chunk) reads as NaN and is cut off by
:func:`valid_length`, so a crashed recording never shows invented samples.
"""

from __future__ import annotations

import logging
import os
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import numpy as np
import zarr
import zarr.codecs

from labsession.recording._layout import data_array_name, timestamps_array_name
from labsession.recording._records import StreamInfo

__all__ = ["create_stream_arrays", "open_stream_arrays", "use_zarrs_if_available", "valid_length"]

log = logging.getLogger(__name__)


def use_zarrs_if_available() -> bool:
    """Switch Zarr to the Rust ``zarrs`` codec pipeline when installed (``labsession[zarrs]``).

    Set ``LABSESSION_ZARRS=0`` to keep zarr-python's own pipeline.
    """
    if os.environ.get("LABSESSION_ZARRS", "1") == "0" or find_spec("zarrs") is None:
        return False
    zarr.config.set({"codec_pipeline.path": "zarrs.ZarrsCodecPipeline"})
    return True


def _codecs() -> dict[str, Any]:
    return {
        "serializer": zarr.codecs.BytesCodec(endian="little"),
        "compressors": [zarr.codecs.ZstdCodec(level=0, checksum=False)],
    }


def create_stream_arrays(
    folder: Path, name: str, info: StreamInfo
) -> tuple[zarr.Array, zarr.Array]:
    """Create the empty sample and timestamp arrays of stream ``name`` in ``folder``."""
    chunk = info.chunk_samples
    data = zarr.create_array(
        store=str(folder / data_array_name(name)),
        shape=(0, info.n_channels),
        chunks=(chunk, info.n_channels),
        dtype=info.dtype,
        fill_value=0,
        zarr_format=3,
        **_codecs(),
    )
    ts = zarr.create_array(
        store=str(folder / timestamps_array_name(name)),
        shape=(0,),
        chunks=(chunk,),
        dtype=np.float64,
        fill_value=np.nan,
        zarr_format=3,
        **_codecs(),
    )
    return data, ts


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
    Reads at most the trailing chunks of the timestamp array.
    """
    n = min(data.shape[0], ts.shape[0])
    chunk = ts.chunks[0]
    while n > 0:
        lo = (n - 1) // chunk * chunk
        finite = np.isfinite(ts[lo:n])
        if finite.all():
            break
        written = np.flatnonzero(finite)
        if written.size:
            n = lo + int(written[-1]) + 1
            break
        n = lo
    return n
