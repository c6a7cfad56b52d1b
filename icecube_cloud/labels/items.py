"""Label-extension STAC items: one per (labels source, product), with ``source`` links to the product."""

from __future__ import annotations

import json
import posixpath
import re
from collections.abc import Sequence
from typing import Any

import numpy as np
import pystac
import shapely.geometry

from icecube_cloud.labels.sources import LabelObject, LabelSource
from icecube_cloud.stac.collections import LABEL_COLLECTION_ID
from icecube_cloud.stac.items import item_format

LABEL_EXTENSION = "https://stac-extensions.github.io/label/v1.0.1/schema.json"
"""Schema URI of the STAC label extension."""
VECTOR_ASSET = "labels"
"""Asset key of the GeoJSON of vector labels (pixel coordinates)."""
LONLAT_ASSET = "labels-lonlat"
"""Asset key of the same vector labels in lon/lat as given (GeoJSON sources only): its presence marks
labels drawn straight on a map-geometry cube's grid."""
MASK_ASSET = "mask"
"""Asset key of a segmentation mask."""
CLASS_PROPERTY = "class"
"""Feature property of the class in the GeoJSON asset."""

_MEDIA = {".png": "image/png", ".tif": pystac.MediaType.GEOTIFF, ".tiff": pystac.MediaType.GEOTIFF}


def mask_class_name(value: int) -> str:
    """Class name of a segmentation mask value (mask values are class codes)."""
    return f"class_{value}"


def label_item_id(source: LabelSource, product_id: str) -> str:
    """Stable id of the label item of ``source`` for ``product_id`` (re-ingest replaces it)."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", f"{product_id}-labels-{source.name}")


def pixel_geojson(objects: Sequence[LabelObject]) -> dict[str, Any]:
    """The objects as a GeoJSON FeatureCollection in pixel coordinates (x = range, y = azimuth).

    Image tags become features with a ``null`` geometry.
    """
    return {
        "type": "FeatureCollection",
        "features": [
            {
                "type": "Feature",
                "geometry": shapely.geometry.mapping(o.geometry)
                if o.geometry is not None
                else None,
                "properties": {CLASS_PROPERTY: o.label_class, "task": o.task, "kind": o.kind},
            }
            for o in objects
        ],
    }


def _label_classes(
    objects: Sequence[LabelObject], mask_href: str | None, mask_values: Sequence[int]
) -> list[dict[str, Any]]:
    """``label:classes``: the vector class names, then the mask's numeric classes."""
    classes: list[dict[str, Any]] = []
    names = sorted({o.label_class for o in objects})
    if names:
        classes.append({"name": CLASS_PROPERTY, "classes": names})
    if mask_href is not None:
        # Numeric classes = mask values; named "mask" beside vector classes (the schema wants a name
        # whenever label:properties is set), null for raster-only items.
        name = "mask" if objects else None
        classes.append({"name": name, "classes": [int(v) for v in mask_values]})
    return classes


def _label_properties(
    source: LabelSource,
    product: pystac.Item,
    objects: Sequence[LabelObject],
    mask_href: str | None,
    mask_values: Sequence[int],
) -> dict[str, Any]:
    """The label extension's properties, and the product's time span."""
    tasks = sorted({o.task for o in objects} | ({"segmentation"} if mask_href else set()))
    what = [f"{len(objects)} objects"] if objects else []
    what += ["a segmentation mask"] if mask_href else []
    props: dict[str, Any] = {
        "label:type": "vector" if objects else "raster",
        "label:properties": [CLASS_PROPERTY] if objects else None,
        "label:classes": _label_classes(objects, mask_href, mask_values),
        "label:tasks": tasks,
        "label:description": (
            f"{' and '.join(what)} for {product.id} from {posixpath.basename(source.href)} "
            f"({'lon/lat, transformed to pixels' if source.map_geometry else 'pixel coordinates'})"
        ),
        "label:methods": ["manual"],
    }
    for key in ("start_datetime", "end_datetime"):
        if key in product.properties:
            props[key] = product.properties[key]
    return props


def _add_assets(
    item: pystac.Item, labels_href: str | None, mask_href: str | None, lonlat_href: str | None
) -> None:
    """The GeoJSON of vector labels (pixels; lon/lat) and the segmentation mask, when there are any."""
    if labels_href is not None:
        item.add_asset(
            VECTOR_ASSET,
            pystac.Asset(
                href=labels_href,
                media_type=pystac.MediaType.GEOJSON,
                roles=["labels", "labels-vector"],
                title="Vector labels in pixel coordinates (x = range, y = azimuth)",
            ),
        )
    if lonlat_href is not None:
        item.add_asset(
            LONLAT_ASSET,
            pystac.Asset(
                href=lonlat_href,
                media_type=pystac.MediaType.GEOJSON,
                roles=["labels", "labels-vector", "map-geometry"],
                title="The same vector labels in lon/lat (EPSG:4326), as given",
            ),
        )
    if mask_href is not None:
        ext = posixpath.splitext(mask_href)[1].lower()
        item.add_asset(
            MASK_ASSET,
            pystac.Asset(
                href=mask_href,
                media_type=_MEDIA.get(ext),
                roles=["labels", "labels-raster"],
                title="Segmentation mask (values are class codes, 0 = background)",
            ),
        )


def label_item(
    *,
    source: LabelSource,
    product: pystac.Item,
    product_href: str,
    objects: Sequence[LabelObject],
    labels_href: str | None,
    mask_href: str | None,
    mask_values: Sequence[int] = (),
    lonlat_href: str | None = None,
) -> pystac.Item:
    """The label item of ``source`` for one product.

    Args:
        source: The labels file.
        product: The labelled product's item (geometry and times are copied from it).
        product_href: Where the product item lives (the ``source`` link).
        objects: Labels in the product's pixel coordinates.
        labels_href: Absolute href of the GeoJSON asset (``None`` when there are no objects).
        mask_href: Segmentation mask href, kept as given.
        mask_values: Non-zero values present in the mask (its classes).
        lonlat_href: Absolute href of the GeoJSON asset of the same objects in lon/lat (GeoJSON
            sources only).
    """
    item = pystac.Item(
        id=label_item_id(source, product.id),
        geometry=product.geometry,
        bbox=product.bbox,
        datetime=product.datetime,
        properties=_label_properties(source, product, objects, mask_href, mask_values),
        stac_extensions=[LABEL_EXTENSION],
        collection=LABEL_COLLECTION_ID,
    )
    _add_assets(item, labels_href, mask_href, lonlat_href)
    link = pystac.Link(rel="source", target=product_href, media_type=pystac.MediaType.GEOJSON,
                       title=product.id)  # fmt: skip
    link.extra_fields["label:assets"] = [item_format(product).value]  # the labelled asset
    item.add_link(link)
    return item


def geojson_bytes(objects: Sequence[LabelObject]) -> bytes:
    """The GeoJSON asset's content."""
    return (json.dumps(pixel_geojson(objects), separators=(",", ":")) + "\n").encode()


def mask_values_of(mask: np.ndarray) -> list[int]:
    """Sorted non-zero values of a mask."""
    return [int(v) for v in np.unique(mask) if v != 0]
