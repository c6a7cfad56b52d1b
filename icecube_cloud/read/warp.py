"""Read a product's pixels as they fall on a map grid, one output window at a time.

A map-geometry cube (SPEC §6b) warps each product onto one north-up grid. :class:`WarpedReader` reads
windows *of the grid*. A product located by an affine transform (ICEYE's COGs) is warped with
``nearest`` by :mod:`icecube_cloud.read.nearest` (the file pixel under each map pixel's centre, exact,
from the file window the grid window needs, read once), and with any other resampling through a GDAL
warped VRT of it on the grid: GDAL finds the source pixels each window needs, reads only those and
resamples. A product located by GCPs or, lacking them, an RPC (legacy GRDs; rasterio's warped VRT
takes neither) is warped with ``rasterio.warp.reproject`` from the source window the grid window's
outline maps to (:class:`GcpRpcSource`); a product with no geolocation at all is a
:class:`ProductError` naming it. Outside the product's footprint the grid holds the fill value (0, or
the file's nodata). SLC products are refused: their phase must never be interpolated.

GDAL's mapping is tightened where rasterio lets us: GDAL interpolates the exact transformation along
each output scanline while the error stays within ``tolerance`` source pixels. Its default (0.125, the
only one ``rasterio.warp.reproject`` and so the GCP/RPC path use) picks a neighbouring source pixel for ~4 %
of ``nearest`` pixels of a 1500² scene, and the answer then depends on the extent of each warp (so on
the chunks). The warped VRT uses :data:`TOLERANCE`, which keeps that to pixels whose centre falls
within about a thousandth of a pixel of a source pixel's edge; ``nearest`` on affinely located products
needs no tolerance at all (:mod:`icecube_cloud.read.nearest`: exact, and faster than GDAL's default).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import numpy.typing as npt
import rasterio.warp
import rasterio.windows
from affine import Affine
from rasterio.control import GroundControlPoint
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.rpc import RPC
from rasterio.transform import GCPTransformer, RPCTransformer
from rasterio.vrt import WarpedVRT

from icecube_cloud.errors import ProductError
from icecube_cloud.model import MapGrid, Window
from icecube_cloud.read.nearest import NearestMap
from icecube_cloud.read.rasterio_reader import RasterioReader

if TYPE_CHECKING:
    from icecube_cloud.model import SourceRef

TOLERANCE = 1e-3
"""Largest error, in source pixels, of GDAL's interpolated mapping (see the module docstring)."""


def _affine_to_src(
    a: Affine,
) -> Callable[[list[float], list[float]], tuple[Sequence[float], Sequence[float]]]:
    def to_src(cols: list[float], rows: list[float]) -> tuple[Sequence[float], Sequence[float]]:
        xs = [a.a * c + a.b * r + a.c for c, r in zip(cols, rows, strict=True)]
        ys = [a.d * c + a.e * r + a.f for c, r in zip(cols, rows, strict=True)]
        return xs, ys

    return to_src


def has_transform(ds: Any) -> bool:
    """Whether ``ds`` is geolocated by a CRS and an affine transform (else by its GCPs or RPC)."""
    return ds.crs is not None and not ds.transform.is_identity


def warped_vrt(ds: Any, grid: MapGrid) -> WarpedVRT:
    """A GDAL warped VRT of band 1 of the open dataset ``ds`` (affinely geolocated) on ``grid``."""
    return WarpedVRT(
        ds,
        crs=CRS.from_wkt(grid.crs_wkt),
        transform=Affine(*grid.transform),
        height=grid.shape[0],
        width=grid.shape[1],
        resampling=Resampling[grid.resampling],
        tolerance=TOLERANCE,
        nodata=0 if ds.nodata is None else ds.nodata,
        **kernel_scale(grid, ds.crs, (ds.height, ds.width), _affine_to_src(ds.transform)),
    )


