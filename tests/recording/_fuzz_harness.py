"""The harness of the reader fuzz tests (``test_fuzz_json.py``, ``test_fuzz_bytes.py``).

Two small sessions (streams ``emg`` and ``glove``, 4 channels each at 100 Hz, 3 s, labelled)
are recorded once (the ``fuzz_bases`` fixture of ``conftest.py``), as a folder and as a
``.session.zip``. Each example damages a working copy of one (:class:`Workspace`) and runs the
readers on it: ``open_session_store`` with ``n_samples`` and ``get_continuous`` of every
stream, ``labsession info`` (the command's function through typer; every 4th example renders the
tables, the others ``--json``), ``iter_labeled_windows`` or ``iter_aligned_windows`` (taking
turns; each consumed) and ``ReplaySource`` (connect, three reads that wrap around the
recording, close). The contract checked for each example (:func:`check_contract`):

- the only exceptions are :class:`SessionError`, and the ``ValueError`` the window iterators
  and ``ReplaySource`` document for a session that lacks the stream or labels asked for;
- ``labsession info`` exits 0, or non-zero with one line ``error: ...`` and no traceback;
- the readers use under 1 s of CPU time (the contract, whatever else runs on the machine),
  and under 3 s of wall time (1 s plus slack for a machine shared with other test runs);
- every file is byte for byte as before.

Hypothesis runs derandomized (the "ci" profile) without shrinking: a hang is reported as
found, not re-run while shrinking.
"""

import hashlib
import itertools
import shutil
import threading
import time
from pathlib import Path

import typer
from hypothesis import Phase, settings
from typer.testing import CliRunner

from labsession.cli import info as info_cli
from labsession.cli._errors import LabsessionGroup
from labsession.errors import SessionError
from labsession.recording import iter_aligned_windows, iter_labeled_windows, open_session_store
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
def record_bases(root: Path) -> dict[str, Path]:
    """``{"folder": Path, "zip": Path}``: the same small session, unpacked and packed, under
    ``root``; each checked to pass the contract pristine."""
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
                # 20 samples at the recorded 100 Hz; as many as meta.json's rate gives if changed
                assert window.ndim == 2
                assert ts.shape == (window.shape[1],)
    else:
        with iter_aligned_windows([path], "emg", ["glove"], 0.2, 0.1) as windows:
            for window, aligned, _ in windows:
                assert window.ndim == 2
                assert set(aligned) == {"glove"}


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
