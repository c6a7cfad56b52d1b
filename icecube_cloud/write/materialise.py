"""The Zarr executor: write a plan as a materialised Zarr v3 cube, resumably, on a dask cluster.

Order of writes (SPEC §9): the output is inspected (:mod:`icecube_cloud.write.output`; anything not
ours is refused), every source is checked, the build is recorded as pending in the journal
(:mod:`icecube_cloud.write.journal`), the skeleton (:mod:`icecube_cloud.write.skeleton`) is written
with the root document held back, the band and label tasks (:mod:`icecube_cloud.write.bands`) write
the pixels, and the root document marked complete is the commit. A build that dies before the commit
leaves nothing a reader opens as a cube, and its rerun resumes it.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import distributed

from icecube_cloud.errors import UsageError
from icecube_cloud.plan import CubePlan
from icecube_cloud.progress import Progress, no_progress
from icecube_cloud.read.policy import Readers
from icecube_cloud.storage import StorageOptions, StorageTarget, public_url
from icecube_cloud.write.bands import submit_pixel_tasks
from icecube_cloud.write.executor import BuildResult, gather_futures, read_source_info
from icecube_cloud.write.journal import ROOT_DOC, Journal, plan_fingerprint
from icecube_cloud.write.lease import acquire as acquire_lease
from icecube_cloud.write.output import (
    OutputKind,
    OutputState,
    inspect_output,
    is_empty,
    refuse_foreign,
    remove_ours,
)
from icecube_cloud.write.skeleton import (
    label_vectors_of,
    put_documents,
    skeleton,
    skeleton_documents,
)

log = logging.getLogger(__name__)


def execute(
    plan: CubePlan,
    out: str,
    *,
    client: distributed.Client,
    storage_options: Mapping[str, Any] | None = None,
    overwrite: bool = False,
    progress: Progress = no_progress,
    readers: Readers | None = None,
) -> BuildResult:
    """Write ``plan`` as a Zarr cube at ``out`` on the cluster of ``client``; resume if interrupted.

    ``out`` must be new, an empty folder, or a cube of ours (:mod:`icecube_cloud.write.output`):
    anything else is refused before a byte is written there, ``--overwrite`` or not. The output's
    lease keeps other builds out meanwhile. A rerun of the same plan after a crash, a lost worker or
    Ctrl-C writes only the chunks its progress record lacks, and ends with the same bytes as an
    uninterrupted build. A build that fails before its pending record is written leaves the location
    as it found it. ``readers`` replace the built-in reader classes of their formats
    (:mod:`icecube_cloud.read.policy`); the bytes written are whatever they read.

    Raises:
        UsageError: ``out`` holds something that is not ours, or holds a cube or another plan's
            unfinished build and ``overwrite`` is false.
        LeaseHeldError: Another build is writing ``out``.
        ProductError: A source cannot be read or differs from its catalog entry.
    """
    target = StorageTarget.from_url(out, storage_options)
    found = inspect_output(target)
    refuse_foreign(
        found, public_url(target.url)
    )  # before the lease: nothing is written into foreign data
    if found.kind is OutputKind.CUBE and not overwrite:
        raise UsageError(f"{public_url(out)} already exists; pass --overwrite to replace it")
    lease = acquire_lease(target)
    try:
        result = _execute(plan, target, client, storage_options, overwrite, progress, readers)
    except BaseException:
        lease.release()
        after = inspect_output(target)
        if after.kind is OutputKind.UNFINISHED and after.pending is None:
            # Failed before its pending record: nothing but our bookkeeping was written here.
            remove_ours(target, after, keep_lease=False)
            if found.kind is not OutputKind.EMPTY and is_empty(target):
                target.remove()  # a folder this build (or the cube it replaced) made
        raise
    lease.release()
    return result


def _execute(
    plan: CubePlan,
    target: StorageTarget,
    client: distributed.Client,
    storage_options: Mapping[str, Any] | None,
    overwrite: bool,
    progress: Progress,
    readers: Readers | None,
) -> BuildResult:
    out = public_url(target.url)
    fingerprint = plan_fingerprint(plan)
    state = inspect_output(target)  # again, under the lease
    refuse_foreign(state, out)
    pending = state.pending
    if pending is not None and pending.get("fingerprint") != fingerprint and not overwrite:
        raise UsageError(
            f"{out} holds an unfinished build of a different plan; pass --overwrite to replace it"
        )
    if state.kind is OutputKind.CUBE and not overwrite:
        raise UsageError(f"{out} already exists; pass --overwrite to replace it")
    if pending is not None and pending.get("fingerprint") != fingerprint:
        pending = None
    start = time.perf_counter()
    so = StorageOptions.of(storage_options)  # never prints secrets, even in worker error logs
    if pending is None:
        root_doc, created = _start(plan, target, state, client, so, fingerprint, progress)
    else:
        log.info("resuming the unfinished build of %s", out)
        root_doc, created = json.dumps(pending["root"]).encode(), str(pending["created"])
    journal = Journal(target)
    done = journal.done()
    futures, n_chunks = submit_pixel_tasks(
        client, plan, target, range(len(plan.slices)), done, so, fingerprint, readers
    )
    try:
        written = gather_futures(client, futures, "write", progress, count_bytes=True)
    except BaseException:
        # Readers see no cube (the root document is held back); a rerun resumes from here.
        log.warning("build of %s stopped; rerun the same command to resume it", out)
        raise
    journal.commit(root_doc, {"created": created})
    return BuildResult(
        url=target.url,
        plan=plan,
        chunks_written=n_chunks,
        nbytes=sum(written),
        seconds=time.perf_counter() - start,
    )


def _start(
    plan: CubePlan,
    target: StorageTarget,
    replaced: OutputState,
    client: distributed.Client,
    so: StorageOptions,
    fingerprint: str,
    progress: Progress,
) -> tuple[bytes, str]:
    """Check every source, then record the build as pending and write its skeleton.

    Returns the held-back root document and the creation time. Every source is opened once before
    anything is written, so a corrupt file fails early and a cube being replaced (``replaced``: what
    is ours at the output) is still intact then; the pending record is written before any array, so
    that whatever this build writes is recognised as ours from then on.
    """
    sources = [s.source for s in plan.slices if s.source is not None]
    infos = gather_futures(
        client,
        client.map(read_source_info, sources, storage_options=so, pure=False),
        "check",
        progress,
    )
    meta = iter(infos)
    metadata_json = [next(meta) if s.valid else "" for s in plan.slices]
    docs = skeleton_documents(skeleton(plan, metadata_json, label_vectors_of(plan, so)))
    root_doc = docs.pop(ROOT_DOC)
    created = datetime.now(UTC).isoformat()
    remove_ours(target, replaced)  # a replaced cube, another plan's build, stale bookkeeping
    Journal(target).begin(root_doc, fingerprint, created)
    put_documents(target, docs)
    return root_doc, created
