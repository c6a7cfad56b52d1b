"""Build a cube: catalog search → selection → plan → distributed Zarr write.

This module is the thin orchestration layer; every stage it calls is a pure function or a task of its
own module. The client only plans, writes metadata and commits; workers read sources and write chunks.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import distributed
import pystac

import icecube_cloud
from icecube_cloud.cluster import connect
from icecube_cloud.config import CubeConfig, load_config, parse_config, search_params
from icecube_cloud.errors import (
    BuildError,
    EmptySelectionError,
    IcecubeError,
    ProductError,
    UsageError,
    portable_errors,
)
from icecube_cloud.hrefs import HrefPolicy
from icecube_cloud.labels.cube import label_classes, label_vectors, labels_by_product
from icecube_cloud.labels.items import MASK_ASSET
from icecube_cloud.plan import CubePlan, LabelPlan, SourceRef, make_plan
from icecube_cloud.products import read_product
from icecube_cloud.progress import Progress, no_progress
from icecube_cloud.selection import Acquisition, select
from icecube_cloud.stac.catalogs import ItemCatalog, open_catalog
from icecube_cloud.stac.collections import LABEL_COLLECTION_ID
from icecube_cloud.stac.cube_item import cube_to_item
from icecube_cloud.stac.search import SearchParams
from icecube_cloud.storage import StorageOptions, StorageTarget, public_url
from icecube_cloud.write.lease import acquire as acquire_lease
from icecube_cloud.write.output import (
    OutputKind,
    OutputState,
    inspect_output,
    is_empty,
    refuse_foreign,
    remove_ours,
)
from icecube_cloud.write.zarr_writer import (
    PROGRESS_DIR,
    ROOT_DOC,
    commit,
    done_chunks,
    done_key,
    plan_bands,
    put_documents,
    save_pending,
    skeleton,
    skeleton_documents,
    write_band,
    write_label_slice,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BuildResult:
    """What a build wrote."""

    url: str
    """Where the cube is."""
    plan: CubePlan
    """The executed plan."""
    chunks_written: int
    """Pixel chunks written."""
    nbytes: int
    """Uncompressed pixel bytes written."""
    seconds: float
    """Wall time of the build (planning excluded)."""
    item_id: str | None = None
    """Id of the cube's STAC item in the catalog (``None`` when not registered)."""


def _as_config(config: CubeConfig | Mapping[str, Any] | str) -> CubeConfig:
    if isinstance(config, CubeConfig):
        return config
    if isinstance(config, str):
        return load_config(config)
    return parse_config(config)


def _label_plan(catalog: ItemCatalog, labels: str | bool, sources: list[pystac.Item]) -> LabelPlan:
    """The label items of the cube's products, and one class coding for all of them."""
    collection = labels if isinstance(labels, str) else LABEL_COLLECTION_ID
    items = catalog.search(SearchParams(collections=(collection,)))
    by_product = labels_by_product(items)
    # A fixed drawing order (later overwrites earlier): segmentation masks first, vectors on top.
    used = {
        it.id: sorted(
            by_product.get(it.id, []), key=lambda li: (MASK_ASSET not in li.assets, li.id)
        )
        for it in sources
    }
    return LabelPlan(
        collection=collection,
        classes=label_classes([li for lis in used.values() for li in lis]),
        items={
            pid: tuple(li.to_dict(include_self_link=False) for li in lis)
            for pid, lis in used.items()
            if lis
        },
    )


@dataclass(frozen=True)
class Planned:
    """A searched and planned cube, with what registering it needs."""

    plan: CubePlan
    """The plan."""
    sources: list[pystac.Item]
    """The source items, in time order."""
    catalog: ItemCatalog
    """The catalog searched (the cube's item is registered there)."""


def plan_cube(
    stac_url: str,
    config: CubeConfig | Mapping[str, Any] | str,
    *,
    storage_options: Mapping[str, Any] | None = None,
    allowed_hrefs: Sequence[str] = (),
) -> CubePlan:
    """Search the catalog and plan the cube, without reading a pixel.

    Args:
        stac_url: Static catalog location or STAC API root.
        config: A :class:`CubeConfig`, a config mapping, or the path of a config JSON file.
        storage_options: fsspec options for a catalog in object storage.
        allowed_hrefs: Extra locations the catalog's asset hrefs may point to (see
            :class:`icecube_cloud.hrefs.HrefPolicy`).
    """
    return search_and_plan(stac_url, _as_config(config), storage_options, allowed_hrefs).plan


