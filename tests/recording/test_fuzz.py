"""Fuzzing the readers of a session: damaged files give SessionError only, fast, unchanged.

Two small sessions (streams ``emg`` and ``glove``, 4 channels each at 100 Hz, 3 s, labelled)
are recorded once, as a folder and as a ``.session.zip``. Each of 500 examples damages a
working copy of one (a changed ``meta.json``, ``labels.json`` or array ``zarr.json``, or
flipped, zeroed, overwritten, inserted or cut bytes of any file of the folder or of the
archive) and runs the readers on it: ``open_session_store`` with ``n_samples`` and
``get_continuous`` of every stream, ``labsession info`` (the command's function through typer;
every 4th example renders the tables, the others ``--json``), ``iter_labeled_windows`` or
``iter_aligned_windows`` (taking turns; each consumed) and ``ReplaySource`` (connect, three
reads that wrap around the recording, close). The contract checked for each example:

- the only exceptions are :class:`SessionError`, and the ``ValueError`` the window iterators
  and ``ReplaySource`` document for a session that lacks the stream or labels asked for;
- ``labsession info`` exits 0, or non-zero with one line ``error: ...`` and no traceback;
- the readers use under 1 s of CPU time (the contract, whatever else runs on the machine),
  and under 3 s of wall time (1 s plus slack for a machine shared with other test runs);
- every file is byte for byte as before.

Hypothesis runs derandomized (the "ci" profile) without shrinking: a hang is reported as
found, not re-run while shrinking.
"""

import functools
import hashlib
import io
import itertools
import json
import shutil
import threading
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import typer
from hypothesis import Phase, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from labsession.cli import info as info_cli
from labsession.cli._errors import LabsessionGroup
from labsession.errors import SessionError
from labsession.recording import iter_aligned_windows, iter_labeled_windows, open_session_store
from labsession.recording._schema import NUMERIC_DTYPES
from labsession.sources import ReplaySource
from labsession.testing import record_synthetic_session

#: CPU seconds the readers may spend on one damaged session (the contract).
CPU_LIMIT_S = 1.0
#: Wall seconds: the contract's 1 s plus slack for a machine shared with other test runs.
WALL_LIMIT_S = 3.0
#: A reader still running after this long is taken as hung (the example fails).
HANG_S = 20.0

#: The ValueErrors documented for a session that lacks what was asked of it (not a bad file).
DOCUMENTED = (
    "no session recorded stream",  # iter_*_windows: the stream is in no session
    "has a label (other than -1)",  # iter_labeled_windows: no labels at all
    "no stream 'emg' to replay",  # ReplaySource.connect
)

FUZZ = settings(
    deadline=None,
    phases=(Phase.explicit, Phase.generate),
    report_multiple_bugs=False,
)
runner = CliRunner()
#: ``labsession info`` alone: the command's own function under the CLI's root group (its error
#: contract), parsed by typer as the CLI does (typer rebuilds the whole CLI on each invoke of
#: the root app, 0.1 s).
info_app = typer.Typer(add_completion=False, cls=LabsessionGroup)
info_app.callback()(lambda: None)
info_app.command("info")(info_cli.info)


# -- the two base sessions ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def bases(tmp_path_factory):
    """``{"folder": Path, "zip": Path}``: the same small session, unpacked and packed."""
    root = tmp_path_factory.mktemp("fuzz-bases")
    kwargs = dict(
        n_channels=4,
        fs=100.0,
        phase_seconds=0.6,
        repeats=1,
        aux_stream=("glove", 4, 100.0),
        chunk=50,
        seed=3,
    )
    folder = record_synthetic_session(root / "folder", pack=False, **kwargs)
    packed = record_synthetic_session(root / "zip", pack=True, **kwargs)
    for base in (folder, packed):
        with open_session_store(base) as store:  # the harness reads the pristine ones whole
            assert store.n_samples("emg") == store.n_samples("glove") == 300
            assert len(store.label_track) == 5
        assert not check_contract(base), f"the pristine session {base} breaks the contract"
    return {"folder": folder, "zip": packed}


