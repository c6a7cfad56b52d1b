"""Register labels in a catalog: match them to product items, transform map geometry, write items.

The GeoJSON asset of each label item (labels in the product's pixel coordinates; for GeoJSON sources
also a second one, the same objects in lon/lat as given) is written as a file: next to the item
inside a static catalog, or under ``assets_url`` for a STAC API (which has no file
storage of its own). Inline ``data:`` URLs were rejected: both catalog writers require absolute asset
hrefs, and large label sets would bloat every search response of a pgstac API.
"""

from __future__ import annotations

import logging
import posixpath
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import fsspec
import numpy as np
import pystac
import shapely.geometry
from shapely.geometry.base import BaseGeometry

from icecube_cloud.errors import IcecubeError, UsageError
from icecube_cloud.gdal_io import open_raster
from icecube_cloud.labels.errors import LabelError, MaskShapeError, UnknownProductError
from icecube_cloud.labels.geometry import Method, geometry_to_pixel
from icecube_cloud.labels.items import (
    LONLAT_ASSET,
    VECTOR_ASSET,
    geojson_bytes,
    label_item,
    label_item_id,
    mask_values_of,
)
from icecube_cloud.labels.sources import LabelObject, LabelSource, ProductLabels, read_labels
from icecube_cloud.products import read_product
from icecube_cloud.stac.catalogs import ItemCatalog, is_api_url, open_catalog
from icecube_cloud.stac.collections import LABEL_COLLECTION_ID, PRODUCT_COLLECTION_IDS
from icecube_cloud.stac.items import item_data_href, item_physical_shape
from icecube_cloud.stac.search import SearchParams

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LabelDraft:
    """A label item before it is registered, with the GeoJSON asset it refers to."""

    item: pystac.Item
    """The label-extension item."""
    geojson: bytes | None
    """Content of its ``labels`` asset (``None``: raster labels only)."""
    product_id: str
    """The labelled product."""
    lonlat_geojson: bytes | None = None
    """Content of its ``labels-lonlat`` asset (GeoJSON sources: the objects in lon/lat)."""


@dataclass(frozen=True)
class LabelIngestResult:
    """What :func:`ingest_labels` registered."""

    items: tuple[str, ...]
    """Label item ids, in the order of the labels file."""
    products: tuple[str, ...]
    """The labelled product ids (same order)."""
    added: tuple[str, ...]
    """Items that were new."""
    updated: tuple[str, ...]
    """Items that replaced an earlier ingest of the same source and product."""


def default_assets_url(stac_url: str) -> str | None:
    """Folder (URL) of a static catalog, where label assets go by default; ``None`` for an API."""
    if is_api_url(stac_url):
        return None
    url = stac_url.rstrip("/")
    return posixpath.dirname(url) if url.endswith(".json") else url


def _product_key_matches(item: pystac.Item, name: str) -> bool:
    base = posixpath.basename(name.rstrip("/"))
    if name in (item.id,) or base == item.id:
        return True
    try:
        href_base = posixpath.basename(item_data_href(item))
    except IcecubeError:
        return False
    return base == href_base or base.rsplit(".", 1)[0] == href_base.rsplit(".", 1)[0]


def _find(products: Sequence[pystac.Item], name: str, source: str, where: str) -> pystac.Item:
    found = [p for p in products if _product_key_matches(p, name)]
    if not found:
        raise UnknownProductError(
            source, f"{where}: product {name!r} is not in the catalog (matched by file name or id)"
        )
    if len(found) > 1:
        ids = ", ".join(sorted(p.id for p in found))
        raise UnknownProductError(source, f"{where}: {name!r} names several products: {ids}")
    return found[0]


def _item_href(item: pystac.Item, stac_url: str) -> str:
    href = item.get_self_href()
    if href:
        return href
    return f"{stac_url.rstrip('/')}/collections/{item.collection_id}/items/{item.id}"


