"""``Session.stores`` / ``ts_stores``: the arrays of a session being recorded, complete on read.

A session's writer thread writes the samples ``append`` queued within about a second, so its Zarr
arrays lag behind what was appended. MyoGestic's code reads ``session.stores[name]`` directly
(its ``append`` writes before returning); :class:`LiveArrays` gives it the same view: reading an
entry first waits until every sample appended so far is on disk. ``append`` never waits for it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, MutableMapping

import zarr

__all__ = ["LiveArrays"]


class LiveArrays(MutableMapping[str, zarr.Array]):
    """``{stream: zarr.Array}`` whose reads hold every sample appended so far.

    Parameters
    ----------
    flush
        Called before an entry is returned: returns once every sample appended is written
        (:meth:`Session.flush`); it raises :class:`~labsession.errors.SessionError` once writing
        has failed, and so does reading an entry then.

    Notes
    -----
    Only ``stores[name]`` (and ``get``, ``values``, ``items``) flush; ``name in stores``,
    ``len`` and iterating over the names do not. Like :meth:`Session.flush`, reading an entry
    must not happen in an error listener (it runs on the writer thread). Samples appended by
    other threads meanwhile may already show in the array; those appended before the read
    always do.
    """

    __slots__ = ("_arrays", "_flush")

    def __init__(self, flush: Callable[[], None]):
        self._arrays: dict[str, zarr.Array] = {}
        self._flush = flush

    def __getitem__(self, name: str) -> zarr.Array:
        array = self._arrays[name]
        self._flush()
        return array

    def peek(self, name: str) -> zarr.Array:
        """The array of stream ``name`` as it is now, without waiting for queued samples."""
        return self._arrays[name]

    def __setitem__(self, name: str, array: zarr.Array) -> None:
        self._arrays[name] = array

    def __delitem__(self, name: str) -> None:
        del self._arrays[name]

    def clear(self) -> None:
        """Forget every array (without flushing)."""
        self._arrays.clear()

    def __contains__(self, name: object) -> bool:
        return name in self._arrays

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._arrays))

    def __len__(self) -> int:
        return len(self._arrays)

    def __repr__(self) -> str:
        return f"LiveArrays({sorted(self._arrays)})"