class Workspace:
    """One working copy of each base session, reset after each example to the base's bytes.

    Resetting rewrites only what an example changed: copying the folder session afresh (15
    folders) would cost more than reading it.
    """

    def __init__(self, bases: dict[str, Path], root: Path):
        self.folder = root / "folder" / bases["folder"].name
        shutil.copytree(bases["folder"], self.folder)
        self.files = {
            p.relative_to(self.folder): p.read_bytes()
            for p in self.folder.rglob("*")
            if p.is_file()
        }
        self.zip_bytes = bases["zip"].read_bytes()
        self.zip_folder = root / "zip"
        self.zip_folder.mkdir()
        self.zip = self.zip_folder / bases["zip"].name

    def reset(self) -> None:
        present = {p.relative_to(self.folder) for p in self.folder.rglob("*") if p.is_file()}
        for rel in present - self.files.keys():
            (self.folder / rel).unlink()
        for rel, raw in self.files.items():
            file = self.folder / rel
            if rel not in present or file.read_bytes() != raw:
                file.parent.mkdir(parents=True, exist_ok=True)
                file.write_bytes(raw)
        for extra in self.zip_folder.iterdir():
            extra.unlink()


@pytest.fixture(scope="module")
def scratch(bases, tmp_path_factory):
    return Workspace(bases, tmp_path_factory.mktemp("fuzz-work"))


# -- the contract --------------------------------------------------------------------------------
def tree_digest(path: Path) -> str:
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    digest = hashlib.sha256()
    for file in files:
        digest.update(str(file.relative_to(path) if path.is_dir() else file.name).encode())
        digest.update(file.read_bytes())
    return digest.hexdigest()


def _read_store(path):
    with open_session_store(path) as store:
        assert isinstance(store.label_track, list)
        for name in store.stream_names:
            n = store.n_samples(name)
            data, ts = store.get_continuous(name)
            assert data.shape == (n, store.stream_info(name).n_channels)
            assert ts.shape == (n,)


_info_calls, _window_calls = itertools.count(), itertools.count()


def _info_cli(path):
    # Every 4th example renders the tables; the others print JSON (the same reads, 4x faster).
    args = ["info", str(path)] + ([] if next(_info_calls) % 4 == 0 else ["--json"])
    result = runner.invoke(info_app, args, env={"COLUMNS": "120"})
    if result.exit_code == 0:
        assert result.exception is None
        return
    assert isinstance(result.exception, SystemExit), (
        f"labsession info crashed: {result.exception!r}"
    )
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, f"labsession info printed {len(lines)} lines: {result.output!r}"
    assert lines[0].startswith("error: ")
    assert "Traceback" not in result.output


def _windows(path):
    # The two iterators take turns (each costs a third of an example's time).
    if next(_window_calls) % 2:
        with iter_labeled_windows([path], "emg", 0.2, 0.1) as windows:
            for window, ts, _ in windows:
                assert (window.shape[1], ts.shape) == (20, (20,))
    else:
        with iter_aligned_windows([path], "emg", ["glove"], 0.2, 0.1) as windows:
            for window, aligned, _ in windows:
                assert (window.shape[1], set(aligned)) == (20, {"glove"})


def _replay(path):
    source = ReplaySource(path, "emg", speed=0, loop=True)
    try:
        info = source.connect()
        for _ in range(3):  # 450 samples: past the end of a 300-sample recording
            source.step(150)
            data, ts = source.read()
            assert (data.shape, ts.shape) == ((150, info.n_channels), (150,))
    finally:
        source.close()


READERS = (_read_store, _info_cli, _windows, _replay)


def _run_readers(path, problems):
    for reader in READERS:
        try:
            reader(path)
        except SessionError:
            pass
        except ValueError as exc:
            if type(exc) is not ValueError or not any(text in str(exc) for text in DOCUMENTED):
                problems.append(f"{reader.__name__}: {type(exc).__name__}: {exc}")
        except BaseException as exc:  # noqa: BLE001 - reported below, with its type
            text = str(exc).splitlines()[0] if str(exc) else ""  # not pytest's explanation
            problems.append(f"{reader.__name__}: {type(exc).__name__}: {text}")


def check_contract(path: Path) -> list[str]:
    """Run every reader on ``path``; return what broke the contract (empty if nothing)."""
    before = tree_digest(path)
    problems: list[str] = []
    clock = {}

    def work():
        clock["cpu"], clock["wall"] = time.process_time(), time.perf_counter()
        _run_readers(path, problems)
        clock["cpu"] = time.process_time() - clock["cpu"]
        clock["wall"] = time.perf_counter() - clock["wall"]

    worker = threading.Thread(target=work, daemon=True, name="fuzz-readers")
    worker.start()
    worker.join(HANG_S)
    if worker.is_alive():
        return [*problems, f"the readers still run after {HANG_S} s (hung)"]
    if clock["cpu"] >= CPU_LIMIT_S:
        problems.append(f"the readers took {clock['cpu']:.2f} s of CPU (limit {CPU_LIMIT_S} s)")
    if clock["wall"] >= WALL_LIMIT_S:
        problems.append(f"the readers took {clock['wall']:.2f} s (limit {WALL_LIMIT_S} s)")
    if tree_digest(path) != before:
        problems.append("the files changed")
    return problems


