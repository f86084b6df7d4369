"""Archives: pack a folder into a verified zip or tar, and extract one safely.

Packing (:func:`pack_zip`, :func:`pack_tar`) writes to a temporary file beside the destination,
reads the result back (every member's CRC for zip, every member's size for tar) and compares its
member list with the source folder; only then is the archive renamed into place.

Extraction has one implementation, used by :func:`safe_extract` and the run-session restore
(:func:`staged_extract`): every member is checked before anything is written for it (absolute
paths, ``..``, drive letters, NUL bytes, duplicates, hard links, devices, and symbolic links, or
with ``links=True`` links that resolve out of the folder), the declared sizes are bounded
(:func:`default_max_bytes`), and the members land in a private folder beside the destination that
is renamed into place, or removed on any error. Every file and folder created follows the umask.

The modules: ``_names`` (member and link checks), ``_manifest`` (folder listing, manifests,
removal of what was packed), ``_zip``, ``_tar``, ``_read`` (format detection, strict tar
headers), ``_extract``, ``_compare`` (a folder against a trial restore of its archive, byte for
byte, to finish an interrupted archive or restore).
"""

from __future__ import annotations

from labsession.core.archive._compare import FolderDifference, compare_folders
from labsession.core.archive._extract import (
    MAX_BYTES_FLOOR,
    MAX_EXPANSION,
    default_max_bytes,
    safe_extract,
    staged_extract,
)
from labsession.core.archive._manifest import (
    FolderEntry,
    compare_manifest,
    folder_manifest,
    remove_packed,
    walk_folder,
)
from labsession.core.archive._names import (
    check_link_text,
    check_member_name,
    link_target_inside,
)
from labsession.core.archive._read import read_leading_member
from labsession.core.archive._tar import (
    PACK_IN_MEMORY_BYTES,
    TAR_FORMATS,
    pack_tar,
    tar_manifest,
    tar_mode,
    verify_tar,
)
from labsession.core.archive._zip import pack_zip, verify_zip

__all__ = [
    "MAX_BYTES_FLOOR",
    "MAX_EXPANSION",
    "PACK_IN_MEMORY_BYTES",
    "TAR_FORMATS",
    "FolderDifference",
    "FolderEntry",
    "check_link_text",
    "check_member_name",
    "compare_folders",
    "compare_manifest",
    "default_max_bytes",
    "folder_manifest",
    "link_target_inside",
    "pack_tar",
    "pack_zip",
    "read_leading_member",
    "remove_packed",
    "safe_extract",
    "staged_extract",
    "tar_manifest",
    "tar_mode",
    "verify_tar",
    "verify_zip",
    "walk_folder",
]
