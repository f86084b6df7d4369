"""What a session says about itself besides samples and labels: its name and its JSON facts.

MyoGestic's sessions carry, in ``meta.json``, a ``name`` (which also names the packed zip, as a
slug: :func:`~labsession.recording._layout.packed_zip_path`), ``extras`` (JSON facts about the
session, such as a force calibration) and ``control_space`` (what the recorded controls mean).
:func:`check_session_name` checks a name, :func:`encode_facts` turns the facts into JSON values
(NumPy numbers and arrays included), refusing what ``meta.json`` could not hold or what would
make it too large to open.
"""

from __future__ import annotations

import json
import math
import unicodedata
from collections.abc import Mapping
from typing import Any

import numpy as np

from labsession.errors import SessionError
from labsession.recording._schema import META_MAX_BYTES, FieldError, shown

__all__ = ["MAX_FACTS_BYTES", "MAX_NAME_CHARS", "check_session_name", "encode_facts", "json_value"]

#: Longest session name (characters).
MAX_NAME_CHARS = 200
#: Most bytes ``extras`` and ``control_space`` may take as JSON together: a quarter of the
#: ``meta.json`` that readers open, so the streams and the integrity record always fit beside.
MAX_FACTS_BYTES = META_MAX_BYTES // 4
#: Deepest nesting of lists and objects in the facts.
_MAX_DEPTH = 32


def check_session_name(name: object) -> str | None:
    """Return ``name`` if it can name a session: None, or text of at most 200 characters.

    Control characters (a newline, a tab) are refused: the name shows in one-line messages and
    in file listings.

    Raises
    ------
    SessionError
        Naming the value and what a name may be.
    """
    if name is None:
        return None
    ok = isinstance(name, str) and len(name) <= MAX_NAME_CHARS
    if ok:
        try:
            name.encode("utf-8")  # type: ignore[union-attr]
        except UnicodeEncodeError:
            ok = False
    if ok and any(unicodedata.category(c) == "Cc" for c in name):  # type: ignore[union-attr]
        ok = False
    if not ok:
        raise SessionError(
            f"session name must be None or text of at most {MAX_NAME_CHARS} characters without "
            f"control characters, got {shown(name)}"
        )
    return name  # type: ignore[return-value]


def json_value(value: Any, key: str, depth: int = 0) -> Any:
    """``value`` as plain JSON values: None, bool, int, finite float, str, list, dict.

    NumPy scalars become Python numbers and NumPy arrays of numbers nested lists; tuples become
    lists. Raises :class:`~labsession.recording._schema.FieldError` naming the key path
    (``extras.force.offset[1] must be a finite number, got nan``).
    """
    if depth > _MAX_DEPTH:
        raise FieldError(key, f"is nested more than {_MAX_DEPTH} levels deep")
    if isinstance(value, np.generic):
        value = value.item()  # np.float32 -> float, np.str_ -> str, np.datetime64 -> not JSON
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise FieldError(key, f"must be valid Unicode text, got {shown(value)}") from None
        return str(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise FieldError(key, f"must be a finite number (JSON has no NaN), got {value!r}")
        return float(value)
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in "biuf":
            raise FieldError(key, f"must be an array of numbers, got dtype {value.dtype}")
        if value.size > MAX_FACTS_BYTES // 2:
            raise FieldError(key, f"holds {value.size} numbers: too many for meta.json")
        return json_value(value.tolist(), key, depth)
    if isinstance(value, Mapping):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise FieldError(key, f"must have text keys, got the key {shown(k)}")
            out[k] = json_value(v, f"{key}.{k}", depth + 1)
        return out
    if isinstance(value, list | tuple):
        return [json_value(v, f"{key}[{i}]", depth + 1) for i, v in enumerate(value)]
    raise FieldError(
        key,
        "must be JSON: None, a bool, number, text, list, dict with text keys, or a NumPy number "
        f"or array of numbers; got {type(value).__name__} {shown(value)}",
    )


def encode_facts(extras: Mapping[str, Any], control_space: Any) -> tuple[dict[str, Any], Any]:
    """``extras`` and ``control_space`` as JSON values, ready for ``meta.json``.

    Parameters
    ----------
    extras
        A mapping of text keys to JSON-able values (see :func:`json_value`).
    control_space
        Any JSON-able value, or None.

    Returns
    -------
    tuple
        ``(extras, control_space)`` as new plain JSON values.

    Raises
    ------
    SessionError
        Naming the key path and the value (``extras.force.gain must be ...``), or if both take
        more than :data:`MAX_FACTS_BYTES` bytes as JSON.
    """
    try:
        if not isinstance(extras, Mapping):
            raise FieldError("extras", f"must be a dict of JSON facts, got {shown(extras)}")
        encoded = json_value(extras, "extras"), json_value(control_space, "control_space")
    except ValueError as exc:
        raise SessionError(str(exc)) from None
    size = len(json.dumps(encoded))
    if size > MAX_FACTS_BYTES:
        raise SessionError(
            f"extras and control_space take {size} bytes as JSON, more than the "
            f"{MAX_FACTS_BYTES} allowed in meta.json: keep large data in a stream or in a file"
        )
    return encoded
