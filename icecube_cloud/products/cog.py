"""Reader of current ICEYE COG deliveries (``*_GRD.tif`` / ``*_SLC.tif`` + sidecar STAC item).

Sidecar quirks normalised here (SPEC §2c): ``sar:center_frequency`` in Hz, ``proj:transform``
in GDAL geotransform order ``[c, a, b, f, d, e]``, shadows-down pixel layout. In the real Open
Data sidecars ``proj:shape`` is ``[width, height]`` of the file (their geometry, bbox and
``proj:centroid`` only agree with the transform that way); the reader accepts either order and
trusts the file (or, with no file, the footprint) to decide.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import rasterio
from affine import Affine

from icecube_cloud.errors import ProductError
from icecube_cloud.model import Orientation, ProductFormat
from icecube_cloud.products._common import Fields
from icecube_cloud.products.model import ProductMetadata

log = logging.getLogger(__name__)

EMBEDDED_TAG = "ICEYE_PROPERTIES"
"""GDAL metadata tag in which ICEYE embeds the sidecar item."""
DATA_ASSETS = {"grd-cog": ProductFormat.GRD_COG, "slc-cog": ProductFormat.SLC_COG}
"""Data asset key -> flavour."""
_STAC_DTYPES = {
    "ui8": "uint8",
    "ui16": "uint16",
    "i16": "int16",
    "f32": "float32",
    "f64": "float64",
}


def is_iceye_item(obj: Any) -> bool:
    """Whether a parsed JSON document is an ICEYE COG sidecar STAC item."""
    if not isinstance(obj, dict) or not isinstance(obj.get("properties"), dict):
        return False
    assets = obj.get("assets")
    return isinstance(assets, dict) and any(key in assets for key in DATA_ASSETS)


def data_asset(item: Mapping[str, Any], where: str) -> tuple[str, ProductFormat]:
    """Key and flavour of the item's data asset."""
    for key, fmt in DATA_ASSETS.items():
        if key in item.get("assets", {}):
            return key, fmt
    raise ProductError(where, f"sidecar item has no data asset ({' or '.join(DATA_ASSETS)})")


def gdal_to_affine(values: Sequence[float], where: str) -> tuple[float, ...]:
    """``proj:transform`` in GDAL order ``[c, a, b, f, d, e]`` -> affine ``(a, b, c, d, e, f)``."""
    if len(values) not in (6, 9) or not all(isinstance(v, int | float) for v in values):
        raise ProductError(where, f"'proj:transform' must hold 6 numbers, got {values!r}")
    c, a, b, f, d, e = (float(v) for v in values[:6])
    return (a, b, c, d, e, f)


def _same_transform(one: Sequence[float], other: Sequence[float]) -> bool:
    scale = max(abs(v) for v in (*one[:2], *one[3:5])) or 1.0
    return all(
        math.isclose(x, y, rel_tol=1e-9, abs_tol=1e-6 * scale)
        for x, y in zip(one[:6], other[:6], strict=True)
    )


def _ring_distance(transform: Sequence[float], rows: int, cols: int, ring: Sequence[Any]) -> float:
    """Largest distance from the raster's corners to the nearest vertex of ``ring``."""
    aff = Affine(*transform[:6])
    corners = [aff @ (0, 0), aff @ (cols, 0), aff @ (cols, rows), aff @ (0, rows)]
    return max(min(math.dist(corner, (p[0], p[1])) for p in ring) for corner in corners)


def _file_shape(
    item: Mapping[str, Any], transform: Sequence[float] | None, where: str
) -> tuple[int, int]:
    """File (rows, cols) from ``proj:shape`` when no file is at hand, ordered by the footprint."""
    shape = item["properties"].get("proj:shape")
    if not (isinstance(shape, list) and len(shape) == 2 and all(isinstance(v, int) for v in shape)):
        raise ProductError(where, f"missing or malformed 'proj:shape': {shape!r}")
    first, second = int(shape[0]), int(shape[1])
    ring = (item.get("geometry") or {}).get("coordinates", [[]])[0]
    if transform is None or first == second or len(ring) < 4:
        return first, second
    if _ring_distance(transform, second, first, ring) < _ring_distance(
        transform, first, second, ring
    ):
        return second, first
    return first, second


