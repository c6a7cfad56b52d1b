"""Leakage-free train/validation regions of a cube (SPEC §6c ``split_regions``).

Neighbouring SAR pixels are strongly correlated (speckle is filtered over several looks, targets span
many pixels), so random patches split into train and validation share information. A split is
therefore made of whole areas — or of whole time slices — that keep a buffer apart.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import xarray as xr

from icecube_cloud.errors import UsageError

DEFAULT_SPACE_BUFFER = 32
"""Pixels between regions of a split by space, unless given."""


@dataclass(frozen=True)
class Region:
    """A part of a cube: half-open index ranges ``[start, stop)`` on time and the two spatial dims.

    ``PatchDataset(..., region=r)`` samples only windows lying wholly inside it (every slice of a
    multi-time window included).
    """

    times: tuple[int, int]
    """Time indices ``[start, stop)``."""
    rows: tuple[int, int]
    """Indices on the first spatial dim (``azimuth`` or ``y``)."""
    cols: tuple[int, int]
    """Indices on the second spatial dim (``range`` or ``x``)."""

    def __post_init__(self) -> None:
        for name in ("times", "rows", "cols"):
            start, stop = getattr(self, name)
            if not 0 <= start < stop:
                raise UsageError(f"Region.{name}={(start, stop)}: expected 0 <= start < stop")

    @classmethod
    def whole(cls, shape: Sequence[int]) -> Region:
        """The whole of a cube of ``shape`` (time, rows, cols)."""
        return cls((0, int(shape[0])), (0, int(shape[1])), (0, int(shape[2])))

    def check_within(self, shape: Sequence[int]) -> None:
        """Raise :class:`UsageError` unless the region lies inside a cube of ``shape``."""
        for (start, stop), n, name in zip(
            (self.times, self.rows, self.cols), shape, ("times", "rows", "cols"), strict=True
        ):
            if stop > n:
                raise UsageError(f"region {name} {(start, stop)} exceeds the cube's {n}")


def _sizes(total: int, fractions: Sequence[float]) -> list[int]:
    """Integer parts of ``total`` proportional to ``fractions`` (largest remainders)."""
    weights = np.asarray(fractions, dtype=np.float64)
    exact = weights / weights.sum() * total
    sizes = np.floor(exact).astype(int)
    for k in np.argsort(-(exact - sizes), kind="stable")[: total - int(sizes.sum())]:
        sizes[k] += 1
    return [int(s) for s in sizes]


def _check_fractions(fractions: Sequence[float]) -> None:
    if len(fractions) < 2:
        raise UsageError(f"fractions={tuple(fractions)}: expected two or more parts")
    if any(not np.isfinite(f) or f <= 0 for f in fractions):
        raise UsageError(f"fractions={tuple(fractions)}: every part must be a positive number")


def _layout(cube: str | xr.Dataset, storage_options: Mapping[str, Any] | None) -> Any:
    from icecube_cloud.ml.calibrate import pixel_variable
    from icecube_cloud.ml.cubestore import read_layout  # zarr only, no dask

    if isinstance(cube, xr.Dataset):
        var = pixel_variable(cube)
        valid = cube["valid"].values if "valid" in cube else np.ones(cube.sizes["time"], bool)
        return tuple(int(n) for n in cube[var].shape), np.asarray(valid, dtype=bool)
    layout = read_layout(cube, storage_options)
    return layout.shape, layout.valid


def split_regions(
    cube: str | xr.Dataset,
    by: Literal["space", "time"] = "space",
    fractions: Sequence[float] = (0.8, 0.2),
    buffer: int | None = None,
    seed: int = 0,
    *,
    storage_options: Mapping[str, Any] | None = None,
) -> list[Region]:
    """Split a cube into one region per fraction, with no pixel or slice shared between them.

    By ``space``: strips across the cube's longer spatial dimension, sized in proportion to
    ``fractions`` after taking ``buffer`` pixels (default 32) out between neighbours, each spanning
    every time slice; ``seed`` shuffles which strip goes to which fraction. Patches of different
    regions then never share a pixel, and are at least ``buffer`` pixels apart.
    By ``time``: consecutive runs of the valid (image) slices in time order — the first fraction
    gets the earliest — with ``buffer`` images (default 0) left out between runs; each region spans
    the whole area. Gap slices count for nobody (they are never sampled).

    Args:
        cube: A cube URL (local or ``s3://``) or an opened cube.
        by: ``space`` or ``time``.
        fractions: Relative size of each region (normalised; e.g. ``(0.8, 0.2)`` or ``(7, 2, 1)``).
        buffer: Pixels (space) or images (time) between regions.
        seed: Shuffles the strips of a split by space.
        storage_options: fsspec options for a remote ``cube`` URL.

    Returns:
        One :class:`Region` per fraction, in the order of ``fractions``.

    Raises:
        UsageError: Bad arguments, or a cube too small to give every part one pixel / one image.
    """
    _check_fractions(fractions)
    if by not in ("space", "time"):
        raise UsageError(f"by={by!r}: expected 'space' or 'time'")
    if buffer is not None and buffer < 0:
        raise UsageError(f"buffer={buffer}: expected a number of pixels or images >= 0")
    shape, valid = _layout(cube, storage_options)
    k = len(fractions)
    if by == "space":
        gap = DEFAULT_SPACE_BUFFER if buffer is None else int(buffer)
        axis = 1 if shape[1] >= shape[2] else 2
        usable = shape[axis] - gap * (k - 1)
        sizes = _sizes(usable, fractions) if usable >= k else [0]
        if min(sizes) < 1:
            raise UsageError(
                f"the cube's {shape[axis]} pixels cannot hold {k} regions {gap} pixels apart"
            )
        order = np.random.default_rng([seed, 1201]).permutation(k)  # strip position -> part
        bounds: dict[int, tuple[int, int]] = {}
        start = 0
        for pos in range(k):
            part = int(order[pos])
            bounds[part] = (start, start + sizes[part])
            start += sizes[part] + gap
        whole = Region.whole(shape)
        return [
            Region(whole.times, bounds[p], whole.cols)
            if axis == 1
            else Region(whole.times, whole.rows, bounds[p])
            for p in range(k)
        ]
    gap = 0 if buffer is None else int(buffer)
    images = np.flatnonzero(valid)
    usable = len(images) - gap * (k - 1)
    sizes = _sizes(usable, fractions) if usable >= k else [0]
    if min(sizes) < 1:
        raise UsageError(f"the cube's {len(images)} images cannot make {k} parts {gap} apart")
    regions, at = [], 0
    for size in sizes:
        first, last = int(images[at]), int(images[at + size - 1])
        regions.append(Region((first, last + 1), (0, shape[1]), (0, shape[2])))
        at += size + gap
    return regions
