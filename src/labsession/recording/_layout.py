"""The on-disk layout of a session folder: names, ``meta.json`` and ``labels.json``.

::

    2026-05-17_14-23-05_3f9a0c1e/
        emg.zarr/  emg_timestamps.zarr/  ...  meta.json  labels.json

The layout, the ``meta.json`` keys and the Zarr codecs are those MyoGestic writes, so either tool
opens the other's sessions.
"""

from __future__ import annotations

import os
import re
import secrets
import stat
import time
import unicodedata
import zipfile
from pathlib import Path
from typing import Any

from labsession._version import __version__
from labsession.core.atomic import atomic_write_json
from labsession.core.paths import file_kind, read_at_most
from labsession.errors import SessionError
from labsession.recording._records import (
    LabelEvent,
    StreamInfo,
    label_columns,
    labels_from_columns,
)
from labsession.recording._schema import (
    LABELS_MAX_JSON_ITEMS,
    MAX_LABELS,
    FieldError,
    check_str,
    check_str_list,
    field_message,
    load_json,
    shown,
)

__all__ = [
    "LABELS_FILE",
    "MAX_STREAM_NAME",
    "META_FILE",
    "SCHEMA_VERSION",
    "ZIP_SUFFIX",
    "build_meta",
    "check_small_file",
    "check_small_member",
    "check_stream_name",
    "data_array_name",
    "new_session_folder",
    "packed_zip_path",
    "parse_labels",
    "parse_meta",
    "read_small_file",
    "read_small_member",
    "session_slug",
    "timestamps_array_name",
    "write_labels",
    "write_meta",
    "zip_prefix",
    "zips_of_folder",
]

META_FILE = "meta.json"
LABELS_FILE = "labels.json"
ZIP_SUFFIX = ".session.zip"
#: ``meta.json`` schema written here (MyoGestic's current one).
SCHEMA_VERSION = 3

#: Longest stream name (its arrays' folder names stay well within a file system's 255 bytes).
MAX_STREAM_NAME = 200

_STREAM_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*\Z")
_TS_SUFFIX = "_timestamps"

#: Longest slug of a session name in its zip's file name.
MAX_SLUG_CHARS = 60
#: A slug: lowercase ASCII letters and digits in runs joined by single ``-``.
_SLUG = r"[a-z0-9]+(?:-[a-z0-9]+)*"
_NOT_SLUG = re.compile(r"[^a-z0-9]+")
#: Longest file name most file systems take (bytes), less what a temporary name adds to it
#: (``.<name>.<8 characters>.tmp``).
_MAX_ZIP_NAME_BYTES = 255 - 14


def check_stream_name(name: str) -> str:
    """Return ``name`` if it can name a stream's arrays on disk, else raise ``ValueError``."""
    if (
        not isinstance(name, str)
        or not _STREAM_NAME.match(name)
        or name.endswith(".zarr")
        or len(name) > MAX_STREAM_NAME
    ):
        raise ValueError(
            f"stream name {shown(name)} is not usable as a file name: use at most "
            f"{MAX_STREAM_NAME} letters, digits, '_', '.' and '-', starting with a letter or digit"
        )
    if name.endswith(_TS_SUFFIX):
        raise ValueError(
            f"stream name {name!r} ends with {_TS_SUFFIX!r}, which would clash with the "
            f"timestamps array of stream {name[: -len(_TS_SUFFIX)]!r}"
        )
    return name


def data_array_name(stream: str) -> str:
    """Folder (or zip prefix) of a stream's sample array."""
    return f"{stream}.zarr"


def timestamps_array_name(stream: str) -> str:
    """Folder (or zip prefix) of a stream's timestamp array."""
    return f"{stream}{_TS_SUFFIX}.zarr"


def new_session_folder(base_path: str | Path) -> Path:
    """Create and return ``base_path/YYYY-MM-DD_HH-MM-SS_<8 hex>`` (never an existing folder)."""
    base = Path(base_path)
    base.mkdir(parents=True, exist_ok=True)
    while True:
        name = f"{time.strftime('%Y-%m-%d_%H-%M-%S')}_{secrets.token_hex(4)}"
        folder = base / name
        try:
            folder.mkdir()
        except FileExistsError:  # pragma: no cover - 1 in 4e9 per second
            continue
        return folder


def session_slug(name: str | None) -> str:
    """The session name as it goes into file names: ``"Pilot 3: Müller"`` -> ``"pilot-3-muller"``.

    Accents are dropped (Unicode NFKD, then ASCII), letters lowered, and every run of other
    characters becomes one ``-``; at most :data:`MAX_SLUG_CHARS` characters, ``""`` for None
    or a name with no letter or digit.
    """
    if not name:
        return ""
    text = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii")
    return _NOT_SLUG.sub("-", text.lower()).strip("-")[:MAX_SLUG_CHARS].rstrip("-")


