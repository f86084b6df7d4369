"""Fuzzing the readers with damaged JSON: ``meta.json``, ``labels.json`` and the arrays'
``zarr.json`` (the contract: ``_fuzz_harness.py``)."""

import json
import zipfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from labsession.recording._schema import NUMERIC_DTYPES

from ._fuzz_harness import FUZZ, fuzz_example

# -- JSON values -----------------------------------------------------------------------------------
#: Raw JSON text no Python value serialises to.
RAW_TOKENS = ["1e400", "-1e400", "1" * 5000, "[" * 3000 + "]" * 3000, '"\\ud800"', "NaN"]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.sampled_from([0, 1, -1, 2, 3, 4, 8, 100, 2**31, 2**63, 65536, 65537, 10**12]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.5, 1.7, 100.0, 1e7, 1e8, 1e308, -0.0]),
    st.text(max_size=6),
    st.sampled_from(["float32", "float64", "int16", "emg", "glove", "", "../x", "a\nb"]),
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=6,
)
#: A value to put in a file: a JSON value, or raw text (index into RAW_TOKENS).
values = st.one_of(json_values, st.integers(0, len(RAW_TOKENS) - 1).map(lambda i: Raw(i)))


class Raw:
    """Stands for ``RAW_TOKENS[index]`` in a structure until it is written."""

    def __init__(self, index: int):
        self.index = index

    def __repr__(self) -> str:
        return f"Raw({RAW_TOKENS[self.index][:20]!r})"


def dump(value) -> str:
    """JSON text of ``value`` with each :class:`Raw` replaced by its raw token."""
    raws: list[str] = []

    def default(obj):
        if isinstance(obj, Raw):
            raws.append(RAW_TOKENS[obj.index])
            return f"@@raw{len(raws) - 1}@@"
        raise TypeError(obj)

    text = json.dumps(value, default=default)
    for i, raw in enumerate(raws):
        text = text.replace(f'"@@raw{i}@@"', raw, 1)
    return text


def apply_ops(doc, ops):
    """Apply ``(action, path, value)`` edits to a JSON document; returns the new document."""
    for action, path, value in ops:
        if action == "replace_all":
            doc = value
            continue
        parent = doc
        for key in path[:-1]:
            parent = parent.get(key) if isinstance(parent, dict) else None
            if parent is None:
                break
        if isinstance(parent, list) and isinstance(path[-1], int) and parent:
            index = path[-1] % len(parent)
            if action == "set":
                parent[index] = value
            else:
                del parent[index]
        elif isinstance(parent, dict):
            if action == "set":
                parent[path[-1]] = value
            else:
                parent.pop(path[-1], None)
    return doc


def edits(paths, plausible):
    """Strategy of lists of edits: set a path to a value (any, or a plausible one), delete it."""
    one = st.one_of(
        st.tuples(st.just("set"), st.sampled_from(paths), values),
        st.tuples(st.just("set"), st.sampled_from(paths), plausible),
        st.tuples(st.just("delete"), st.sampled_from(paths), st.none()),
    )
    whole = st.tuples(st.just("replace_all"), st.just(()), values)
    return st.lists(one, min_size=1, max_size=3) | st.tuples(whole).map(list)


def rewrite_json(target: Path, member: str, ops) -> Path:
    """Edit JSON file ``member`` of a session folder or archive (rewriting the archive)."""
    if target.is_dir():
        file = target / member
        file.write_text(dump(apply_ops(json.loads(file.read_text()), ops)))
        return target
    rewritten = target.with_name("edited.session.zip")
    with zipfile.ZipFile(target) as src, zipfile.ZipFile(rewritten, "w") as dst:
        for info in src.infolist():
            raw = src.read(info)
            if info.filename == member:
                raw = dump(apply_ops(json.loads(raw), ops)).encode()
            dst.writestr(info, raw)
    target.unlink()
    return rewritten


# -- meta.json -----------------------------------------------------------------------------------
META_PATHS = [
    ("streams",),
    ("class_names",),
    ("class_names", 0),
    ("app_name",),
    ("created",),
    ("schema_version",),
    ("extras",),
    ("writer",),
    ("integrity",),
    ("integrity", "emg"),
    *[("streams", s) for s in ("emg", "glove", "eeg", "emg_timestamps", "../x", "a b")],
    *[
        ("streams", s, key)
        for s in ("emg", "glove")
        for key in ("n_channels", "fs", "dtype", "channel_names", "channel_grids", "other")
    ],
]
plausible_meta = st.one_of(
    st.sampled_from([1, 2, 3, 4, 5, 8, 65536, 65537]),
    st.sampled_from([0.001, 1.0, 50.0, 100.0, 1e7, 1e8]),
    st.sampled_from([*sorted(NUMERIC_DTYPES), "<f4", "V8", "object", "str", "complex64"]),
    st.lists(st.sampled_from(["a", "b", "Rest"]), max_size=5),
    st.fixed_dictionaries(
        {"n_channels": st.sampled_from([1, 4, 8]), "fs": st.sampled_from([50.0, 100.0])}
    ),
)


