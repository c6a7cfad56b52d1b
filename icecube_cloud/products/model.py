"""The typed description of one ICEYE product, whatever file flavour it came from.

Readers in this package turn legacy GRD GeoTIFFs, legacy SLC HDF5 files and current COG deliveries
(with their sidecar STAC items) into one :class:`ProductMetadata`. Everything downstream (STAC items,
plans, cubes) works on this object and never looks at ICEYE tags again.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from icecube_cloud.model import Orientation, ProductFormat, ProductLevel

__all__ = [
    "GroundControlPoint",
    "Orientation",
    "ProductFormat",
    "ProductLevel",
    "ProductMetadata",
]


@dataclass(frozen=True)
class GroundControlPoint:
    """One tie point between the pixel grid and the map (EPSG:4326).

    ``row``/``col`` are 0-based positions in the *file's* pixel grid (GDAL convention).
    """

    row: float
    """Pixel row (0-based, file grid)."""
    col: float
    """Pixel column (0-based, file grid)."""
    lon: float
    """Longitude, degrees east."""
    lat: float
    """Latitude, degrees north."""
    height: float = 0.0
    """Height above the ellipsoid, metres."""


@dataclass(frozen=True, kw_only=True)
class ProductMetadata:
    """Everything icecube-cloud needs to know about one ICEYE product.

    Times are timezone-aware UTC datetimes; angles are degrees; frequencies GHz; shapes are
    ``(azimuth, range)`` in physical SAR axes, regardless of the file orientation.
    """

    product_id: str
    """Stable unique id, used as the STAC item id (file stem for legacy products, sidecar id for COGs)."""
    href: str
    """Where the pixels are: local path or fsspec URL of the data file."""
    format: ProductFormat
    """File flavour (decides the reader)."""
    product_type: str
    """ICEYE product type as written by ICEYE (e.g. ``SpotlightExtendedDwell``, ``GRD-COG``)."""
    acquisition_start: datetime
    """Start of the acquisition (UTC)."""
    acquisition_end: datetime
    """End of the acquisition (UTC); the time of the image everywhere in icecube-cloud."""
    platform: str
    """Satellite name, e.g. ``ICEYE-X9``."""
    instrument_mode: str
    """``spotlight``, ``stripmap`` or ``scan``."""
    polarizations: tuple[str, ...]
    """Polarisations, e.g. ``("VV",)``."""
    center_frequency_ghz: float
    """Radar centre (carrier) frequency in GHz."""
    incidence_angle: float
    """Incidence angle at the scene centre, degrees."""
    observation_direction: Literal["left", "right"]
    """Antenna look side."""
    orbit_state: Literal["ascending", "descending"]
    """Orbit direction, lower case."""
    shape: tuple[int, int]
    """Image shape as (azimuth lines, range samples)."""
    dtype: str
    """NumPy dtype name of the stored samples (``uint16`` for GRD; ``float32``/``int16`` for I/Q;
    ``float32`` for COG amplitude/phase)."""
    orientation: Orientation = "native"
    """Pixel layout of the file."""
    datetime: datetime | None = None
    """Nominal time given by a sidecar STAC item, if any (else the acquisition end is used)."""
    incidence_near: float | None = None
    """Incidence angle at near range, degrees."""
    incidence_far: float | None = None
    """Incidence angle at far range, degrees."""
    absolute_orbit: int | None = None
    """Absolute orbit number."""
    relative_orbit: int | None = None
    """Relative orbit number."""
    pixel_spacing_range: float | None = None
    """Pixel spacing in range, metres."""
    pixel_spacing_azimuth: float | None = None
    """Pixel spacing in azimuth, metres."""
    looks_range: float | None = None
    """Number of range looks."""
    looks_azimuth: float | None = None
    """Number of azimuth looks."""
    calibration_factor: float | None = None
    """Radiometric calibration factor (sigma0/beta0 scaling) as delivered."""
    footprint: tuple[tuple[float, float], ...] = ()
    """Closed ring of (lon, lat) corners of the scene in EPSG:4326 (first == last); empty if unknown."""
    gcps: tuple[GroundControlPoint, ...] = ()
    """Ground control points in the file's pixel grid, EPSG:4326."""
    rpc: Mapping[str, Any] | None = None
    """Rational polynomial coefficients (lower-case GDAL RPC keys, numbers and lists of numbers)."""
    transform: tuple[float, float, float, float, float, float] | None = None
    """Affine transform (a, b, c, d, e, f) of the file's pixel grid to ``crs``, if georeferenced."""
    crs: str | None = None
    """CRS of ``transform`` (e.g. ``EPSG:4326``); ``None`` for slant/ground-range products."""
    processing_software: Mapping[str, str] = field(default_factory=dict)
    """Processor name -> version, for the STAC processing extension."""
    sidecar: Mapping[str, Any] | None = None
    """The sidecar STAC item (as a dict), for COG deliveries."""
    metadata: Mapping[str, Any] = field(default_factory=dict)
    """The full product metadata, lossless and JSON-serialisable: field name -> str / int / float /
    bool / None / nested lists (arrays as lists of their shape, never numpy-printed strings).

    Legacy GRD: every GDAL tag lower-cased (GDAL keys are case-insensitive), ``rpc`` and ``gcps``
    (``crs``, ``columns``, ``points``: one ``[row, col, lon, lat, height]`` per GCP). Legacy SLC:
    every HDF5 dataset and group under its own name (``posX``, ``RPC/LINE_OFF``), ``(N, 1)``
    arrays as ``N`` one-element lists. COG: the sidecar item's properties (``proj:transform`` in
    its GDAL order, ``iceye:rpc``, ...). Floats narrower than float64 as their shortest decimal."""

    @property
    def level(self) -> ProductLevel:
        """Processing level, GRD or SLC."""
        return self.format.level

    @property
    def file_shape(self) -> tuple[int, int]:
        """Shape of the raster as stored in the file (rows, columns)."""
        az, rg = self.shape
        return (rg, az) if self.orientation == "shadows-down" else (az, rg)