def search_and_plan(
    stac_url: str,
    cfg: CubeConfig,
    storage_options: Mapping[str, Any] | None,
    allowed_hrefs: Sequence[str] = (),
) -> Planned:
    """Search ``stac_url`` with ``cfg``, select, plan, and check every source href against the policy."""
    params = search_params(cfg)
    catalog = open_catalog(stac_url, storage_options=storage_options)
    items = catalog.search(params)
    if not items:
        raise EmptySelectionError(
            f"{public_url(stac_url)}: the search found no item "
            f"({json.dumps(params.to_dict(), sort_keys=True)})"
        )
    axis = select([Acquisition.from_item(it) for it in items], cfg)
    attrs = {
        "title": "ICEYE SAR datacube",
        "product_type": "",
        "icecube_cloud_version": icecube_cloud.__version__,
        "icecube_cloud_config": cfg.to_dict(),
        "icecube_cloud_search": {"catalog": public_url(stac_url), "parameters": params.to_dict()},
        "source_items": [s.item_id for s in axis.slices if s.item_id is not None],
    }
    by_id = {it.id: it for it in items}
    plan = make_plan(by_id, axis, chunks=cfg.chunks, attrs=attrs, compression=cfg.compression)
    plan = dataclasses.replace(plan, attrs={**attrs, "product_type": plan.product_level})
    sources = [by_id[s.item_id] for s in axis.slices if s.item_id is not None]
    if cfg.labels:
        plan = dataclasses.replace(plan, labels=_label_plan(catalog, cfg.labels, sources))
    policy = HrefPolicy.for_catalog(stac_url, allowed_hrefs)
    for s in plan.slices:
        if s.source is not None:
            policy.check(s.source.href, s.source.item_id)
    return Planned(plan, sources, catalog)


@portable_errors
def read_source_info(source: SourceRef, storage_options: Mapping[str, Any] | None = None) -> str:
    """Open a source, check it is the image its item describes, return its full metadata JSON.

    Runs on a worker, once per source, before anything is written (builds, updates, references).

    Raises:
        ProductError: The file cannot be read, or its shape differs from its catalog entry.
    """
    meta = read_product(source.href, storage_options=storage_options, expected=source.format)
    if meta.shape != source.shape:
        raise ProductError(
            source.href,
            f"image is {meta.shape[0]}x{meta.shape[1]} but item {source.item_id!r} says "
            f"{source.shape[0]}x{source.shape[1]}",
        )
    return json.dumps(dict(meta.metadata), sort_keys=True, default=str)


def gather_futures(
    client: distributed.Client,
    futures: list[distributed.Future[Any]],
    stage: str,
    progress: Progress,
) -> list[Any]:
    """Wait for ``futures`` in completion order, reporting progress; the first error stops all."""
    total, done = len(futures), 0
    progress(stage, 0, total)
    try:
        for _ in distributed.as_completed(futures, raise_errors=True):
            done += 1
            progress(stage, done, total)
    except BaseException:
        client.cancel(futures)
        raise
    return list(client.gather(futures))  # one round trip for all results


def plan_fingerprint(plan: CubePlan) -> str:
    """A digest of everything a plan writes: a rerun may resume a build only of the same plan."""
    return hashlib.sha256(json.dumps(plan.to_dict(), sort_keys=True).encode()).hexdigest()


