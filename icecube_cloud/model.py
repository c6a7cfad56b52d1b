"""The value objects every stage shares: a leaf module that imports nothing of the package.

Product flavours and levels (and their STAC collections), pixel windows, where a time slice's pixels
come from and what its per-time coordinates are, and the cube's chunking and codec. Small, frozen,
picklable (they travel to dask workers) and printable.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

ProductLevel = Literal["GRD", "SLC"]
"""Processing level of a product: detected amplitude (GRD) or single-look complex (SLC)."""

Orientation = Literal["native", "shadows-down"]
"""Pixel layout in the file.

``native``: rows are azimuth lines, columns are range samples (legacy products).
``shadows-down``: range runs down the rows and azimuth runs *backwards* along the columns (current
ICEYE COGs). Readers undo this so that every cube has (azimuth, range) in the same physical sense.
"""


class ProductFormat(enum.StrEnum):
    """The file flavour of an ICEYE product; also the STAC asset key of its data asset."""

    LEGACY_GRD = "grd-tiff"
    """Legacy GRD GeoTIFF (product spec 2.x): uint16 amplitude, metadata in GDAL tags."""
    LEGACY_SLC = "slc-hdf5"
    """Legacy SLC HDF5: ``s_i``/``s_q`` datasets, metadata as top-level datasets."""
    GRD_COG = "grd-cog"
    """Current GRD COG with a sidecar STAC item (shadows-down)."""
    SLC_COG = "slc-cog"
    """Current SLC COG (bands: amplitude, phase) with a sidecar STAC item (shadows-down)."""

    @property
    def level(self) -> ProductLevel:
        """The processing level (GRD or SLC) of this flavour."""
        return "GRD" if self in (ProductFormat.LEGACY_GRD, ProductFormat.GRD_COG) else "SLC"


COLLECTION_OF_LEVEL: dict[str, str] = {"GRD": "iceye-grd", "SLC": "iceye-slc"}
"""STAC collection of each product level (SPEC §3)."""
LEVEL_OF_COLLECTION: dict[str, ProductLevel] = {"iceye-grd": "GRD", "iceye-slc": "SLC"}
"""Product level of each product collection."""


@dataclass(frozen=True)
class Window:
    """A rectangle of the physical grid: ``[az0, az1) x [rg0, rg1)``."""

    az0: int
    """First azimuth line."""
    az1: int
    """One past the last azimuth line."""
    rg0: int
    """First range sample."""
    rg1: int
    """One past the last range sample."""

    @property
    def shape(self) -> tuple[int, int]:
        """(azimuth, range) size of the window."""
        return (self.az1 - self.az0, self.rg1 - self.rg0)

    @property
    def slices(self) -> tuple[slice, slice]:
        """The window as (azimuth, range) slices."""
        return (slice(self.az0, self.az1), slice(self.rg0, self.rg1))


@dataclass(frozen=True)
class SourceRef:
    """Where one time slice's pixels come from."""

    item_id: str
    """STAC item id of the product."""
    href: str
    """URL of the data file."""
    format: ProductFormat
    """File flavour (selects the reader)."""
    orientation: Orientation
    """File layout."""
    shape: tuple[int, int]
    """Physical (azimuth, range) shape according to the catalog."""
    grid: MapGrid | None = None
    """The map grid its pixels are warped onto (map-geometry cubes); ``None``: SAR geometry."""


@dataclass(frozen=True)
class SliceCoords:
    """Per-time coordinate values of one image, read from its STAC item."""

    acquisition_start: datetime
    acquisition_end: datetime
    incidence_angle: float
    orbit_state: str
    observation_direction: str
    polarization: str
    platform: str
    product_id: str
    calibration_factor: float


DEFAULT_CHUNK = 1024
"""Default azimuth/range chunk edge: 1024² uint16 = 2 MiB raw per chunk, a size object stores serve
efficiently, that ML loaders can read as patches, and that keeps one task's memory small."""


@dataclass(frozen=True, kw_only=True)
class Chunks(Mapping[str, int]):
    """Zarr chunk (or shard) sizes of the cube, in pixels (``time`` in slices); a read-only mapping too.

    On a map grid ``azimuth`` and ``range`` are the edges along ``y`` and ``x``.
    """

    azimuth: int
    """Azimuth lines per chunk."""
    range: int
    """Range samples per chunk."""
    time: int | None = None
    """Time slices per chunk; ``None`` lets the writer decide (one)."""

    def to_dict(self) -> dict[str, int]:
        """JSON-able form, as in the config."""
        out = {"azimuth": self.azimuth, "range": self.range}
        if self.time is not None:
            out["time"] = self.time
        return out

    def __getitem__(self, key: str) -> int:
        return self.to_dict()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.to_dict())

    def __len__(self) -> int:
        return len(self.to_dict())


