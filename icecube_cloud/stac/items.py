"""ICEYE products as STAC Items (SPEC §3), and the accessors the cube build reads them back with.

The item is written by hand (plain property dicts) rather than through pystac's extension classes,
because those pin older extension versions (e.g. SAR v1.0.0) than the ones we declare and validate.
"""

from __future__ import annotations

import logging
import math
import posixpath
import re
from collections.abc import Mapping
from typing import Any

import pystac
import shapely
from shapely.geometry import MultiPoint, Polygon, mapping

from icecube_cloud.errors import CatalogError, ProductError
from icecube_cloud.model import COLLECTION_OF_LEVEL, ProductFormat
from icecube_cloud.products.cog import is_iceye_sidecar, sidecar_file_shape
from icecube_cloud.products.model import ProductMetadata

log = logging.getLogger(__name__)

_EXT = "https://stac-extensions.github.io"
ITEM_EXTENSIONS: tuple[str, ...] = (
    f"{_EXT}/sar/v1.3.0/schema.json",
    f"{_EXT}/sat/v1.0.0/schema.json",
    f"{_EXT}/view/v1.0.0/schema.json",
    f"{_EXT}/projection/v2.0.0/schema.json",
    f"{_EXT}/processing/v1.2.0/schema.json",
    f"{_EXT}/raster/v1.1.0/schema.json",
)
"""Extension schemas every product item declares (all mirrored offline)."""

"""STAC collection id of each processing level."""

MEDIA_TYPES: dict[ProductFormat, str] = {
    ProductFormat.LEGACY_GRD: "image/tiff; application=geotiff",
    ProductFormat.LEGACY_SLC: "application/x-hdf5",
    ProductFormat.GRD_COG: "image/tiff; application=geotiff; profile=cloud-optimized",
    ProductFormat.SLC_COG: "image/tiff; application=geotiff; profile=cloud-optimized",
}
"""Media type of the data asset of each product flavour."""

SIDECAR_ASSET_KEYS: dict[ProductFormat, str] = {
    ProductFormat.GRD_COG: "grd-json",
    ProductFormat.SLC_COG: "slc-json",
}
"""Asset key of the sidecar STAC item (role ``metadata``) of COG deliveries."""

