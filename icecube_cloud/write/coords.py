"""Encoding of the cube's time and per-time coordinates, and what gap slices hold in them.

Gap slices (``valid = false``, no image) hold missing values that every reader can recognise:
NaT times are stored as :data:`MISSING_TIME` and NaN floats as NaN, each declared as the CF
``_FillValue`` attribute and (Zarr v3) the array's ``fill_value``; strings hold '', the array's
fill value, documented in the coordinate's ``comment``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

MISSING_TIME = int(np.iinfo(np.int64).min)
"""Stored value of a missing time (NaT: ``acquisition_start``/``_end`` of gap slices)."""
STRING_COORDS = ("orbit_state", "observation_direction", "polarization", "platform", "product_id")
"""Per-time string coordinates; '' (their Zarr fill value) in gap slices."""
# Strings get no CF _FillValue: xarray cannot encode one for them, and decoding one would turn ''
# into NaN in an array of strings. '' is the Zarr fill value (and netCDF-4's default string fill).
GAP_STRING = "'' (this array's fill value) in gap slices (valid = false)"
"""``comment`` of the string coordinates (and part of ``metadata``'s)."""
_TIME = {"units": "microseconds since 1970-01-01", "dtype": "int64"}


def coord_encoding(zarr_format: int) -> dict[str, dict[str, Any]]:
    """The xarray encoding of ``time`` and of the per-time coordinates that gaps leave missing.

    Times are int64 microseconds; ``time`` itself is never missing. xarray writes a Zarr v2
    ``_FillValue`` as the array's ``fill_value``; for Zarr v3 it writes the attribute, and the
    array's ``fill_value`` is set to the same value here.

    Args:
        zarr_format: 3 for materialised cubes, 2 for kerchunk references.
    """
    enc: dict[str, dict[str, Any]] = {"time": dict(_TIME)}
    for name in ("acquisition_start", "acquisition_end"):
        enc[name] = {**_TIME, "_FillValue": MISSING_TIME}
    for name in ("incidence_angle", "calibration_factor"):
        enc[name] = {"_FillValue": np.nan}
    if zarr_format == 3:
        for spec in enc.values():
            if "_FillValue" in spec:
                spec["fill_value"] = spec["_FillValue"]
    return enc
