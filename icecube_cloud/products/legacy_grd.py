"""Reader of legacy ICEYE GRD GeoTIFFs (product spec 2.x): metadata in GDAL tags, RPC, GCPs.

The stored metadata holds every tag of the default namespace under its lower-cased name (GDAL
metadata keys are case-insensitive), the RPC namespace as ``rpc`` and the GCPs as ``gcps``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import rasterio
from rasterio.control import GroundControlPoint as RioGCP
from rasterio.crs import CRS

from icecube_cloud.errors import ProductError
from icecube_cloud.model import ProductFormat
from icecube_cloud.products._common import TRUNCATED_KEY, Fields, legacy_fields
from icecube_cloud.products._parse import parse_tag_value
from icecube_cloud.products.model import GroundControlPoint, ProductMetadata

log = logging.getLogger(__name__)

MARKER_TAGS = ("PRODUCT_LEVEL", "SATELLITE_NAME", "ACQUISITION_START_UTC")
"""Tags whose presence identifies a legacy ICEYE GeoTIFF."""


def is_legacy_grd(ds: rasterio.DatasetReader) -> bool:
    """Whether an open GeoTIFF carries the legacy ICEYE tag set."""
    tags = ds.tags()
    return any(tag in tags for tag in MARKER_TAGS)


def parse_tags(tags: dict[str, str]) -> dict[str, Any]:
    """Lower-case tag name -> JSON-able value, elided arrays listed in ``_truncated_fields``."""
    metadata: dict[str, Any] = {}
    truncated: list[str] = []
    for name, text in tags.items():
        key = name.lower()
        value, was_truncated = parse_tag_value(text)
        metadata[key] = value
        if was_truncated:
            truncated.append(key)
    if truncated:
        log.warning("numpy-printed arrays elided with '...' at the source: %s", truncated)
        metadata[TRUNCATED_KEY] = sorted(truncated)
    return metadata


def rpc_dict(ds: rasterio.DatasetReader) -> dict[str, Any] | None:
    """The RPC namespace as lower-case keys -> numbers / lists of numbers, or ``None``."""
    rpcs = ds.rpcs
    if rpcs is None:
        return None
    return {str(k).lower(): v for k, v in rpcs.to_dict().items()}


GCP_COLUMNS = ("row", "col", "lon", "lat", "height")
"""Order of the values of each point in the metadata's ``gcps`` entry."""


def gcp_record(gcps: Sequence[RioGCP], crs: CRS | None) -> dict[str, Any]:
    """The GCPs as a compact, lossless metadata entry: one ``[row, col, lon, lat, height]`` each.

    ``row``/``col`` are GDAL's line/pixel in the file's grid, ``lon``/``lat`` the GCP's x/y in
    ``crs``. Ids are listed only when they are not ``"1"``..``"N"``, infos only when any is set.
    """
    record: dict[str, Any] = {
        "crs": crs.to_string() if crs is not None else None,
        "columns": list(GCP_COLUMNS),
        "points": [[g.row, g.col, g.x, g.y, g.z] for g in gcps],
    }
    ids = [g.id for g in gcps]
    if ids != [str(k + 1) for k in range(len(gcps))]:
        record["ids"] = ids
    if any(g.info for g in gcps):
        record["info"] = [g.info for g in gcps]
    return record


def read_legacy_grd(href: str, ds: rasterio.DatasetReader) -> ProductMetadata:
    """Describe an open legacy GRD GeoTIFF.

    Args:
        href: Where the file is (used in errors and as the pixel href).
        ds: The open dataset.

    Raises:
        ProductError: When a required tag is missing or malformed.
    """
    metadata = parse_tags(ds.tags())
    rpc = rpc_dict(ds)
    if rpc is not None:
        metadata["rpc"] = rpc
    fields = Fields(href, metadata)
    if ds.count != 1:
        raise ProductError(href, f"legacy GRD must have 1 band, found {ds.count}")
    gcp_list, gcp_crs = ds.gcps
    if gcp_list:
        metadata["gcps"] = gcp_record(gcp_list, gcp_crs)
    if gcp_list and gcp_crs is not None and gcp_crs.to_epsg() != 4326:
        log.warning("%s: GCPs are in %s, not EPSG:4326", href, gcp_crs)
    gcps = tuple(
        GroundControlPoint(row=g.row, col=g.col, lon=g.x, lat=g.y, height=g.z or 0.0)
        for g in gcp_list
    )
    return ProductMetadata(
        format=ProductFormat.LEGACY_GRD,
        shape=(ds.height, ds.width),
        dtype=str(ds.dtypes[0]),
        pixel_spacing_range=fields.opt_float("range_spacing"),
        pixel_spacing_azimuth=fields.opt_float("azimuth_spacing"),
        gcps=gcps,
        rpc=rpc,
        **legacy_fields(fields, metadata),
    )
