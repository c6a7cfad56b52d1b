"""Helpers shared by the product readers: opening local/fsspec files, fields, footprints.

Where a file is (local or remote, its path, its filesystem) is :mod:`icecube_cloud.storage`'s answer.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from datetime import datetime
from pathlib import PurePosixPath
from typing import IO, Any, Literal

import rasterio
from rasterio.errors import RasterioError

from icecube_cloud import gdal_io
from icecube_cloud.errors import ProductError
from icecube_cloud.products._parse import parse_utc
from icecube_cloud.storage import filesystem, is_remote, local_path

HDF5_BLOCK = 2**20
"""fsspec block for HDF5 over object storage: h5py reads scattered metadata, then contiguous data."""
SNIFF_BLOCK = 2**16
"""fsspec block for reading a file's first bytes / a small sidecar."""

TRUNCATED_KEY = "_truncated_fields"
"""Metadata key listing fields whose numpy print was elided (``...``) at the source."""


@contextlib.contextmanager
def open_binary(
    href: str,
    storage_options: Mapping[str, Any] | None,
    *,
    block_size: int = SNIFF_BLOCK,
    cache_type: str = "readahead",
) -> Iterator[IO[bytes]]:
    """Open ``href`` (local path or fsspec URL) for binary reading, errors as ProductError.

    Remote files are read in ``block_size`` range requests (never downloaded whole up front).
    """
    try:
        if not is_remote(href):
            handle: IO[bytes] = open(local_path(href), "rb")  # noqa: SIM115
        else:
            fs, path = filesystem(href, storage_options)
            handle = fs.open(path, "rb", block_size=block_size, cache_type=cache_type)
    except (OSError, ValueError) as exc:
        raise ProductError(href, f"cannot open: {exc}") from exc
    with handle:
        try:
            yield handle
        except OSError as exc:  # remote files fail on first read (404, 403, connection)
            raise ProductError(href, f"cannot read: {type(exc).__name__}: {exc}") from exc


@contextlib.contextmanager
def open_raster(
    href: str, storage_options: Mapping[str, Any] | None
) -> Iterator[rasterio.DatasetReader]:
    """Open a GeoTIFF with rasterio (window reads when remote); errors: ProductError."""
    with contextlib.ExitStack() as stack:
        try:
            ds = stack.enter_context(gdal_io.open_raster(href, storage_options))
        except (RasterioError, OSError, ValueError) as exc:
            raise ProductError(href, f"not a readable GeoTIFF: {exc}") from exc
        yield ds


def exists(href: str, storage_options: Mapping[str, Any] | None) -> bool:
    """Whether ``href`` exists (local or fsspec)."""
    if not is_remote(href):
        return os.path.isfile(local_path(href))
    fs, path = filesystem(href, storage_options)
    return bool(fs.isfile(path))


class Fields:
    """Read access to a product's metadata by (lower-case) key; raises ProductError naming the key."""

    def __init__(self, href: str, metadata: Mapping[str, Any]) -> None:
        self.href = href
        self.metadata = metadata

    def raw(self, key: str) -> Any:
        """The value of a required field."""
        if key not in self.metadata or self.metadata[key] in (None, ""):
            raise ProductError(self.href, f"missing required metadata field {key!r}")
        return self.metadata[key]

    def text(self, key: str) -> str:
        """A required string field (a one-element list is unwrapped)."""
        value = self.raw(key)
        if isinstance(value, list) and len(value) == 1:
            value = value[0]
        if isinstance(value, bytes):
            value = value.decode()
        return value if isinstance(value, str) else f"{value}"

    def number(self, key: str) -> float:
        """A required numeric field."""
        value = self.raw(key)
        try:
            return float(value)
        except (TypeError, ValueError) as exc:
            raise ProductError(
                self.href, f"field {key!r}: expected a number, got {value!r}"
            ) from exc

    def opt_float(self, key: str) -> float | None:
        """An optional numeric field (``None`` when missing)."""
        return self.number(key) if self.metadata.get(key) not in (None, "") else None

    def opt_int(self, key: str) -> int | None:
        """An optional integer field (``None`` when missing)."""
        value = self.opt_float(key)
        return None if value is None else int(value)

    def time(self, key: str) -> datetime:
        """A required UTC timestamp."""
        try:
            return parse_utc(self.raw(key), key=key)
        except ValueError as exc:
            raise ProductError(self.href, str(exc)) from exc

    def orbit_state(self, key: str) -> Literal["ascending", "descending"]:
        """The orbit direction, lower case."""
        value = self.text(key).strip().lower()
        if value == "ascending":
            return "ascending"
        if value == "descending":
            return "descending"
        raise ProductError(
            self.href, f"field {key!r}: expected ASCENDING/DESCENDING, got {value!r}"
        )

    def look_side(self, key: str) -> Literal["left", "right"]:
        """The antenna look side, lower case."""
        value = self.text(key).strip().lower()
        if value == "left":
            return "left"
        if value == "right":
            return "right"
        raise ProductError(self.href, f"field {key!r}: expected left/right, got {value!r}")


def corner_ring(fields: Fields, prefix: str = "coord_") -> tuple[tuple[float, float], ...]:
    """Closed (lon, lat) ring from ICEYE's ``coord_*`` "[range azimuth lat lon]" corners.

    Returns an empty ring when the corners are absent.
    """
    ring: list[tuple[float, float]] = []
    for corner in ("first_near", "first_far", "last_far", "last_near"):
        value = fields.metadata.get(prefix + corner)
        if not isinstance(value, list) or len(value) != 4:
            return ()
        _, _, lat, lon = value
        if lat is None or lon is None:
            return ()
        ring.append((float(lon), float(lat)))
    return (*ring, ring[0])


def legacy_fields(fields: Fields, metadata: Mapping[str, Any]) -> dict[str, Any]:
    """``ProductMetadata`` fields that the legacy GRD GeoTIFF and SLC HDF5 share.

    Both formats carry the same ICEYE field names (upper-case GDAL tags vs lower-case datasets);
    ``fields`` looks them up lower-case, so the mapping to the typed model lives here once.

    Args:
        fields: Lower-case access to the product's fields.
        metadata: The full metadata to keep (``ProductMetadata.metadata``), as the reader stores it.
    """
    version = fields.metadata.get("processor_version")
    return {
        "product_id": PurePosixPath(fields.href.rstrip("/")).stem,
        "href": fields.href,
        "product_type": fields.text("product_type"),
        "acquisition_start": fields.time("acquisition_start_utc"),
        "acquisition_end": fields.time("acquisition_end_utc"),
        "platform": fields.text("satellite_name"),
        "instrument_mode": fields.text("acquisition_mode").lower(),
        "polarizations": (fields.text("polarization").upper(),),
        "center_frequency_ghz": fields.number("carrier_frequency") / 1e9,
        "incidence_angle": fields.number("incidence_center"),
        "observation_direction": fields.look_side("look_side"),
        "orbit_state": fields.orbit_state("orbit_direction"),
        "incidence_near": fields.opt_float("incidence_near"),
        "incidence_far": fields.opt_float("incidence_far"),
        "absolute_orbit": fields.opt_int("orbit_absolute_number"),
        "relative_orbit": fields.opt_int("orbit_relative_number"),
        "looks_range": fields.opt_float("range_looks"),
        "looks_azimuth": fields.opt_float("azimuth_looks"),
        "calibration_factor": fields.opt_float("calibration_factor"),
        "footprint": corner_ring(fields),
        "processing_software": {"ICEYE processor": str(version)} if version is not None else {},
        "metadata": metadata,
    }
