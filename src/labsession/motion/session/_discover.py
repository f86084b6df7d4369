"""Finding a session's recordings, its center recording, and where each one's outputs go."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path

from labsession.errors import ConfigError
from labsession.motion.session._config import SessionConfig

__all__ = [
    "LOG_FORMAT",
    "discover_recordings",
    "recording_dir",
    "recording_log",
    "resolve_center",
]

logger = logging.getLogger(__name__)

#: Format of the per-recording log files.
LOG_FORMAT = "%(asctime)s %(levelname)s %(processName)s %(name)s: %(message)s"


def discover_recordings(config: SessionConfig) -> list[Path]:
    """The files under ``config.root`` matching ``config.pattern``, sorted by path.

    Files inside the session's own output folders and hidden or temporary files are skipped.

    Raises
    ------
    ConfigError
        If nothing matches, or two recordings share a stem (they would share an output folder).
    """
    outputs = (config.output_dir.resolve(), config.final_dir.resolve())
    files = []
    for path in sorted(config.root.glob(config.pattern)):
        resolved = path.resolve()
        if not path.is_file() or path.name.startswith("."):
            continue
        if any(resolved.is_relative_to(out) for out in outputs):
            continue
        files.append(path)
    if not files:
        raise ConfigError(
            f"pattern {config.pattern!r} matches no recording in root {config.root}; "
            "check root and pattern in the session config"
        )
    stems: dict[str, Path] = {}
    for path in files:
        if path.stem in stems:
            raise ConfigError(
                f"recordings {stems[path.stem].name} and {path.name} share the stem "
                f"{path.stem!r} and would write to the same output folder; narrow 'pattern'"
            )
        stems[path.stem] = path
    return files


def resolve_center(config: SessionConfig, files: list[Path]) -> tuple[int, Path]:
    """Index and path of the center recording among ``files`` (sorted).

    ``config.center`` names it relative to ``root``; otherwise the middle file is taken,
    index ``ceil(n / 2) - 1`` (the MATLAB scripts' ``ceil(n/2)``, 1-based).

    Raises
    ------
    ConfigError
        If ``center`` is not among the discovered recordings.
    """
    if config.center is None:
        idx = (len(files) + 1) // 2 - 1
        return idx, files[idx]
    wanted = (config.root / config.center).resolve()
    for idx, path in enumerate(files):
        if path.resolve() == wanted:
            return idx, path
    raise ConfigError(
        f"center {config.center!r} is not among the {len(files)} recordings matching "
        f"{config.pattern!r} in {config.root}: {[p.name for p in files]}"
    )


def recording_dir(config: SessionConfig, input_file: Path) -> Path:
    """Output folder ``<output_root>/<stem>/`` of one recording."""
    return config.output_dir / Path(input_file).stem


class _ClosedForGoodFileHandler(logging.FileHandler):
    """A file handler that, once closed, stays closed.

    ``logging.FileHandler`` reopens its file for a record emitted after :meth:`close` (in
    append mode): a record another thread logs while :func:`recording_log` ends would reopen
    the recording's log, leaking the file. Such a record is dropped instead.
    """

    _finished = False

    def close(self) -> None:
        self.acquire()  # emit() runs under this lock (Handler.handle)
        try:
            self._finished = True
        finally:
            self.release()
        super().close()

    def emit(self, record: logging.LogRecord) -> None:
        if not self._finished:
            super().emit(record)


@contextlib.contextmanager
def recording_log(folder: Path, name: str) -> Iterator[Path]:
    """Copy ``labsession`` log records (INFO and above) to ``folder/name`` while inside.

    The file is appended to, so a resumed recording keeps the log of its earlier attempts.
    """
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    handler = _ClosedForGoodFileHandler(path, encoding="utf-8")
    handler.setLevel(logging.INFO)
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    package = logging.getLogger("labsession")
    old_level = package.level
    if package.getEffectiveLevel() > logging.INFO:
        package.setLevel(logging.INFO)
    package.addHandler(handler)
    try:
        yield path
    finally:
        package.removeHandler(handler)
        package.setLevel(old_level)
        handler.close()