def kernel_scale(
    grid: MapGrid,
    src_crs: CRS,
    size: tuple[int, int],
    to_src: Callable[[list[float], list[float]], tuple[Sequence[float], Sequence[float]]],
) -> dict[str, float]:
    """GDAL's ``XSCALE``/``YSCALE``: grid pixels per source pixel, fixed for the whole product.

    GDAL sizes the kernel of a resampling other than ``nearest`` by this ratio, and otherwise works
    it out for each chunk it warps from that chunk's source and destination extents, so the same map
    pixel would get a different value in a different window. One ratio for the whole product (the
    size on the grid of its centre pixel; ``to_src`` maps file (cols, rows) to ``src_crs``) makes
    every window agree with every other and with a warp of the whole grid.
    """
    if grid.resampling == "nearest":
        return {}
    row, col = size[0] / 2, size[1] / 2
    sx, sy = to_src([col, col + 1, col], [row, row, row + 1])
    xs, ys = rasterio.warp.transform(src_crs, CRS.from_wkt(grid.crs_wkt), list(sx), list(sy))
    pixel = sum(math.hypot(xs[k] - xs[0], ys[k] - ys[0]) for k in (1, 2)) / 2
    return {"XSCALE": pixel / grid.resolution, "YSCALE": pixel / grid.resolution}


class WarpedReader:
    """Reads windows of a map grid from one GRD product (band 1), warped by GDAL.

    Args:
        source: The product.
        grid: The map grid the windows are on.
        storage_options: fsspec options for remote files.
    """

    memory_mapped: ClassVar[bool] = False
    """Every read decodes and warps into a new array."""
    cache_local: ClassVar[bool] = False
    """Like :class:`RasterioReader`: a local open is cheap and a kept dataset pins GDAL's cache."""
    cache_remote: ClassVar[bool] = True
    """Like :class:`RasterioReader`: an S3 open costs a HEAD and header GETs."""

    def __init__(
        self, source: SourceRef, grid: MapGrid, storage_options: Mapping[str, Any] | None = None
    ) -> None:
        if source.format.level != "GRD":
            raise ProductError(
                source.href,
                "an SLC product cannot be put on a map grid (its phase must never be "
                "interpolated); map-geometry cubes take GRD products",
            )
        self.href = source.href
        self.grid = grid
        self._file = RasterioReader(
            source.href, orientation="native", storage_options=storage_options
        )
        self._vrt: WarpedVRT | None = None
        self._gcps: GcpRpcSource | None = None
        self._nearest: NearestMap | None = None
        try:
            with self._file.env():
                ds = self._file.dataset
                self._fill = 0 if ds.nodata is None else ds.nodata
                self._dtype = np.dtype(ds.dtypes[0])
                if has_transform(ds) and grid.resampling == "nearest":
                    self._nearest = NearestMap.of(ds, grid)
                elif has_transform(ds):
                    self._vrt = warped_vrt(ds, grid)
                else:
                    self._gcps = GcpRpcSource.of(ds, grid, source.href)
        except BaseException:
            self._file.close()
            raise

    @classmethod
    def open_source(
        cls, source: SourceRef, storage_options: Mapping[str, Any] | None
    ) -> WarpedReader:
        """A reader of ``source`` on its map grid (``source.grid``)."""
        if source.grid is None:
            raise ProductError(source.href, "no map grid to warp onto")
        return cls(source, source.grid, storage_options)

    def read(self, window: Window) -> npt.NDArray[np.generic]:
        """The product warped onto grid ``window`` (rows ``az0:az1`` are y, columns ``rg0:rg1`` x)."""
        if self._gcps is not None:
            return self._gcps.warp(self._file, window)
        if self._nearest is not None:
            return self._nearest.warp(window, self._read_into, self._fill, self._dtype)
        assert self._vrt is not None
        win = rasterio.windows.Window.from_slices(
            (window.az0, window.az1), (window.rg0, window.rg1)
        )
        try:
            with self._file.env():
                data: npt.NDArray[np.generic] = self._vrt.read(1, window=win)
        except (rasterio.RasterioIOError, OSError) as err:
            raise ProductError(self.href, f"cannot warp grid window {window}: {err}") from err
        return data

    def _read_into(self, window: Window, out: npt.NDArray[Any]) -> None:
        """File window ``window`` (file rows and columns) into ``out`` (its shape; may be a view)."""
        win = rasterio.windows.Window.from_slices(
            (window.az0, window.az1), (window.rg0, window.rg1)
        )
        try:
            with self._file.env():
                self._file.dataset.read(1, window=win, out=out)
        except (rasterio.RasterioIOError, OSError) as err:
            raise ProductError(self.href, f"cannot read window {window}: {err}") from err

    def close(self) -> None:
        """Close the VRT and the file."""
        if self._vrt is not None:
            with contextlib.suppress(Exception):
                self._vrt.close()
        self._file.close()


