"""``icecube-cloud update``: add the acquisitions the catalog has and the cube lacks, in place.

The cube's own stored config is searched again; the new time axis is compared slice by slice with the
cube's. Only slices whose (time, product) changed are written — new acquisitions at the end touch no old
chunk object; a gap filled by a late acquisition rewrites that one slice; an acquisition inserted in the
middle shifts, and so rewrites, the slices after it (chunks are keyed by time index). Running update
again finds nothing to do. Every other object (coordinates, array documents) is written exactly as a
fresh build of the same plan would write it, so an updated cube equals a rebuilt one.

While an update writes, the root document says ``icecube_cloud_status = "updating"`` (``open_cube`` and
``info`` refuse the cube meanwhile; plain readers keep the previous consolidated metadata), and the
update is resumable like a build: rerun it.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np

from icecube_cloud.build import search_and_plan
from icecube_cloud.cluster import connect
from icecube_cloud.config import parse_config
from icecube_cloud.errors import DataError, SelectionError
from icecube_cloud.model import Compression
from icecube_cloud.plan import CubePlan
from icecube_cloud.progress import Progress, resolve_progress
from icecube_cloud.storage import StorageOptions, StorageTarget, is_reference_url, public_url
from icecube_cloud.write.bands import remove_time_slices, submit_pixel_tasks
from icecube_cloud.write.executor import gather_futures, read_source_info
from icecube_cloud.write.journal import ROOT_DOC, STATUS_ATTR, Journal, plan_fingerprint
from icecube_cloud.write.lease import acquire as acquire_lease
from icecube_cloud.write.output import (
    OutputKind,
    inspect_output,
    inspect_reference_output,
    refuse_foreign,
)
from icecube_cloud.write.skeleton import (
    label_vectors_of,
    put_documents,
    skeleton,
    skeleton_documents,
    stored_compression,
)
from icecube_cloud.write.stored import StoredCube, read_metadata, read_stored

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class UpdateResult:
    """What an update changed."""

    url: str
    """The cube."""
    plan: CubePlan
    """The cube's plan now."""
    rewritten: tuple[int, ...]
    """Time indices whose pixels were (re)written; empty when the cube was up to date."""
    added: tuple[str, ...]
    """Product ids new in the cube."""
    chunks_written: int
    """Pixel chunks written."""
    seconds: float
    """Wall time."""


def _slice_keys(plan: CubePlan) -> list[tuple[np.datetime64, str]]:
    return [
        (
            np.datetime64(s.time.replace(tzinfo=None), "ns"),
            s.source.item_id if s.source is not None else "",
        )
        for s in plan.slices
    ]


def update_cube(
    cube_url: str,
    stac_url: str | None = None,
    *,
    storage_options: Mapping[str, Any] | None = None,
    scheduler: str | None = None,
    workers: int | None = None,
    allowed_hrefs: Sequence[str] = (),
    progress: bool | Progress = False,
) -> UpdateResult:
    """Bring a cube up to date with its catalog, writing only what changed.

    Args:
        cube_url: The cube (local path or ``s3://`` URL).
        stac_url: The catalog to search (default: the one the cube was built from).
        storage_options: fsspec options for cube, catalog and sources.
        scheduler: Existing dask scheduler address; ``None`` starts a LocalCluster.
        workers: Local workers (threads in-process for small updates, processes above).
        allowed_hrefs: Extra locations asset hrefs may point to.
        progress: ``True`` for ``tqdm`` bars, or a callback ``progress(stage, done, total)``.

    Raises:
        DataError: ``cube_url`` holds no icecube-cloud cube, or the catalog's products no longer fit it.
    """
    so = StorageOptions.of(storage_options)
    report = resolve_progress(progress)
    if is_reference_url(cube_url):
        return _update_virtual(cube_url, stac_url, so, scheduler, workers, allowed_hrefs, report)
    target = StorageTarget.from_url(cube_url, so)
    root = _our_cube_root(target, cube_url)
    attrs = root.get("attributes", {})
    cfg = parse_config(attrs["icecube_cloud_config"])
    stored = stored_compression(root)
    if cfg.compression is None and stored not in (None, Compression()):
        # keep the codec the cube was built with, should the default have changed since
        cfg = dataclasses.replace(cfg, compression=stored)
    catalog_url = stac_url or str(attrs.get("icecube_cloud_search", {}).get("catalog", ""))
    plan = search_and_plan(catalog_url, cfg, so, allowed_hrefs).plan
    start = time.perf_counter()
    lease = acquire_lease(target)  # before reading: the cube cannot change under this update
    try:
        work = _changes(target, root, plan)
        if work is None:
            log.info("%s is up to date", public_url(target.url))
            return UpdateResult(target.url, plan, (), (), 0, time.perf_counter() - start)
        with connect(scheduler, workers, nbytes=plan.nbytes) as client:  # only when there is work
            return _apply(target, root, plan, work, client, so, report, start)
    finally:
        lease.release()


