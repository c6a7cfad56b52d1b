"""ICEYE products: every piece of ICEYE format knowledge, and nothing else.

Readers for the three flavours found in the wild (legacy GRD GeoTIFF, legacy SLC HDF5, current
COG with a sidecar STAC item) return one :class:`ProductMetadata`; :func:`find_products` lists
product files.
"""

from __future__ import annotations

from icecube_cloud.model import Orientation, ProductFormat, ProductLevel
from icecube_cloud.products.detect import find_products, read_product
from icecube_cloud.products.model import GroundControlPoint, ProductMetadata

__all__ = [
    "GroundControlPoint",
    "Orientation",
    "ProductFormat",
    "ProductLevel",
    "ProductMetadata",
    "find_products",
    "read_product",
]
