"""Exact ``nearest`` warping of an affinely located product onto a map grid, in numpy.

``nearest`` puts on each map pixel the file pixel under the map pixel's centre. GDAL's warper finds
that pixel through its approximate transformer (the exact transformation interpolated along each
output scanline within a tolerance in source pixels): the answer then depends on how the output is cut
into windows, and a tolerance tight enough to make that rare (0.001 px) doubles the warp's time. Here
the answer is exact, and cheaper than GDAL's default:

1. the exact transformation (pyproj from the grid's CRS to the file's, then the file's inverse affine)
   is computed on a lattice of nodes every :data:`LATTICE_STEP` grid pixels, at multiples of the step
   on the whole grid, so that every window sees the same nodes;
2. every pixel's file position is interpolated bilinearly between the nodes, in fixed-point integers;
   the error of that is bounded by the lattice's second differences (times :data:`SAFETY`) plus the
   rounding;
3. a pixel whose interpolated position lies within that bound of a file pixel's edge is recomputed
   exactly; for every other pixel the floor of the interpolated position is the floor of the exact one;
4. the file window a band needs (the lattice's bounding box: bilinear interpolation stays within its
   corners) is read once, and the pixels are gathered from it tile by tile (``numpy.take``).

Every map pixel gets the file pixel under its centre (what GDAL's warper gives with an exact
transformer), so a band holds the same bytes whatever windows the grid is cut into. Outside the file:
the fill value. A band whose lattice the fast path cannot use (a node the transformation cannot map,
lattice cells spanning more than :data:`MAX_CELL` file pixels, a file window too large for 32-bit fixed
point) is computed exactly pixel by pixel (:meth:`NearestMap.exact_tile`).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from affine import Affine
from pyproj import Transformer

from icecube_cloud.model import MapGrid, Window

LOG_STEP = 5
LATTICE_STEP = 1 << LOG_STEP
"""Grid pixels between lattice nodes (a power of two)."""
SAFETY = 4.0
"""Factor on the interpolation error estimated from the lattice's second differences."""
TILE = (64, 1024)
"""Rows and columns of grid pixels gathered at once (columns a multiple of the lattice step): the
file pixels one tile needs stay in the processor's cache."""
MAX_CELL = 1024
"""Largest span of a lattice cell in file pixels for the fast path (coarser grids: exact path)."""
FIXED_BITS = 31
"""Bits of the fixed-point positions (int32, sign excluded)."""

Read = Callable[[Window, npt.NDArray[Any]], None]
"""Reads a file window (file rows and columns) into the given array of the window's shape."""

_transformers = threading.local()


def _transformer(src_wkt: str, dst_wkt: str) -> Transformer:
    """A (per-thread, cached) pyproj transformer from ``src_wkt`` to ``dst_wkt``, x/y order."""
    cache: dict[tuple[str, str], Transformer] | None = getattr(_transformers, "cache", None)
    if cache is None:
        cache = _transformers.cache = {}
    key = (src_wkt, dst_wkt)
    if key not in cache:
        if len(cache) > 8:
            cache.clear()
        cache[key] = Transformer.from_crs(src_wkt, dst_wkt, always_xy=True)
    return cache[key]


@dataclass(frozen=True)
class _Band:
    """A band's lattice in fixed point, relative to its file window."""

    window: Window
    """The grid window."""
    source: Window
    """The file window it reads (file rows, columns)."""
    pad: int
    """Fill pixels around the file window in the gather buffer (twice a lattice cell's span and 2)."""
    cols: npt.NDArray[np.float64]
    """Column of each lattice node in the gather buffer (the file window's plus ``pad``), clipped to
    the buffer half a pixel in (never near an edge): a cell with a clipped corner lies wholly outside
    the file window, and its pixels in the fill."""
    rows: npt.NDArray[np.float64]
    """Row of each lattice node in the gather buffer, likewise."""
    node0: tuple[int, int]
    """Lattice index (row, column) of the first node of ``cols``/``rows`` (one before the window's)."""
    bits: int
    """Fraction bits of the interpolated positions."""
    slack: int
    """Bound of the interpolation and rounding error, in units of ``2**-bits`` file pixels."""