EDGE_SAMPLES = 17
"""Points per edge of a grid window mapped into the file to find the source window it needs."""
_KERNEL_RADIUS = {"nearest": 1, "bilinear": 2, "cubic": 3, "cubic_spline": 3, "lanczos": 4}
"""Source pixels a resampling kernel reaches (averaging resamplings: 4)."""


@dataclass(frozen=True)
class GcpRpcSource:
    """A product located by GCPs or an RPC (legacy GRDs), warped window by window with ``reproject``.

    rasterio's warped VRT takes neither, so each grid window is warped from the source window its
    outline maps to (through GDAL's GCP or RPC transformer), padded by the resampling kernel. GCPs
    are used when the product has them (ICEYE's legacy GRDs carry both), else its RPC, evaluated at
    the RPC's own reference height (``height_off``; GDAL's default would be height 0). GDAL's mapping
    is its default here (0.125 source pixels; ``reproject`` takes no tolerance).
    """

    gcps: tuple[GroundControlPoint, ...]
    """The GCPs (empty: located by ``rpc``)."""
    rpc: RPC | None
    """The RPC, used when there are no GCPs."""
    src_crs: CRS
    grid: MapGrid
    size: tuple[int, int]
    nodata: float | None
    dtype: np.dtype[Any]
    scale: tuple[tuple[str, float], ...] = ()
    """GDAL's kernel scale for the whole product (:func:`kernel_scale`)."""

    @classmethod
    def of(cls, ds: Any, grid: MapGrid, href: str) -> GcpRpcSource:
        """The GCP (else RPC) geolocation of the open dataset ``ds``.

        Raises:
            ProductError: The file has no affine transform, no GCPs and no RPC.
        """
        gcps, gcp_crs = ds.gcps
        rpc = None if gcps else ds.rpcs
        if not gcps and rpc is None:
            raise ProductError(
                href, "no geolocation (no CRS and transform, no GCPs, no RPC): cannot map it"
            )
        crs = (gcp_crs if gcps else None) or CRS.from_epsg(4326)
        bare = cls(tuple(gcps), rpc, crs, grid, (ds.height, ds.width), ds.nodata,
                   np.dtype(ds.dtypes[0]))  # fmt: skip
        scale = kernel_scale(grid, crs, bare.size, bare.to_src)
        return dataclasses.replace(bare, scale=tuple(scale.items()))

    def transformer(self) -> GCPTransformer | RPCTransformer:
        """GDAL's transformer of this geolocation (file pixels <-> ``src_crs``)."""
        if self.gcps:
            return GCPTransformer(list(self.gcps))
        assert self.rpc is not None
        return RPCTransformer(self.rpc, RPC_HEIGHT=self.rpc.height_off)

    def to_src(
        self, cols: list[float], rows: list[float]
    ) -> tuple[Sequence[float], Sequence[float]]:
        """File (cols, rows), edge-based, -> ``src_crs`` (x, y)."""
        with self.transformer() as tr:
            xs, ys = tr.xy(rows, cols, offset="ul")
        return list(np.atleast_1d(xs)), list(np.atleast_1d(ys))

    def located(self, src: Window) -> dict[str, Any]:
        """``reproject``'s geolocation arguments for the pixels of file window ``src``."""
        if self.gcps:
            shifted = [
                GroundControlPoint(row=g.row - src.az0, col=g.col - src.rg0, x=g.x, y=g.y, z=g.z)
                for g in self.gcps
            ]
            return {"gcps": shifted, "src_crs": self.src_crs}
        assert self.rpc is not None
        rpc = RPC(**{
            **self.rpc.to_dict(),
            "line_off": self.rpc.line_off - src.az0,
            "samp_off": self.rpc.samp_off - src.rg0,
        })  # fmt: skip
        return {"rpcs": rpc, "src_crs": self.src_crs, "RPC_HEIGHT": self.rpc.height_off}

    def source_window(self, window: Window) -> Window | None:
        """The file window whose pixels the warp of grid ``window`` uses (``None``: none)."""
        a = Affine(*self.grid.transform)
        t = np.linspace(0.0, 1.0, EDGE_SAMPLES)
        r0, r1, c0, c1 = window.az0, window.az1, window.rg0, window.rg1
        cols = np.concatenate(
            [c0 + t * (c1 - c0), np.full_like(t, c1), c1 - t * (c1 - c0), np.full_like(t, c0)]
        )
        rows = np.concatenate(
            [np.full_like(t, r0), r0 + t * (r1 - r0), np.full_like(t, r1), r1 - t * (r1 - r0)]
        )
        xs, ys = a.a * cols + a.b * rows + a.c, a.d * cols + a.e * rows + a.f
        lon, lat = rasterio.warp.transform(CRS.from_wkt(self.grid.crs_wkt), self.src_crs, xs, ys)
        with self.transformer() as tr:
            frows, fcols = tr.rowcol(lon, lat, op=lambda v: v)
        frows, fcols = np.asarray(frows, dtype=float), np.asarray(fcols, dtype=float)
        ok = np.isfinite(frows) & np.isfinite(fcols)
        if not ok.any():
            return None
        per_cell = max(
            np.ptp(fcols[ok]) / window.shape[1], np.ptp(frows[ok]) / window.shape[0], 1.0
        )
        m = math.ceil(_KERNEL_RADIUS.get(self.grid.resampling, 4) * per_cell) + 1
        height, width = self.size
        w = Window(
            max(0, math.floor(frows[ok].min()) - m), min(height, math.ceil(frows[ok].max()) + m),
            max(0, math.floor(fcols[ok].min()) - m), min(width, math.ceil(fcols[ok].max()) + m),
        )  # fmt: skip
        return w if w.az0 < w.az1 and w.rg0 < w.rg1 else None

    def warp(self, file: RasterioReader, window: Window) -> npt.NDArray[np.generic]:
        """Grid ``window`` of the product: its source window read and warped by GDAL."""
        fill = 0 if self.nodata is None else self.nodata
        out = np.full(window.shape, fill, dtype=self.dtype)
        src = self.source_window(window)
        if src is None:
            return out
        data = file.read(src)
        rasterio.warp.reproject(
            source=data,
            destination=out,
            src_nodata=self.nodata,
            dst_transform=Affine(*self.grid.transform) * Affine.translation(window.rg0, window.az0),
            dst_crs=CRS.from_wkt(self.grid.crs_wkt),
            dst_nodata=fill,
            resampling=Resampling[self.grid.resampling],
            **self.located(src),
            **dict(self.scale),
        )
        return out


