"""``PatchDataset``: a map-style PyTorch dataset of (x, y) patches of a cube (SPEC §6c).

Each item reads one window with zarr in the calling process (no dask; see
:mod:`icecube_cloud.ml.cubestore`), so it works in ``DataLoader`` worker processes forked or spawned,
local or over S3. ``x`` is computed by the same kernel as :func:`~icecube_cloud.ml.calibrate` and
equals ``calibrate(cube)`` (or the amplitude / complex parts) of the window exactly.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import torch
from torch.utils.data import Dataset

from icecube_cloud.errors import UsageError
from icecube_cloud.ml.calibrate import DEFAULT_FLOOR_DB, INPUTS, input_array
from icecube_cloud.ml.cubestore import CubeLayout, CubeReader, read_layout
from icecube_cloud.ml.regions import Region
from icecube_cloud.ml.sampling import (
    axis_positions,
    data_fraction,
    grid_windows,
    random_window,
    window_times,
)

Sampler = Literal["grid", "random"]
MAX_DRAWS = 1000
"""Random draws per item before a ``min_data`` threshold is declared unreachable."""


class PatchDataset(Dataset[dict[str, Any]]):
    """Patches of a cube for training: ``x`` (SAR signal) and ``y`` (labels) of one window.

    Each item is a dict: ``x`` float32 ``(times, size, size)`` (``input="complex"``:
    ``(times, 2, size, size)``, real and imaginary parts), ``y`` int64 ``(size, size)`` — the labels of
    the window's last slice — when ``label`` is given, and ints ``time`` (index of the first slice),
    ``row``, ``col`` (top-left offsets in the cube's two spatial dims). Gap slices are never sampled:
    a window of ``times`` slices holds consecutive images only.

    Samplers: ``grid`` covers every pixel of every valid window of the region (the last window of a
    row or column is shifted inwards; nothing is dropped or padded), in (time, row, col) order.
    ``random`` draws ``num_samples`` windows, item ``i`` from ``seed`` and ``i`` alone (the same in
    every worker and epoch), on the grid's positions when ``aligned`` (windows that line up with
    chunks whose size the patch size divides: one chunk decoded per patch) or at any offset.

    Args:
        cube: Cube URL (local path or ``s3://``; a Zarr cube of icecube-cloud).
        size: Patch height and width, pixels.
        input: ``amplitude`` (DN for GRD, |slc| for SLC), ``beta0_db``, ``sigma0_db``, or ``complex``
            (SLC only).
        label: The label variable (``labels``) or ``None`` for no ``y``.
        sampler: ``grid`` or ``random``.
        times: Consecutive slices per patch.
        region: Sample only inside this region (:func:`~icecube_cloud.ml.split_regions`).
        num_samples: Items of the random sampler (default: as many as the grid has).
        seed: Seed of the random sampler.
        storage_options: fsspec options for an ``s3://`` cube (credentials are never printed).
        aligned: Random windows on the grid's positions (default) or anywhere.
        min_data: Skip windows where a slice has less than this fraction of pixels with data (non-zero
            pixels; map cubes hold 0 outside a product's footprint). The grid sampler checks every
            window once when the dataset is made (reading the region's slices once); the random
            sampler redraws.
        floor_db: Floor of the dB inputs.

    Raises:
        UsageError: Bad arguments (named), or no window fits.
        DataError: The cube is missing or incomplete.
    """

    def __init__(
        self,
        cube: str,
        *,
        size: int = 256,
        input: str = "sigma0_db",
        label: str | None = "labels",
        sampler: Sampler = "grid",
        times: int = 1,
        region: Region | None = None,
        num_samples: int | None = None,
        seed: int = 0,
        storage_options: Mapping[str, Any] | None = None,
        aligned: bool = True,
        min_data: float = 0.0,
        floor_db: float = DEFAULT_FLOOR_DB,
    ) -> None:
        if input not in INPUTS:
            raise UsageError(f"input={input!r}: expected one of {', '.join(INPUTS)}")
        if sampler not in ("grid", "random"):
            raise UsageError(f"sampler={sampler!r}: expected 'grid' or 'random'")
        if size < 1:
            raise UsageError(f"size={size}: expected a number of pixels >= 1")
        if not 0.0 <= min_data <= 1.0:
            raise UsageError(f"min_data={min_data}: expected a fraction in [0, 1]")
        self.layout: CubeLayout = read_layout(cube, storage_options)
        lay = self.layout
        if input == "complex" and not lay.is_complex:
            raise UsageError(f"input='complex' needs an SLC cube; {lay.url} holds GRD amplitude")
        if label is not None and label not in (lay.labels,):
            raise UsageError(
                f'{lay.url}: no label variable {label!r} (build with "labels" in the config, '
                "or pass label=None)"
            )
        self.size, self.input, self.label, self.times = size, input, label, times
        self.sampler, self.seed, self.aligned = sampler, seed, aligned
        self.min_data, self.floor_db = min_data, floor_db
        self.region = region or Region.whole(lay.shape)
        self.region.check_within(lay.shape)
        self.reader = CubeReader(cube, lay.variable, label, storage_options or {})
        self._starts = window_times(lay.valid, self.region, times)
        if len(self._starts) == 0:
            raise UsageError(
                f"no {times} consecutive image slice(s) in region times {self.region.times} "
                f"of {lay.url}"
            )
        self._grid: npt.NDArray[np.int64] | None = None
        if sampler == "grid":
            grid = grid_windows(lay.valid, self.region, size, times)
            self._grid = self._with_data(grid) if min_data > 0 else grid
            if len(self._grid) == 0:
                raise UsageError(
                    f"no window of {lay.url} has {min_data:.0%} of its pixels with data"
                )
        # the grid's row and column starts (raise when a window does not fit)
        self._positions = (
            axis_positions(*self.region.rows, size),
            axis_positions(*self.region.cols, size),
        )
        default = len(self._starts) * len(self._positions[0]) * len(self._positions[1])
        self.num_samples = num_samples if num_samples is not None else default
        if self.num_samples < 1:
            raise UsageError(f"num_samples={num_samples}: expected >= 1")

    def _with_data(self, grid: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
        """Grid windows whose every slice has ``min_data`` of its pixels with data."""
        rows = axis_positions(*self.region.rows, self.size)
        cols = axis_positions(*self.region.cols, self.size)
        (r0, r1), (c0, c1) = self.region.rows, self.region.cols
        ok: dict[int, npt.NDArray[np.bool_]] = {}
        for t in np.unique(grid[:, 0][:, None] + np.arange(self.times)[None, :]):
            block = self.reader.pixels(slice(int(t), int(t) + 1), slice(r0, r1), slice(c0, c1))[0]
            frac = data_fraction(block != 0, list(rows - r0), list(cols - c0), self.size)
            ok[int(t)] = frac >= self.min_data
        row_index = {int(r): i for i, r in enumerate(rows)}
        col_index = {int(c): i for i, c in enumerate(cols)}
        keep = [
            all(ok[int(t) + k][row_index[int(r)], col_index[int(c)]] for k in range(self.times))
            for t, r, c in grid
        ]
        kept: npt.NDArray[np.int64] = grid[np.asarray(keep, dtype=bool)]
        return kept

    def __len__(self) -> int:
        return len(self._grid) if self._grid is not None else self.num_samples

    def window(self, index: int) -> tuple[int, int, int]:
        """(time, row, col) of item ``index``, without reading pixels (for the grid sampler)."""
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} patches")
        index %= len(self)
        if self._grid is not None:
            t, r, c = self._grid[index]
            return int(t), int(r), int(c)
        rng = np.random.default_rng([self.seed, index])
        return random_window(
            rng, self._starts, self.region, self.size, self.aligned, self._positions
        )

    def _read(self, t: int, r: int, c: int) -> npt.NDArray[Any]:
        s = self.size
        return self.reader.pixels(slice(t, t + self.times), slice(r, r + s), slice(c, c + s))

    def _random_item(self, index: int) -> tuple[tuple[int, int, int], npt.NDArray[Any]]:
        rng = np.random.default_rng([self.seed, index])
        for _ in range(MAX_DRAWS):
            t, r, c = random_window(
                rng, self._starts, self.region, self.size, self.aligned, self._positions
            )
            pixels = self._read(t, r, c)
            if self.min_data <= 0 or all(
                np.count_nonzero(p) >= self.min_data * p.size for p in pixels
            ):
                return (t, r, c), pixels
        raise UsageError(
            f"{self.layout.url}: {MAX_DRAWS} random windows, none with {self.min_data:.0%} of its "
            "pixels with data (lower min_data)"
        )

    def __getitem__(self, index: int) -> dict[str, Any]:
        if self._grid is not None:
            t, r, c = self.window(index)
            pixels = self._read(t, r, c)
        else:
            if not -len(self) <= index < len(self):
                raise IndexError(f"index {index} out of range for {len(self)} patches")
            (t, r, c), pixels = self._random_item(index % len(self))
        span = slice(t, t + self.times)
        x = input_array(
            pixels,
            self.layout.calibration_factor[span],
            self.layout.incidence_angle[span],
            self.input,
            self.floor_db,
        )
        item: dict[str, Any] = {"x": torch.from_numpy(x), "time": t, "row": r, "col": c}
        if self.label is not None:
            s = self.size
            y = self.reader.label(t + self.times - 1, slice(r, r + s), slice(c, c + s))
            item["y"] = torch.from_numpy(y.astype(np.int64))
        return item

    def __repr__(self) -> str:
        return (
            f"PatchDataset({self.layout.url!r}, size={self.size}, input={self.input!r}, "
            f"label={self.label!r}, sampler={self.sampler!r}, times={self.times}, "
            f"region={self.region}, {len(self)} patches)"
        )
