"""The config's ``grid`` key (SPEC §4, §6b): a map-geometry cube's grid as the user asks for it.

Validated like every other key: a wrong field is a :class:`ConfigError` naming ``grid.<field>``
(exit 2). The grid is resolved for a selection by :mod:`icecube_cloud.grid`.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Mapping
from typing import Any

from icecube_cloud.config_values import parse_bbox, parse_number
from icecube_cloud.errors import ConfigError
from icecube_cloud.model import GridSpec


def slc_on_grid() -> ConfigError:
    """The error of an SLC selection with a map grid: the phase must never be interpolated."""
    return ConfigError(
        "grid",
        "an SLC cube cannot be put on a map grid (the phase must never be interpolated); "
        'set "product_type": "GRD", or drop grid for an SLC cube in SAR geometry',
    )


_GRID_FIELDS = ("crs", "resolution", "bbox", "resampling")


def parse_grid(key: str, value: Any) -> GridSpec:
    """The map grid (SPEC §4, §6b): every field optional, each checked here (exit 2 names it)."""
    if not isinstance(value, Mapping):
        raise ConfigError(key, f"expected an object with {', '.join(_GRID_FIELDS)}, got {value!r}")
    for field_name in value:
        if field_name not in _GRID_FIELDS:
            close = difflib.get_close_matches(str(field_name), _GRID_FIELDS, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; use {', '.join(_GRID_FIELDS)}"
            raise ConfigError(f"{key}.{field_name}", f"unknown grid field{hint}")
    crs = value.get("crs", "utm")
    if not isinstance(crs, str) or not crs.strip():
        raise ConfigError(
            f"{key}.crs", f'expected "utm" or a CRS such as "EPSG:32630", got {crs!r}'
        )
    if crs.strip().lower() != "utm":
        import pyproj  # only here: validating a named CRS

        try:
            pyproj.CRS.from_user_input(crs)
        except pyproj.exceptions.CRSError:
            raise ConfigError(f"{key}.crs", f"not a coordinate reference system: {crs!r}") from None
    resolution = value.get("resolution")
    if resolution is not None:
        resolution = parse_number(f"{key}.resolution", resolution)
        if not (math.isfinite(resolution) and resolution > 0):
            raise ConfigError(
                f"{key}.resolution",
                f"expected a size > 0 in CRS units, got {value['resolution']!r}",
            )
    bbox = value.get("bbox")
    if bbox is not None:
        bbox = parse_bbox(f"{key}.bbox", bbox)
        if bbox[0] == bbox[2] or bbox[1] == bbox[3]:
            raise ConfigError(f"{key}.bbox", f"the box has no area: {value['bbox']!r}")
    from rasterio.enums import Resampling  # only here: rasterio is slow to import

    resampling = value.get("resampling", "nearest")
    names = [r.name for r in Resampling]
    if resampling not in names:
        close = difflib.get_close_matches(str(resampling), names, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise ConfigError(
            f"{key}.resampling", f"{hint}expected one of {', '.join(names)}; got {resampling!r}"
        )
    return GridSpec(crs=crs.strip(), resolution=resolution, bbox=bbox, resampling=resampling)