def to_file_orientation(physical: npt.NDArray[Any], source: SourceRef) -> npt.NDArray[Any]:
    """A raster in physical (azimuth, range) order laid out as the product's file is."""
    if source.orientation == "shadows-down":  # file[row, col] = physical[n_az - 1 - col, row]
        return np.ascontiguousarray(physical[::-1, :].T)
    return physical


def warp_raster(
    physical: npt.NDArray[Any], source: SourceRef, storage_options: Mapping[str, Any] | None
) -> npt.NDArray[Any]:
    """A raster on the product's pixels (e.g. its label mask) warped onto ``source.grid``, nearest.

    The same geolocation and mapping as the product's own ``nearest`` pixels (:class:`WarpedReader`),
    so that a label lands on the map pixels its product pixels land on. 0 outside the footprint.
    """
    grid = source.grid
    if grid is None:
        raise ProductError(source.href, "no map grid to warp onto")
    nearest = dataclasses.replace(grid, resampling="nearest")
    data = to_file_orientation(physical, source)
    file = RasterioReader(source.href, orientation="native", storage_options=storage_options)
    try:
        with file.env():
            ds = file.dataset
            if not has_transform(ds):
                located = GcpRpcSource.of(ds, nearest, source.href)
                out = np.zeros(nearest.shape, dtype=data.dtype)
                rasterio.warp.reproject(
                    source=data, destination=out, **located.located(Window(0, ds.height, 0, ds.width)),
                    src_nodata=0, dst_transform=Affine(*nearest.transform),
                    dst_crs=CRS.from_wkt(nearest.crs_wkt), dst_nodata=0,
                    resampling=Resampling.nearest,
                )  # fmt: skip
                return out
            mapping = NearestMap.of(ds, nearest)
    finally:
        file.close()

    def read(window: Window, out: npt.NDArray[Any]) -> None:
        out[...] = data[window.slices]

    return mapping.warp(Window(0, nearest.shape[0], 0, nearest.shape[1]), read, 0, data.dtype)
