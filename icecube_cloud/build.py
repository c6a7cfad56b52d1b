"""Build a cube: catalog search → selection → plan → distributed Zarr write.

This module is the thin orchestration layer; every stage it calls is a pure function or a task of its
own module. The client only plans, writes metadata and commits; workers read sources and write chunks.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import pystac

import icecube_cloud
from icecube_cloud.cluster import connect
from icecube_cloud.config import CubeConfig, load_config, parse_config, search_params
from icecube_cloud.errors import (
    BuildError,
    EmptySelectionError,
    IcecubeError,
    UsageError,
)
from icecube_cloud.gridspec import slc_on_grid
from icecube_cloud.hrefs import HrefPolicy
from icecube_cloud.labels.items import MASK_ASSET
from icecube_cloud.model import MapGrid
from icecube_cloud.plan import CubePlan, LabelPlan, ParsedItem, make_plan
from icecube_cloud.progress import Progress, resolve_progress
from icecube_cloud.read.policy import Readers
from icecube_cloud.selection import TimeAxis, select
from icecube_cloud.stac.catalogs import ItemCatalog, open_catalog
from icecube_cloud.stac.collections import LABEL_COLLECTION_ID
from icecube_cloud.stac.cube_item import cube_to_item
from icecube_cloud.stac.search import SearchParams
from icecube_cloud.storage import public_url
from icecube_cloud.write.executor import BuildResult, Executor
from icecube_cloud.write.materialise import execute

log = logging.getLogger(__name__)


def _as_config(config: CubeConfig | Mapping[str, Any] | str) -> CubeConfig:
    if isinstance(config, CubeConfig):
        return config
    if isinstance(config, str):
        return load_config(config)
    return parse_config(config)


def _label_plan(catalog: ItemCatalog, labels: str | bool, sources: list[pystac.Item]) -> LabelPlan:
    """The label items of the cube's products, and one class coding for all of them."""
    from icecube_cloud.labels.cube import label_classes, labels_by_product  # cubes with labels

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
    axis = select([ParsedItem.from_item(it) for it in items], cfg)
    level = next(s.acquisition.product_level for s in axis.slices if s.acquisition is not None)
    attrs = {
        "title": "ICEYE SAR datacube",
        "product_type": level,  # make_plan sets it too; here for the attributes' order
        "icecube_cloud_version": icecube_cloud.__version__,
        "icecube_cloud_config": cfg.to_dict(),
        "icecube_cloud_search": {"catalog": public_url(stac_url), "parameters": params.to_dict()},
        "source_items": [s.item_id for s in axis.slices if s.item_id is not None],
    }
    by_id = {it.id: it for it in items}
    sources = [by_id[s.item_id] for s in axis.slices if s.item_id is not None]
    labels = _label_plan(catalog, cfg.labels, sources) if cfg.labels else None
    grid = _map_grid(cfg, axis) if cfg.grid is not None else None
    plan = make_plan(
        axis,
        chunks=cfg.chunks,
        shards=cfg.shards,
        attrs=attrs,
        compression=cfg.compression,
        labels=labels,
        grid=grid,
    )
    policy = HrefPolicy.for_catalog(stac_url, allowed_hrefs)
    for s in plan.slices:
        if s.source is not None:
            policy.check(s.source.href, s.source.item_id)
    return Planned(plan, sources, catalog)


def _map_grid(cfg: CubeConfig, axis: TimeAxis[ParsedItem]) -> MapGrid:
    """The config's grid resolved for the selected images (SPEC §6b).

    Raises:
        ConfigError: The selection is SLC (phase must never be interpolated), or the grid is wrong.
    """
    assert cfg.grid is not None
    used = [s.acquisition for s in axis.slices if s.acquisition is not None]
    if used[0].product_level == "SLC":
        raise slc_on_grid()
    search_area: Mapping[str, Any] | None = cfg.intersects
    if cfg.bbox is not None:
        w, s, e, n = cfg.bbox
        search_area = {"type": "Polygon", "coordinates": [[[w, s], [e, s], [e, n], [w, n], [w, s]]]}
    from icecube_cloud.grid import resolve_grid  # odc-geo: imported by map-geometry cubes only

    return resolve_grid(
        cfg.grid,
        [a.footprint for a in used if a.footprint is not None],
        [a.pixel_spacing for a in used if a.pixel_spacing is not None],
        search_area,
    )


def _executor(format: Literal["zarr", "kerchunk"], readers: Readers | None) -> Executor:
    """The executor of ``format`` (the kerchunk one, which needs pandas, imported only then)."""
    if format == "kerchunk":
        from icecube_cloud.write.references import execute_references

        return execute_references
    return functools.partial(execute, readers=readers)


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
    progress: bool | Progress = False,
    format: Literal["zarr", "kerchunk"] = "zarr",  # issue #5
    readers: Readers | None = None,
) -> BuildResult:
    """Search, plan and build a cube in one call (the ``icecube-cloud build`` command).

    Args:
        stac_url: Static catalog location or STAC API root.
        config: A :class:`CubeConfig`, a config mapping, or the path of a config JSON file.
        out: Output location (local path or fsspec URL) of the Zarr cube.
        storage_options: fsspec options for catalog, sources and output.
        scheduler: Existing dask scheduler address; ``None`` starts a LocalCluster.
        workers: Local workers (threads of an in-process cluster for builds of at most
            ``cluster.IN_PROCESS_BYTES``, worker processes above; unused with ``scheduler``).
        overwrite: Replace an existing cube at ``out``.
        register: Register the cube as a STAC item (collection ``icecube-cubes``) in the catalog.
        allowed_hrefs: Extra locations the catalog's asset hrefs may point to.
        progress: ``True`` for ``tqdm`` bars, or a callback ``progress(stage, done, total)``
            (:mod:`icecube_cloud.progress`).
        format: ``zarr`` (materialised cube) or ``kerchunk`` (reference JSON at ``out``, no pixel copied).
        readers: Reader classes by product format, replacing the built-in ones for a ``zarr`` build
            (:mod:`icecube_cloud.read.policy`; module-level classes the workers can import).

    Raises:
        UsageError: ``readers`` given for a ``kerchunk`` cube (its readers are its users'), or a
            ``kerchunk`` cube asked for on a map grid or with config ``shards``.
    """
    if readers and format == "kerchunk":
        raise UsageError("readers apply to zarr builds; a kerchunk cube copies no pixel")
    cfg = _as_config(config)
    if cfg.shards is not None and format == "kerchunk":
        raise UsageError(
            "config shards: a kerchunk cube references the products' own strips and tiles (a Zarr v2 "
            "layout, which has no shards); build it with --format zarr, or drop shards"
        )
    planned = search_and_plan(stac_url, cfg, storage_options, allowed_hrefs)
    if planned.plan.grid is not None and format == "kerchunk":
        raise UsageError(
            "a map-geometry cube (config grid) holds warped pixels, which references to the "
            "products cannot express; build it with --format zarr"
        )
    report = resolve_progress(progress)
    report("plan", 1, 1)
    run = _executor(format, readers)
    with connect(scheduler, workers, nbytes=planned.plan.nbytes) as client:
        try:
            result = run(
                planned.plan,
                out,
                client=client,
                storage_options=storage_options,
                overwrite=overwrite,
                progress=report,
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
