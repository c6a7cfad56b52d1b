"""Whose is an output location: the one decision behind every write and every removal (SPEC §9).

A build, an update or ``--overwrite`` changes or removes only what icecube-cloud wrote: a cube of ours
(its root document says so), or an unfinished build of ours (recognised by its pending record). Anything
else at an output location — a user's folder, another tool's Zarr store, the working directory, a bucket
prefix with objects, a file — is *foreign*: it is refused before a single byte is written there (no lease,
no bookkeeping folder), and nothing of it is ever removed. An existing empty folder is used, and kept
when a build fails.

:func:`inspect_output` only reads (one listing and at most two small documents); :func:`remove_ours`
removes exactly the entries an inspection found to be ours.
"""

from __future__ import annotations

import enum
import json
import posixpath
from dataclasses import dataclass
from typing import Any

from icecube_cloud.errors import UsageError
from icecube_cloud.storage import StorageTarget, is_remote
from icecube_cloud.write.journal import (
    JOURNAL_NAMES,
    LEASE_KEY,
    PENDING_KEY,
    PROGRESS_DIR,
    ROOT_DOC,
    VERSION_ATTR,
)

_MAX_REFERENCE_BYTES = 2**30
"""A file larger than this at a ``.json`` output is not read to see whether it is ours."""
_SHOWN = 5
"""Foreign entries named in a refusal."""


class OutputKind(enum.Enum):
    """What an inspection found at an output location."""

    ABSENT = "absent"
    """Nothing: the build creates the location (and removes it again if it fails before writing)."""
    EMPTY = "empty"
    """An existing empty folder: used, and kept as it is if the build fails."""
    CUBE = "cube"
    """A published icecube-cloud cube (complete, or marked as being updated)."""
    UNFINISHED = "unfinished"
    """An unfinished build of ours: a pending record, or only our bookkeeping folder."""
    FOREIGN = "foreign"
    """Anything else: never written into, never removed."""


@dataclass(frozen=True)
class OutputState:
    """The result of :func:`inspect_output`."""

    kind: OutputKind
    """What is there."""
    ours: tuple[str, ...] = ()
    """Top-level entries (relative names) that icecube-cloud wrote."""
    foreign: tuple[str, ...] = ()
    """Top-level entries that are not ours (empty unless :attr:`kind` is ``FOREIGN``)."""
    reason: str = ""
    """Why the location is foreign, in a user's words."""
    pending: dict[str, Any] | None = None
    """The pending record of an unfinished build or update, if any."""
    root: dict[str, Any] | None = None
    """A cube's published root: the group document ``zarr.json``, or a reference file's root
    attributes (read once here, so that callers need not read them again)."""

    @property
    def is_ours(self) -> bool:
        """Whether icecube-cloud may write here (and, with ``--overwrite``, replace what is there)."""
        return self.kind is not OutputKind.FOREIGN


def _name(entry: str) -> str:
    return str(entry).rstrip("/").rsplit("/", 1)[-1]


def _read_json(target: StorageTarget, key: str) -> Any:
    """The JSON document at ``key`` under ``target``; ``None`` when absent or not JSON."""
    try:
        return json.loads(target.fs.cat_file(f"{target.path}/{key}"))
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError, ValueError):
        return None


def _array_names(root: Any) -> set[str]:
    """Top-level names of the arrays a root group document lists in its consolidated metadata."""
    if not isinstance(root, dict):
        return set()
    arrays = (root.get("consolidated_metadata") or {}).get("metadata") or {}
    return {str(key).split("/", 1)[0] for key in arrays}


def _is_our_root(root: Any) -> bool:
    return (
        isinstance(root, dict)
        and root.get("node_type") == "group"
        and VERSION_ATTR in (root.get("attributes") or {})
    )


def _listing(target: StorageTarget) -> list[str] | None:
    """Top-level entry names at ``target`` (``None`` when nothing is there)."""
    fs = target.fs
    try:
        entries = fs.ls(target.path, detail=False, refresh=True)
    except FileNotFoundError:
        return None
    names = sorted({_name(e) for e in entries} - {""})
    if not is_remote(target.url):
        return names
    if names == [_name(target.path)] and fs.isfile(target.path):
        return [""]  # an object at exactly this key: ls lists the object itself
    return names or None


def _foreign(reason: str, names: list[str]) -> OutputState:
    return OutputState(OutputKind.FOREIGN, foreign=tuple(names), reason=reason)


def _bookkeeping_is_ours(target: StorageTarget) -> bool:
    try:
        inner = {
            _name(e)
            for e in target.fs.ls(f"{target.path}/{PROGRESS_DIR}", detail=False, refresh=True)
        }
    except (FileNotFoundError, NotADirectoryError):
        return False
    return inner <= JOURNAL_NAMES