def is_iceye_sidecar(item: Mapping[str, Any]) -> bool:
    """Whether an item document is ICEYE's own sidecar (declares ICEYE's product-spec schema).

    Such items carry ICEYE's conventions (GDAL-order ``proj:transform``, ``proj:shape`` as
    ``[width, height]``); items written by icecube-cloud follow the STAC conventions instead.
    """
    return any("sar.iceye.com" in str(ext) for ext in item.get("stac_extensions", []))


def sidecar_file_shape(item: Mapping[str, Any], where: str) -> tuple[int, int]:
    """File (rows, cols) of an ICEYE sidecar item, without opening the file."""
    raw = item["properties"].get("proj:transform")
    return _file_shape(item, gdal_to_affine(raw, where) if raw is not None else None, where)


def _footprint(item: Mapping[str, Any]) -> tuple[tuple[float, float], ...]:
    geometry = item.get("geometry") or {}
    if geometry.get("type") != "Polygon":
        return ()
    return tuple((float(p[0]), float(p[1])) for p in geometry["coordinates"][0])


def load_item(text: str | bytes, where: str) -> dict[str, Any]:
    """Parse a sidecar (or embedded) item; a bare properties dict is wrapped as an item."""
    try:
        obj = json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ProductError(where, f"sidecar item is not valid JSON: {exc}") from exc
    if not isinstance(obj, dict):
        raise ProductError(where, "sidecar item is not a JSON object")
    if "properties" not in obj:
        obj = {"id": obj.get("id"), "properties": obj, "assets": {}}
    return obj


def embedded_item(ds: rasterio.DatasetReader, where: str) -> dict[str, Any] | None:
    """The item ICEYE embeds in the TIFF's ``ICEYE_PROPERTIES`` tag, if any."""
    text = ds.tags().get(EMBEDDED_TAG)
    return None if text is None else load_item(text, where)


@dataclass(frozen=True)
class _Layout:
    """The pixel layout of a COG as the file (or, with no file, the sidecar) declares it."""

    file_shape: tuple[int, int]
    """(rows, cols) of the file."""
    transform: tuple[float, ...] | None
    """Affine ``(a, b, c, d, e, f)``, or ``None`` when unknown."""
    dtype: str
    """Pixel dtype of the first band."""
    crs: str | None
    """CRS of the transform."""


def _format(
    item: Mapping[str, Any], product_type: str, ds: rasterio.DatasetReader | None
) -> ProductFormat:
    """The flavour: from the data asset's key, else the product type or the file's band count."""
    asset_key = next((k for k in DATA_ASSETS if k in item.get("assets", {})), None)
    if asset_key is not None:
        return DATA_ASSETS[asset_key]
    if product_type.upper().startswith("SLC") or (ds is not None and ds.count == 2):
        return ProductFormat.SLC_COG
    return ProductFormat.GRD_COG


def _file_layout(
    ds: rasterio.DatasetReader,
    href: str,
    where: str,
    fmt: ProductFormat,
    props: Mapping[str, Any],
    transform: tuple[float, ...] | None,
) -> _Layout:
    """The open file's layout, checked against what the sidecar declares.

    Raises:
        ProductError: A ``proj:transform`` or ``proj:shape`` that disagrees with the file, or a
            band count that does not fit the flavour.
    """
    file_shape = (ds.height, ds.width)
    file_transform = tuple(ds.transform)[:6]
    if transform is not None and not _same_transform(transform, file_transform):
        raise ProductError(
            where,
            f"'proj:transform' {props.get('proj:transform')} (GDAL order, affine {transform}) "
            f"does not match the transform of {href} {file_transform}",
        )
    declared = props.get("proj:shape")
    if declared is not None and list(declared) not in ([*file_shape], [*file_shape][::-1]):
        raise ProductError(where, f"'proj:shape' {declared} does not match {href} {file_shape}")
    expected_bands = 2 if fmt is ProductFormat.SLC_COG else 1
    if ds.count != expected_bands:
        raise ProductError(
            href, f"{fmt.value} must have {expected_bands} band(s), found {ds.count}"
        )
    crs = ds.crs.to_string() if ds.crs is not None else props.get("proj:code")
    return _Layout(file_shape, file_transform, str(ds.dtypes[0]), crs)


