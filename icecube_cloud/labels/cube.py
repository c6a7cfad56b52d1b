"""Labels for the cube: class codes, the ``labels`` raster and ``label_geometry`` vectors (SPEC §6).

Pure functions over label items, meant to run on dask workers (they read the label assets themselves).

Class codes: 0 is background. Segmentation masks store class codes, so a mask value ``v`` keeps the
code ``v`` (class name ``class_<v>``) and the cube's ``labels`` equal the mask pixels. Vector classes
get the smallest codes not taken by mask values, in sorted name order, so the coding of a cube depends
only on the set of label items, not on their order.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import fsspec
import numpy as np
import pystac
import rasterio.features
import shapely.geometry
from affine import Affine
from shapely.geometry.base import BaseGeometry

from icecube_cloud.gdal_io import open_raster
from icecube_cloud.labels.errors import LabelError
from icecube_cloud.labels.geometry import lonlat_geometry_to_crs
from icecube_cloud.labels.ingest import check_mask
from icecube_cloud.labels.items import (
    CLASS_PROPERTY,
    LONLAT_ASSET,
    MASK_ASSET,
    VECTOR_ASSET,
    mask_class_name,
)
from icecube_cloud.model import MapGrid

MAX_CODE = 255
"""Largest class code of the uint8 ``labels`` variable."""


def label_classes(label_items: Iterable[pystac.Item]) -> dict[str, int]:
    """Class name -> code (1..255) over all ``label_items``, in code order; 0 is background.

    Raises:
        LabelError: More classes than a uint8 raster can code.
    """
    mask_values: set[int] = set()
    names: set[str] = set()
    for item in label_items:
        for entry in item.properties.get("label:classes") or []:
            values = entry.get("classes") or []
            if all(isinstance(v, int | float) for v in values):  # numbers: mask values
                mask_values.update(int(v) for v in values if int(v) != 0)
            else:
                names.update(str(v) for v in values)
    codes = {mask_class_name(v): v for v in sorted(mask_values)}
    free = (c for c in range(1, MAX_CODE + 1) if c not in mask_values)
    for name in sorted(names - set(codes)):
        code = next(free, None)
        if code is None:
            raise LabelError(
                name, f"more than {MAX_CODE} label classes: a uint8 raster cannot code them"
            )
        codes[name] = code
    return dict(sorted(codes.items(), key=lambda kv: kv[1]))


def flag_attrs(classes: Mapping[str, int]) -> dict[str, Any]:
    """CF ``flag_values`` / ``flag_meanings`` attributes of the ``labels`` variable."""
    ordered = sorted(classes.items(), key=lambda kv: kv[1])
    return {
        "flag_values": [int(c) for _, c in ordered],
        "flag_meanings": " ".join(n.replace(" ", "_") for n, _ in ordered),
    }


def _features(
    item: pystac.Item, storage_options: Mapping[str, Any] | None, key: str = VECTOR_ASSET
) -> list[dict[str, Any]]:
    asset = item.assets.get(key)
    if asset is None:
        return []
    try:
        with fsspec.open(asset.href, "rb", **dict(storage_options or {})) as f:
            data = json.loads(f.read())
        features = data["features"]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise LabelError(
            asset.href, f"label item {item.id}: unreadable labels GeoJSON: {err}"
        ) from err
    return list(features)


def _geometries(
    item: pystac.Item, storage_options: Mapping[str, Any] | None, key: str = VECTOR_ASSET
) -> list[tuple[BaseGeometry, str]]:
    out = []
    for feature in _features(item, storage_options, key):
        if feature.get("geometry") is None:
            continue  # image tags (classification) have no pixels
        out.append(
            (
                shapely.geometry.shape(feature["geometry"]),
                str(feature["properties"][CLASS_PROPERTY]),
            )
        )
    return out


def label_mask(
    label_items_for_product: Sequence[pystac.Item],
    shape: tuple[int, int],
    classes: Mapping[str, int],
    storage_options: Mapping[str, Any] | None = None,
) -> np.ndarray:
    """The uint8 (azimuth, range) class raster of one product; 0 = background.

    Items are drawn in the given order; within an item the mask first, then its vector objects in
    file order. Later labels overwrite earlier ones. Vector labels burn the pixels whose centre is
    inside (points: the pixel they fall in) — GDAL's rasteriser on the identity pixel grid.

    Args:
        label_items_for_product: The label items whose ``source`` is this product.
        shape: (azimuth, range) shape of the product.
        classes: Codes from :func:`label_classes` over all label items of the cube.
        storage_options: fsspec options to read the assets.

    Raises:
        LabelError: An unreadable asset, a class missing from ``classes``.
        MaskShapeError: A mask of another shape.
    """
    out = np.zeros(shape, dtype=np.uint8)
    lut = np.zeros(256, dtype=np.uint8)
    for name, code in classes.items():
        if name.startswith("class_") and name[6:].isdigit() and int(name[6:]) <= MAX_CODE:
            lut[int(name[6:])] = code
    for item in label_items_for_product:
        mask_asset = item.assets.get(MASK_ASSET)
        if mask_asset is not None:
            try:
                with open_raster(mask_asset.href, storage_options) as ds:
                    raw = ds.read(1)
            except Exception as err:  # rasterio/GDAL
                raise LabelError(
                    mask_asset.href, f"label item {item.id}: cannot read mask: {err}"
                ) from err
            mask = check_mask(raw, shape, mask_asset.href, item.id)
            np.copyto(out, lut[mask], where=mask != 0)
        shapes = _coded(item, _geometries(item, storage_options), classes)
        if shapes:
            burned = rasterio.features.rasterize(
                shapes, out_shape=shape, fill=0, transform=Affine.identity(), dtype="uint8"
            )
            np.copyto(out, burned, where=burned != 0)
    return out


def _coded(
    item: pystac.Item, geometries: Sequence[tuple[BaseGeometry, str]], classes: Mapping[str, int]
) -> list[tuple[BaseGeometry, int]]:
    shapes = []
    for geom, name in geometries:
        if name not in classes:
            raise LabelError(item.id, f"class {name!r} has no code (classes: {', '.join(classes)})")
        shapes.append((geom, classes[name]))
    return shapes


def on_map(item: pystac.Item) -> bool:
    """Whether the item's labels are map geometry (lon/lat as given), drawn straight on a grid."""
    return LONLAT_ASSET in item.assets


