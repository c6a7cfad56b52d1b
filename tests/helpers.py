"""Assertions shared by several test modules (importable because pytest puts tests/ on sys.path)."""

from __future__ import annotations

import json
from typing import Any

import h5py
import numpy as np


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


def assert_clean_metadata(metadata: Any, *, lower_case: bool = True) -> None:
    """Full product metadata is strict JSON, no numpy-printed strings left; lower-case keys where
    the source's keys are case-insensitive (GDAL tags), the source's own names otherwise (HDF5)."""
    json.dumps(metadata, allow_nan=False)
    if lower_case:
        assert all(k == k.lower() for k in metadata)
    leftovers = [s for s in _strings(metadata) if s.lstrip().startswith(("[", "(", "{"))]
    assert leftovers == []


PER_TIME_COORDS = (
    "acquisition_start",
    "acquisition_end",
    "incidence_angle",
    "orbit_state",
    "observation_direction",
    "polarization",
    "platform",
    "product_id",
    "calibration_factor",
    "valid",
    "metadata",
)
"""SPEC §6: the per-time coordinates every cube carries (the contract, written out independently)."""


def assert_same_as_hdf5(metadata: Any, group: Any, skip: tuple[str, ...] = ("s_i", "s_q")) -> None:
    """``metadata`` holds every dataset of the h5py ``group`` under its exact name, shape and value
    (strings decoded, floats equal at the dataset's own precision), subgroups as dicts."""
    names = [n for n in group if not (group.name == "/" and n in skip)]
    assert sorted(metadata) == sorted(names), group.name
    for name in names:
        obj, value = group[name], metadata[name]
        if isinstance(obj, h5py.Group):
            assert_same_as_hdf5(value, obj, skip)
            continue
        raw = obj[()]
        assert np.shape(value) == obj.shape, f"{obj.name}: {np.shape(value)} != {obj.shape}"
        if obj.dtype.kind in "SO":
            decoded = np.vectorize(lambda b: b.decode() if isinstance(b, bytes) else b)(raw)
            assert np.array_equal(np.asarray(value, dtype=object), decoded), obj.name
        else:
            as_read = np.float64 if obj.dtype.kind == "f" else obj.dtype
            got = np.asarray(value, dtype=as_read).astype(obj.dtype)
            np.testing.assert_array_equal(got, raw, err_msg=str(obj.name))


def assert_gap_fill_values(group: Any, zarr_format: int) -> None:
    """Every per-time coordinate of a plain ``zarr`` group holds a declared fill value in gap slices.

    Times: the stored value equals the array's ``fill_value`` (and, Zarr v3, the CF ``_FillValue``
    attribute); floats: NaN, declared; strings: '' (the array's fill value in v3), documented in the
    coordinate's attrs. Valid slices hold no fill value.
    """
    valid = group["valid"][:]
    gaps = ~valid
    assert gaps.any() and valid.any()
    if zarr_format == 3:
        assert group["valid"].fill_value == np.False_
    for name in PER_TIME_COORDS:
        array, values = group[name], group[name][:]
        attrs = dict(array.attrs)
        if name in ("acquisition_start", "acquisition_end"):
            fill = np.iinfo(np.int64).min
            assert array.dtype == np.int64 and array.fill_value == fill, name
            assert (values[gaps] == fill).all() and (values[valid] != fill).all(), name
            if zarr_format == 3:
                assert attrs["_FillValue"] == fill, name
        elif name in ("incidence_angle", "calibration_factor"):
            assert np.isnan(array.fill_value), name
            assert np.isnan(values[gaps]).all() and not np.isnan(values[valid]).any(), name
            if zarr_format == 3:
                assert "_FillValue" in attrs, name
        elif name != "valid":
            assert all(v == "" for v in values[gaps]), name
            assert all(v != "" for v in values[valid]), name
            assert "'' (this array's fill value) in gap slices" in attrs["comment"], name
            if zarr_format == 3:
                assert array.fill_value == "", name