def packed_zip_path(folder: Path, name: str | None) -> Path:
    """Where session ``folder`` is packed: ``<folder>.session.zip``, or with a named session
    ``<folder>_<slug>.session.zip`` (the slug shortened, or left out, to keep the file name
    within 241 bytes). Either name starts with the folder's, so listings keep time order and
    readers (MyoGestic's included) recognise the ``.session.zip`` suffix.

    Two folders can share a name this way (``X`` named ``backup`` and a folder called
    ``X_backup``): any separator may occur in a folder's name, so only escaping folder names
    would avoid it. A pack therefore never takes the place of a zip that is not an earlier pack
    of its own recording held in full (:func:`~labsession.recording._packed.pack_held_by`): the
    second one is refused, nothing is lost."""
    room = _MAX_ZIP_NAME_BYTES - len(folder.name.encode()) - len(ZIP_SUFFIX) - 1
    slug = session_slug(name)[: max(0, room)].rstrip("-")
    return folder.with_name(
        f"{folder.name}_{slug}{ZIP_SUFFIX}" if slug else folder.name + ZIP_SUFFIX
    )


def folders_of_pack(zip_name: str) -> list[str]:
    """The folder names a zip named ``zip_name`` is named as a pack of (the inverse of
    :func:`packed_zip_path`): ``<folder>.session.zip`` gives ``<folder>``,
    ``<folder>_<slug>.session.zip`` also ``<folder>`` without the slug; ``[]`` for no pack.

    As with :func:`zips_of_folder`, a name alone proves nothing: callers check the content.
    """
    if not zip_name.endswith(ZIP_SUFFIX):
        return []
    stem = zip_name[: -len(ZIP_SUFFIX)]
    names = [stem] if stem else []
    for i, char in enumerate(stem):
        if char == "_" and i and re.fullmatch(_SLUG, stem[i + 1 :]):
            names.append(stem[:i])
    return names


def zips_of_folder(base: Path, folder_name: str) -> list[Path]:
    """The regular files in ``base`` named as packs of folder ``folder_name`` would be
    (``<folder>.session.zip``, ``<folder>_<slug>.session.zip``), the unnamed one first.

    A name alone does not prove a zip holds that folder: a folder named ``run`` and another
    named ``run_2`` give look-alikes. Callers check the content where it matters.
    """
    pattern = re.compile(rf"{re.escape(folder_name)}(_{_SLUG})?{re.escape(ZIP_SUFFIX)}")
    found = []
    try:
        with os.scandir(base) as entries:
            for entry in entries:
                match = pattern.fullmatch(entry.name)
                try:
                    if match and entry.is_file(follow_symlinks=False):
                        found.append((match.group(1) is not None, entry.name))
                except OSError:
                    continue
    except OSError:
        return []
    return [base / name for _, name in sorted(found)]


def build_meta(
    *,
    app_name: str,
    created: str,
    streams: dict[str, StreamInfo],
    class_names: list[str] | None,
    name: str | None = None,
    extras: dict[str, Any] | None = None,
    control_space: Any = None,
) -> dict[str, Any]:
    """Return the ``meta.json`` content (MyoGestic's keys plus the writer's version).

    ``name``, ``extras`` and ``control_space`` (JSON values already) are written when set:
    not None, and for ``extras`` not empty.
    """
    meta: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "app_name": app_name,
        "created": created,
        "streams": {stream: info.to_meta() for stream, info in streams.items()},
        "writer": f"labsession {__version__}",
    }
    if name is not None:
        meta["name"] = name
    if class_names is not None:
        meta["class_names"] = list(class_names)
    if extras:
        meta["extras"] = extras
    if control_space is not None:
        meta["control_space"] = control_space
    return meta


def write_meta(folder: Path, meta: dict[str, Any]) -> None:
    """Write ``meta.json`` atomically."""
    atomic_write_json(folder / META_FILE, meta)


def write_labels(folder: Path, labels: list[LabelEvent]) -> None:
    """Write ``labels.json`` atomically (the list in time order)."""
    atomic_write_json(folder / LABELS_FILE, [event.to_dict() for event in labels])


