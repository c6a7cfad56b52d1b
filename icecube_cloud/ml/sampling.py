"""Where patches are taken: window positions of the grid and random samplers (pure numpy).

Positions on one spatial axis are the multiples of the patch size inside a region (so windows line
up with chunks whose size the patch size divides), plus the region's first pixel when that is not a
multiple and a last window shifted inwards to end on the region's last pixel: every pixel is covered,
no window is dropped or padded.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from icecube_cloud.errors import UsageError
from icecube_cloud.ml.regions import Region


def axis_positions(start: int, stop: int, size: int) -> npt.NDArray[np.int64]:
    """Window starts covering ``[start, stop)`` with windows of ``size`` (see the module docstring).

    Raises:
        UsageError: The range is shorter than one window.
    """
    if stop - start < size:
        raise UsageError(f"a patch of {size} pixels does not fit in {stop - start} pixels")
    first_multiple = -(-start // size) * size
    starts = set(range(first_multiple, stop - size + 1, size))
    starts.add(start)
    starts.add(stop - size)
    return np.array(sorted(starts), dtype=np.int64)


def window_times(valid: npt.NDArray[np.bool_], region: Region, times: int) -> npt.NDArray[np.int64]:
    """First time indices of windows of ``times`` consecutive valid slices inside ``region``."""
    if times < 1:
        raise UsageError(f"times={times}: expected a number of slices >= 1")
    t0, t1 = region.times
    ok = valid[t0:t1].astype(np.int64)
    if len(ok) < times:
        return np.empty(0, dtype=np.int64)
    run = np.convolve(ok, np.ones(times, dtype=np.int64), mode="valid")  # valid slices per window
    return (np.flatnonzero(run == times) + t0).astype(np.int64)


def grid_windows(
    valid: npt.NDArray[np.bool_], region: Region, size: int, times: int
) -> npt.NDArray[np.int64]:
    """Every (time, row, col) of the grid sampler: all valid windows x all positions, ``(n, 3)``."""
    t = window_times(valid, region, times)
    rows = axis_positions(*region.rows, size)
    cols = axis_positions(*region.cols, size)
    grid = np.stack(np.meshgrid(t, rows, cols, indexing="ij"), axis=-1)
    return grid.reshape(-1, 3)


def random_window(
    rng: np.random.Generator,
    starts: npt.NDArray[np.int64],
    region: Region,
    size: int,
    aligned: bool,
    positions: tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]] | None = None,
) -> tuple[int, int, int]:
    """One random (time, row, col): a time from ``starts``; positions of the grid when ``aligned``.

    ``positions``: the grid's row and column starts (:func:`axis_positions` of the region), when the
    caller has them already (computing them per draw costs ~5 % of a patch read).
    """
    t = int(starts[rng.integers(len(starts))])
    if aligned:
        rows, cols = positions or (
            axis_positions(*region.rows, size),
            axis_positions(*region.cols, size),
        )
        return t, int(rows[rng.integers(len(rows))]), int(cols[rng.integers(len(cols))])
    return (
        t,
        int(rng.integers(region.rows[0], region.rows[1] - size + 1)),
        int(rng.integers(region.cols[0], region.cols[1] - size + 1)),
    )


def data_fraction(
    has_data: npt.NDArray[np.bool_], rows: Sequence[int], cols: Sequence[int], size: int
) -> npt.NDArray[np.float64]:
    """Fraction of pixels with data of every ``size``² window at ``rows`` x ``cols`` of one slice.

    Summed-area table: one pass over the slice, O(1) per window.
    """
    table = np.zeros((has_data.shape[0] + 1, has_data.shape[1] + 1), dtype=np.int64)
    np.cumsum(np.cumsum(has_data, axis=0, dtype=np.int64), axis=1, out=table[1:, 1:])
    r = np.asarray(rows, dtype=np.int64)[:, None]
    c = np.asarray(cols, dtype=np.int64)[None, :]
    total = table[r + size, c + size] - table[r, c + size] - table[r + size, c] + table[r, c]
    fraction: npt.NDArray[np.float64] = total / float(size * size)
    return fraction


def tile_spans(n: int, size: int, overlap: int) -> list[tuple[int, int, int]]:
    """Overlapping tiles along one axis of ``n`` pixels, and the part of each that is kept.

    Tiles of ``size`` start every ``size - 2 * overlap`` pixels (the last one shifted inwards to end
    on the last pixel); neighbours cut at the middle of their overlap, so every kept pixel lies at
    least ``overlap`` pixels inside its tile except along the image's own edges (no seams).

    Returns:
        ``(start, keep_from, keep_to)`` per tile: the tile is ``[start, start + size)`` and writes
        ``[keep_from, keep_to)``; the kept parts partition ``[0, n)``.

    Raises:
        UsageError: ``overlap`` leaves no stride, or the axis is shorter than a tile.
    """
    stride = size - 2 * overlap
    if overlap < 0 or stride < 1:
        raise UsageError(f"overlap={overlap}: expected 0 <= overlap < size / 2 (size {size})")
    if n < size:
        raise UsageError(f"a tile of {size} pixels does not fit in {n} pixels (lower size)")
    starts = list(range(0, n - size + 1, stride))
    if starts[-1] != n - size:
        starts.append(n - size)
    cuts = [0] + [(a + size + b) // 2 for a, b in itertools.pairwise(starts)] + [n]
    return [(s, cuts[k], cuts[k + 1]) for k, s in enumerate(starts)]
