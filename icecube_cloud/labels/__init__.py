"""Labels: ingest into STAC label items, map -> SAR geometry, raster and vector labels of a cube.

Sources are the original icecube labels JSON (pixel coordinates) and GeoJSON in lon/lat.
"""

from __future__ import annotations

from icecube_cloud.labels.cube import (
    flag_attrs,
    label_classes,
    label_mask,
    label_vectors,
    labels_by_product,
)
from icecube_cloud.labels.errors import (
    LabelError,
    LabelFormatError,
    MaskShapeError,
    UnknownProductError,
)
from icecube_cloud.labels.geometry import geometry_to_pixel, lonlat_to_pixel
from icecube_cloud.labels.ingest import LabelIngestResult, draft_label_items, ingest_labels
from icecube_cloud.labels.sources import LabelSource, read_labels

__all__ = [
    "LabelError",
    "LabelFormatError",
    "LabelIngestResult",
    "LabelSource",
    "MaskShapeError",
    "UnknownProductError",
    "draft_label_items",
    "flag_attrs",
    "geometry_to_pixel",
    "ingest_labels",
    "label_classes",
    "label_mask",
    "label_vectors",
    "labels_by_product",
    "lonlat_to_pixel",
    "read_labels",
]
