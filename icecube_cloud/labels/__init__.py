"""Labels: ingest into STAC label items, map -> SAR geometry, raster and vector labels of a cube.

Sources are the original icecube labels JSON (pixel coordinates) and GeoJSON in lon/lat.

The names below are imported on first use (PEP 562), so that a module that needs one label
submodule (a build without labels reads only :mod:`icecube_cloud.labels.items`) does not import
rasterio's feature drawing and pyproj with the package.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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

_MODULES = {
    "cube": ("flag_attrs", "label_classes", "label_mask", "label_vectors", "labels_by_product"),
    "errors": ("LabelError", "LabelFormatError", "MaskShapeError", "UnknownProductError"),
    "geometry": ("geometry_to_pixel", "lonlat_to_pixel"),
    "ingest": ("LabelIngestResult", "draft_label_items", "ingest_labels"),
    "sources": ("LabelSource", "read_labels"),
}
_WHERE = {name: module for module, names in _MODULES.items() for name in names}

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


def __getattr__(name: str) -> Any:
    """Import the submodule that defines ``name`` on first use."""
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