def parse_meta(raw: bytes | str, *, where: str, name: str = META_FILE) -> dict[str, Any]:
    """Parse and check ``meta.json``: the keys labsession reads, each of its JSON type.

    ============== ===============================================================
    key            value
    ============== ===============================================================
    streams        object ``{stream name: entry}`` (absent: no streams); each name
                   usable as a file name (:func:`check_stream_name`), each entry as
                   :meth:`StreamInfo.from_meta` checks it
    class_names    list of strings, or null/absent (no names)
    app_name       string, or null/absent
    created        string (ISO 8601 as written), or null/absent
    name           string (the session's name), or null/absent
    extras         object ``{key: JSON value}`` (facts about the session), or
                   null/absent
    ============== ===============================================================

    Other keys (``schema_version``, ``writer``, ``control_space``, ``integrity``,
    MyoGestic's ``pose_convention``, ...) are kept as they are, unchecked.

    Parameters
    ----------
    raw
        The file's bytes (at most :data:`~labsession.recording._schema.META_MAX_BYTES`).
    where
        The session (folder or archive), first in every message.
    name
        The file within the session (``meta.json``, or ``<top>/meta.json`` in an archive).

    Returns
    -------
    dict
        The object as found (keys absent stay absent), with ``streams`` as
        ``{name: StreamInfo}`` (``{}`` if absent).

    Raises
    ------
    SessionError
        Naming ``where``, the file, the key and the value found, e.g. ``<session>: meta.json:
        streams.emg.n_channels must be an integer in [1, 65536], got 1e400``.
    """
    try:
        meta = load_json(raw)
    except ValueError as exc:
        raise SessionError(f"{where}: {name} is not valid JSON ({exc})") from None
    try:
        if not isinstance(meta, dict):
            raise FieldError("", f"must be an object, got {shown(meta)}")
        streams = meta.get("streams")
        if streams is not None and not isinstance(streams, dict):
            raise FieldError("streams", f"must be an object {{name: stream}}, got {shown(streams)}")
        meta["streams"] = {
            _stream_key(stream): _stream_entry(stream, entry)
            for stream, entry in (streams or {}).items()
        }
        if meta.get("class_names") is not None:
            check_str_list(meta["class_names"], "class_names")
        for key in ("app_name", "created", "name"):
            if meta.get(key) is not None:
                check_str(meta[key], key)
        extras = meta.get("extras")
        if extras is not None and not isinstance(extras, dict):
            raise FieldError("extras", f"must be an object {{key: value}}, got {shown(extras)}")
    except ValueError as exc:
        raise SessionError(f"{where}: {name}: {exc}") from None
    return meta


def _stream_key(stream: str) -> str:
    try:
        return check_stream_name(stream)
    except ValueError as exc:
        raise FieldError("streams", f"has a bad key: {exc}") from None


def _stream_entry(stream: str, entry: Any) -> StreamInfo:
    try:
        return StreamInfo.from_meta(entry)
    except ValueError as exc:
        raise ValueError(field_message(exc, f"streams.{stream}")) from None


def parse_labels(
    raw: bytes | str | None, *, where: str, name: str = LABELS_FILE
) -> list[LabelEvent]:
    """Parse and check ``labels.json``: a list of ``{"timestamp": float, "class_index": int}``.

    ``None`` (the file is absent) means no labels. Each entry is checked as
    :meth:`LabelEvent.from_dict` says (other keys ignored). The labels are returned in time
    order, sorted stably: labels with equal timestamps keep their order in the file, so the
    later one in the file wins where a segment is cut (a file written by MyoGestic or
    labsession is already in this order).

    At most :data:`~labsession.recording._schema.MAX_LABELS` labels are read, and a file
    holding more than :data:`~labsession.recording._schema.LABELS_MAX_JSON_ITEMS` JSON values
    (counted as its commas and opening brackets) is refused before it is parsed: the largest
    file accepted opens in well under a second.

    Raises
    ------
    SessionError
        Naming ``where``, the file, the entry and the value found, e.g. ``<session>:
        labels.json: [3].class_index must be an integer in [-1, 2147483647], got 1.7``.
    """
    if raw is None:
        return []
    marks = (b",", b"[", b"{") if isinstance(raw, bytes) else (",", "[", "{")
    items = sum(raw.count(mark) for mark in marks)  # type: ignore[arg-type]
    if items > LABELS_MAX_JSON_ITEMS:
        raise SessionError(
            f"{where}: {name} holds {items} JSON values (commas and brackets), more than the "
            f"{LABELS_MAX_JSON_ITEMS} allowed for at most {MAX_LABELS} labels: not parsed"
        )
    try:
        entries = load_json(raw, as_written=False)  # re-parsed as written for a message
    except ValueError as exc:
        raise SessionError(f"{where}: {name} is not valid JSON ({exc})") from None
    if not isinstance(entries, list):
        raise SessionError(
            f"{where}: {name} must be a list of {{timestamp, class_index}} objects, "
            f"got {shown(entries)}"
        )
    if len(entries) > MAX_LABELS:
        raise SessionError(
            f"{where}: {name} holds {len(entries)} labels, more than the {MAX_LABELS} "
            f"labsession reads"
        )
    try:
        stamps, indices = label_columns(entries)
    except ValueError as exc:
        problem = str(exc)
        try:  # again, numbers too large for a float shown as written (1e400, not inf)
            label_columns(load_json(raw))
        except ValueError as as_written:
            problem = str(as_written)
        raise SessionError(f"{where}: {name}: {problem}") from None
    del entries  # before the labels are built: the collector then has less to walk
    return labels_from_columns(stamps, indices)


