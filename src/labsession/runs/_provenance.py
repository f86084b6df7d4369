"""What a run records about itself in ``CONFIGS/``: config, arguments, seed, environment, git.

``CONFIGS/CONFIG.yaml`` and ``CONFIGS/CONFIG.json`` hold the same record: the run's ID, paths,
times and status, the parsed arguments (``ARGS``, also alone in ``args.yaml``/``args.json``), the
seed, the command line, the Python and package versions, the host, and the git commit and dirty
state of the repository holding the script (when it is in one). User settings from
``./config/*.yaml`` are merged in under the upper-cased file stem (``config/PATH.yaml`` ->
``CONFIG["PATH"]``), as the established run tools do.
"""

from __future__ import annotations

import datetime as dt
import getpass
import json
import logging
import os
import platform
import shlex
import socket
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from labsession.core.atomic import atomic_write_text
from labsession.errors import ConfigError

__all__ = ["RunConfig", "collect_environment", "git_state", "load_user_configs", "write_configs"]

logger = logging.getLogger(__name__)

_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
_PACKAGES = ("labsession", "numpy", "scipy", "matplotlib", "pandas", "torch", "sklearn", "zarr")


class RunConfig(dict):
    """The run's ``CONFIG``: a dict whose keys also read as attributes (``CONFIG.ID``).

    Keys set by :func:`start`: ``ID``, ``PID``, ``HOST``, ``FILE``, ``SDIR_OUT``, ``SDIR_RUN``,
    ``START_DATETIME``, ``SEED``, ``ARGS``, ``COMMAND_LINE``, ``PYTHON``, ``PACKAGES``, ``GIT``,
    ``PLOT``, ``STATUS``; :func:`close` adds ``END_DATETIME``, ``RUN_DURATION``, ``EXIT_STATUS``.
    """

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(f"CONFIG has no key {name!r}; keys: {sorted(self)}") from None

    def __setattr__(self, name: str, value: Any) -> None:
        self[name] = value

    def to_dict(self) -> dict[str, Any]:
        """Return the config as JSON-ready plain data (paths and times as strings)."""
        return to_plain(dict(self))


def to_plain(obj: Any) -> Any:
    """Convert paths, times, tuples, NumPy scalars and arrays (as nested lists) and namespaces
    into JSON-ready data."""
    if isinstance(obj, Mapping):
        return {str(k): to_plain(v) for k, v in obj.items() if not str(k).startswith("_")}
    if isinstance(obj, list | tuple | set | frozenset):
        return [to_plain(v) for v in obj]
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if isinstance(obj, dt.datetime | dt.date):
        return obj.isoformat()
    if isinstance(obj, dt.timedelta):
        return obj.total_seconds()
    if obj is None or isinstance(obj, bool | int | float | str):
        return obj
    if hasattr(obj, "tolist") and getattr(obj, "ndim", 0) > 0:  # a NumPy array: its values
        return to_plain(obj.tolist())
    if hasattr(obj, "item") and callable(obj.item):  # NumPy scalar
        return obj.item()
    if hasattr(obj, "__dict__"):  # argparse.Namespace and friends
        return to_plain(vars(obj))
    return repr(obj)


def _find_repo(start: Path) -> Path | None:
    for folder in (start, *start.parents):
        if (folder / ".git").exists():
            return folder
    return None


def git_state(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """Return ``{root, commit, branch, dirty}`` of the git repository holding ``path``, or None.

    ``dirty`` is True when tracked files differ from the commit (untracked files do not count).
    Git errors (no git binary, a broken repository) give ``None`` and a debug message.
    """
    start = Path(path).resolve()
    repo = _find_repo(start if start.is_dir() else start.parent)
    if repo is None:
        return None

    def git(*args: str) -> str:
        done = subprocess.run(
            ["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=20, check=True
        )
        return done.stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        branch = git("rev-parse", "--abbrev-ref", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError) as exc:
        logger.debug("no git state for %s: %s", repo, exc)
        return None
    return {"root": str(repo), "commit": commit, "branch": branch, "dirty": dirty}


def _package_versions() -> dict[str, str]:
    versions = {}
    for name in _PACKAGES:
        module = sys.modules.get(name)
        if module is None and name in ("labsession", "numpy"):
            module = __import__(name)
        if module is not None:
            versions[name] = str(getattr(module, "__version__", "unknown"))
    return versions


def collect_environment(script: str | os.PathLike[str] | None) -> dict[str, Any]:
    """Return the command line, Python, package versions, host and git state of this process."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry in some containers
        user = None
    return {
        "COMMAND_LINE": shlex.join([sys.executable, *sys.argv]),
        "ARGV": list(sys.argv),
        "CWD": os.getcwd(),
        "PYTHON": {
            "version": platform.python_version(),
            "implementation": platform.python_implementation(),
            "executable": sys.executable,
        },
        "PACKAGES": _package_versions(),
        "HOST": socket.gethostname(),
        "PLATFORM": platform.platform(),
        "USER": user,
        "GIT": git_state(script) if script else None,
    }


def load_user_configs(config_dir: str | os.PathLike[str] = "config") -> dict[str, Any]:
    """Load ``config_dir/*.yaml`` as ``{STEM.upper(): content}`` (an empty dict if none).

    Raises
    ------
    ConfigError
        If a file is not valid UTF-8 YAML, or two files give one key (``paths.yaml`` and
        ``PATHS.yaml``), naming the files.
    """
    folder = Path(config_dir)
    if not folder.is_dir():
        return {}
    loaded: dict[str, Any] = {}
    read_from: dict[str, Path] = {}
    for path in sorted(folder.glob("*.yaml")):
        key = path.stem.upper()
        if key in read_from:
            raise ConfigError(f"{read_from[key]} and {path} would both become CONFIG[{key!r}]")
        try:
            loaded[key] = yaml.safe_load(path.read_text(encoding="utf-8"))
        except UnicodeDecodeError as exc:
            raise ConfigError(f"{path}: not UTF-8 text ({exc})") from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML ({exc})") from exc
        read_from[key] = path
    return loaded


def write_configs(config: Mapping[str, Any], configs_dir: str | os.PathLike[str]) -> Path:
    """Write ``CONFIG`` and its ``ARGS`` as YAML and JSON into ``configs_dir`` (atomically)."""
    folder = Path(configs_dir)
    folder.mkdir(parents=True, exist_ok=True)
    plain = to_plain(config)
    args = plain.get("ARGS") or {}
    for stem, data in (("CONFIG", plain), ("args", args)):
        atomic_write_text(folder / f"{stem}.json", json.dumps(data, indent=2) + "\n", fsync=False)
        atomic_write_text(
            folder / f"{stem}.yaml",
            yaml.dump(data, Dumper=_DUMPER, sort_keys=False, allow_unicode=True),
            fsync=False,
        )
    return folder