def execute(
    plan: CubePlan,
    out: str,
    *,
    client: distributed.Client,
    storage_options: Mapping[str, Any] | None = None,
    overwrite: bool = False,
    progress: Progress = no_progress,
) -> BuildResult:
    """Write ``plan`` as a Zarr cube at ``out`` on the cluster of ``client``; resume if interrupted.

    ``out`` must be new, an empty folder, or a cube of ours (:mod:`icecube_cloud.write.output`):
    anything else is refused before a byte is written there, ``--overwrite`` or not. The output's
    lease keeps other builds out meanwhile. A rerun of the same plan after a crash, a lost worker or
    Ctrl-C writes only the chunks its progress record lacks, and ends with the same bytes as an
    uninterrupted build. A build that fails before its pending record is written leaves the location
    as it found it.

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
        return _execute(plan, target, client, storage_options, overwrite, progress)
    finally:
        lease.release()
        after = inspect_output(target)
        if after.kind is OutputKind.UNFINISHED and after.pending is None:
            # Failed before its pending record: nothing but our bookkeeping was written here.
            remove_ours(target, after, keep_lease=False)
            if found.kind is not OutputKind.EMPTY and is_empty(target):
                target.remove()  # a folder this build (or the cube it replaced) made


def _execute(
    plan: CubePlan,
    target: StorageTarget,
    client: distributed.Client,
    storage_options: Mapping[str, Any] | None,
    overwrite: bool,
    progress: Progress,
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
    done = done_chunks(target)
    bands = plan_bands(plan)
    todo = [  # one task per band (a chunk row, capped in bytes) without its progress record
        (t, band, s.source)
        for t, s in enumerate(plan.slices)
        if s.source is not None
        for band in bands
        if done_key(t, band) not in done
    ]
    n = len(todo)
    futures = client.map(  # one message to the scheduler for every band, not one per band
        write_band,
        [target] * n,
        [plan.variable] * n,
        [t for t, _, _ in todo],
        [band for _, band, _ in todo],
        [src for _, _, src in todo],
        storage_options=so,
        array_token=fingerprint,
        pure=False,
    )
    if plan.labels is not None:
        label_items = plan.labels.items
        futures += [
            client.submit(
                write_label_slice,
                target,
                t,
                label_items[s.source.item_id],
                plan.shape,
                dict(plan.labels.classes),
                so,
                pure=False,
            )
            for t, s in enumerate(plan.slices)
            if s.source is not None
            and s.source.item_id in label_items
            and f"{PROGRESS_DIR}/done/labels.{t}" not in done
        ]
    try:
        written = gather_futures(client, futures, "write", progress)
    except BaseException:
        # Readers see no cube (the root document is held back); a rerun resumes from here.
        log.warning("build of %s stopped; rerun the same command to resume it", out)
        raise
    commit(target, root_doc, {"created": created})
    return BuildResult(
        url=target.url,
        plan=plan,
        chunks_written=len(written) - len(todo) + sum(len(band) for _, band, _ in todo),
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
    docs = skeleton_documents(skeleton(plan, metadata_json, label_vectors_of(plan, so)), plan)
    root_doc = docs.pop(ROOT_DOC)
    created = datetime.now(UTC).isoformat()
    remove_ours(target, replaced)  # a replaced cube, another plan's build, stale bookkeeping
    save_pending(target, root_doc, fingerprint, created)
    put_documents(target, docs)
    return root_doc, created


def label_vectors_of(
    plan: CubePlan, storage_options: Mapping[str, Any]
) -> list[list[tuple[str, str]]] | None:
    """Per time slice, the vector labels of its product (pixel-coordinate WKT, class)."""
    if plan.labels is None:
        return None
    items = plan.labels.items
    return [
        label_vectors(
            [pystac.Item.from_dict(dict(d)) for d in items.get(s.source.item_id, ())],
            storage_options,
        )
        if s.source is not None
        else []
        for s in plan.slices
    ]


def build_cube(
    stac_url: str,
    config: CubeConfig | Mapping[str, Any] | str,
    out: str,
    *,
    storage_options: Mapping[str, Any] | None = None,
    scheduler: str | None = None,
    workers: int | None = None,
    overwrite: bool = False,
    register: bool = True,
    allowed_hrefs: Sequence[str] = (),
    progress: Progress = no_progress,
    format: Literal["zarr", "kerchunk"] = "zarr",  # issue #5
) -> BuildResult:
    """Search, plan and build a cube in one call (the ``icecube-cloud build`` command).

    Args:
        stac_url: Static catalog location or STAC API root.
        config: A :class:`CubeConfig`, a config mapping, or the path of a config JSON file.
        out: Output location (local path or fsspec URL) of the Zarr cube.
        storage_options: fsspec options for catalog, sources and output.
        scheduler: Existing dask scheduler address; ``None`` starts a LocalCluster.
        workers: Local worker processes (LocalCluster only).
        overwrite: Replace an existing cube at ``out``.
        register: Register the cube as a STAC item (collection ``icecube-cubes``) in the catalog.
        allowed_hrefs: Extra locations the catalog's asset hrefs may point to.
        progress: Progress callback.
        format: ``zarr`` (materialised cube) or ``kerchunk`` (reference JSON at ``out``, no pixel copied).
    """
    planned = search_and_plan(stac_url, _as_config(config), storage_options, allowed_hrefs)
    progress("plan", 1, 1)
    # issue #5: a virtual cube is one kerchunk reference file (icecube_cloud/write/references.py).
    from icecube_cloud.write.references import execute_references  # lazy: it imports this module

    run = execute_references if format == "kerchunk" else execute
    with connect(scheduler, workers) as client:
        try:
            result = run(
                planned.plan,
                out,
                client=client,
                storage_options=storage_options,
                overwrite=overwrite,
                progress=progress,
            )
        except IcecubeError:
            raise
        except Exception as err:
            raise BuildError(
                f"building {public_url(out)} failed: {type(err).__name__}: {err}"
            ) from err
    if not register:
        return result
    item = cube_to_item(planned.plan, result.url, planned.sources, created=datetime.now(UTC))
    planned.catalog.upsert([item])
    log.info("registered cube %s as item %s in %s", result.url, item.id, public_url(stac_url))
    return dataclasses.replace(result, item_id=item.id)
