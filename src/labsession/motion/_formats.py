"""Video file formats: the registry that :func:`open_video` and :class:`VideoWriter` look up.

A format is a name (``"HDF5"``), the suffix it writes, the suffixes it reads, a sink class that
writes it (:class:`~labsession.motion.VideoSink`) and a reader function that opens it. Adding
one is one class and one call, without editing labsession::

    class NpyFolderSink:  # write(frames, start), commit(), abort(); built as NpyFolderSink(spec)
        ...


    register_video_format("NPYDIR", sink=NpyFolderSink, reader=read_npy_folder, suffix=".npyd")

Built in (written suffix first): ``HDF5`` (.h5, .hdf5, .hdf), ``MAT`` v7.3 (.mat), ``TIFF``
(.tif, .tiff), ``NPZ`` (.npz), ``ZARR`` (.zarr folder), and ``NPY`` (.npy, read only).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

from labsession.errors import ConfigError
from labsession.motion import _readers, _sinks
from labsession.motion._readers import VideoReader
from labsession.motion._sinks import SinkSpec, VideoSink

__all__ = [
    "SUFFIXES",
    "ReaderFunction",
    "SinkFactory",
    "VideoFormat",
    "available_video_formats",
    "format_for_path",
    "register_video_format",
    "video_format",
]

#: Builds a sink from a :class:`SinkSpec` (usually the sink class itself).
SinkFactory = Callable[[SinkSpec], VideoSink]
#: ``reader(path, *, dataset_name, channel_idx) -> VideoReader`` for a path of the format.
ReaderFunction = Callable[..., VideoReader]


@dataclasses.dataclass(frozen=True)
class VideoFormat:
    """One registered video format.

    Attributes
    ----------
    name
        Upper-case name, as ``output_format`` and ``VideoWriter(fmt=...)`` take it.
    suffix
        Suffix of the files written (``".h5"``).
    read_suffixes
        Lower-case suffixes opened with :attr:`reader` (the written one first).
    sink
        Writer of the format, or ``None`` for a format only read (NPY).
    reader
        Opener of the format, or ``None`` for a format only written.
    label
        How messages and help name it (``"MAT v7.3"``).
    folder
        The format is a folder (Zarr), not a file.
    """

    name: str
    suffix: str
    read_suffixes: tuple[str, ...]
    sink: SinkFactory | None = None
    reader: ReaderFunction | None = None
    label: str = ""
    folder: bool = False


_FORMATS: dict[str, VideoFormat] = {}
#: The reader table: lower-case suffix -> format.
_BY_SUFFIX: dict[str, VideoFormat] = {}


def _suffix(text: str, name: str) -> str:
    suffix = text.strip().lower()
    if not suffix.startswith(".") or len(suffix) < 2 or "/" in suffix:
        raise ValueError(f"video format {name}: suffix {text!r} must look like '.h5'")
    return suffix


def register_video_format(
    name: str,
    *,
    sink: SinkFactory | None = None,
    reader: ReaderFunction | None = None,
    suffix: str,
    read_suffixes: Sequence[str] = (),
    label: str | None = None,
    folder: bool = False,
    overwrite: bool = False,
) -> VideoFormat:
    """Make a video format available to :class:`VideoWriter` and :func:`open_video`.

    Parameters
    ----------
    name
        Format name (case-insensitive, stored upper-case), e.g. ``"NPYDIR"``.
    sink
        Class (or factory) called with a :class:`SinkSpec`, returning a :class:`VideoSink`;
        ``None`` for a format that is only read.
    reader
        Function ``reader(path, *, dataset_name, channel_idx) -> VideoReader`` (wrap any array-like
        with :class:`VideoReader`); ``None`` for a format that is only written.
    suffix
        Suffix written (and read), e.g. ``".h5"``.
    read_suffixes
        Further suffixes read as this format (``".hdf5"``, ``".hdf"``).
    label
        Name in messages and help (default: ``name``).
    folder
        The format is a folder rather than a file (as Zarr).
    overwrite
        Replace a format of the same name, and take over suffixes other formats read.

    Returns
    -------
    VideoFormat
        The registered format.

    Raises
    ------
    ValueError
        Blank name, neither sink nor reader, a malformed suffix, or a name or suffix already taken
        (without ``overwrite``).
    """
    key = name.strip().upper()
    if not key:
        raise ValueError("video format name is empty; give a name such as 'NPYDIR'")
    if sink is None and reader is None:
        raise ValueError(f"video format {key}: give a sink (to write it), a reader, or both")
    written = _suffix(suffix, key)
    suffixes = tuple(dict.fromkeys([written, *(_suffix(s, key) for s in read_suffixes)]))
    if not overwrite:
        if key in _FORMATS:
            raise ValueError(
                f"video format {key!r} is already registered; pass overwrite=True to replace it"
            )
        taken = {s: _BY_SUFFIX[s].name for s in suffixes if s in _BY_SUFFIX and reader}
        if taken:
            raise ValueError(
                f"video format {key}: suffixes already read as other formats {taken}; "
                "pass overwrite=True to take them over"
            )
    fmt = VideoFormat(key, written, suffixes, sink, reader, label or key, folder)
    old = _FORMATS.pop(key, None)
    if old is not None:
        for s in old.read_suffixes:
            if _BY_SUFFIX.get(s) is old:
                del _BY_SUFFIX[s]
    _FORMATS[key] = fmt
    if reader is not None:
        _BY_SUFFIX.update(dict.fromkeys(suffixes, fmt))
    return fmt


def available_video_formats(*, readable: bool = False) -> list[str]:
    """Names of the formats that can be written (``readable=True``: read), in registration order."""
    return [f.name for f in _FORMATS.values() if (f.reader if readable else f.sink) is not None]


def video_format(name: str) -> VideoFormat:
    """The format registered as ``name`` (case-insensitive).

    Raises
    ------
    ConfigError
        If no format of that name is registered.
    """
    fmt = _FORMATS.get(str(name).strip().upper())
    if fmt is None:
        raise ConfigError(
            f"unknown output format {name!r}; use one of {available_video_formats()} "
            "(add one with labsession.motion.register_video_format)"
        )
    return fmt


def readable_description() -> str:
    """``"TIFF, HDF5, ... or Zarr"``: the formats :func:`open_video` reads, for messages."""
    labels = [f.label for f in _FORMATS.values() if f.reader is not None]
    return ", ".join(labels[:-1]) + f" or {labels[-1]}" if len(labels) > 1 else "".join(labels)


def format_for_path(path: Path, *, required: bool = True) -> VideoFormat | None:
    """The format whose reader opens ``path``, from its suffix (case-insensitive).

    Raises
    ------
    ValueError
        If no registered format reads that suffix (``required=False``: returns None).
    """
    fmt = _BY_SUFFIX.get(path.suffix.lower())
    if fmt is None and required:
        raise ValueError(
            f"{path}: unknown video format {path.suffix.lower()!r}; use "
            f"{', '.join(_BY_SUFFIX)} (add one with labsession.motion.register_video_format)"
        )
    return fmt


class _WrittenSuffixes(Mapping[str, str]):
    """Read-only view: format name -> suffix written, for every writable registered format."""

    def __getitem__(self, name: str) -> str:
        fmt = _FORMATS.get(str(name).upper())
        if fmt is None or fmt.sink is None:
            raise KeyError(name)
        return fmt.suffix

    def __iter__(self) -> Iterator[str]:
        return iter(available_video_formats())

    def __len__(self) -> int:
        return len(available_video_formats())

    def __repr__(self) -> str:
        return repr(dict(self))


#: File suffix written for each output format (a live view of the registry).
SUFFIXES: Mapping[str, str] = _WrittenSuffixes()


register_video_format(
    "HDF5",
    sink=_sinks.HDF5Sink,
    reader=_readers.read_hdf5,
    suffix=".h5",
    read_suffixes=(".hdf5", ".hdf"),
)
register_video_format(
    "TIFF", sink=_sinks.TiffSink, reader=_readers.read_tiff, suffix=".tif", read_suffixes=(".tiff",)
)
register_video_format(
    "MAT", sink=_sinks.MatSink, reader=_readers.read_mat, suffix=".mat", label="MAT v7.3"
)
register_video_format("NPZ", sink=_sinks.NpzSink, reader=_readers.read_npz, suffix=".npz")
register_video_format(
    "ZARR",
    sink=_sinks.ZarrSink,
    reader=_readers.read_zarr,
    suffix=".zarr",
    label="Zarr",
    folder=True,
)
register_video_format("NPY", reader=_readers.read_npy, suffix=".npy")
