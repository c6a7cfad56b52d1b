"""Map (lon/lat) geometry -> the pixel grid of one SAR product, with the product's own geolocation.

Pixel coordinates everywhere in :mod:`icecube_cloud.labels` are continuous and edge-based in the
*physical* axes: ``x`` = range, ``y`` = azimuth; the pixel ``(azimuth=i, range=j)`` is the unit square
``[j, j+1) x [i, i+1)`` and its centre is ``(j + 0.5, i + 0.5)`` (GDAL's pixel/line convention applied
to the physical grid). For native files (legacy products) physical = file: ``x = col``, ``y = row``.
Shadows-down COGs store range down the rows and azimuth backwards along the columns, so
``x = row`` and ``y = n_azimuth - col`` (pixel index: ``azimuth = n_azimuth - 1 - col``).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import pyproj
import shapely
from rasterio.control import GroundControlPoint as RioGCP
from rasterio.crs import CRS
from rasterio.errors import RasterioError
from rasterio.rpc import RPC
from rasterio.transform import AffineTransformer, GCPTransformer, RPCTransformer, TransformerBase
from rasterio.warp import transform as warp_transform
from shapely.geometry.base import BaseGeometry

from icecube_cloud.labels.errors import LabelError
from icecube_cloud.products.model import ProductMetadata

Method = Literal["auto", "transform", "gcps", "rpc"]
"""Geolocation used: the affine ``transform`` (COGs), the ``gcps`` (legacy GRD), the ``rpc``; ``auto``
picks the first the product has, in that order."""

_WGS84 = CRS.from_epsg(4326)


def resolve_method(meta: ProductMetadata, method: Method = "auto") -> Method:
    """The geolocation ``method`` resolves to for ``meta``.

    Raises:
        LabelError: The product lacks that geolocation (or any, for ``auto``).
    """
    have: dict[Method, bool] = {
        "transform": meta.transform is not None and meta.crs is not None,
        "gcps": len(meta.gcps) >= 3,
        "rpc": bool(meta.rpc),
    }
    if method == "auto":
        for candidate in ("transform", "gcps", "rpc"):
            if have[candidate]:
                return candidate
        raise LabelError(meta.href, "product has no geolocation (no transform, GCPs or RPC)")
    if not have[method]:
        raise LabelError(meta.href, f"product has no {method} geolocation")
    return method


def file_to_physical(
    meta: ProductMetadata, cols: np.ndarray, rows: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Continuous file (col, row) -> physical (x = range, y = azimuth)."""
    cols, rows = np.asarray(cols, dtype=float), np.asarray(rows, dtype=float)
    if meta.orientation == "shadows-down":
        return rows, meta.shape[0] - cols
    return cols, rows


def _transformer(meta: ProductMetadata, method: Method) -> TransformerBase:
    if method == "transform":
        assert meta.transform is not None
        from affine import Affine

        return AffineTransformer(Affine(*meta.transform))
    if method == "gcps":
        gcps = [RioGCP(row=g.row, col=g.col, x=g.lon, y=g.lat, z=g.height) for g in meta.gcps]
        return GCPTransformer(gcps)
    assert meta.rpc is not None
    return RPCTransformer(RPC(**dict(meta.rpc)))


def lonlat_to_pixel(
    meta: ProductMetadata,
    lon: np.ndarray,
    lat: np.ndarray,
    *,
    method: Method = "auto",
) -> tuple[np.ndarray, np.ndarray]:
    """Lon/lat (EPSG:4326) -> continuous physical pixel coordinates (x = range, y = azimuth).

    Heights: the mean GCP height for GCPs, the RPC height offset for RPC (a flat scene).

    Raises:
        LabelError: The product lacks the geolocation, or the transform fails (names the product).
    """
    resolved = resolve_method(meta, method)
    xs = np.atleast_1d(np.asarray(lon, dtype=float))
    ys = np.atleast_1d(np.asarray(lat, dtype=float))
    zs = np.zeros_like(xs)
    if resolved == "transform" and meta.crs is not None and CRS.from_user_input(meta.crs) != _WGS84:
        xs_l, ys_l = warp_transform(_WGS84, CRS.from_user_input(meta.crs), xs, ys)
        xs, ys = np.asarray(xs_l), np.asarray(ys_l)
    elif resolved == "rpc" and meta.rpc is not None:
        zs = zs + float(meta.rpc.get("height_off", 0.0))
    elif resolved == "gcps":
        zs = zs + float(np.mean([g.height for g in meta.gcps]))
    try:
        with _transformer(meta, resolved) as tr:
            rows, cols = tr.rowcol(xs, ys, zs=zs, op=np.positive)  # identity: keep fractions
    except (RasterioError, TypeError, ValueError) as err:
        raise LabelError(meta.href, f"cannot transform lon/lat with its {resolved}: {err}") from err
    return file_to_physical(meta, np.asarray(cols, dtype=float), np.asarray(rows, dtype=float))


