"""Open built cubes and describe them (``info``)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import numpy as np
import xarray as xr

from icecube_cloud.errors import DataError
from icecube_cloud.storage import StorageTarget
from icecube_cloud.write.journal import STATUS_ATTR


def open_cube(url: str, *, storage_options: Mapping[str, Any] | None = None) -> xr.Dataset:
    """Open a cube lazily and check that its build finished.

    Plain ``xr.open_zarr(url)`` works too; this adds the completeness check and a clear error.
    A ``.json`` URL (or a ``.parq`` Parquet reference store) is a virtual (kerchunk-referenced) cube,
    opened into the same layout (issue #5).

    Raises:
        DataError: Nothing at ``url`` is a complete icecube-cloud cube, or a referenced product changed.
    """
    if url.rstrip("/").endswith((".json", ".parq")):  # issue #5: virtual cube
        from icecube_cloud.virtual import open_references  # lazy: kerchunk/fsspec references

        virtual = open_references(url, storage_options=storage_options)
        if virtual.attrs.get(STATUS_ATTR) != "complete":
            raise DataError(f"{url}: the cube is incomplete (its build did not finish)")
        return virtual
    target = StorageTarget.from_url(url, storage_options)
    try:
        ds: xr.Dataset = xr.open_zarr(
            target.zarr_store(read_only=True), consolidated=True, zarr_format=3
        )
    except (FileNotFoundError, KeyError, ValueError) as err:
        raise DataError(f"{url}: not a complete cube ({type(err).__name__}: {err})") from err
    except Exception as err:  # zarr raises its own GroupNotFoundError etc.
        raise DataError(f"{url}: not a complete cube ({type(err).__name__}: {err})") from err
    if ds.attrs.get(STATUS_ATTR) != "complete":
        if ds.attrs.get(STATUS_ATTR) == "updating":
            raise DataError(
                f"{url}: the cube is being updated (rerun `update` if that was interrupted)"
            )
        raise DataError(f"{url}: the cube is incomplete (its build did not finish)")
    return ds


def cube_info(ds: xr.Dataset, url: str = "") -> str:
    """A human-readable summary: dims, variables, time axis, provenance, completeness."""
    var = "amplitude" if "amplitude" in ds else "slc" if "slc" in ds else None
    lines = [f"cube {url}".rstrip()]
    lines.append("dims: " + ", ".join(f"{k}={v}" for k, v in ds.sizes.items()))
    for name, v in ds.data_vars.items():
        chunks = tuple(c[0] for c in v.chunks) if v.chunks else None
        lines.append(f"variable {name}: {v.dtype} {tuple(v.shape)} chunks {chunks}")
    valid = ds["valid"].values if "valid" in ds else np.ones(ds.sizes.get("time", 0), dtype=bool)
    lines.append(
        f"time: {ds.sizes.get('time', 0)} slices, {int(valid.sum())} images, {int((~valid).sum())} gaps"
    )
    for i in range(ds.sizes.get("time", 0)):
        t = np.datetime_as_string(ds["time"].values[i], unit="s")
        if valid[i]:
            pid = str(ds["product_id"].values[i]) if "product_id" in ds else ""
            inc = (
                float(ds["incidence_angle"].values[i]) if "incidence_angle" in ds else float("nan")
            )
            lines.append(f"  {t}Z  {pid}  incidence {inc:.2f}")
        else:
            lines.append(f"  {t}Z  gap")
    attrs = ds.attrs
    search = attrs.get("icecube_cloud_search", {})
    if isinstance(search, str):
        search = json.loads(search)
    lines.append(f"product type: {attrs.get('product_type', '?')}; variable: {var}")
    virtual = attrs.get("icecube_cloud_virtual")  # issue #5
    if isinstance(virtual, dict):
        lines.append(
            f"virtual cube: kerchunk references to {len(attrs.get('icecube_cloud_sources', []))} "
            f"products (file orientation {virtual.get('orientation')}; applied on open)"
        )
    lines.append(f"catalog: {search.get('catalog', '?')}")
    lines.append(f"config: {json.dumps(attrs.get('icecube_cloud_config', {}), sort_keys=True)}")
    lines.append(
        f"built by icecube-cloud {attrs.get('icecube_cloud_version', '?')} at {attrs.get('created', '?')}; "
        f"status: {attrs.get(STATUS_ATTR, 'unknown')}"
    )
    return "\n".join(lines)
