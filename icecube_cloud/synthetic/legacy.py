"""Writers of synthetic legacy ICEYE products: GRD GeoTIFF (GDAL tags) and SLC HDF5 (datasets)."""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import rasterio
from rasterio.control import GroundControlPoint
from rasterio.crs import CRS
from rasterio.errors import NotGeoreferencedWarning
from rasterio.rpc import RPC

from icecube_cloud.synthetic._fields import common_fields, grd_only_fields, slc_only_fields
from icecube_cloud.synthetic.pixels import IQDtype, grd_pixels, slc_iq
from icecube_cloud.synthetic.spec import SyntheticSpec, geo, rpc_coefficients

GCP_GRID = 9
"""GCPs per axis (ICEYE delivers a regular grid; the samples have 810)."""
GCP_HEIGHT = 110.7


def tag_string(value: Any) -> str:
    """Format a value the way ICEYE's legacy writer put it in a GDAL tag (``str()`` of numpy)."""
    if isinstance(value, np.ndarray):
        return np.array2string(value, threshold=sys.maxsize)
    return str(value)


def gcp_grid(spec: SyntheticSpec, n: int = GCP_GRID) -> list[GroundControlPoint]:
    """A regular n x n grid of GCPs over this raster (row = azimuth, col = range, EPSG:4326)."""
    n_az, n_rg = spec.shape
    rows = np.linspace(0, n_az - 1, n)
    cols = np.linspace(0, n_rg - 1, n)
    grid_r, grid_c = np.meshgrid(rows, cols, indexing="ij")
    lonlat = geo(spec, grid_r.ravel(), grid_c.ravel())
    return [
        GroundControlPoint(row=float(r), col=float(c), x=float(lon), y=float(lat), z=GCP_HEIGHT,
                           id=str(k + 1))
        for k, (r, c, (lon, lat)) in enumerate(zip(grid_r.ravel(), grid_c.ravel(), lonlat,
                                                   strict=True))
    ]  # fmt: skip


def write_legacy_grd(
    path: str | os.PathLike[str], spec: SyntheticSpec, *, gcps: bool = True, rpc: bool = True
) -> Path:
    """Write a legacy GRD GeoTIFF: uint16, no CRS, ICEYE tags, RPC, GCPs in EPSG:4326.

    Args:
        path: Output file (``.tif``); its name becomes ``PRODUCT_FILE``.
        spec: What to write.
        gcps: Write the GCPs (``False``: a product located by its RPC alone).
        rpc: Write the RPC namespace (an exact model of the same geometry as the GCPs).
    """
    out = Path(path)
    fields = common_fields(spec, "GRD", out.name)
    fields.update(grd_only_fields(spec))
    tags = {name.upper(): tag_string(value) for name, value in sorted(fields.items())}
    tags["SATELLITE_NAME"] = repr((spec.platform,))  # ICEYE wrote a 1-tuple
    n_az, n_rg = spec.shape
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(
            out, "w", driver="GTiff", height=n_az, width=n_rg, count=1, dtype="uint16"
        ) as dst:
            dst.write(grd_pixels(spec), 1)
            dst.update_tags(**tags)
            if gcps:
                dst.gcps = (gcp_grid(spec), CRS.from_epsg(4326))
            if rpc:
                dst.rpcs = RPC(**rpc_coefficients(spec))
    return out


def _dataset_value(value: Any) -> Any:
    """HDF5 representation: strings as bytes, string arrays as (N, 1) fixed-length bytes."""
    if isinstance(value, str):
        return np.bytes_(value.encode())
    if isinstance(value, np.ndarray) and value.dtype.kind == "U":
        return value.astype("S")[:, None] if value.ndim == 1 else value.astype("S")
    return value


def write_legacy_slc(
    path: str | os.PathLike[str], spec: SyntheticSpec, iq_dtype: IQDtype = "int16"
) -> Path:
    """Write a legacy SLC HDF5: ``s_i``/``s_q`` plus every metadata field as a dataset, ``RPC/``.

    Args:
        path: Output file (``.h5``).
        spec: What to write.
        iq_dtype: ``int16`` (real deliveries) or ``float32`` (the ICEYE samples).
    """
    out = Path(path)
    fields = common_fields(spec, "SLC", out.name)
    fields.update(slc_only_fields(spec))
    iq = slc_iq(spec, iq_dtype)
    with h5py.File(out, "w") as h5:
        h5.attrs["library_version"] = "0.1.0"
        h5.create_dataset("s_i", data=iq[0])
        h5.create_dataset("s_q", data=iq[1])
        for name, value in sorted(fields.items()):
            if isinstance(value, str):
                h5.create_dataset(name, data=value.encode(), dtype=h5py.string_dtype("ascii"))
            else:
                h5.create_dataset(name, data=_dataset_value(value))
        rpc = h5.create_group("RPC")
        for name, value in rpc_coefficients(spec).items():
            rpc.create_dataset(name.upper(), data=np.asarray(value, dtype=np.float32))
    return out