# -- bounded reads of the small files ------------------------------------------------------------
_OPEN_FLAGS = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC


def _too_big(where: str, shown: str, size: int | str, cap: int) -> SessionError:
    return SessionError(
        f"{where}: {shown} is {size} bytes, more than the {cap} bytes allowed for it: not read"
    )


def _regular(st: os.stat_result, where: str, shown: str, cap: int) -> None:
    if not stat.S_ISREG(st.st_mode):
        raise SessionError(f"{where}: {shown} is {file_kind(st.st_mode)}, not a file")
    if st.st_size > cap:
        raise _too_big(where, shown, st.st_size, cap)


def check_small_file(path: Path, *, cap: int, where: str, shown: str) -> bool:
    """True if ``path`` is a regular file of at most ``cap`` bytes, False if it is absent;
    :class:`SessionError` (naming ``where`` and ``shown``) if it is something else or bigger."""
    try:
        st = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return False
    except OSError as exc:
        raise SessionError(f"{where}: {shown} cannot be read ({exc.strerror})") from None
    _regular(st, where, shown, cap)
    return True


def read_small_file(path: Path, *, cap: int, where: str, shown: str) -> bytes | None:
    """The bytes of ``path`` (None if absent) if it is a regular file of at most ``cap`` bytes.

    A named pipe or device is refused before it is opened (and one swapped in meanwhile opens
    without blocking, then is refused); at most ``cap + 1`` bytes are ever read, so a file
    growing meanwhile cannot fill the memory. Raises :class:`SessionError` naming ``where``
    and ``shown``.
    """
    if not check_small_file(path, cap=cap, where=where, shown=shown):
        return None
    try:
        fd = os.open(path, _OPEN_FLAGS)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise SessionError(f"{where}: {shown} cannot be read ({exc.strerror})") from None
    try:
        st = os.fstat(fd)
        _regular(st, where, shown, cap)
        raw = read_at_most(fd, cap, size=st.st_size)
    except OSError as exc:
        raise SessionError(f"{where}: {shown} cannot be read ({exc.strerror})") from None
    finally:
        os.close(fd)
    if len(raw) > cap:  # grew since the stat
        raise _too_big(where, shown, f"more than {cap}", cap)
    return raw


def check_small_member(
    zf: zipfile.ZipFile, member: str, *, cap: int, where: str, shown: str
) -> zipfile.ZipInfo | None:
    """The entry of ``member`` (None if absent) if it declares at most ``cap`` bytes."""
    try:
        info = zf.getinfo(member)
    except KeyError:
        return None
    if info.file_size > cap:
        raise _too_big(where, shown, info.file_size, cap)
    return info


def read_small_member(
    zf: zipfile.ZipFile, member: str, *, cap: int, where: str, shown: str
) -> bytes | None:
    """The bytes of zip member ``member`` (None if absent), if at most ``cap`` bytes.

    The declared size is checked first (a deflated member of 1 GiB is refused unread) and the
    read is bounded by it: a member whose data expands beyond its declared size fails its
    CRC (``zipfile.BadZipFile``) instead of filling the memory.
    """
    info = check_small_member(zf, member, cap=cap, where=where, shown=shown)
    if info is None:
        return None
    with zf.open(info) as file:
        raw = file.read(cap + 1)
    if len(raw) > cap:  # pragma: no cover - zipfile stops at the declared size
        raise _too_big(where, shown, f"more than {cap}", cap)
    return raw


def zip_prefix(path: Path, names: set[str]) -> str:
    """Where the session sits inside the archive: the root, or one top-level folder."""
    if META_FILE in names:
        return ""
    tops = {n.split("/", 1)[0] for n in names if "/" in n}
    candidates = [t for t in tops if f"{t}/{META_FILE}" in names]
    if len(candidates) == 1:
        return candidates[0] + "/"
    raise SessionError(
        f"{path}: not a session archive: no meta.json at its root or under a single top folder"
    )