def _lost_images(url: str) -> SelectionError:
    return SelectionError(
        f"{url}: the catalog no longer has every image of the cube (or its config now selects "
        "others); update only adds acquisitions: rebuild with --overwrite"
    )


def _our_cube_root(target: StorageTarget, url: str) -> dict[str, Any]:
    """The root document of the icecube-cloud cube at ``target``; raise if there is none.

    Raises:
        DataError: Nothing is there, or an unfinished build.
        UsageError: What is there is not an icecube-cloud cube (never written to).
    """
    state = inspect_output(target)
    if state.kind in (OutputKind.ABSENT, OutputKind.EMPTY):
        raise DataError(f"{public_url(url)}: no cube to update (build it first)")
    refuse_foreign(state, public_url(url))
    if state.kind is OutputKind.UNFINISHED:
        raise DataError(
            f"{public_url(url)}: holds an unfinished build, not a cube; rerun the build command "
            "to finish it"
        )
    root = state.root or {}
    if "icecube_cloud_config" not in root.get("attributes", {}):
        raise DataError(f"{public_url(url)}: not an icecube-cloud cube (no stored config)")
    return root


def _update_virtual(
    url: str,
    stac_url: str | None,
    so: StorageOptions,
    scheduler: str | None,
    workers: int | None,
    allowed_hrefs: Sequence[str],
    progress: Progress,
) -> UpdateResult:
    """Update a virtual cube: rewrite its reference file when the catalog selects other products.

    A reference file is rewritten whole (one PUT, or an atomic rename locally); its products are
    re-referenced, which reads their headers only.
    """
    target = StorageTarget.from_url(url, so)
    state = inspect_reference_output(target)
    if state.kind is OutputKind.ABSENT:
        raise DataError(f"{public_url(url)}: no cube to update (build it first)")
    refuse_foreign(state, public_url(url))
    attrs = state.root or {}
    if "icecube_cloud_config" not in attrs:
        raise DataError(f"{public_url(url)}: not an icecube-cloud cube (no stored config)")
    cfg = parse_config(attrs["icecube_cloud_config"])
    catalog_url = stac_url or str(attrs.get("icecube_cloud_search", {}).get("catalog", ""))
    plan = search_and_plan(catalog_url, cfg, so, allowed_hrefs).plan
    start = time.perf_counter()
    old_ids = [str(i) for i in attrs.get("source_items", [])]
    new_ids = [s.source.item_id for s in plan.slices if s.source is not None]
    if new_ids == old_ids:
        log.info("%s is up to date", public_url(url))
        return UpdateResult(target.url, plan, (), (), 0, time.perf_counter() - start)
    if not set(old_ids) <= set(new_ids):
        raise _lost_images(public_url(url))
    from icecube_cloud.write.references import execute_references  # kerchunk, pandas

    with connect(scheduler, workers, nbytes=plan.nbytes) as client:
        result = execute_references(
            plan, url, client=client, storage_options=so, overwrite=True, progress=progress
        )
    return UpdateResult(
        url=target.url,
        plan=plan,
        rewritten=tuple(t for t, s in enumerate(plan.slices) if s.source is not None),
        added=tuple(i for i in new_ids if i not in set(old_ids)),
        chunks_written=result.chunks_written,
        seconds=time.perf_counter() - start,
    )


def _documents(
    plan: CubePlan,
    changed: Sequence[int],
    stored_metadata: Sequence[str],
    client: Any,
    so: StorageOptions,
    progress: Progress,
) -> dict[str, bytes]:
    """The cube's new documents, exactly as a fresh build writes them (rendered in memory).

    Sources of the changed slices are checked first (their metadata is read); the other slices keep
    their stored metadata.
    """
    sources = [s for s in (plan.slices[t].source for t in changed) if s is not None]
    infos = gather_futures(
        client,
        client.map(read_source_info, sources, storage_options=so, pure=False),
        "check",
        progress,
    )
    by_item = {s.item_id: info for s, info in zip(sources, infos, strict=True)}
    metadata_json = [
        "" if s.source is None
        else by_item.get(s.source.item_id, stored_metadata[t]) if t in changed
        else stored_metadata[t]
        for t, s in enumerate(plan.slices)
    ]  # fmt: skip
    return skeleton_documents(skeleton(plan, metadata_json, label_vectors_of(plan, so)))