_BAND_NAMES: dict[ProductFormat, tuple[str, ...]] = {
    ProductFormat.LEGACY_GRD: ("amplitude",),
    ProductFormat.GRD_COG: ("amplitude",),
    ProductFormat.LEGACY_SLC: ("i", "q"),
    ProductFormat.SLC_COG: ("amplitude", "phase"),
}
_NUMPY_TO_RASTER = {"complex64": "cfloat32", "complex128": "cfloat64"}
_RASTER_TO_NUMPY = {v: k for k, v in _NUMPY_TO_RASTER.items()}
_RASTER_TYPES = frozenset(
    {"int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "float16"}
    | {"float32", "float64", "cint16", "cint32", "cfloat32", "cfloat64"}
)
_PROCESSING_LEVEL = {"GRD": "L1B", "SLC": "L1A"}  # ICEYE product spec: SLC is level 1A, GRD 1B.
_SECRET_KEY = re.compile(
    r"pass(word|wd)?|secret|token|credential|api_?key|access_?key|private_?key|auth|signature",
    re.IGNORECASE,
)
_SECRET_VALUE = re.compile(
    r"://[^/\s]*@|x-amz-(signature|credential|security-token)", re.IGNORECASE
)
_KEY_OK = re.compile(r"^[a-z0-9_][a-z0-9_.-]*$")


def collection_id_for(meta: ProductMetadata) -> str:
    """The collection (``iceye-grd`` / ``iceye-slc``) a product belongs to."""
    return COLLECTION_OF_LEVEL[meta.level]


def product_to_item(meta: ProductMetadata) -> pystac.Item:
    """Describe one ICEYE product as a STAC 1.1.0 Item (SPEC §3).

    Args:
        meta: The product, as read by :mod:`icecube_cloud.products`.

    Returns:
        An Item in collection ``iceye-grd`` or ``iceye-slc`` whose data asset keeps ``meta.href``.

    Raises:
        CatalogError: The product has no usable footprint (no ring, GCPs or lon/lat transform).
    """
    geometry = _footprint(meta)
    props = _properties(meta)
    item = pystac.Item(
        id=meta.product_id,
        geometry=geometry,
        bbox=list(shapely.geometry.shape(geometry).bounds),
        datetime=meta.datetime or meta.acquisition_end,
        properties=props,
        stac_extensions=list(ITEM_EXTENSIONS),
        collection=collection_id_for(meta),
    )
    item.add_asset(meta.format.value, _data_asset(meta))
    sidecar_key = SIDECAR_ASSET_KEYS.get(meta.format)
    if sidecar_key is not None:
        item.add_asset(
            sidecar_key,
            pystac.Asset(
                href=_sidecar_href(meta, sidecar_key),
                media_type="application/geo+json",
                roles=["metadata"],
                title="ICEYE sidecar STAC item",
            ),
        )
    return item


def _properties(meta: ProductMetadata) -> dict[str, Any]:
    props: dict[str, Any] = {
        "start_datetime": pystac.utils.datetime_to_str(meta.acquisition_start),
        "end_datetime": pystac.utils.datetime_to_str(meta.acquisition_end),
        "platform": meta.platform,
        "constellation": "ICEYE",
        "sar:instrument_mode": meta.instrument_mode,
        "sar:frequency_band": "X",
        "sar:center_frequency": meta.center_frequency_ghz,
        "sar:polarizations": list(meta.polarizations),
        "sar:product_type": meta.product_type,
        "sar:observation_direction": meta.observation_direction,
        "view:incidence_angle": meta.incidence_angle,
        "sat:orbit_state": meta.orbit_state.lower(),
        "proj:code": meta.crs,
        "proj:shape": list(meta.file_shape),
        "processing:level": _PROCESSING_LEVEL[meta.level],
        "iceye:orientation": meta.orientation,
    }
    optional: dict[str, Any] = {
        "sar:pixel_spacing_range": meta.pixel_spacing_range,
        "sar:pixel_spacing_azimuth": meta.pixel_spacing_azimuth,
        "sat:absolute_orbit": meta.absolute_orbit,
        "sat:relative_orbit": meta.relative_orbit,
        "proj:transform": list(meta.transform) if meta.transform is not None else None,
        "processing:software": dict(meta.processing_software) or None,
        "iceye:calibration_factor": meta.calibration_factor,
        "iceye:incidence_angle_near": meta.incidence_near,
        "iceye:incidence_angle_far": meta.incidence_far,
    }
    for name, looks in (("range", meta.looks_range), ("azimuth", meta.looks_azimuth)):
        if looks is not None and float(looks).is_integer():
            optional[f"sar:looks_{name}"] = int(looks)
        else:  # the SAR extension wants integers; keep fractional looks as an ICEYE field
            optional[f"iceye:looks_{name}"] = looks
    props.update({k: v for k, v in optional.items() if v is not None})
    props.update(_iceye_scalars(meta, taken=props.keys()))
    return props


def _iceye_scalars(meta: ProductMetadata, taken: Any) -> dict[str, Any]:
    """Every scalar metadata field as ``iceye:<key>``, minus collisions and anything secret."""
    out: dict[str, Any] = {}
    for raw_key, value in meta.metadata.items():
        key = str(raw_key).lower()
        if key.startswith("iceye:"):
            key = key[len("iceye:") :]
        if not _KEY_OK.match(key):  # other namespaces (sar:, view:...) are mapped above
            continue
        name = f"iceye:{key}"
        if name in taken or not _is_scalar(value) or _looks_secret(key, value):
            continue
        out[name] = value
    return out


def _is_scalar(value: Any) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    return isinstance(value, str | int | bool)


def _looks_secret(key: str, value: Any) -> bool:
    if _SECRET_KEY.search(key):
        log.debug("not copying metadata field %r into the STAC item (credential-like)", key)
        return True
    return isinstance(value, str) and bool(_SECRET_VALUE.search(value))


def _data_asset(meta: ProductMetadata) -> pystac.Asset:
    data_type = _NUMPY_TO_RASTER.get(meta.dtype, meta.dtype)
    if data_type not in _RASTER_TYPES:
        raise CatalogError(f"product {meta.product_id}: unsupported sample dtype {meta.dtype!r}")
    bands = [{"name": n, "data_type": data_type} for n in _BAND_NAMES[meta.format]]
    return pystac.Asset(
        href=meta.href,
        media_type=MEDIA_TYPES[meta.format],
        roles=["data"],
        title=f"ICEYE {meta.level} ({meta.format.value})",
        extra_fields={"raster:bands": bands},
    )


def _sidecar_href(meta: ProductMetadata, key: str) -> str:
    """The sidecar JSON next to the data file (its own asset name if it gives one)."""
    name: str | None = None
    if meta.sidecar is not None:
        asset = meta.sidecar.get("assets", {}).get(key)
        if isinstance(asset, Mapping) and isinstance(asset.get("href"), str):
            name = posixpath.basename(asset["href"])
    if not name:
        stem = posixpath.basename(meta.href).rsplit(".", 1)[0]
        name = f"{stem}.json"
    return posixpath.join(posixpath.dirname(meta.href), name)


def _footprint(meta: ProductMetadata) -> dict[str, Any]:
    if len(meta.footprint) >= 4:
        ring = [(float(lon), float(lat)) for lon, lat in meta.footprint]
        if ring[0] != ring[-1]:
            ring.append(ring[0])
        return {"type": "Polygon", "coordinates": [[list(p) for p in ring]]}
    hull: Any = None
    if len(meta.gcps) >= 3:
        hull = MultiPoint([(g.lon, g.lat) for g in meta.gcps]).convex_hull
    elif meta.transform is not None and meta.crs in ("EPSG:4326", "OGC:CRS84"):
        a, b, c, d, e, f = meta.transform
        rows, cols = meta.file_shape
        corners = [(0, 0), (cols, 0), (cols, rows), (0, rows)]
        hull = Polygon([(a * x + b * y + c, d * x + e * y + f) for x, y in corners])
    elif meta.rpc:
        hull = _rpc_outline(meta)
    if not isinstance(hull, Polygon) or hull.is_empty:
        raise CatalogError(
            f"product {meta.product_id}: no footprint (needs a lon/lat ring, >= 3 GCPs not on one "
            "line, an EPSG:4326 transform or an RPC)"
        )
    geometry: dict[str, Any] = dict(mapping(shapely.geometry.polygon.orient(hull)))
    return {"type": "Polygon", "coordinates": [[list(p) for p in geometry["coordinates"][0]]]}


def _rpc_outline(meta: ProductMetadata) -> Polygon | None:
    """The image corners in lon/lat through the product's RPC (at its reference height)."""
    from rasterio.errors import RasterioError
    from rasterio.rpc import RPC
    from rasterio.transform import RPCTransformer

    assert meta.rpc is not None
    rows, cols = meta.file_shape
    try:
        rpc = RPC(**{str(k).lower(): v for k, v in meta.rpc.items()})
        with RPCTransformer(rpc) as tr:
            lon, lat = tr.xy(
                [0, 0, rows, rows], [0, cols, cols, 0], zs=[rpc.height_off] * 4, offset="ul"
            )
    except (RasterioError, TypeError, ValueError):
        return None
    return Polygon(zip(lon, lat, strict=True))


# --- accessors used by the cube build --------------------------------------------------------


def item_format(item: pystac.Item) -> ProductFormat:
    """The product flavour of an item, from its data asset key.

    Raises:
        CatalogError: The item has no (or more than one) ICEYE data asset.
    """
    found = [f for f in ProductFormat if f.value in item.assets]
    if len(found) != 1:
        keys = ", ".join(sorted(item.assets)) or "none"
        raise CatalogError(
            f"item {item.id}: expected exactly one data asset of "
            f"{', '.join(f.value for f in ProductFormat)} (assets: {keys})"
        )
    return found[0]


def item_data_href(item: pystac.Item) -> str:
    """Where the item's pixels are (local path or fsspec URL)."""
    asset = item.assets[item_format(item).value]
    if asset.href.startswith("/") or "://" in asset.href:
        # Already absolute: never resolve a local path against an http(s) item link.
        return asset.href
    return asset.get_absolute_href() or asset.href


def item_physical_shape(item: pystac.Item) -> tuple[int, int]:
    """The image shape as (azimuth, range), from ``proj:shape`` and ``iceye:orientation``.

    Raises:
        CatalogError: ``proj:shape`` is missing or malformed, or the orientation is unknown.
    """
    shape: Any
    document = item.to_dict(include_self_link=False)
    if is_iceye_sidecar(document):
        try:
            shape = list(sidecar_file_shape(document, item.id))
        except ProductError as err:
            raise CatalogError(f"item {item.id}: {err.reason}") from err
    else:
        shape = item.properties.get("proj:shape")
    if (
        not isinstance(shape, list)
        or len(shape) != 2
        or not all(isinstance(n, int) and n > 0 for n in shape)
    ):
        raise CatalogError(f"item {item.id}: proj:shape must be [rows, cols], got {shape!r}")
    rows, cols = shape
    orientation = item.properties.get("iceye:orientation", "native")
    if orientation == "native":
        return rows, cols
    if orientation == "shadows-down":
        return cols, rows
    raise CatalogError(f"item {item.id}: unknown iceye:orientation {orientation!r}")


def item_band_dtypes(item: pystac.Item) -> tuple[str, ...]:
    """NumPy dtype names of the data asset's bands, from ``raster:bands``.

    Raises:
        CatalogError: ``raster:bands`` is missing or names no known data type.
    """
    asset = item.assets[item_format(item).value]
    bands = asset.extra_fields.get("raster:bands")
    if not isinstance(bands, list) or not bands:
        raise CatalogError(f"item {item.id}: data asset has no raster:bands")
    out: list[str] = []
    for band in bands:
        data_type = band.get("data_type") if isinstance(band, Mapping) else None
        if not isinstance(data_type, str) or data_type not in _RASTER_TYPES - {"cint16", "cint32"}:
            raise CatalogError(f"item {item.id}: unsupported raster:bands data_type {data_type!r}")
        out.append(_RASTER_TO_NUMPY.get(data_type, data_type))
    return tuple(out)
