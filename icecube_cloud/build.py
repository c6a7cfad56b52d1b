"""Build a cube: catalog search → selection → plan → distributed Zarr write.

This module is the thin orchestration layer; every stage it calls is a pure function or a task of its
own module. The client only plans, writes metadata and commits; workers read sources and write chunks.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

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
from icecube_cloud.plan import CubePlan, SourceRef, make_plan
from icecube_cloud.products import read_product
from icecube_cloud.progress import Progress, no_progress
from icecube_cloud.selection import Acquisition, select
from icecube_cloud.stac.catalogs import ItemCatalog, open_catalog
from icecube_cloud.stac.cube_item import cube_to_item
from icecube_cloud.storage import StorageOptions, StorageTarget
from icecube_cloud.write.zarr_writer import commit, skeleton, write_chunk, write_skeleton

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


def _public_url(url: str) -> str:
    """``url`` without any user:password part (never written into attributes or logs)."""
    parts = urlsplit(url)
    if parts.username or parts.password:
        host = parts.hostname or ""
        netloc = f"{host}:{parts.port}" if parts.port else host
        return urlunsplit(parts._replace(netloc=netloc))
    return url


def _as_config(config: CubeConfig | Mapping[str, Any] | str) -> CubeConfig:
    if isinstance(config, CubeConfig):
        return config
    if isinstance(config, str):
        return load_config(config)
    return parse_config(config)


@dataclass(frozen=True)
class _Planned:
    plan: CubePlan
    sources: list[pystac.Item]
    catalog: ItemCatalog


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
    return _search_and_plan(stac_url, _as_config(config), storage_options, allowed_hrefs).plan


def _search_and_plan(
    stac_url: str,
    cfg: CubeConfig,
    storage_options: Mapping[str, Any] | None,
    allowed_hrefs: Sequence[str] = (),
) -> _Planned:
    params = search_params(cfg)
    catalog = open_catalog(stac_url, storage_options=storage_options)
    items = catalog.search(params)
    if not items:
        raise EmptySelectionError(
            f"{_public_url(stac_url)}: the search found no item "
            f"({json.dumps(params.to_dict(), sort_keys=True)})"
        )
    axis = select([Acquisition.from_item(it) for it in items], cfg)
    attrs = {
        "title": "ICEYE SAR datacube",
        "product_type": "",
        "icecube_cloud_version": icecube_cloud.__version__,
        "icecube_cloud_config": cfg.to_dict(),
        "icecube_cloud_search": {"catalog": _public_url(stac_url), "parameters": params.to_dict()},
        "source_items": [s.item_id for s in axis.slices if s.item_id is not None],
    }
    by_id = {it.id: it for it in items}
    plan = make_plan(by_id, axis, chunks=cfg.chunks, attrs=attrs)
    plan = dataclasses.replace(plan, attrs={**attrs, "product_type": plan.product_level})
    sources = [by_id[s.item_id] for s in axis.slices if s.item_id is not None]
    policy = HrefPolicy.for_catalog(stac_url, allowed_hrefs)
    for s in plan.slices:
        if s.source is not None:
            policy.check(s.source.href, s.source.item_id)
    return _Planned(plan, sources, catalog)


@portable_errors
def read_source_info(
    source: SourceRef, storage_options: Mapping[str, Any] | None = None
) -> tuple[str, tuple[int, int]]:
    """Read a source's full metadata as JSON and its shape (runs on a worker)."""
    meta = read_product(source.href, storage_options=storage_options)
    return json.dumps(dict(meta.metadata), sort_keys=True, default=str), meta.shape


def _gather(
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
    return [f.result() for f in futures]


def execute(
    plan: CubePlan,
    out: str,
    *,
    client: distributed.Client,
    storage_options: Mapping[str, Any] | None = None,
    overwrite: bool = False,
    progress: Progress = no_progress,
) -> BuildResult:
    """Write ``plan`` as a Zarr cube at ``out`` on the cluster of ``client``.

    Raises:
        UsageError: ``out`` exists and ``overwrite`` is false.
        ProductError: A source cannot be read or differs from its catalog entry.
    """
    target = StorageTarget.from_url(out, storage_options)
    if target.exists():
        if not overwrite:
            raise UsageError(f"{out} already exists; pass --overwrite to replace it")
        target.remove()
    start = time.perf_counter()
    so = StorageOptions.of(storage_options)  # never prints secrets, even in worker error logs
    sources = [s.source for s in plan.slices if s.source is not None]
    # 1. Every source is opened once before anything is written: a corrupt file fails the build early.
    infos = _gather(
        client,
        client.map(read_source_info, sources, storage_options=so, pure=False),
        "check",
        progress,
    )
    for src, (_, shape) in zip(sources, infos, strict=True):
        if shape != plan.shape:
            raise ProductError(
                src.href,
                f"image is {shape[0]}x{shape[1]} but item {src.item_id!r} says {plan.shape[0]}x{plan.shape[1]}",
            )
    meta = iter(infos)
    metadata_json = [next(meta)[0] if s.valid else "" for s in plan.slices]
    try:
        root_doc = write_skeleton(skeleton(plan, metadata_json), plan, target)
        futures = [
            client.submit(write_chunk, target, plan.variable, t, w, s.source, so, pure=False)
            for t, s in enumerate(plan.slices)
            if s.source is not None
            for w in plan.windows()
        ]
        written = _gather(client, futures, "write", progress)
        commit(target, root_doc, {"created": datetime.now(UTC).isoformat()})
    except BaseException:
        # Never leave something that looks like a cube: drop the partial output.
        log.warning("build of %s failed; removing the partial output", _public_url(out))
        target.remove()
        raise
    return BuildResult(
        url=target.url,
        plan=plan,
        chunks_written=len(written),
        nbytes=sum(written),
        seconds=time.perf_counter() - start,
    )


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
    """
    planned = _search_and_plan(stac_url, _as_config(config), storage_options, allowed_hrefs)
    progress("plan", 1, 1)
    with connect(scheduler, workers) as client:
        try:
            result = execute(
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
                f"building {_public_url(out)} failed: {type(err).__name__}: {err}"
            ) from err
    if not register:
        return result
    item = cube_to_item(planned.plan, result.url, planned.sources, created=datetime.now(UTC))
    planned.catalog.upsert([item])
    log.info("registered cube %s as item %s in %s", result.url, item.id, _public_url(stac_url))
    return dataclasses.replace(result, item_id=item.id)