def fuzz_example(scratch: Workspace, kind: str, damage) -> None:
    """Damage the working copy of base ``kind`` with ``damage(path)`` (which may return a new
    path), check the contract, reset the copy."""
    try:
        if kind == "folder":
            target = scratch.folder
        else:
            target = scratch.zip
            target.write_bytes(scratch.zip_bytes)
        target = damage(target) or target
        problems = check_contract(target)
        assert not problems, "\n".join(problems)
    finally:
        scratch.reset()


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
def test_fuzz_meta_json(scratch, kind, ops):
    fuzz_example(scratch, kind, lambda t: rewrite_json(t, "meta.json", ops))


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
def test_fuzz_labels_json(scratch, kind, ops):
    fuzz_example(scratch, kind, lambda t: rewrite_json(t, "labels.json", ops))


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
def test_fuzz_zarr_json(scratch, kind, array, ops):
    fuzz_example(scratch, kind, lambda t: rewrite_json(t, f"{array}/zarr.json", ops))


# -- raw bytes -----------------------------------------------------------------------------------
def damage_bytes(raw: bytes, action: str, where: float, length: int, seed: int) -> bytes:
    """Flip, zero, overwrite, cut at, or insert garbage at fraction ``where`` of ``raw``."""
    if not raw:
        return b"\x00" if action == "insert" else raw
    at = min(int(where * len(raw)), len(raw) - 1)
    rng = np.random.default_rng(seed)
    garbage = rng.integers(0, 256, size=length, dtype=np.uint8).tobytes()
    out = bytearray(raw)
    if action == "flip":
        for i in rng.integers(0, len(raw), size=length):
            out[i] ^= 1 << int(rng.integers(0, 8))
        out[at] ^= 0xFF
    elif action == "zero":
        out[at : at + length] = bytes(len(out[at : at + length]))
    elif action == "overwrite":
        out[at : at + length] = garbage[: len(out[at : at + length])]
    elif action == "truncate":
        del out[at:]
    else:
        out[at:at] = garbage
    return bytes(out)


byte_damage = st.tuples(
    st.sampled_from(["flip", "zero", "overwrite", "truncate", "insert"]),
    st.floats(0, 1),
    st.integers(1, 64),
    st.integers(0, 2**32 - 1),
)


@functools.cache
def zip_landmarks(raw: bytes) -> list[float]:
    """Fractions of the archive where its structures start (headers, directory, end record)."""
    spots = [raw.find(sig) for sig in (b"PK\x01\x02", b"PK\x05\x06")]
    with zipfile.ZipFile(io.BytesIO(raw)) as zf:
        spots += [info.header_offset for info in zf.infolist()]
    return sorted({max(0, s) / len(raw) for s in spots})


@settings(FUZZ, max_examples=100)
@given(
    damage=st.lists(byte_damage, min_size=1, max_size=3),
    landmark=st.none() | st.integers(0, 10**6),
    shift=st.integers(0, 60),
)
def test_fuzz_zip_bytes(scratch, damage, landmark, shift):
    marks = zip_landmarks(scratch.zip_bytes)
    size = len(scratch.zip_bytes)

    def corrupt(target: Path):
        raw = target.read_bytes()
        for i, (action, where, length, seed) in enumerate(damage):
            if i == 0 and landmark is not None:  # aim the first at a header
                where = min(1.0, marks[landmark % len(marks)] + shift / size)
            raw = damage_bytes(raw, action, where, length, seed)
        target.write_bytes(raw)

    fuzz_example(scratch, "zip", corrupt)


@settings(FUZZ, max_examples=100)
@given(
    file_index=st.integers(0, 10**6),
    damage=st.lists(byte_damage, min_size=1, max_size=2),
    remove=st.booleans(),
)
def test_fuzz_folder_bytes(scratch, file_index, damage, remove):
    files = sorted(scratch.files)

    def corrupt(target: Path):
        file = target / files[file_index % len(files)]
        if remove and len(damage) == 1 and damage[0][0] == "truncate":
            file.unlink()
            return
        raw = file.read_bytes()
        for action, where, length, seed in damage:
            raw = damage_bytes(raw, action, where, length, seed)
        file.write_bytes(raw)

    fuzz_example(scratch, "folder", corrupt)
