"""Write a planned cube as a Zarr v3 group, with the root metadata as the commit point.

Order of writes (SPEC §9): (1) every array's metadata and the small coordinate arrays, with the root
group document held back, so a plain ``xr.open_zarr`` finds no group while pixels are being written;
(2) the pixel chunks, one deterministic task per chunk on the dask workers (gap slices write nothing);
(3) the root group document, marked complete, and the consolidated metadata, written last. A build that
dies before (3) leaves nothing a reader opens as a cube.
"""

from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import dask.array as da
import numpy as np
import numpy.typing as npt
import xarray as xr
import zarr
import zarr.codecs

from icecube_cloud.errors import BuildError, ProductError, portable_errors
from icecube_cloud.plan import CubePlan, SourceRef
from icecube_cloud.read import open_reader
from icecube_cloud.read.protocol import Window
from icecube_cloud.storage import StorageTarget

log = logging.getLogger(__name__)

ROOT_DOC = "zarr.json"
STATUS_ATTR = "icecube_cloud_status"
"""Root attribute that reads ``complete`` once every chunk of the cube is written."""

_VARIABLE_ATTRS: dict[str, dict[str, str]] = {
    "amplitude": {
        "long_name": "SAR amplitude (digital number)",
        "units": "1",
        "comment": "ICEYE GRD amplitude as delivered, bit-exact; calibrated intensity is "
        "calibration_factor * amplitude**2",
    },
    "slc": {
        "long_name": "single-look complex SAR signal",
        "units": "1",
        "comment": "ICEYE SLC as delivered: s_i + 1j*s_q (legacy) or amplitude*exp(1j*phase) (COG)",
    },
}


def _dt64(values: Sequence[Any]) -> npt.NDArray[np.datetime64]:
    return np.array(
        [
            np.datetime64("NaT", "ns") if v is None else np.datetime64(v.replace(tzinfo=None), "ns")
            for v in values
        ],
        dtype="datetime64[ns]",
    )


def skeleton(plan: CubePlan, metadata_json: Sequence[str]) -> xr.Dataset:
    """The cube as an ``xr.Dataset`` whose pixel variable is a lazy placeholder (never computed).

    Args:
        plan: The cube plan.
        metadata_json: One full-metadata JSON string per time slice ("" for gaps).
    """
    n = len(plan.slices)
    coords = [s.coords for s in plan.slices]

    def per_time(attr: str, fill: Any) -> list[Any]:
        return [fill if c is None else getattr(c, attr) for c in coords]

    pixels = da.zeros((n, *plan.shape), dtype=plan.dtype, chunks=(1, *plan.chunks))
    strings = {
        name: ("time", np.array(per_time(name, ""), dtype=object))
        for name in (
            "orbit_state",
            "observation_direction",
            "polarization",
            "platform",
            "product_id",
        )
    }
    ds = xr.Dataset(
        {plan.variable: (("time", "azimuth", "range"), pixels, _VARIABLE_ATTRS[plan.variable])},
        coords={
            "time": ("time", _dt64([s.time for s in plan.slices])),
            "azimuth": ("azimuth", np.arange(plan.shape[0], dtype="int32")),
            "range": ("range", np.arange(plan.shape[1], dtype="int32")),
            "acquisition_start": ("time", _dt64(per_time("acquisition_start", None))),
            "acquisition_end": ("time", _dt64(per_time("acquisition_end", None))),
            "incidence_angle": (
                "time",
                np.array(per_time("incidence_angle", np.nan), dtype="float64"),
            ),
            "calibration_factor": (
                "time",
                np.array(per_time("calibration_factor", np.nan), dtype="float64"),
            ),
            "valid": ("time", np.array([s.valid for s in plan.slices], dtype=bool)),
            "metadata": ("time", np.array(list(metadata_json), dtype=object)),
            **strings,
        },
        attrs=dict(plan.attrs),
    )
    ds["time"].attrs["comment"] = "acquisition end (UTC), or bin start with temporal_resolution > 0"
    ds["metadata"].attrs["comment"] = "full product metadata as JSON (lossless)"
    ds["incidence_angle"].attrs["units"] = "degree"
    return ds


def _encoding(plan: CubePlan) -> dict[str, dict[str, Any]]:
    c = plan.compression
    enc: dict[str, dict[str, Any]] = {
        plan.variable: {
            "chunks": (1, *plan.chunks),
            "compressors": [
                zarr.codecs.BloscCodec(cname=c.cname, clevel=c.clevel, shuffle=c.shuffle)
            ],
        }
    }
    for name in ("time", "acquisition_start", "acquisition_end"):
        enc[name] = {"units": "microseconds since 1970-01-01", "dtype": "int64"}
    return enc


def write_skeleton(ds: xr.Dataset, plan: CubePlan, target: StorageTarget) -> bytes:
    """Write array metadata and coordinates; return (and remove) the root group document.

    The root ``zarr.json`` is held back until :func:`commit` so that readers see no cube meanwhile.
    """
    store = target.zarr_store()
    ds.to_zarr(
        store, mode="w-", compute=False, consolidated=False, zarr_format=3, encoding=_encoding(plan)
    )
    fs, root = target.fs, f"{target.path}/{ROOT_DOC}"
    doc: bytes = fs.cat_file(root)
    fs.rm_file(root)
    return doc


@portable_errors
def write_chunk(
    target: StorageTarget,
    variable: str,
    t: int,
    window: Window,
    source: SourceRef,
    storage_options: Mapping[str, Any] | None = None,
) -> int:
    """Read one window of one source and write it as one chunk (runs on a worker).

    Deterministic: the bytes written depend only on the arguments and the source file.

    Returns:
        Number of uncompressed bytes written.
    """
    reader = open_reader(source, storage_options=storage_options)
    try:
        data = reader.read(window)
    finally:
        reader.close()
    array = zarr.open_array(store=target.zarr_store(), path=variable, mode="r+", zarr_format=3)
    if data.dtype != array.dtype:
        raise ProductError(
            source.href, f"sample type {data.dtype} differs from the cube's {array.dtype}"
        )
    array[(t, *window.slices)] = data
    return int(data.nbytes)


def commit(target: StorageTarget, root_doc: bytes, attrs: Mapping[str, Any]) -> None:
    """Publish the cube: restore the root document marked complete, then consolidate metadata."""
    doc = json.loads(root_doc)
    doc.setdefault("attributes", {}).update(dict(attrs))
    doc["attributes"][STATUS_ATTR] = "complete"
    target.fs.pipe_file(f"{target.path}/{ROOT_DOC}", json.dumps(doc, indent=2).encode())
    with warnings.catch_warnings():
        # zarr warns that consolidated metadata is not (yet) part of the v3 spec; xarray relies on it.
        warnings.simplefilter("ignore", category=UserWarning)
        zarr.consolidate_metadata(target.zarr_store())


def check_complete(attrs: Mapping[str, Any], url: str) -> None:
    """Raise if a cube's root attributes do not mark it complete."""
    if attrs.get(STATUS_ATTR) != "complete":
        raise BuildError(f"{url}: the cube is incomplete (a build did not finish)")