def _read_mask(
    href: str, product: pystac.Item, storage_options: Mapping[str, Any] | None
) -> np.ndarray:
    try:
        with open_raster(href, storage_options) as ds:
            if ds.count != 1:
                raise MaskShapeError(href, f"a mask has one band, this one has {ds.count}")
            mask = ds.read(1)
    except LabelError:
        raise
    except Exception as err:  # rasterio/GDAL errors
        raise LabelError(href, f"cannot read segmentation mask: {err}") from err
    return check_mask(mask, item_physical_shape(product), href, product.id)


def check_mask(mask: np.ndarray, shape: tuple[int, int], href: str, product_id: str) -> np.ndarray:
    """A mask as uint8 class codes, checked against the product's (azimuth, range) shape.

    Raises:
        MaskShapeError: Wrong shape.
        LabelError: Values that are not class codes 0..255.
    """
    if tuple(mask.shape) != tuple(shape):
        raise MaskShapeError(
            href,
            f"mask shape {mask.shape[0]}x{mask.shape[1]} does not match product {product_id} "
            f"({shape[0]} azimuth x {shape[1]} range)",
        )
    if mask.dtype != np.uint8:
        if not np.issubdtype(mask.dtype, np.integer) or mask.min() < 0 or mask.max() > 255:
            raise LabelError(href, f"mask values must be integer class codes 0..255 ({mask.dtype})")
        mask = mask.astype(np.uint8)
    return mask


def _to_pixels(
    objects: Sequence[LabelObject], product: pystac.Item, shape: tuple[int, int], method: Method,
    storage_options: Mapping[str, Any] | None,
) -> list[tuple[LabelObject, LabelObject]]:  # fmt: skip
    """Map objects -> (map object, its pixel object clipped to the image); outside ones dropped."""
    meta = read_product(item_data_href(product), storage_options=storage_options)
    image = shapely.geometry.box(0, 0, shape[1], shape[0])
    out = []
    for obj in objects:
        if obj.geometry is None:
            out.append((obj, obj))
            continue
        pix: BaseGeometry = geometry_to_pixel(meta, obj.geometry, method=method)
        if not pix.intersects(image):
            continue
        if not pix.within(image):
            pix = pix.intersection(image)
        out.append((obj, LabelObject(obj.label_class, obj.task, obj.kind, pix)))
    return out


def _pairs(
    source: LabelSource, products: Sequence[pystac.Item], named: Sequence[str]
) -> list[tuple[ProductLabels, pystac.Item]]:
    """(labels, product) pairs; each product at most once per source."""
    wanted = [_find(products, n, source.href, "--product") for n in named]
    pairs: list[tuple[ProductLabels, pystac.Item]] = []
    for entry in source.entries:
        if entry.product is not None:
            product = _find(products, entry.product, source.href, entry.where)
            if not wanted or product.id in {w.id for w in wanted}:
                pairs.append((entry, product))
            continue
        targets = wanted
        if not targets:
            geoms = [o.geometry for o in entry.objects if o.geometry is not None]
            union = shapely.union_all(geoms) if geoms else None
            targets = [
                p
                for p in products
                if union is not None
                and p.geometry is not None
                and shapely.geometry.shape(p.geometry).intersects(union)
            ]
            if not targets:
                raise UnknownProductError(
                    source.href, "no product of the catalog intersects these labels"
                )
        pairs.extend((entry, p) for p in targets)
    seen: set[str] = set()
    for _, product in pairs:
        if product.id in seen:
            raise LabelError(source.href, f"product {product.id} is labelled by two entries")
        seen.add(product.id)
    return pairs