def inspect_output(target: StorageTarget) -> OutputState:
    """Find out, without writing anything, what is at a Zarr cube's output location and whose it is."""
    fs = target.fs
    if not is_remote(target.url) and fs.exists(target.path) and not fs.isdir(target.path):
        return _foreign("is a file, not a folder", [])
    names = _listing(target)
    if names is None:
        return OutputState(OutputKind.ABSENT)
    if names == [""]:
        return _foreign("is an object, not a prefix", [])
    if not names:
        return OutputState(OutputKind.EMPTY)
    root = _read_json(target, ROOT_DOC) if ROOT_DOC in names else None
    if ROOT_DOC in names and not _is_our_root(root):
        return _foreign("is a Zarr store (or a folder) that icecube-cloud did not write", names)
    pending = _read_json(target, PENDING_KEY) if PROGRESS_DIR in names else None
    if PROGRESS_DIR in names and not _bookkeeping_is_ours(target):
        return _foreign("holds an _icecube folder that is not icecube-cloud's", names)
    ours = {ROOT_DOC, PROGRESS_DIR} | _array_names(root)
    if isinstance(pending, dict):
        ours |= _array_names(pending.get("root"))
    else:
        pending = None
    extra = [n for n in names if n not in ours]
    if root is None and pending is None and names != [PROGRESS_DIR]:
        return _foreign("holds files that icecube-cloud did not write", names)
    if extra:
        return _foreign("holds files that are not part of its icecube-cloud cube", extra)
    kind = OutputKind.CUBE if root is not None else OutputKind.UNFINISHED
    return OutputState(kind, ours=tuple(names), pending=pending, root=root)


def inspect_reference_output(target: StorageTarget) -> OutputState:
    """Like :func:`inspect_output`, for a virtual cube's one reference file (``*.json``)."""
    fs = target.fs
    if not fs.exists(target.path):
        return OutputState(OutputKind.ABSENT)
    if fs.isdir(target.path):
        return _foreign("is a folder, not a reference file", [])
    if int(fs.size(target.path) or 0) > _MAX_REFERENCE_BYTES:
        return _foreign("is a file that icecube-cloud did not write", [])
    try:
        doc = json.loads(fs.cat_file(target.path))
        attrs = json.loads(doc["refs"][".zattrs"])
    except (ValueError, KeyError, TypeError):
        attrs = None
    if not isinstance(attrs, dict) or VERSION_ATTR not in attrs:
        return _foreign("is a file that icecube-cloud did not write", [])
    return OutputState(OutputKind.CUBE, ours=(posixpath.basename(target.path),), root=attrs)


def inspect_parquet_output(target: StorageTarget) -> OutputState:
    """Like :func:`inspect_reference_output`, for a Parquet reference store (a ``*.parq`` folder)."""
    fs = target.fs
    if not fs.exists(target.path) or (fs.isdir(target.path) and is_empty(target)):
        return OutputState(OutputKind.ABSENT)
    names = (
        sorted(_name(e) for e in fs.ls(target.path, detail=False)) if fs.isdir(target.path) else []
    )
    try:
        meta = json.loads(fs.cat_file(f"{target.path}/.zmetadata"))["metadata"]
        attrs = meta[".zattrs"]
    except (OSError, ValueError, KeyError, TypeError):
        attrs = None
    if not isinstance(attrs, dict) or VERSION_ATTR not in attrs:
        return _foreign("is not a reference store icecube-cloud wrote", names)
    return OutputState(OutputKind.CUBE, ours=tuple(names), root=attrs)


def is_empty(target: StorageTarget) -> bool:
    """Whether nothing but empty folders is left at ``target``."""
    fs = target.fs
    return not fs.exists(target.path) or not fs.find(target.path)


def refuse_foreign(state: OutputState, url: str) -> None:
    """Raise :class:`UsageError` naming ``url`` (and what is there) unless it is ours to write.

    ``--overwrite`` does not change this: it replaces only a cube of ours.
    """
    if state.is_ours:
        return
    shown = ", ".join(state.foreign[:_SHOWN])
    more = len(state.foreign) - _SHOWN
    listed = f" ({shown}{f' and {more} more' if more > 0 else ''})" if shown else ""
    raise UsageError(
        f"{url} {state.reason}{listed}; icecube-cloud writes only into a new or empty location or "
        "its own cube, and --overwrite replaces only an icecube-cloud cube. Nothing was changed: "
        "choose another output"
    )


def remove_ours(target: StorageTarget, state: OutputState, *, keep_lease: bool = True) -> None:
    """Remove the entries ``state`` found to be ours (and nothing else); keep the lease if asked."""
    fs = target.fs
    for name in state.ours:
        path = f"{target.path}/{name}"
        if name != PROGRESS_DIR:
            if fs.exists(path):
                fs.rm(path, recursive=True)
            continue
        lease_name = _name(LEASE_KEY)
        try:
            inner = fs.ls(path, detail=False, refresh=True)
        except FileNotFoundError:
            continue
        for entry in inner:
            if not (keep_lease and _name(entry) == lease_name):
                fs.rm(str(entry), recursive=True)
        if not keep_lease and not is_remote(target.url) and fs.exists(path):
            fs.rm(path, recursive=True)