BloscName = Literal["lz4", "lz4hc", "blosclz", "snappy", "zlib", "zstd"]
BloscShuffle = Literal["noshuffle", "shuffle", "bitshuffle"]
BLOSC_NAMES: tuple[BloscName, ...] = ("lz4", "lz4hc", "blosclz", "snappy", "zlib", "zstd")
BLOSC_SHUFFLES: tuple[BloscShuffle, ...] = ("noshuffle", "shuffle", "bitshuffle")


@dataclass(frozen=True, kw_only=True)
class Compression:
    """The Blosc codec of the cube's pixel variable (config ``compression``).

    Default: lz4 with bit-shuffle. Measured on 1024² chunks of synthetic ICEYE stacks (one core,
    ``benchmarks``): uint16 GRD 1.63x smaller at 1870 MiB/s encode / 2750 MiB/s decode, against
    zstd level 3's 1.65x at 380 / 1600 MiB/s; complex64 SLC 1.14x (COG) and 2.40x (HDF5) against zstd's
    1.15x and 2.55x, at 4-5x the encode speed. Builds are bound by encoding on a few cores and ML
    loaders by decoding, so lz4 wins both for 1-6 % more bytes; ``{"cname": "zstd", "clevel": 3}``
    stores the smallest cubes.
    """

    cname: BloscName = "lz4"
    """Blosc inner compressor."""
    clevel: int = 5
    """Compression level, 0 (none) to 9."""
    shuffle: BloscShuffle = "bitshuffle"
    """Bit-shuffle groups the slowly varying high bits of SAR samples together."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form, as in the config."""
        return {"cname": self.cname, "clevel": self.clevel, "shuffle": self.shuffle}


@dataclass(frozen=True, kw_only=True)
class GridSpec:
    """The config's ``grid`` (SPEC §4, §6b): a map-geometry cube's north-up grid, as asked."""

    crs: str = "utm"
    """``"utm"`` (the UTM zone of the selection's centroid) or anything a CRS is made from
    (``"EPSG:32630"``, WKT)."""
    resolution: float | None = None
    """Pixel size in CRS units; ``None``: from the products' pixel spacing."""
    bbox: tuple[float, float, float, float] | None = None
    """``(lon_min, lat_min, lon_max, lat_max)``; ``None``: the search's area, else the footprints."""
    resampling: str = "nearest"
    """A rasterio resampling name; ``nearest`` keeps the products' digital numbers."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form, as in the config."""
        out: dict[str, Any] = {"crs": self.crs, "resampling": self.resampling}
        if self.resolution is not None:
            out["resolution"] = self.resolution
        if self.bbox is not None:
            out["bbox"] = list(self.bbox)
        return out


@dataclass(frozen=True, kw_only=True)
class MapGrid:
    """A resolved north-up grid: what every slice of a map-geometry cube is warped onto."""

    crs: str
    """The CRS as a string that names it (``EPSG:32630``, or WKT when it has no code)."""
    crs_wkt: str
    """The CRS as WKT (CF ``crs_wkt``)."""
    transform: tuple[float, float, float, float, float, float]
    """Affine ``(a, b, c, d, e, f)`` from pixel (col, row) to CRS (x, y); ``b = d = 0``, ``e < 0``."""
    shape: tuple[int, int]
    """(y, x) size in pixels."""
    resampling: str = "nearest"
    """Resampling of every slice onto the grid."""

    @property
    def resolution(self) -> float:
        """Pixel size in CRS units."""
        return self.transform[0]

    @property
    def geo_transform(self) -> tuple[float, float, float, float, float, float]:
        """The GDAL geotransform ``(c, a, b, f, d, e)``."""
        a, b, c, d, e, f = self.transform
        return (c, a, b, f, d, e)

    @property
    def geo_transform_text(self) -> str:
        """The geotransform as CF's ``GeoTransform`` attribute spells it (six numbers, spaces)."""
        return " ".join(repr(float(v)) for v in self.geo_transform)

    def x(self) -> list[float]:
        """Pixel-centre x coordinates."""
        a, _, c, *_ = self.transform
        return [c + a * (i + 0.5) for i in range(self.shape[1])]

    def y(self) -> list[float]:
        """Pixel-centre y coordinates (descending)."""
        *_, e, f = self.transform
        return [f + e * (j + 0.5) for j in range(self.shape[0])]