def draft_label_items(
    source: LabelSource,
    products: Sequence[pystac.Item],
    *,
    stac_url: str,
    assets_url: str,
    named: Sequence[str] = (),
    method: Method = "auto",
    storage_options: Mapping[str, Any] | None = None,
) -> list[LabelDraft]:
    """Label items of ``source`` for the matching ``products`` (nothing is written).

    Raises:
        UnknownProductError: Labels for a product not in ``products``.
        MaskShapeError: A mask does not have its product's shape.
        LabelError: An unreadable mask, a product labelled twice, a failed transform.
    """
    drafts = []
    for entry, product in _pairs(source, products, named):
        shape = item_physical_shape(product)
        objects, on_map = list(entry.objects), []
        if source.map_geometry:  # kept as given too: map-geometry cubes draw them on their grid
            pairs = _to_pixels(objects, product, shape, method, storage_options)
            objects, on_map = [p for _, p in pairs], [m for m, _ in pairs]
        values: list[int] = []
        if entry.segmentation is not None:
            values = mask_values_of(_read_mask(entry.segmentation, product, storage_options))
        item_id = label_item_id(source, product.id)
        href = f"{assets_url.rstrip('/')}/{LABEL_COLLECTION_ID}/{item_id}/{item_id}.geojson"
        item = label_item(
            source=source,
            product=product,
            product_href=_item_href(product, stac_url),
            objects=objects,
            labels_href=href if objects else None,
            mask_href=entry.segmentation,
            mask_values=values,
            lonlat_href=href.removesuffix(".geojson") + ".lonlat.geojson" if on_map else None,
        )
        drafts.append(
            LabelDraft(
                item=item,
                geojson=geojson_bytes(objects) if objects else None,
                product_id=product.id,
                lonlat_geojson=geojson_bytes(on_map) if on_map else None,
            )
        )
    return drafts


def _write_assets(drafts: Sequence[LabelDraft], storage_options: Mapping[str, Any] | None) -> None:
    for draft in drafts:
        for key, content in ((VECTOR_ASSET, draft.geojson), (LONLAT_ASSET, draft.lonlat_geojson)):
            if content is None:
                continue
            href = draft.item.assets[key].href
            try:
                fs, path = fsspec.core.url_to_fs(href, **dict(storage_options or {}))
                fs.makedirs(posixpath.dirname(path), exist_ok=True)
                fs.pipe_file(path, content)
            except OSError as err:
                raise LabelError(href, f"cannot write labels asset: {err}") from err


def _absolute(url: str) -> str:
    from icecube_cloud.storage import normalise_url

    return normalise_url(url)


def ingest_labels(
    labels: str,
    stac_url: str,
    *,
    products: Sequence[str] = (),
    class_property: str | None = None,
    assets_url: str | None = None,
    method: Method = "auto",
    storage_options: Mapping[str, Any] | None = None,
) -> LabelIngestResult:
    """Register the labels in ``labels`` as label-extension items of the catalog at ``stac_url``.

    Args:
        labels: icecube labels JSON (pixel coordinates) or GeoJSON in lon/lat (path or URL).
        stac_url: Static catalog or STAC API root holding the products.
        products: Restrict to (GeoJSON: label exactly) these product ids or file names.
        class_property: GeoJSON property of the class (default ``class``, else ``label``).
        assets_url: Where label GeoJSON assets go (default: the static catalog's folder; required
            for a STAC API).
        method: Geolocation for map geometry (see :mod:`icecube_cloud.labels.geometry`).
        storage_options: fsspec options for labels, masks, assets and a static catalog.

    Raises:
        UsageError: A STAC API without ``assets_url``.
        LabelError: See :func:`draft_label_items` and :func:`read_labels`.
    """
    source = read_labels(
        _absolute(labels), class_property=class_property, storage_options=storage_options
    )
    assets = assets_url or default_assets_url(stac_url)
    if assets is None:
        raise UsageError(
            f"{stac_url} is a STAC API: give --assets-url (e.g. s3://bucket/labels) for the "
            "labels' GeoJSON assets"
        )
    catalog: ItemCatalog = open_catalog(stac_url, storage_options=storage_options)
    found = catalog.search(SearchParams(collections=PRODUCT_COLLECTION_IDS))
    drafts = draft_label_items(
        source, found, stac_url=stac_url, assets_url=_absolute(assets), named=products,
        method=method, storage_options=storage_options,
    )  # fmt: skip
    _write_assets(drafts, storage_options)
    result = catalog.upsert([d.item for d in drafts])
    log.info("registered %d label items from %s in %s", len(drafts), labels, stac_url)
    return LabelIngestResult(
        items=tuple(d.item.id for d in drafts),
        products=tuple(d.product_id for d in drafts),
        added=tuple(result.added),
        updated=tuple(result.updated),
    )
