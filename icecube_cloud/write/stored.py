"""What ``update`` needs to know of a stored cube, read with zarr alone.

The pixel variable's layout and geometry and the per-time keys (time, product): two small arrays and
the consolidated metadata, without importing xarray (an ``update`` that finds nothing to do then
costs what a small build costs, README Performance). The stored product metadata, the biggest of the
per-time arrays, is read separately (:func:`read_metadata`), only by an update that rewrites slices.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import zarr

from icecube_cloud.errors import DataError
from icecube_cloud.storage import StorageTarget, public_url
from icecube_cloud.write.schema import decode_times


@dataclass(frozen=True)
class StoredCube:
    """The parts of a stored cube that an update compares with its new plan.

    Attributes:
        dims: Dimensions of the pixel variable (``()`` when the cube has none of that name).
        shape: Its shape.
        dtype: Its dtype.
        chunks: Its stored chunks (inner chunks of a sharded array).
        shards: Its shards, or ``None``.
        geo_transform: The map grid's GDAL ``GeoTransform`` (``None``: SAR geometry).
        keys: Per time slice, (time, product id; '' for gaps).
    """

    dims: tuple[str, ...]
    shape: tuple[int, ...]
    dtype: str
    chunks: tuple[int, ...]
    shards: tuple[int, ...] | None
    geo_transform: str | None
    keys: list[tuple[np.datetime64, str]]


def _url(target: StorageTarget) -> str:
    return public_url(target.url)


def _group(target: StorageTarget) -> zarr.Group:
    """The cube's root group, opened from its consolidated metadata."""
    return zarr.open_group(
        target.zarr_store(read_only=True), mode="r", zarr_format=3, use_consolidated=True
    )


def _array(group: zarr.Group, name: str, url: str) -> zarr.Array[Any]:
    """The array ``name`` of the cube at ``url``; a damaged cube is a :class:`DataError`."""
    try:
        node = group[name]
    except KeyError:
        node = None
    if not isinstance(node, zarr.Array):
        raise DataError(
            f"{url}: the cube has no array {name!r} (damaged or not written by icecube-cloud); "
            "rebuild it with --overwrite"
        )
    return node


def read_stored(target: StorageTarget, variable: str) -> StoredCube:
    """Read the parts of the cube at ``target`` that :class:`StoredCube` holds.

    Raises:
        DataError: An array the cube must have is missing.
    """
    url, group = _url(target), _group(target)
    names = set(group.array_keys())
    dims: tuple[str, ...] = ()
    shape: tuple[int, ...] = ()
    chunks: tuple[int, ...] = ()
    dtype, shards = "", None
    if variable in names:
        pixels = _array(group, variable, url)
        meta = pixels.metadata
        dims = tuple(str(d) for d in getattr(meta, "dimension_names", None) or ())
        shape, dtype = tuple(pixels.shape), str(pixels.dtype)
        chunks, shards = tuple(pixels.chunks), pixels.shards
    geo = None
    if "spatial_ref" in names:
        value = _array(group, "spatial_ref", url).attrs.get("GeoTransform")
        geo = None if value is None else str(value)
    time = _array(group, "time", url)
    times = decode_times(np.asarray(time[...]), time.attrs)
    ids = [str(p) for p in np.asarray(_array(group, "product_id", url)[...])]
    return StoredCube(
        dims=dims,
        shape=shape,
        dtype=dtype,
        chunks=chunks,
        shards=None if shards is None else tuple(shards),
        geo_transform=geo,
        keys=list(zip(times, ids, strict=True)),
    )


def read_metadata(target: StorageTarget) -> list[str]:
    """Per time slice, the stored product metadata JSON ('' for gaps).

    Raises:
        DataError: The cube has no ``metadata`` array.
    """
    return [str(m) for m in np.asarray(_array(_group(target), "metadata", _url(target))[...])]
