"""A cube's arrays as plain values, and their Zarr v3 objects rendered with zarr alone.

Every build writes the objects of its cube that are not pixel chunks (array documents, coordinate
chunks, the root document with consolidated metadata) before its band tasks run. Rendering them through
``xarray.Dataset.to_zarr`` made every build import xarray, pandas and dask.array: 0.3 s of a 1.4 s
build of three small images, and more again in the interpreter's teardown. :func:`render_zarr_v3`
writes the same objects with zarr's own API and the conventions of xarray's Zarr backend (CF time
encoding, ``_FillValue`` attributes, the ``coordinates`` attribute, dimension names), so that
``xr.open_zarr`` reads a cube exactly as before. ``tests/test_44_schema.py`` checks every object
against xarray's rendering of the same arrays (:func:`to_dataset`, :func:`render_dataset`) for each
kind of cube.
"""

from __future__ import annotations

import base64
import struct
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import zarr
import zarr.storage

if TYPE_CHECKING:
    import xarray as xr

CALENDAR = "proleptic_gregorian"
"""The calendar of every time array (what xarray writes for numpy datetimes)."""
_EPOCH_UNITS = {"microseconds since 1970-01-01": "us"}
"""Time units the renderer encodes, and numpy's name of their step."""


@dataclass(frozen=True)
class ArraySpec:
    """One array of a cube, in xarray's terms.

    Attributes:
        dims: Dimension names.
        shape: Array shape.
        dtype: In-memory dtype (datetime64 for times, object for strings).
        values: The values, or ``None`` for a pixel variable whose chunks the band tasks write.
        attrs: Attributes, before CF encoding.
        encoding: xarray's Zarr encoding of the array (``chunks``, ``shards``, ``compressors``,
            ``fill_value``; times: ``units``, ``dtype``; CF ``_FillValue``).
        coord: Whether it is a coordinate (else a data variable, which names its coordinates).
    """

    dims: tuple[str, ...]
    shape: tuple[int, ...]
    dtype: np.dtype[Any]
    values: npt.NDArray[Any] | None
    attrs: Mapping[str, Any] = field(default_factory=dict)
    encoding: Mapping[str, Any] = field(default_factory=dict)
    coord: bool = True

    @classmethod
    def of(
        cls,
        dims: tuple[str, ...],
        values: npt.NDArray[Any],
        attrs: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> ArraySpec:
        """An array holding ``values``."""
        return cls(dims, values.shape, values.dtype, values, dict(attrs or {}), **kwargs)


@dataclass(frozen=True)
class CubeSchema:
    """A cube's arrays (in writing order) and its root attributes."""

    arrays: Mapping[str, ArraySpec]
    attrs: Mapping[str, Any]

    def without(self, *names: str) -> CubeSchema:
        """This schema without the arrays ``names``."""
        return CubeSchema({k: v for k, v in self.arrays.items() if k not in names}, self.attrs)


def encode_fill_value(value: Any, dtype: np.dtype[Any]) -> Any:
    """A CF ``_FillValue`` attribute as xarray's Zarr v3 backend stores it (floats as base64)."""
    if dtype.kind == "b":
        return bool(value)
    if dtype.kind in "iu":
        return int(value)
    if dtype.kind == "f":
        return base64.standard_b64encode(struct.pack("<d", float(value))).decode()
    raise TypeError(f"no CF _FillValue encoding for dtype {dtype}")


def _encode_times(
    values: npt.NDArray[np.datetime64], units: str, missing: int | None
) -> npt.NDArray[np.int64]:
    """datetime64 values as integers of ``units``; NaT as ``missing``."""
    step = _EPOCH_UNITS.get(units)
    if step is None:
        raise ValueError(f"unsupported time units {units!r} (supported: {sorted(_EPOCH_UNITS)})")
    nat = np.isnat(values)
    if nat.any() and missing is None:
        raise ValueError("missing times need a _FillValue")
    exact = values.astype(f"datetime64[{step}]")
    if not np.array_equal(exact[~nat], values[~nat]):
        raise ValueError(f"times finer than {units.split()[0]} cannot be stored exactly")
    out = exact.astype(np.int64)
    if missing is not None:
        out[nat] = missing
    return out


def decode_times(values: npt.NDArray[Any], attrs: Mapping[str, Any]) -> npt.NDArray[np.datetime64]:
    """Stored times back to ``datetime64[ns]`` (the inverse of the renderer's encoding).

    Units this module writes are decoded here; others (cubes written before it, by xarray) go
    through xarray's CF decoder.
    """
    units = str(attrs.get("units", ""))
    step = _EPOCH_UNITS.get(units)
    if step is None or attrs.get("calendar", CALENDAR) != CALENDAR:
        from xarray.coding.times import decode_cf_datetime

        out: npt.NDArray[np.datetime64] = decode_cf_datetime(
            values, units, attrs.get("calendar", CALENDAR)
        )
        return out.astype("datetime64[ns]")
    ints = np.asarray(values, dtype=np.int64)
    times = ints.astype(f"datetime64[{step}]").astype("datetime64[ns]")
    if "_FillValue" in attrs:
        times[ints == int(attrs["_FillValue"])] = np.datetime64("NaT")
    return times


@dataclass(frozen=True)
class _Encoded:
    """One array as zarr stores it."""

    values: npt.NDArray[Any] | None
    dtype: Any
    attrs: dict[str, Any]
    fill_value: Any
    layout: dict[str, Any]


def _cf_encode(spec: ArraySpec) -> _Encoded:
    """CF-encode one array as xarray's Zarr v3 backend does (times, fill values, strings)."""
    enc = dict(spec.encoding)
    attrs = dict(spec.attrs)
    values, dtype = spec.values, spec.dtype
    stored: Any = dtype
    cf_fill = enc.pop("_FillValue", np.nan if dtype.kind == "f" else None)  # xarray: NaN for floats
    if dtype.kind == "M":
        units, dtype = enc.pop("units"), np.dtype(enc.pop("dtype"))
        if dtype != np.int64:
            raise ValueError(f"times are stored as int64, not {dtype}")
        if values is not None:
            values = _encode_times(values, units, cf_fill)
        attrs.update(units=units, calendar=CALENDAR)
        stored = dtype
    if cf_fill is not None:
        attrs["_FillValue"] = encode_fill_value(cf_fill, dtype)
    fill_value = enc.pop("fill_value", None)
    if fill_value is None and dtype.kind == "f":
        fill_value = np.nan  # xarray's default for floats (zarr's would be 0)
    if dtype.kind == "O":
        stored = str  # zarr's variable-length UTF-8 strings
    layout = {k: enc.pop(k) for k in ("chunks", "shards", "compressors") if k in enc}
    layout.setdefault("chunks", "auto")
    if enc:
        raise ValueError(f"unsupported encoding keys {sorted(enc)}")
    return _Encoded(values, stored, attrs, fill_value, layout)


def _coordinate_names(schema: CubeSchema, spec: ArraySpec) -> str:
    """The CF ``coordinates`` attribute of a data variable (sorted, as xarray writes it)."""
    names = sorted(
        name
        for name, c in schema.arrays.items()
        if c.coord and name not in c.dims and set(c.dims) <= set(spec.dims)
    )
    return " ".join(names)


def render_zarr_v3(schema: CubeSchema) -> dict[str, bytes]:
    """Every object of the Zarr v3 store of ``schema`` but its pixel variables' chunks, in memory.

    Keys are relative to the cube; the root document carries the consolidated metadata of every array.
    """
    memory: dict[str, Any] = {}  # key -> zarr Buffer
    store = zarr.storage.MemoryStore(memory)
    group = zarr.open_group(store, mode="w", zarr_format=3)
    group.attrs.put(dict(schema.attrs))
    for name, spec in schema.arrays.items():
        encoded = _cf_encode(spec)
        attrs = encoded.attrs
        if not spec.coord and "coordinates" not in attrs:
            coordinates = _coordinate_names(schema, spec)
            if coordinates:
                attrs["coordinates"] = coordinates
        array = group.create(
            name,
            shape=spec.shape,
            dtype=encoded.dtype,
            fill_value=encoded.fill_value,
            dimension_names=spec.dims,
            overwrite=True,
            config={},
            **encoded.layout,
        )
        array.attrs.put(attrs)
        if encoded.values is not None:
            array[...] = encoded.values
    _consolidate(store)
    return {key: buf.to_bytes() for key, buf in memory.items()}


def _consolidate(store: zarr.storage.MemoryStore) -> None:
    with warnings.catch_warnings():
        # zarr warns that consolidated metadata is not (yet) part of the v3 spec; xarray relies on it.
        warnings.simplefilter("ignore", category=UserWarning)
        zarr.consolidate_metadata(store)


def to_dataset(schema: CubeSchema) -> tuple[xr.Dataset, dict[str, dict[str, Any]]]:
    """The schema as an ``xr.Dataset`` and its xarray Zarr encoding.

    Pixel variables become never-computed dask placeholders (one chunk each).
    """
    import dask.array as da
    import xarray as xr

    variables: dict[str, Any] = {}
    coords: dict[str, Any] = {}
    for name, spec in schema.arrays.items():
        values = spec.values
        if values is None:
            # One dask chunk: the placeholder is never computed.
            values = da.zeros(spec.shape, dtype=spec.dtype, chunks=-1)
        (coords if spec.coord else variables)[name] = (spec.dims, values, dict(spec.attrs))
    ds = xr.Dataset(variables, coords=coords, attrs=dict(schema.attrs))
    encoding = {name: dict(spec.encoding) for name, spec in schema.arrays.items() if spec.encoding}
    return ds, encoding


def render_dataset(ds: xr.Dataset, encoding: Mapping[str, Mapping[str, Any]]) -> dict[str, bytes]:
    """Every object of the Zarr v3 store of ``ds`` but its lazy (dask) variables' chunks, by xarray.

    For datasets that exist as xarray objects anyway (prediction cubes on an opened cube's
    coordinates); the root document carries the consolidated metadata of every array.
    """
    memory: dict[str, Any] = {}  # key -> zarr Buffer
    store = zarr.storage.MemoryStore(memory)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=UserWarning)
        ds.to_zarr(
            store,
            mode="w",
            compute=False,
            consolidated=False,
            zarr_format=3,
            encoding=dict(encoding),
        )
    _consolidate(store)
    return {key: buf.to_bytes() for key, buf in memory.items()}
