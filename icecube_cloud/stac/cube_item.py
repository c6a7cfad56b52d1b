"""A built cube as a STAC item (datacube extension), so notebooks find cubes by search like any product.

The item carries ``cube:dimensions`` and ``cube:variables``, one Zarr asset (role ``data``) pointing at the
cube, the union of the source footprints as geometry, the time span as ``start_datetime``/``end_datetime``,
and a ``derived_from`` link to every source item.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import pystac
import shapely
from shapely.geometry import mapping, shape

from icecube_cloud.plan import PER_TIME_COORDS, CubePlan

CUBE_COLLECTION = "icecube-cubes"
"""Collection of built cubes."""
ZARR_MEDIA_TYPE = "application/vnd+zarr; version=3"
"""Media type of a Zarr v3 store (STAC best practice for Zarr assets)."""
REFERENCES_MEDIA_TYPE = "application/json"
"""Media type of a kerchunk reference file (open with fsspec's ``reference://``)."""
DATACUBE_EXTENSION = "https://stac-extensions.github.io/datacube/v2.2.0/schema.json"
PROJECTION_EXTENSION = "https://stac-extensions.github.io/projection/v2.0.0/schema.json"


def _iso(t: datetime) -> str:
    return t.isoformat().replace("+00:00", "Z")


def cube_item_id(url: str) -> str:
    """A stable item id for the cube at ``url`` (same output location → same item, updated on rebuild).

    ``cube-<name>-<hash>``: the output's base name without its ``.zarr`` (Zarr) or ``.json``
    (kerchunk references) suffix, and a hash of the whole URL, so that ``a/cube.zarr`` and
    ``a/cube.json`` stay two items.
    """
    base = url.rstrip("/").rsplit("/", 1)[-1]
    name = base.removesuffix(".zarr") if base.endswith(".zarr") else base.removesuffix(".json")
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", name).strip(".") or "cube"
    return f"cube-{name}-{hashlib.sha256(url.encode()).hexdigest()[:10]}"


def _footprint(sources: Sequence[pystac.Item]) -> tuple[dict[str, Any] | None, list[float] | None]:
    """GeoJSON geometry and bbox of the union of the source footprints (``None`` when empty)."""
    footprints = [shape(it.geometry) for it in sources if it.geometry]
    union = shapely.union_all(footprints) if footprints else None
    if union is None or union.is_empty:
        return None, None
    return mapping(union), list(union.bounds)


def _map_dimensions(plan: CubePlan) -> dict[str, object]:
    """``cube:dimensions`` x/y of a map-geometry cube: pixel-centre extents in the grid's CRS."""
    grid = plan.grid
    assert grid is not None
    epsg = grid.crs.removeprefix("EPSG:")
    crs: object = int(epsg) if epsg.isdigit() else grid.crs_wkt
    xs, ys = grid.x(), grid.y()
    return {
        "x": {"type": "spatial", "axis": "x", "extent": [xs[0], xs[-1]], "step": grid.resolution,
              "reference_system": crs},
        "y": {"type": "spatial", "axis": "y", "extent": [ys[-1], ys[0]], "step": -grid.resolution,
              "reference_system": crs},
    }  # fmt: skip


def _dimensions(plan: CubePlan) -> dict[str, object]:
    """``cube:dimensions``: the time values and the azimuth/range pixel index extents (or x/y)."""
    times = [s.time for s in plan.slices]
    time = {
        "time": {
            "type": "temporal",
            "extent": [_iso(min(times)), _iso(max(times))],
            "values": [_iso(t) for t in times],
        }
    }
    if plan.grid is not None:
        return {**time, **_map_dimensions(plan)}
    return {
        **time,
        "azimuth": {
            "type": "azimuth",
            "description": "azimuth line index of the SAR image (slow time)",
            "extent": [0, plan.shape[0] - 1],
            "step": 1,
        },
        "range": {
            "type": "range",
            "description": "range sample index of the SAR image",
            "extent": [0, plan.shape[1] - 1],
            "step": 1,
        },
    }


def _variables(plan: CubePlan) -> dict[str, object]:
    """``cube:variables``: the pixel variable and the per-time coordinates."""
    return {
        plan.variable: {
            "dimensions": ["time", *plan.dims],
            "variable_type": "data",
            "description": f"{plan.product_level} {plan.variable} ({plan.dtype})",
        },
        **{
            name: {"dimensions": ["time"], "variable_type": "auxiliary"} for name in PER_TIME_COORDS
        },
    }


def _properties(plan: CubePlan, created: datetime | None) -> dict[str, object]:
    """The item's properties: time span, product level, datacube fields, image and gap counts."""
    times = [s.time for s in plan.slices]
    properties: dict[str, object] = {
        "datetime": None,
        "start_datetime": _iso(min(times)),
        "end_datetime": _iso(max(times)),
        "constellation": "ICEYE",
        "sar:product_type": plan.product_level,
        "cube:dimensions": _dimensions(plan),
        "cube:variables": _variables(plan),
        "icecube:images": len(plan.slices) - plan.n_gaps,
        "icecube:gaps": plan.n_gaps,
    }
    if created is not None:
        properties["created"] = _iso(created)
    if plan.grid is not None:  # the projection extension: the cube's grid
        properties.update(
            {
                "proj:code": plan.grid.crs if plan.grid.crs.startswith("EPSG:") else None,
                "proj:wkt2": plan.grid.crs_wkt,
                "proj:transform": list(plan.grid.transform),
                "proj:shape": list(plan.grid.shape),
            }
        )
    return properties


def _data_asset(plan: CubePlan, url: str) -> tuple[str, pystac.Asset]:
    """Key and asset of the cube's data: a Zarr store, or a virtual cube's kerchunk references."""
    if url.endswith(".json"):  # a virtual cube: kerchunk references to the products' bytes
        return "references", pystac.Asset(
            href=url,
            media_type=REFERENCES_MEDIA_TYPE,
            roles=["data", "references"],
            title=f"{plan.product_level} virtual datacube (kerchunk references, Zarr v2)",
        )
    return "zarr", pystac.Asset(
        href=url,
        media_type=ZARR_MEDIA_TYPE,
        roles=["data"],
        title=f"{plan.product_level} datacube (Zarr v3)",
    )


def cube_to_item(
    plan: CubePlan,
    url: str,
    sources: Sequence[pystac.Item],
    *,
    source_hrefs: Mapping[str, str] | None = None,
    created: datetime | None = None,
) -> pystac.Item:
    """The STAC item describing a cube built from ``plan`` at ``url``.

    Args:
        plan: The executed plan.
        url: Where the cube is (local path or ``s3://`` URL; never with credentials).
        sources: The source items of the cube (geometry and ``derived_from`` links).
        source_hrefs: Item id -> URL of the source item in its catalog, for the links (defaults to each
            item's own self href).
        created: Build time, for the ``created`` property.
    """
    geometry, bbox = _footprint(sources)
    item = pystac.Item(
        id=cube_item_id(url),
        geometry=geometry,
        bbox=bbox,
        datetime=None,
        properties=_properties(plan, created),
        stac_extensions=[DATACUBE_EXTENSION]
        + ([PROJECTION_EXTENSION] if plan.grid is not None else []),
        collection=CUBE_COLLECTION,
    )
    item.add_asset(*_data_asset(plan, url))
    hrefs = dict(source_hrefs or {})
    for src in sources:
        href = hrefs.get(src.id) or src.get_self_href()
        if href:
            item.add_link(
                pystac.Link("derived_from", href, media_type="application/geo+json", title=src.id)
            )
    return item


def derived_cube_item(source: pystac.Item | None, source_url: str, url: str) -> pystac.Item:
    """The item of a cube computed from another cube (e.g. predictions), ``derived_from`` it.

    Space, time and grid are the source cube's (copied from its item when there is one); the data
    asset is the new cube, whose ``cube:variables`` hold ``prediction``.

    Args:
        source: The source cube's item, or ``None`` when it was never registered (the link then
            names the source cube's store).
        source_url: The source cube's location.
        url: The new cube's location.
    """
    properties: dict[str, Any] = (
        dict(source.properties) if source is not None else {"datetime": None}
    )
    dims = properties.get("cube:dimensions") or {}
    spatial = [d for d in dims if d != "time"]
    properties["cube:variables"] = {
        "prediction": {"dimensions": ["time", *spatial], "variable_type": "data"}
    }
    item = pystac.Item(
        id=cube_item_id(url),
        geometry=source.geometry if source is not None else None,
        bbox=source.bbox if source is not None else None,
        datetime=source.datetime if source is not None else None,
        properties=properties,
        stac_extensions=list(source.stac_extensions) if source is not None else [],
        collection=CUBE_COLLECTION,
    )
    if source is None:
        item.datetime = None
        item.properties["datetime"] = None
    item.add_asset(
        "zarr",
        pystac.Asset(href=url, media_type=ZARR_MEDIA_TYPE, roles=["data"], title="predictions"),
    )
    href = (source.get_self_href() if source is not None else None) or source_url
    media = (
        "application/geo+json" if source is not None and source.get_self_href() else ZARR_MEDIA_TYPE
    )
    item.add_link(pystac.Link("derived_from", href, media_type=media, title=source_url))
    return item
