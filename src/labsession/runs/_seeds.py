"""Seeds: fix the global generators and hand out named, reproducible ones.

:func:`fix_seeds` seeds Python's ``random``, NumPy's legacy global state and PyTorch (when it is
installed: at once if imported, otherwise by an import hook the moment the script imports it)
from one integer. :class:`RandomStateManager` derives an independent NumPy
``Generator`` per name from the seed and the name alone (``SeedSequence([seed, *sha256(name)])``),
so ``rng("noise")`` draws the same numbers whatever other names were asked for first, and in
whatever order. :meth:`RandomStateManager.verify` stores a checksum of a named array in the run
folder and compares it with the one an earlier run of the same script, with the same seed and the
same arguments, stored under that name: a run with new arguments records its own reference.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.abc
import importlib.util
import json
import logging
import os
import random as _random
import sys
import threading
from collections.abc import Callable, Mapping
from importlib.machinery import ModuleSpec
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from labsession.core.archive import read_leading_member
from labsession.core.atomic import atomic_write_json
from labsession.errors import ReproducibilityError
from labsession.runs._provenance import to_plain
from labsession.runs._scan import split_archive_name

__all__ = ["CHECKSUM_FILE", "RandomStateManager", "args_fingerprint", "fix_seeds"]

logger = logging.getLogger(__name__)

#: How many earlier runs (newest first) :meth:`RandomStateManager.verify` looks through.
MAX_HISTORY = 200
#: Where a run keeps the checksums of the arrays it verified (relative to the run folder).
CHECKSUM_FILE = "CONFIGS/rng_checksums.json"


def _seed_torch(torch: Any, seed: int) -> None:
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


class _SeedingLoader(importlib.abc.Loader):
    """Runs the real loader, then seeds the freshly imported module."""

    def __init__(self, loader: importlib.abc.Loader, hook: _SeedOnImport) -> None:
        self._loader = loader
        self._hook = hook

    def create_module(self, spec: ModuleSpec) -> ModuleType | None:
        return self._loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        self._loader.exec_module(module)
        _seed_torch(module, self._hook.seed)
        logger.debug("seeded torch on import with %d", self._hook.seed)

    def __getattr__(self, name: str) -> Any:  # get_resource_reader, is_package, ...
        return getattr(self._loader, name)


class _SeedOnImport(importlib.abc.MetaPathFinder):
    """Seeds ``torch`` when it is first imported (importing it costs seconds: not on spec)."""

    def __init__(self, seed: int) -> None:
        self.seed = seed

    def find_spec(
        self, fullname: str, path: Any = None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        if fullname != "torch":
            return None
        with contextlib.suppress(ValueError):
            sys.meta_path.remove(self)  # one shot: the real finders do the work
        spec = importlib.util.find_spec(fullname)
        if spec is not None and spec.loader is not None:
            spec.loader = _SeedingLoader(spec.loader, self)
        return spec


def _seed_torch_when_imported(seed: int) -> None:
    for finder in sys.meta_path:
        if isinstance(finder, _SeedOnImport):
            finder.seed = seed
            return
    sys.meta_path.insert(0, _SeedOnImport(seed))


def fix_seeds(
    seed: int,
    *,
    random: Any = None,
    np_module: Any = None,
    torch: Any = None,
    os_module: Any = None,
) -> list[str]:
    """Seed every global generator this process uses and return the names of those seeded.

    Parameters
    ----------
    seed
        The seed (a non-negative integer).
    random, np_module, torch, os_module
        The modules to seed; ``None`` seeds Python's ``random`` and NumPy anyway, and PyTorch
        when it is imported. An installed PyTorch that is not imported yet is seeded when the
        script imports it (``"torch (on import)"`` in the result), so scripts that never use it
        do not pay its import time. ``os_module`` sets ``PYTHONHASHSEED`` for child processes
        (this interpreter's hash seed is fixed at its start).
    """
    seeded = []
    (random or _random).seed(seed)
    seeded.append("random")
    (np_module or np).random.seed(seed)
    seeded.append("numpy")
    (os_module or os).environ["PYTHONHASHSEED"] = str(seed)
    if torch is None:
        torch = sys.modules.get("torch")
    if torch is not None:
        _seed_torch(torch, seed)
        seeded.append("torch")
    elif importlib.util.find_spec("torch") is not None:
        _seed_torch_when_imported(seed)
        seeded.append("torch (on import)")
    return seeded


def args_fingerprint(args: Mapping[str, Any] | Any) -> str:
    """SHA-256 (hex) of a run's arguments, independent of their order.

    Parameters
    ----------
    args
        A mapping or ``argparse.Namespace``; values are made JSON-ready as in ``CONFIG.json``
        (paths as strings, tuples as lists), so equal arguments give equal fingerprints.

    Examples
    --------
    >>> args_fingerprint({"a": 1, "b": "x"}) == args_fingerprint({"b": "x", "a": 1})
    True
    """
    plain = to_plain(args if isinstance(args, Mapping) else vars(args))
    text = json.dumps(plain, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _checksum(array: Any) -> dict[str, Any]:
    arr = np.ascontiguousarray(np.asarray(array))
    if arr.dtype == object:
        raise TypeError("verify() needs a numeric or string array, not an object array")
    digest = hashlib.sha256()
    digest.update(f"{arr.dtype.str}|{arr.shape}|".encode())
    digest.update(arr.tobytes())
    return {"sha256": digest.hexdigest(), "dtype": arr.dtype.str, "shape": list(arr.shape)}


def _read_checksums(run: Path) -> bytes | None:
    """The bytes of an earlier run's :data:`CHECKSUM_FILE`: from its folder, or from near the
    start of its archive (``CONFIGS/`` sorts before the logs and lower-case names)."""
    if run.is_dir():
        return (run / CHECKSUM_FILE).read_bytes()
    split = split_archive_name(run.name)
    if split is None:
        return None
    return read_leading_member(run, {f"{split[0]}/{CHECKSUM_FILE}", CHECKSUM_FILE})


class RandomStateManager:
    """Named reproducible NumPy generators for one run, plus cross-run checksum verification.

    Parameters
    ----------
    seed
        The run's seed.
    run_dir
        The run folder; :meth:`verify` stores checksums in ``run_dir/CONFIGS/rng_checksums.json``.
        Without it, :meth:`verify` compares within this process only.
    history_dirs
        Earlier run folders or run archives (``<ID>.tar.gz``, read from near their start) to
        compare with, newest first, or a function returning them (called on the first
        :meth:`verify`). :func:`start` passes the successful runs of the same script, archived
        or not; the newest :data:`MAX_HISTORY` are searched.
    args
        The run's arguments (a mapping or ``argparse.Namespace``; :func:`start` passes
        ``CONFIG["ARGS"]``). :meth:`verify` compares only with earlier runs whose arguments had
        the same :func:`args_fingerprint` (and the same seed); ``None`` matches only earlier
        runs that recorded no arguments either.

    Examples
    --------
    >>> rng = RandomStateManager(seed=42)
    >>> a = rng("noise").normal(size=3)
    >>> _ = rng("other").random(10)  # asking for another name first changes nothing
    >>> bool((RandomStateManager(seed=42)("noise").normal(size=3) == a).all())
    True
    """

    def __init__(
        self,
        seed: int = 42,
        *,
        run_dir: str | os.PathLike[str] | None = None,
        history_dirs: list[Path] | Callable[[], list[Path]] | None = None,
        args: Mapping[str, Any] | Any = None,
    ) -> None:
        if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
        self.seed = seed
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self._history = history_dirs
        self.args_sha256 = args_fingerprint(args) if args is not None else None
        self._generators: dict[str, np.random.Generator] = {}
        self._checksums: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"RandomStateManager(seed={self.seed}, names={sorted(self._generators)})"

    def seed_for(self, name: str) -> np.random.SeedSequence:
        """Return the ``SeedSequence`` of ``name``: a function of the seed and the name only."""
        words = np.frombuffer(hashlib.sha256(name.encode("utf-8")).digest(), dtype="<u4")
        return np.random.SeedSequence([self.seed, *(int(w) for w in words)])

    def __call__(self, name: str) -> np.random.Generator:
        """Return the generator named ``name`` (created on first use, then the same object)."""
        if not isinstance(name, str) or not name:
            raise ValueError(f"generator name must be a non-empty string, got {name!r}")
        with self._lock:
            gen = self._generators.get(name)
            if gen is None:
                gen = np.random.Generator(np.random.PCG64(self.seed_for(name)))
                self._generators[name] = gen
            return gen

    get_np_generator = __call__

    def fresh(self, name: str) -> np.random.Generator:
        """Return a new generator for ``name`` at its initial state (the first draws again)."""
        return np.random.Generator(np.random.PCG64(self.seed_for(name)))

    @property
    def checksums(self) -> dict[str, dict[str, Any]]:
        """The checksums recorded by :meth:`verify` in this run, by name."""
        return dict(self._checksums)

    def verify(self, array: Any, name: str) -> bool:
        """Record ``array``'s checksum under ``name`` and compare it with an earlier run's.

        The checksum (SHA-256 of dtype, shape and bytes) is written to the run folder. The
        earlier value comes from the newest earlier run with the same seed and the same
        arguments (see ``args``) that recorded ``name``, or from a previous call in this run.
        Runs with other arguments are not compared: the first run with new arguments records
        the reference for them.

        Returns
        -------
        bool
            True if the array matches, or if nothing was recorded under ``name`` before.

        Raises
        ------
        ReproducibilityError
            If it differs, naming the key, both checksums and the run compared with.
        """
        record = _checksum(array)
        with self._lock:
            previous, source = self._checksums.get(name), "this run"
            if previous is None:
                previous, source = self._lookup_history(name)
            self._checksums[name] = record
            self._save()
        if previous is None:
            logger.debug("verify(%r): first record, %s", name, record["sha256"][:12])
            return True
        if previous["sha256"] != record["sha256"]:
            raise ReproducibilityError(
                f"array {name!r} differs from {source}: sha256 {record['sha256'][:16]} "
                f"(dtype {record['dtype']}, shape {tuple(record['shape'])}) != "
                f"{previous['sha256'][:16]} (dtype {previous['dtype']}, "
                f"shape {tuple(previous['shape'])}); same seed {self.seed}{self._args_note()}"
            )
        logger.info("verify(%r): matches %s", name, source)
        return True

    def _args_note(self) -> str:
        if self.args_sha256 is None:
            return ""
        return f" and arguments (sha256 {self.args_sha256[:12]})"

    def _lookup_history(self, name: str) -> tuple[dict[str, Any] | None, str]:
        if callable(self._history):  # found on first use: listing earlier runs costs a scan
            self._history = self._history()
        for run in (self._history or [])[:MAX_HISTORY]:
            try:
                stored = json.loads(_read_checksums(Path(run)) or b"null")
            except (OSError, ValueError):
                continue
            if not isinstance(stored, dict):
                continue
            if (
                stored.get("seed") == self.seed
                and stored.get("args_sha256") == self.args_sha256
                and name in stored.get("arrays", {})
            ):
                return stored["arrays"][name], str(run)
        return None, ""

    def _save(self) -> None:
        if self.run_dir is None:
            return
        target = self.run_dir / CHECKSUM_FILE
        target.parent.mkdir(parents=True, exist_ok=True)
        record = {"seed": self.seed, "args_sha256": self.args_sha256, "arrays": self._checksums}
        atomic_write_json(target, record, fsync=False)
