"""Reader of legacy ICEYE SLC HDF5 files: ``s_i``/``s_q`` plus metadata as top-level datasets.

The stored metadata keeps the file's own dataset and group names (HDF5 names are case-sensitive:
``posX``, ``RPC/LINE_OFF``) and array shapes (``(N, 1)`` datasets stay lists of one-element lists);
the typed fields look names up case-insensitively.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import IO, Any

import h5py

from icecube_cloud.errors import ProductError
from icecube_cloud.model import ProductFormat
from icecube_cloud.products import integrity
from icecube_cloud.products._common import Fields, legacy_fields
from icecube_cloud.products._parse import to_jsonable
from icecube_cloud.products.model import ProductMetadata

PIXEL_DATASETS = ("s_i", "s_q")
"""Datasets holding the real and imaginary parts of the pixels."""
MARKER_DATASETS = (*PIXEL_DATASETS, "product_level", "satellite_name", "acquisition_start_utc")
"""Datasets whose presence marks an HDF5 file as (possibly damaged) ICEYE SLC."""


def _group_metadata(group: h5py.Group) -> dict[str, Any]:
    """Every dataset of ``group`` (subgroups as dicts) under its own name, as JSON-able values."""
    out: dict[str, Any] = {}
    for name, obj in group.items():
        if name in PIXEL_DATASETS and group.name == "/":
            continue
        if isinstance(obj, h5py.Group):
            out[name] = _group_metadata(obj)
        elif isinstance(obj, h5py.Dataset):
            out[name] = to_jsonable(obj[()])
    return out


def lower_case_view(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """``metadata`` with lower-case keys, for the typed fields (a lower-case name wins a clash)."""
    view = {key.lower(): value for key, value in metadata.items()}
    view.update({key: value for key, value in metadata.items() if key == key.lower()})
    return view


def _pixel_dataset(href: str, h5: h5py.File, name: str) -> h5py.Dataset:
    """The pixel dataset ``name`` (present in the file), or why it cannot be opened."""
    try:
        obj = h5[name]
    except (KeyError, OSError) as exc:  # HDF5 checks a dataset's size against the file's end
        raise ProductError(href, f"pixel dataset {name!r} cannot be opened: {exc}") from exc
    if not isinstance(obj, h5py.Dataset):
        raise ProductError(href, f"pixel dataset {name!r} is a {type(obj).__name__}, not a dataset")
    return obj


def _first(fields: Fields, *keys: str) -> float | None:
    """The first present numeric field among ``keys``."""
    for key in keys:
        if fields.metadata.get(key) not in (None, ""):
            return fields.number(key)
    return None


def read_legacy_slc(
    href: str, fileobj: IO[bytes] | str, *, size: int | None = None
) -> ProductMetadata:
    """Describe a legacy SLC HDF5 file.

    Args:
        href: Where the file is (used in errors and as the pixel href).
        fileobj: Local path or open binary file object of the HDF5 file.
        size: The file's size in bytes: when given, the pixel datasets must lie inside it.

    Raises:
        ProductError: When the file is not readable HDF5, is truncated, or lacks pixels or
            required fields.
    """
    try:
        with h5py.File(fileobj, "r") as h5:
            missing = [name for name in PIXEL_DATASETS if name not in h5]
            if missing:
                raise ProductError(href, f"missing pixel dataset(s) {missing} (not an ICEYE SLC?)")
            s_i, s_q = (_pixel_dataset(href, h5, name) for name in PIXEL_DATASETS)
            if s_i.ndim != 2 or s_i.shape != s_q.shape:
                raise ProductError(
                    href, f"'s_i' {s_i.shape} and 's_q' {s_q.shape} must be equal 2-D shapes"
                )
            if size is not None:
                integrity.check_hdf5_datasets(href, h5, PIXEL_DATASETS, size)
            shape = (int(s_i.shape[0]), int(s_i.shape[1]))
            dtype = str(s_i.dtype)
            metadata = _group_metadata(h5)
    except ProductError:
        raise
    except (OSError, KeyError, ValueError, RuntimeError) as exc:
        raise integrity.hdf5_open_error(href, exc) from exc
    fields = Fields(href, lower_case_view(metadata))
    group = fields.metadata.get("rpc")
    rpc = lower_case_view(group) if isinstance(group, dict) else None
    return ProductMetadata(
        format=ProductFormat.LEGACY_SLC,
        shape=shape,
        dtype=dtype,
        pixel_spacing_range=_first(fields, "range_spacing", "slant_range_spacing"),
        pixel_spacing_azimuth=_first(fields, "azimuth_spacing", "azimuth_ground_spacing"),
        rpc=rpc,
        **legacy_fields(fields, metadata),
    )