def geometry_to_pixel(
    meta: ProductMetadata, geometry: BaseGeometry, *, method: Method = "auto"
) -> BaseGeometry:
    """A lon/lat shapely geometry in the product's physical pixel grid (x = range, y = azimuth)."""

    def fn(coords: np.ndarray) -> np.ndarray:
        x, y = lonlat_to_pixel(meta, coords[:, 0], coords[:, 1], method=method)
        return np.column_stack([x, y])

    out: BaseGeometry = shapely.transform(geometry, fn)
    return out


def physical_to_file(
    meta: ProductMetadata, x: np.ndarray, y: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Continuous physical (x = range, y = azimuth) -> file (col, row); see :func:`file_to_physical`."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if meta.orientation == "shadows-down":
        return meta.shape[0] - y, x
    return x, y


def pixel_geometry_to_crs(
    meta: ProductMetadata, geometry: BaseGeometry, crs_wkt: str, *, method: Method = "auto"
) -> BaseGeometry:
    """A geometry in the product's physical pixel grid -> the same place in CRS ``crs_wkt``.

    Through the product's own geolocation (as :func:`lonlat_to_pixel`, the other way): for the labels
    of a map-geometry cube, drawn where the cube's warped pixels are.

    Raises:
        LabelError: The product lacks the geolocation, or the transform fails (names the product).
    """
    resolved = resolve_method(meta, method)
    src_crs = CRS.from_user_input(meta.crs) if resolved == "transform" and meta.crs else _WGS84
    dst_crs = CRS.from_wkt(crs_wkt)
    height = 0.0  # heights as lonlat_to_pixel (and the map warp's RPC) take them
    if resolved == "gcps" and meta.gcps:
        height = float(np.mean([g.height for g in meta.gcps]))
    elif resolved == "rpc" and meta.rpc is not None:
        height = float(meta.rpc.get("height_off", 0.0))

    def fn(coords: np.ndarray) -> np.ndarray:
        cols, rows = physical_to_file(meta, coords[:, 0], coords[:, 1])
        try:
            with _transformer(meta, resolved) as tr:
                xs, ys = tr.xy(rows, cols, zs=np.full_like(rows, height), offset="ul")
            mx, my = warp_transform(src_crs, dst_crs, np.atleast_1d(xs), np.atleast_1d(ys))
        except (RasterioError, TypeError, ValueError) as err:
            raise LabelError(
                meta.href, f"cannot map label pixels with its {resolved}: {err}"
            ) from err
        return np.column_stack([mx, my])

    out: BaseGeometry = shapely.transform(geometry, fn)
    return out


def lonlat_geometry_to_crs(geometry: BaseGeometry, crs_wkt: str) -> BaseGeometry:
    """A lon/lat (EPSG:4326) geometry in CRS ``crs_wkt``: each vertex transformed by PROJ.

    For GeoJSON labels on a map-geometry cube: drawn straight on its grid, no product involved.
    """
    to_crs = pyproj.Transformer.from_crs("EPSG:4326", pyproj.CRS.from_wkt(crs_wkt), always_xy=True)

    def fn(coords: np.ndarray) -> np.ndarray:
        x, y = to_crs.transform(coords[:, 0], coords[:, 1])
        return np.column_stack([x, y])

    out: BaseGeometry = shapely.transform(geometry, fn)
    return out