def grid_label_mask(
    label_items_for_product: Sequence[pystac.Item],
    grid: MapGrid,
    classes: Mapping[str, int],
    storage_options: Mapping[str, Any] | None = None,
) -> np.ndarray:
    """The uint8 (y, x) class raster of lon/lat labels (:func:`on_map` items) on a map grid.

    Each geometry is transformed to the grid's CRS and burnt where pixel centres are inside it
    (points: the pixel they fall in), in item and file order, later over earlier. Independent of
    the product: a label is drawn wherever its place is on the grid, also outside the product's
    footprint (where the product's slice is fill).

    Raises:
        LabelError: An unreadable asset, a class missing from ``classes``.
    """
    out = np.zeros(grid.shape, dtype=np.uint8)
    for item in label_items_for_product:
        shapes = _coded(item, map_vectors(item, grid.crs_wkt, storage_options), classes)
        if shapes:
            burned = rasterio.features.rasterize(
                shapes, out_shape=grid.shape, fill=0, transform=Affine(*grid.transform),
                all_touched=False, dtype="uint8",
            )  # fmt: skip
            np.copyto(out, burned, where=burned != 0)
    return out


def map_vectors(
    item: pystac.Item, crs_wkt: str, storage_options: Mapping[str, Any] | None = None
) -> list[tuple[BaseGeometry, str]]:
    """(geometry in CRS ``crs_wkt``, class) of the lon/lat labels of an :func:`on_map` item."""
    return [
        (lonlat_geometry_to_crs(geom, crs_wkt), name)
        for geom, name in _geometries(item, storage_options, LONLAT_ASSET)
    ]


def label_vectors(
    label_items_for_product: Sequence[pystac.Item],
    storage_options: Mapping[str, Any] | None = None,
) -> list[tuple[str, str]]:
    """(WKT in pixel coordinates x = range / y = azimuth, class) of every vector label, in order."""
    return [
        (geom.wkt, name)
        for item in label_items_for_product
        for geom, name in _geometries(item, storage_options)
    ]


def labels_by_product(label_items: Iterable[pystac.Item]) -> dict[str, list[pystac.Item]]:
    """Product item id -> its label items (from the ``source`` links' titles or hrefs)."""
    out: dict[str, list[pystac.Item]] = {}
    for item in label_items:
        for link in item.links:
            if link.rel != "source":
                continue
            pid = link.title or link.href.rsplit("/", 1)[-1].removesuffix(".json")
            out.setdefault(pid, []).append(item)
    return out
