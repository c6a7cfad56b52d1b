"""The north-up grid of a map-geometry cube (SPEC §6b): the config's ``grid`` resolved for a selection.

Pure grid arithmetic on odc-geo's ``GeoBox``: the CRS (``utm``: the zone of the selection's centroid),
the resolution (default: the products' ground pixel spacing), the area (the config's ``grid.bbox``,
else the search's ``bbox``/``intersects``, else the union of the selected footprints) and pixel edges
on multiples of the resolution, so that cubes of one site share their pixel grid.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from typing import Any

from odc.geo.crs import CRS
from odc.geo.geobox import GeoBox
from odc.geo.geom import Geometry, box, unary_union

from icecube_cloud.errors import ConfigError, SelectionError
from icecube_cloud.model import GridSpec, MapGrid

_METRES_PER_DEGREE = 111_320.0
"""Length of one degree of latitude (and of longitude at the equator), metres."""
_DENSIFY_DEGREES = 1e-3
"""Longest segment of an area's outline when projected (about 100 m)."""
MAX_PIXELS = 2**31
"""Largest grid a cube may have (a bbox or resolution mistake would otherwise plan terabytes)."""


def grid_crs(spec: GridSpec, area: Geometry) -> CRS:
    """The grid's CRS: the named one, or the UTM zone of ``area``'s centroid (lon/lat)."""
    if spec.crs.lower() == "utm":
        centroid = area.centroid
        return CRS.utm(centroid.coords[0][0], centroid.coords[0][1])
    try:
        return CRS(spec.crs)
    except Exception as err:  # pyproj raises its own CRSError for every unknown spelling
        raise ConfigError("grid.crs", f"not a coordinate reference system: {spec.crs!r}") from err


def default_resolution(spacings_m: Sequence[float], crs: CRS) -> float:
    """The products' ground pixel size in the grid's units.

    Each product's pixel is the coarser of its range and azimuth spacing (``spacings_m``, metres);
    the grid takes their median (robust to one odd product), in metres for a projected CRS, or in
    degrees of latitude for a geographic one.
    """
    if not spacings_m:
        raise SelectionError("no product tells its pixel spacing; set grid.resolution")
    metres = statistics.median(spacings_m)
    if crs.geographic:
        return metres / _METRES_PER_DEGREE
    return metres


def _area(
    spec: GridSpec, search_area: Mapping[str, Any] | None, footprints: Geometry | None
) -> Geometry:
    if spec.bbox is not None:
        return box(*spec.bbox, crs="epsg:4326")
    if search_area is not None:
        return Geometry(dict(search_area), crs="epsg:4326")
    if footprints is None:
        raise SelectionError("the selected products have no footprint; set grid.bbox")
    return footprints


def resolve_grid(
    spec: GridSpec,
    footprints: Sequence[Mapping[str, Any]],
    spacings_m: Sequence[float],
    search_area: Mapping[str, Any] | None = None,
) -> MapGrid:
    """Resolve the config's ``grid`` for a selection.

    Args:
        spec: The config's ``grid``.
        footprints: GeoJSON geometries (lon/lat) of the selected products.
        spacings_m: Each selected product's ground pixel size, metres.
        search_area: The search's ``bbox``/``intersects`` as a GeoJSON geometry, if any.

    Raises:
        ConfigError: ``grid.crs`` is not a CRS, or the grid would be empty or absurdly large.
        SelectionError: Nothing tells the area or the resolution.
    """
    union = unary_union(Geometry(dict(f), crs="epsg:4326") for f in footprints)
    area = _area(spec, search_area, union)
    centre = union or area
    crs = grid_crs(spec, centre)
    resolution = spec.resolution or default_resolution(spacings_m, crs)
    # Straight lon/lat edges curve on the grid: densify before projecting; no tolerance on coverage.
    projected = area.to_crs(crs, resolution=_DENSIFY_DEGREES)
    gbox = GeoBox.from_bbox(
        projected.boundingbox, crs=crs, resolution=resolution, anchor="edge", tol=0.0
    )
    ny, nx = gbox.shape.yx
    if ny <= 0 or nx <= 0:
        raise ConfigError("grid", f"the area is empty on a grid of resolution {resolution:g}")
    if ny * nx > MAX_PIXELS:
        raise ConfigError(
            "grid",
            f"{ny} x {nx} pixels at resolution {resolution:g} {crs.units[0]}: too large; "
            "check grid.resolution (in the CRS's units) and grid.bbox",
        )
    epsg = crs.epsg
    a = gbox.affine
    return MapGrid(
        crs=f"EPSG:{epsg}" if epsg is not None else crs.to_wkt(),
        crs_wkt=crs.to_wkt(),
        transform=(a.a, a.b, a.c, a.d, a.e, a.f),
        shape=(int(ny), int(nx)),
        resampling=spec.resampling,
    )
