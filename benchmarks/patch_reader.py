"""Raw zarr patch reads for ``bench_layout``'s reader processes (a light module: numpy and zarr only)."""

from __future__ import annotations

from typing import Any

import numpy as np
import zarr

Window = tuple[int, int, int]
"""(time, row, col) of a patch's top-left pixel."""

_OPEN: dict[str, zarr.Array[Any]] = {}
"""Arrays opened by this process (a reader opens each cube once, as a loader's worker does)."""


def read_patch(cube: str, window: Window, patch: int) -> int:
    """Read one patch of ``amplitude`` with raw zarr (no dask); the sum of its pixels."""
    array = _OPEN.get(cube)
    if array is None:
        array = _OPEN[cube] = zarr.open_array(store=cube, path="amplitude", mode="r")
    t, r, c = window
    return int(array[t, r : r + patch, c : c + patch].sum(dtype=np.int64))