def _sidecar_layout(
    item: Mapping[str, Any], where: str, fmt: ProductFormat, transform: tuple[float, ...] | None
) -> _Layout:
    """The layout the sidecar declares, when no file is at hand."""
    props: Mapping[str, Any] = item["properties"]
    file_shape = _file_shape(item, transform, where)
    bands = props.get("raster:bands") or [{}]
    default = "float32" if fmt is ProductFormat.SLC_COG else "uint16"
    dtype = _STAC_DTYPES.get(str(bands[0].get("data_type")), default)
    return _Layout(file_shape, transform, dtype, props.get("proj:code"))


def _metadata(
    href: str,
    item: Mapping[str, Any],
    props: dict[str, Any],
    fields: Fields,
    fmt: ProductFormat,
    product_type: str,
    layout: _Layout,
    orientation: Orientation,
) -> ProductMetadata:
    """The product's metadata from the sidecar's fields (``props``) and the checked layout."""
    rows, cols = layout.file_shape
    shape = (cols, rows) if orientation == "shadows-down" else (rows, cols)
    frequency = fields.number("sar:center_frequency")
    software = props.get("processing:software")
    return ProductMetadata(
        product_id=str(item.get("id") or fields.text("iceye:filename")),
        href=href,
        format=fmt,
        product_type=product_type,
        acquisition_start=fields.time("start_datetime"),
        acquisition_end=fields.time("end_datetime"),
        platform=fields.text("platform"),
        instrument_mode=fields.text("sar:instrument_mode").lower(),
        polarizations=tuple(str(p).upper() for p in fields.raw("sar:polarizations")),
        center_frequency_ghz=frequency / 1e9 if frequency > 1e6 else frequency,
        incidence_angle=fields.number("view:incidence_angle"),
        observation_direction=fields.look_side("sar:observation_direction"),
        orbit_state=fields.orbit_state("sat:orbit_state"),
        shape=shape,
        dtype=layout.dtype,
        orientation=orientation,
        datetime=fields.time("datetime"),
        incidence_near=fields.opt_float("iceye:incidence_angle_near"),
        incidence_far=fields.opt_float("iceye:incidence_angle_far"),
        absolute_orbit=fields.opt_int("sat:absolute_orbit"),
        relative_orbit=fields.opt_int("sat:relative_orbit"),
        pixel_spacing_range=fields.opt_float("sar:pixel_spacing_range"),
        pixel_spacing_azimuth=fields.opt_float("sar:pixel_spacing_azimuth"),
        looks_range=fields.opt_float("sar:looks_range"),
        looks_azimuth=fields.opt_float("sar:looks_azimuth"),
        calibration_factor=fields.opt_float("iceye:calibration_factor"),
        footprint=_footprint(item),
        rpc=props.get("iceye:rpc") if isinstance(props.get("iceye:rpc"), dict) else None,
        transform=(*layout.transform,) if layout.transform is not None else None,  # type: ignore[arg-type]
        crs=layout.crs,
        processing_software=(
            {str(k): str(v) for k, v in software.items()} if isinstance(software, dict) else {}
        ),
        sidecar=dict(item),
        metadata=props,
    )


def read_cog(
    href: str,
    item: Mapping[str, Any],
    ds: rasterio.DatasetReader | None,
    *,
    sidecar_href: str | None = None,
) -> ProductMetadata:
    """Describe a COG delivery from its item and, when available, the open TIFF.

    Args:
        href: The data (TIFF) href.
        item: The sidecar (or embedded) STAC item.
        ds: The open TIFF, or ``None`` when only the sidecar is available.
        sidecar_href: Where the item came from (for errors); defaults to ``href``.

    Raises:
        ProductError: Missing fields, a ``proj:transform`` that disagrees with the file, a
            ``proj:shape`` that fits neither order of the file's shape.
    """
    where = sidecar_href or href
    props: dict[str, Any] = dict(item["properties"])
    fields = Fields(where, props)
    product_type = fields.text("sar:product_type")
    fmt = _format(item, product_type, ds)
    raw_transform = props.get("proj:transform")
    transform = gdal_to_affine(raw_transform, where) if raw_transform is not None else None
    orientation: Orientation = (
        "native"
        if str(props.get("iceye:orientation", "shadows-down")) == "native"
        else "shadows-down"
    )
    if ds is not None:
        layout = _file_layout(ds, href, where, fmt, props, transform)
    else:
        layout = _sidecar_layout(item, where, fmt, transform)
    return _metadata(href, item, props, fields, fmt, product_type, layout, orientation)