@dataclass(frozen=True)
class NearestMap:
    """Where each pixel of ``grid`` falls in one affinely located file, and the warp that follows.

    Args:
        grid: The map grid.
        src_crs_wkt: The file's CRS (WKT).
        src_transform: The file's affine ``(a, b, c, d, e, f)`` from (col, row) to its CRS.
        size: The file's (rows, columns).
    """

    grid: MapGrid
    src_crs_wkt: str
    src_transform: tuple[float, float, float, float, float, float]
    size: tuple[int, int]

    @classmethod
    def of(cls, ds: Any, grid: MapGrid) -> NearestMap:
        """The mapping of the open rasterio dataset ``ds`` (affinely geolocated) onto ``grid``."""
        t = ds.transform
        return cls(grid, ds.crs.to_wkt(), (t.a, t.b, t.c, t.d, t.e, t.f), (ds.height, ds.width))

    def position(
        self, rows: npt.NDArray[Any], cols: npt.NDArray[Any]
    ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        """The exact file (column, row) of the centres of grid pixels (``rows``, ``cols``)."""
        a = self.grid.transform
        x = a[2] + a[0] * (np.asarray(cols, dtype=np.float64) + 0.5)
        y = a[5] + a[4] * (np.asarray(rows, dtype=np.float64) + 0.5)
        u, v = _transformer(self.grid.crs_wkt, self.src_crs_wkt).transform(x, y)
        inv = ~Affine(*self.src_transform)
        u, v = np.asarray(u, dtype=np.float64), np.asarray(v, dtype=np.float64)
        return inv.a * u + inv.b * v + inv.c, inv.d * u + inv.e * v + inv.f

    def warp(self, window: Window, read: Read, fill: float, dtype: Any) -> npt.NDArray[Any]:
        """Grid ``window`` of the file, ``nearest``: the file pixel under each pixel's centre."""
        band = self._band(window)
        if band is None:  # the exact path, tile by tile
            out = np.full(window.shape, fill, dtype=dtype)
            for r0, r1, c0, c1 in _tiles(window):
                dst = out[r0 - window.az0 : r1 - window.az0, c0 - window.rg0 : c1 - window.rg0]
                self.exact_tile(Window(r0, r1, c0, c1), read, dst)
            return out
        if band.source.az0 >= band.source.az1 or band.source.rg0 >= band.source.rg1:
            return np.full(window.shape, fill, dtype=dtype)
        out = np.empty(window.shape, dtype=dtype)  # the gather writes every pixel
        (h, w), p = band.source.shape, band.pad
        buf = np.empty((h + 2 * p, w + 2 * p), dtype=dtype)  # the file window in a frame of fill
        buf[:p] = buf[p + h :] = fill
        buf[p : p + h, :p] = buf[p : p + h, p + w :] = fill
        read(band.source, buf[p : p + h, p : p + w])
        _gather(self, band, buf, out)
        return out

    def exact_tile(self, window: Window, read: Read, out: npt.NDArray[Any]) -> None:
        """Grid ``window`` into ``out`` from the exact position of every pixel (the slow path)."""
        rows, cols = np.mgrid[window.az0 : window.az1, window.rg0 : window.rg1]
        c, r = self.position(rows, cols)
        inside = np.isfinite(c) & np.isfinite(r)
        inside &= (c >= 0) & (c < self.size[1]) & (r >= 0) & (r < self.size[0])
        if not inside.any():
            return
        ci, ri = np.floor(c[inside]).astype(np.intp), np.floor(r[inside]).astype(np.intp)
        src = Window(int(ri.min()), int(ri.max()) + 1, int(ci.min()), int(ci.max()) + 1)
        data = np.empty(src.shape, dtype=out.dtype)
        read(src, data)
        out[inside] = data[ri - src.az0, ci - src.rg0]

    def _band(self, window: Window) -> _Band | None:
        """The lattice of grid ``window`` and the file window it needs (``None``: the exact path)."""
        n0 = (window.az0 >> LOG_STEP) - 1, (window.rg0 >> LOG_STEP) - 1
        n1 = ((window.az1 - 1) >> LOG_STEP) + 2, ((window.rg1 - 1) >> LOG_STEP) + 2
        rows, cols = np.mgrid[n0[0] : n1[0] + 1, n0[1] : n1[1] + 1] << LOG_STEP
        c, r = self.position(rows, cols)
        if not (np.isfinite(c).all() and np.isfinite(r).all()):
            return None
        inner = (slice(1, -1), slice(1, -1))  # the nodes the window's pixels interpolate between
        span = max(np.abs(np.diff(a[inner], axis=k)).max() for a in (c, r) for k in (0, 1))
        if span > MAX_CELL:
            return None
        # Bilinear interpolation's error: step²/8 (|f_rr| + |f_cc|); second differences are step² f''.
        err = SAFETY * max(
            (np.abs(np.diff(a, 2, axis=0)).max() + np.abs(np.diff(a, 2, axis=1)).max()) / 8
            for a in (c, r)
        )
        lo_c, hi_c = c[inner].min() - err, c[inner].max() + err
        lo_r, hi_r = r[inner].min() - err, r[inner].max() + err
        height, width = self.size
        src = Window(
            max(0, math.floor(lo_r)), min(height, math.floor(hi_r) + 1),
            max(0, math.floor(lo_c)), min(width, math.floor(hi_c) + 1),
        )  # fmt: skip
        pad = math.ceil(2 * span) + 2
        extent = max(src.shape) + 2 * pad + 1
        bits = FIXED_BITS - extent.bit_length()
        if bits < LOG_STEP + 8:  # a window too large for int32 fixed point
            return None
        bits = min(bits, 16)
        # Rounding: each node to 2**-(bits - LOG_STEP) (half a unit), the row interpolation likewise.
        slack = math.ceil((err + 2.0 ** (LOG_STEP - bits)) * 2.0**bits) + 1
        if slack >= 1 << (bits - 2):
            return None
        return _Band(
            window, src, pad,
            np.clip(c - src.rg0 + pad, 0.5, src.shape[1] + 2 * pad - 0.5),
            np.clip(r - src.az0 + pad, 0.5, src.shape[0] + 2 * pad - 0.5),
            n0, bits, slack,
        )  # fmt: skip


def _tiles(window: Window) -> list[tuple[int, int, int, int]]:
    """Tiles of :data:`TILE` covering ``window``, column edges on multiples of the tile width."""
    tr, tc = TILE
    first = window.rg0 - window.rg0 % tc
    return [
        (r0, min(r0 + tr, window.az1), max(c0, window.rg0), min(c0 + tc, window.rg1))
        for r0 in range(window.az0, window.az1, tr)
        for c0 in range(first, window.rg1, tc)
    ]


def _row_nodes(band: _Band, r0: int, r1: int) -> tuple[npt.NDArray[np.int32], ...]:
    """Fixed-point node values (units ``2**-(bits - LOG_STEP)``) interpolated to rows ``r0:r1``."""
    rows = np.arange(r0, r1)
    k = (rows >> LOG_STEP) - band.node0[0]
    t = ((rows & (LATTICE_STEP - 1)) / LATTICE_STEP)[:, None]
    one = float(1 << (band.bits - LOG_STEP))
    return tuple(
        np.rint((a[k] * (1 - t) + a[k + 1] * t) * one).astype(np.int32)
        for a in (band.cols, band.rows)
    )


def _gather(nmap: NearestMap, band: _Band, buf: npt.NDArray[Any], out: npt.NDArray[Any]) -> None:
    """Fill ``out`` (the band's grid window) from ``buf`` (its file window in a frame of fill)."""
    win, stride = band.window, buf.shape[1]
    flat = buf.reshape(-1)
    mask, slack = (1 << band.bits) - 1, band.slack
    steps = np.arange(LATTICE_STEP, dtype=np.int32)
    near_r: list[npt.NDArray[np.intp]] = []
    near_c: list[npt.NDArray[np.intp]] = []
    current: tuple[int, tuple[npt.NDArray[np.int32], ...]] | None = None
    for r0, r1, c0, c1 in _tiles(win):
        if current is None or current[0] != r0:
            current = (r0, _row_nodes(band, r0, r1))
        g0 = (c0 >> LOG_STEP) - band.node0[1]  # first lattice cell of the tile
        g1 = ((c1 - 1) >> LOG_STEP) - band.node0[1] + 1
        skip = c0 - ((c0 >> LOG_STEP) << LOG_STEP)
        dst = out[r0 - win.az0 : r1 - win.az0, c0 - win.rg0 : c1 - win.rg0]
        if _outside(band, [v[:, g0 : g1 + 1] for v in current[1]]):
            dst[...] = buf[0, 0]  # the frame's corner: fill
            continue
        cq, rq = (
            (
                np.multiply((v[:, g0 + 1 : g1 + 1] - v[:, g0:g1])[:, :, None], steps)
                + (v[:, g0:g1] << LOG_STEP)[:, :, None]
            ).reshape(r1 - r0, -1)[:, skip : skip + c1 - c0]
            for v in current[1]
        )
        near = _near(cq, slack, mask) | _near(rq, slack, mask)
        idx = rq >> band.bits
        idx *= stride
        idx += cq >> band.bits
        np.take(flat, idx, out=dst, mode="wrap")
        i, j = _nonzero(near)
        near_r.append(i + (r0 - win.az0))
        near_c.append(j + (c0 - win.rg0))
    _exact_near(nmap, band, buf, out, np.concatenate(near_r), np.concatenate(near_c))


def _outside(band: _Band, nodes: list[npt.NDArray[np.int32]]) -> bool:
    """Whether a tile lies wholly in the fill, farther from the file window than the error bound.

    ``nodes`` are the row-interpolated (columns, rows) of the tile's cells. Interpolated positions are
    convex combinations of their nodes, so the nodes' extremes decide, for exact positions too.
    """
    lo = (band.pad << band.bits) - band.slack
    for v, size in zip(nodes, (band.source.shape[1], band.source.shape[0]), strict=True):
        if int(v.max()) << LOG_STEP < lo:
            return True
        if int(v.min()) << LOG_STEP >= ((band.pad + size) << band.bits) + band.slack:
            return True
    return False


def _near(q: npt.NDArray[np.int32], slack: int, mask: int) -> npt.NDArray[np.bool_]:
    """Where fixed-point positions ``q`` lie within ``slack`` of an integer."""
    t = q + slack
    t &= mask
    return t < 2 * slack


def _nonzero(near: npt.NDArray[np.bool_]) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp]]:
    """``np.nonzero`` of a sparse 2-d mask, scanning it 8 bytes at a time."""
    flat = near.reshape(-1)
    n8 = flat.size - flat.size % 8
    words = np.flatnonzero(flat[:n8].view(np.uint64))
    pos = (words[:, None] * 8 + np.arange(8)).reshape(-1)
    pos = np.concatenate([pos, np.arange(n8, flat.size)])
    pos = pos[flat[pos]]
    return np.divmod(pos, near.shape[1])


def _exact_near(
    nmap: NearestMap,
    band: _Band,
    buf: npt.NDArray[Any],
    out: npt.NDArray[Any],
    i: npt.NDArray[np.intp],
    j: npt.NDArray[np.intp],
) -> None:
    """Recompute exactly the pixels (``i``, ``j``) of ``out`` whose position is near an edge."""
    if not i.size:
        return
    c, r = nmap.position(i + band.window.az0, j + band.window.rg0)
    (h, w), p = band.source.shape, band.pad
    ok = np.isfinite(c) & np.isfinite(r)
    ci = np.where(ok, np.floor(c) - band.source.rg0, -1)
    ri = np.where(ok, np.floor(r) - band.source.az0, -1)
    inside = (ci >= 0) & (ci < w) & (ri >= 0) & (ri < h)
    idx = np.where(inside, (ri + p) * buf.shape[1] + ci + p, 0).astype(np.intp)  # 0: fill
    out[i, j] = buf.reshape(-1)[idx]
