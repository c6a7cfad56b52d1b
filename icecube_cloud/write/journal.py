"""The write journal: everything a build or an update keeps inside its cube while it runs.

A cube's bookkeeping lives under ``_icecube/`` (Zarr readers ignore it), and this module is the only
one that spells its keys:

* ``_icecube/pending.json``: an unfinished build or update — its held-back root document and the
  fingerprint of the plan it executes (a rerun resumes only the same plan);
* ``_icecube/done/…``: one empty marker per finished task (a band of one image, or a label slice),
  written only after the task's chunks are stored, so "recorded" implies "written";
* ``_icecube/lease.json``: the one-writer lease (:mod:`icecube_cloud.write.lease`).

The root group document ``zarr.json``, marked ``icecube_cloud_status = "complete"``, is the commit
point; committing drops the pending record and the markers.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import posixpath
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from icecube_cloud.storage import StorageTarget, is_remote

if TYPE_CHECKING:
    from icecube_cloud.model import Window
    from icecube_cloud.plan import CubePlan

log = logging.getLogger(__name__)

ROOT_DOC = "zarr.json"
"""The root group document: its absence hides an unfinished cube from readers."""
STATUS_ATTR = "icecube_cloud_status"
"""Root attribute: ``complete`` once every chunk is written, ``updating`` while an update runs."""
VERSION_ATTR = "icecube_cloud_version"
"""Root attribute every cube of ours carries (materialised and virtual)."""
PROGRESS_DIR = "_icecube"
"""The journal's folder inside the cube."""
PENDING_KEY = f"{PROGRESS_DIR}/pending.json"
DONE_DIR = f"{PROGRESS_DIR}/done"
LEASE_KEY = f"{PROGRESS_DIR}/lease.json"
JOURNAL_NAMES = frozenset({"lease.json", "pending.json", "done"})
"""Everything a journal folder of ours may hold."""
PARTIAL_SUFFIX = ".partial"
"""zarr's ``LocalStore`` writes each object to ``<key>.<random>.partial`` and then renames it."""


def plan_fingerprint(plan: CubePlan) -> str:
    """A digest of everything a plan writes: a rerun may resume a build only of the same plan."""
    return hashlib.sha256(json.dumps(plan.to_dict(), sort_keys=True).encode()).hexdigest()


def band_key(t: int, windows: Sequence[Window]) -> str:
    """Key of the marker recording that the chunks of ``windows`` at time ``t`` are written.

    One marker per task (a band: a run of chunk windows), named by the rectangle it covers.
    """
    first, last = windows[0], windows[-1]
    return f"{DONE_DIR}/{t}.{first.az0}.{first.rg0}.{last.az1}.{last.rg1}"


def label_key(t: int) -> str:
    """Key of the marker recording that the label raster of time ``t`` is written."""
    return f"{DONE_DIR}/labels.{t}"


def slice_key(t: int) -> str:
    """Key of the marker recording that every chunk of time ``t`` is written (predictions)."""
    return f"{DONE_DIR}/slice.{t}"


@dataclass(frozen=True)
class Journal:
    """The journal of the cube at ``target`` (a small value: workers get it with their tasks)."""

    target: StorageTarget

    def _path(self, key: str) -> str:
        return f"{self.target.path}/{key}"

    def pending(self) -> dict[str, Any] | None:
        """The record of an unfinished build or update, if any."""
        try:
            data: dict[str, Any] = json.loads(self.target.fs.cat_file(self._path(PENDING_KEY)))
        except FileNotFoundError:
            return None
        return data

    def begin(self, root_doc: bytes, fingerprint: str, created: str) -> None:
        """Record an unfinished build: its held-back root document and the plan it executes.

        Written before any array, so that whatever the build writes is recognised as ours.
        """
        body = {"fingerprint": fingerprint, "created": created, "root": json.loads(root_doc)}
        self.target.fs.makedirs(self._path(DONE_DIR), exist_ok=True)  # local folders
        self.target.fs.pipe_file(self._path(PENDING_KEY), json.dumps(body).encode())

    def done(self) -> set[str]:
        """Keys of the tasks recorded as finished (one listing)."""
        fs, prefix = self.target.fs, self._path(DONE_DIR)
        try:
            names = fs.ls(prefix, detail=False, refresh=True) if fs.exists(prefix) else []
        except FileNotFoundError:
            return set()
        return {f"{DONE_DIR}/{str(n).rstrip('/').rsplit('/', 1)[-1]}" for n in names}

    def mark(self, key: str) -> None:
        """Record a finished task (runs on a worker, after the task's chunks are stored)."""
        fs = self.target.fs
        if not is_remote(self.target.url):
            fs.makedirs(posixpath.dirname(self._path(key)), exist_ok=True)
        fs.pipe_file(self._path(key), b"")

    def root(self) -> dict[str, Any]:
        """The published root group document."""
        doc: dict[str, Any] = json.loads(self.target.fs.cat_file(self._path(ROOT_DOC)))
        return doc

    def mark_updating(self, root: Mapping[str, Any]) -> None:
        """Republish ``root`` marked ``updating`` (``open_cube`` refuses the cube meanwhile)."""
        marked = {**root, "attributes": {**root.get("attributes", {}), STATUS_ATTR: "updating"}}
        self.target.fs.pipe_file(self._path(ROOT_DOC), json.dumps(marked, indent=2).encode())

    def sweep_partials(self) -> int:
        """Delete the temporary files of interrupted local writes; returns how many there were.

        A worker killed (SIGKILL, out of memory) between a chunk's write and its rename leaves the
        temporary file behind; the retried task writes the chunk again, so the file is only litter,
        but a resumed or recovered build must end with exactly the objects of an uninterrupted one.
        Object stores have no such files (a PUT is atomic). One directory walk, local cubes only.
        """
        if is_remote(self.target.url):
            return 0
        removed = 0
        for folder, _, names in os.walk(self.target.path):
            for name in names:
                if name.endswith(PARTIAL_SUFFIX):
                    with contextlib.suppress(FileNotFoundError):
                        os.remove(os.path.join(folder, name))
                        removed += 1
        if removed:
            log.info(
                "removed %d temporary files of interrupted writes from %s", removed, self.target.url
            )
        return removed

    def commit(self, root_doc: bytes, attrs: Mapping[str, Any]) -> None:
        """Publish the cube: write the held-back root document marked complete, drop the records.

        The root document already holds the consolidated metadata; litter of interrupted local
        writes is removed first (:meth:`sweep_partials`).
        """
        self.sweep_partials()
        doc = json.loads(root_doc)
        doc.setdefault("attributes", {}).update(dict(attrs))
        doc["attributes"][STATUS_ATTR] = "complete"
        fs = self.target.fs
        fs.pipe_file(self._path(ROOT_DOC), json.dumps(doc, indent=2).encode())
        for key in (DONE_DIR, PENDING_KEY):
            if fs.exists(self._path(key)):
                fs.rm(self._path(key), recursive=True)