@settings(FUZZ, max_examples=110)
@given(kind=st.sampled_from(["folder", "zip"]), ops=edits(META_PATHS, plausible_meta))
def test_fuzz_meta_json(fuzz_scratch, kind, ops):
    fuzz_example(fuzz_scratch, kind, lambda t: rewrite_json(t, "meta.json", ops))


# -- labels.json ---------------------------------------------------------------------------------
LABEL_PATHS = [
    *[(i,) for i in range(5)],
    *[(i, key) for i in range(5) for key in ("timestamp", "class_index", "note")],
]
plausible_labels = st.one_of(
    st.sampled_from([-2, -1, 0, 1, 2, 3, 99, 2**31 - 1, 2**31]),
    st.sampled_from([-1e308, 0.0, 999.0, 1000.0, 1001.5, 1e9, 1e308]),
    st.fixed_dictionaries(
        {"timestamp": st.sampled_from([0.0, 1001.0, 1e12]), "class_index": st.integers(-1, 5)}
    ),
)


@settings(FUZZ, max_examples=80)
@given(kind=st.sampled_from(["folder", "zip"]), ops=edits(LABEL_PATHS, plausible_labels))
def test_fuzz_labels_json(fuzz_scratch, kind, ops):
    fuzz_example(fuzz_scratch, kind, lambda t: rewrite_json(t, "labels.json", ops))


# -- zarr.json of an array ------------------------------------------------------------------------
ARRAYS = ["emg.zarr", "emg_timestamps.zarr", "glove.zarr", "glove_timestamps.zarr"]
ZARR_PATHS = [
    ("shape",),
    ("shape", 0),
    ("shape", 1),
    ("chunk_grid", "configuration", "chunk_shape"),
    ("chunk_grid", "configuration", "chunk_shape", 0),
    ("chunk_grid", "name"),
    ("data_type",),
    ("fill_value",),
    ("codecs",),
    ("codecs", 0),
    ("codecs", 1),
    ("codecs", 0, "configuration", "endian"),
    ("codecs", 1, "name"),
    ("chunk_key_encoding", "configuration", "separator"),
    ("chunk_key_encoding", "name"),
    ("zarr_format",),
    ("node_type",),
    ("attributes",),
    ("attributes", "labsession"),
    ("attributes", "labsession", "every_chunk_written"),
    ("attributes", "labsession", "closed_rows"),
    ("dimension_names",),
]
sizes = st.sampled_from([0, 1, 2, 4, 8, 99, 100, 299, 300, 301, 1000, 10**5, 10**9, 10**12, -1])
codec_specs = st.sampled_from(
    [
        {"name": "bytes", "configuration": {"endian": "big"}},
        {"name": "bytes"},
        {"name": "zstd", "configuration": {"level": 0, "checksum": True}},
        {"name": "gzip", "configuration": {"level": 1}},
        {"name": "crc32c"},
        {"name": "transpose", "configuration": {"order": [1, 0]}},
        {"name": "blosc", "configuration": {"cname": "lz4", "clevel": 1, "shuffle": "shuffle"}},
        {"name": "no-such-codec"},
    ]
)
plausible_zarr = st.one_of(
    st.lists(sizes, min_size=0, max_size=3),
    sizes,
    st.sampled_from(
        ["float32", "float64", "int16", "int64", "uint8", "bool", "float16", "complex64"]
    ),
    st.sampled_from(["string", "bytes", "int", "r16", "<f4"]),
    st.sampled_from(["NaN", "Infinity", "-Infinity", "0x7fc00000", 0, 0.5, True, None]),
    st.lists(codec_specs, max_size=3),
    codec_specs,
    st.sampled_from([2, 3, 4, "3", "array", "group", ".", "/", "v2", "default"]),
)


@settings(FUZZ, max_examples=110)
@given(
    kind=st.sampled_from(["folder", "zip"]),
    array=st.sampled_from(ARRAYS),
    ops=edits(ZARR_PATHS, plausible_zarr),
)
def test_fuzz_zarr_json(fuzz_scratch, kind, array, ops):
    fuzz_example(fuzz_scratch, kind, lambda t: rewrite_json(t, f"{array}/zarr.json", ops))