def _check_same_grid(stored: StoredCube, plan: CubePlan, url: str) -> None:
    """Raise unless the cube and the new plan share their geometry (SAR, or the same map grid).

    A map grid derived from the footprints grows when a new product reaches outside them; the old
    slices would then sit on another grid than the new ones.
    """
    if plan.grid is None and stored.geo_transform is None:
        return
    wanted = None if plan.grid is None else plan.grid.geo_transform_text
    if stored.geo_transform != wanted or stored.dims[1:] != plan.dims:
        raise DataError(
            f"{url}: the cube's grid ({stored.geo_transform or 'SAR geometry'}) differs from the "
            f"one the catalog now gives ({wanted or 'SAR geometry'}); rebuild it with --overwrite, "
            "or give the config a fixed grid.bbox so that new products land on the same grid"
        )


def _check_same_layout(stored: StoredCube, plan: CubePlan, url: str) -> None:
    """The plan writes the cube's own chunks (and shards): update rewrites stored objects whole."""
    old_chunks, old_shards = stored.chunks[1:], (stored.shards or ())[1:] or None
    shards = None if plan.inner_chunks is None else plan.chunks
    if (old_chunks and old_chunks != plan.read_chunks) or old_shards != shards:
        raise DataError(
            f"{url}: the cube's chunks {old_chunks} (shards {old_shards}) differ from the plan's "
            f"{plan.read_chunks} (shards {shards})"
        )


@dataclass(frozen=True)
class _Work:
    """What an update rewrites: the slices that changed, and what it knows of the others."""

    changed: tuple[int, ...]
    added: tuple[str, ...]
    metadata: list[str]
    fingerprint: str
    resuming: bool


def _changes(target: StorageTarget, root: dict[str, Any], plan: CubePlan) -> _Work | None:
    """The slices to rewrite, or ``None`` when the cube is up to date (and not being resumed).

    Raises:
        DataError: The catalog's images no longer fit the cube (geometry, shape, type, chunks).
        SelectionError: The catalog lost images of the cube, or the config now selects others.
    """
    url = public_url(target.url)
    stored = read_stored(target, plan.variable)
    if stored.dims:
        _check_same_grid(stored, plan, url)
    if not stored.dims or stored.shape[1:] != plan.shape or stored.dtype != plan.dtype:
        raise DataError(f"{url}: the catalog's images no longer fit this cube; rebuild it")
    _check_same_layout(stored, plan, url)
    old_keys, new_keys = stored.keys, _slice_keys(plan)
    pending = Journal(target).pending()
    fingerprint = plan_fingerprint(plan)
    resuming = pending is not None and pending.get("fingerprint") == fingerprint
    if not resuming and old_keys == new_keys and root["attributes"].get(STATUS_ATTR) == "complete":
        return None
    if len(new_keys) < len(old_keys) or any(k not in set(new_keys) for k in old_keys if k[1]):
        raise _lost_images(url)
    changed = tuple(t for t, key in enumerate(new_keys) if t >= len(old_keys) or old_keys[t] != key)
    old_ids = {k[1] for k in old_keys}
    added = tuple(k[1] for k in new_keys if k[1] and k[1] not in old_ids)
    metadata = read_metadata(target) + [""] * (len(new_keys) - len(old_keys))
    return _Work(changed, added, metadata, fingerprint, resuming)


def _apply(
    target: StorageTarget,
    root: dict[str, Any],
    plan: CubePlan,
    work: _Work,
    client: Any,
    so: StorageOptions,
    progress: Progress,
    start: float,
) -> UpdateResult:
    """Rewrite the changed slices with the build's band tasks and journal, then commit."""
    changed, journal = work.changed, Journal(target)
    docs = _documents(plan, changed, work.metadata, client, so, progress)
    new_root = docs.pop(ROOT_DOC)
    created = root["attributes"].get("created", datetime.now(UTC).isoformat())
    if not work.resuming:
        journal.begin(new_root, work.fingerprint, created)
        journal.mark_updating(root)
    # Array documents with the new shapes, then the changed slices' chunks: the build's band tasks.
    pixel_vars = [plan.variable] + (["labels"] if plan.labels is not None else [])
    put_documents(target, {f"{name}/zarr.json": docs[f"{name}/zarr.json"] for name in pixel_vars})
    # stale chunks of slices that are gaps now: a gap stores nothing
    remove_time_slices(target, pixel_vars, [t for t in changed if plan.slices[t].source is None])
    done = journal.done() if work.resuming else set()
    futures, n_chunks = submit_pixel_tasks(
        client, plan, target, changed, done, so, work.fingerprint
    )
    gather_futures(client, futures, "write", progress, count_bytes=True)
    # Coordinates and the other documents, then the commit.
    put_documents(target, {k: v for k, v in docs.items() if k.split("/", 1)[0] not in pixel_vars})
    journal.commit(new_root, {"created": created, "updated": datetime.now(UTC).isoformat()})
    return UpdateResult(
        url=target.url,
        plan=plan,
        rewritten=changed,
        added=work.added,
        chunks_written=n_chunks,
        seconds=time.perf_counter() - start,
    )
