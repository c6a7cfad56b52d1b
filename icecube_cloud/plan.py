"""The plan: a pure, printable description of the cube a build will write.

A plan is made from STAC items and the selected time axis without reading a pixel. It fixes the time
axis, which product fills which time slice, the per-time coordinates, the variable's shape, dtype,
chunking and compression, and the provenance attributes. The writer executes it; tests and notebooks
can inspect it first.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pystac

from icecube_cloud.errors import CatalogError, SelectionError
from icecube_cloud.model import (
    DEFAULT_CHUNK,
    Chunks,
    Compression,
    MapGrid,
    ProductLevel,
    SliceCoords,
    SourceRef,
    Window,
)
from icecube_cloud.selection import Acquisition, TimeAxis
from icecube_cloud.stac.items import (
    item_band_dtypes,
    item_data_href,
    item_format,
    item_physical_shape,
)

PER_TIME_COORDS: tuple[str, ...] = (
    "acquisition_start",
    "acquisition_end",
    "incidence_angle",
    "orbit_state",
    "observation_direction",
    "polarization",
    "platform",
    "product_id",
    "calibration_factor",
    "valid",
    "metadata",
)
"""The per-time coordinates of every cube (SPEC §6)."""


@dataclass(frozen=True)
class PlannedSlice:
    """One step of the time axis: an image, or a gap (``source is None``)."""

    time: datetime
    """Time label (acquisition end, or bin start with temporal bins)."""
    source: SourceRef | None = None
    """The product filling this slice; ``None`` for a gap."""
    coords: SliceCoords | None = None
    """Per-time coordinates; ``None`` for a gap."""

    @property
    def valid(self) -> bool:
        """Whether the slice holds an image."""
        return self.source is not None


@dataclass(frozen=True)
class LabelPlan:
    """The labels a cube carries: their classes and, per product, the label items to draw."""

    collection: str
    """Label collection the items came from."""
    classes: Mapping[str, int]
    """Class name -> uint8 code (0 is background)."""
    items: Mapping[str, tuple[Mapping[str, Any], ...]]
    """Product item id -> its label items as STAC JSON (shipped to the workers that rasterise them)."""


@dataclass(frozen=True)
class CubePlan:
    """Everything a build writes, decided before any pixel is read."""

    product_level: ProductLevel
    """GRD (amplitude cube) or SLC (complex cube)."""
    variable: str
    """Name of the pixel variable: ``amplitude`` or ``slc``."""
    dtype: str
    """NumPy dtype of the pixel variable."""
    shape: tuple[int, int]
    """(azimuth, range) size of every image; ``(y, x)`` of the grid for a map-geometry cube."""
    chunks: tuple[int, int]
    """Edges along :attr:`dims` of the stored objects: the chunks, or the shards of a sharded cube
    (:attr:`inner_chunks`); each is written whole by one band task. The time edge is always 1."""
    slices: tuple[PlannedSlice, ...]
    """The time axis, ascending."""
    compression: Compression = field(default_factory=Compression)
    """Codec of the pixel variable."""
    attrs: Mapping[str, Any] = field(default_factory=dict)
    """Provenance attributes written at the cube root (config, search, catalog URL)."""
    labels: LabelPlan | None = None
    """Labels to rasterise into the cube (``labels``, ``label_geometry``, ``label_class``)."""
    grid: MapGrid | None = None
    """The map grid of a map-geometry cube (SPEC §6b); ``None``: SAR geometry."""
    inner_chunks: tuple[int, int] | None = None
    """A sharded cube (config ``shards``): the chunk edges inside each shard, the unit readers decode
    (Zarr v3 ``sharding_indexed``); ``None``: every stored object is one chunk."""

    @property
    def read_chunks(self) -> tuple[int, int]:
        """The chunk edges readers decode (Zarr's ``chunks``): the inner chunks of a sharded cube."""
        return self.chunks if self.inner_chunks is None else self.inner_chunks

    @property
    def dims(self) -> tuple[str, str]:
        """Names of the two image dimensions: ``(azimuth, range)``, or ``(y, x)`` on a map grid."""
        return ("azimuth", "range") if self.grid is None else ("y", "x")

    @property
    def times(self) -> tuple[datetime, ...]:
        """The time labels."""
        return tuple(s.time for s in self.slices)

    @property
    def n_gaps(self) -> int:
        """Number of gap slices."""
        return sum(not s.valid for s in self.slices)

    @property
    def chunk_grid(self) -> tuple[int, int]:
        """Number of stored objects (chunks, or shards) along (azimuth, range)."""
        return (
            math.ceil(self.shape[0] / self.chunks[0]),
            math.ceil(self.shape[1] / self.chunks[1]),
        )

    @property
    def n_chunks(self) -> int:
        """Pixel objects (chunks, or shards) the build writes (gap slices write none)."""
        naz, nrg = self.chunk_grid
        return (len(self.slices) - self.n_gaps) * naz * nrg

    @property
    def nbytes(self) -> int:
        """Uncompressed bytes of pixels the build writes."""
        return (
            (len(self.slices) - self.n_gaps)
            * self.shape[0]
            * self.shape[1]
            * np.dtype(self.dtype).itemsize
        )

    def windows(self) -> Iterator[Window]:
        """The chunk windows of one image, row-major."""
        (ca, cr), (az, rg) = self.chunks, self.shape
        for a0 in range(0, az, ca):
            for r0 in range(0, rg, cr):
                yield Window(a0, min(a0 + ca, az), r0, min(r0 + cr, rg))

    def to_dict(self) -> dict[str, Any]:
        """The plan as JSON-able data (for ``icecube-cloud search --json`` and notebooks)."""

        def iso(t: datetime) -> str:
            return t.isoformat().replace("+00:00", "Z")

        return {
            "product_level": self.product_level,
            "variable": self.variable,
            "dtype": self.dtype,
            "shape": {"time": len(self.slices), **dict(zip(self.dims, self.shape, strict=True))},
            "chunks": {"time": 1, **dict(zip(self.dims, self.read_chunks, strict=True))},
            **(
                {}
                if self.inner_chunks is None
                else {"shards": {"time": 1, **dict(zip(self.dims, self.chunks, strict=True))}}
            ),
            "compression": self.compression.to_dict(),
            "n_chunks": self.n_chunks,
            "nbytes": self.nbytes,
            "slices": [
                {
                    "time": iso(s.time),
                    "valid": s.valid,
                    "item_id": s.source.item_id if s.source else None,
                    "href": s.source.href if s.source else None,
                    "incidence_angle": s.coords.incidence_angle if s.coords else None,
                    "acquisition_end": iso(s.coords.acquisition_end) if s.coords else None,
                }
                for s in self.slices
            ],
            "attrs": dict(self.attrs),
            "labels": None
            if self.labels is None
            else {
                "collection": self.labels.collection,
                "classes": dict(self.labels.classes),
                "items": {
                    k: sorted(str(d.get("id")) for d in v) for k, v in self.labels.items.items()
                },
            },
            **({} if self.grid is None else {"grid": _grid_dict(self.grid)}),
        }

    def __str__(self) -> str:
        """A human-readable summary: layout, then one line per time slice."""
        ca, cr = self.read_chunks
        objects, sharded = "chunks", ""
        if self.inner_chunks is not None:
            objects, sharded = "shards", f" in shards (1, {self.chunks[0]}, {self.chunks[1]})"
        lines = [
            f"{self.product_level} cube: {self.variable} {self.dtype} "
            f"(time: {len(self.slices)}, {self.dims[0]}: {self.shape[0]}, "
            f"{self.dims[1]}: {self.shape[1]}), "
            f"chunks (1, {ca}, {cr}){sharded}, blosc/{self.compression.cname}"
            f" level {self.compression.clevel} {self.compression.shuffle}",
            f"{len(self.slices) - self.n_gaps} images, {self.n_gaps} gaps, {self.n_chunks} {objects}, "
            f"{self.nbytes / 2**20:.1f} MiB of pixels",
        ]
        if self.grid is not None:
            g = self.grid
            lines.append(
                f"map grid {g.crs}, {g.resolution:g} per pixel, origin ({g.transform[2]:.3f}, "
                f"{g.transform[5]:.3f}), {g.resampling} resampling"
            )
        for i, s in enumerate(self.slices):
            t = s.time.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
            if s.source is None or s.coords is None:
                lines.append(f"  [{i:3d}] {t}  gap")
            else:
                lines.append(
                    f"  [{i:3d}] {t}  {s.source.item_id}  inc {s.coords.incidence_angle:.2f}  "
                    f"{s.coords.orbit_state}"
                )
        return "\n".join(lines)


def _grid_dict(grid: MapGrid) -> dict[str, Any]:
    return {
        "crs": grid.crs,
        "transform": list(grid.transform),
        "shape": list(grid.shape),
        "resampling": grid.resampling,
    }


@dataclass(frozen=True, kw_only=True)
class ParsedItem(Acquisition):
    """A product item parsed once: what selection needs, plus what the plan needs of its slice."""

    source: SourceRef
    """Where its pixels are and how they are laid out."""
    coords: SliceCoords
    """Its per-time coordinates."""
    dtype: str
    """NumPy dtype of its pixels in the cube (``complex64`` for SLC)."""
    footprint: Mapping[str, Any] | None = None
    """Its footprint, a GeoJSON geometry in lon/lat (map grids)."""
    pixel_spacing: float | None = None
    """Its ground pixel size, metres: the coarser of range and azimuth spacing (map grids)."""

    @classmethod
    def from_item(cls, item: pystac.Item) -> ParsedItem:
        """Parse a product item (SPEC §3) for selection and planning, once.

        Raises:
            CatalogError: A property the cube needs is missing or malformed (names item and key).
        """
        acq = Acquisition.from_item(item)
        source = source_ref(item)
        return cls(
            item_id=acq.item_id,
            end=acq.end,
            incidence_angle=acq.incidence_angle,
            product_level=acq.product_level,
            shape=source.shape,
            source=source,
            coords=slice_coords(item, acq),
            dtype="complex64" if acq.product_level == "SLC" else item_band_dtypes(item)[0],
            footprint=item.geometry,
            pixel_spacing=_pixel_spacing(item),
        )


def _pixel_spacing(item: pystac.Item) -> float | None:
    spacings = [
        item.properties.get(k) for k in ("sar:pixel_spacing_range", "sar:pixel_spacing_azimuth")
    ]
    known = [float(v) for v in spacings if isinstance(v, int | float) and not isinstance(v, bool)]
    return max(known) if known else None


def slice_coords(item: pystac.Item, acq: Acquisition) -> SliceCoords:
    """Per-time coordinates of an item (SPEC §6), with a clear error for missing properties."""
    p = item.properties

    def need(key: str) -> Any:
        if p.get(key) is None:
            raise CatalogError(f"item {item.id!r}: required property {key!r} is missing")
        return p[key]

    start = item.common_metadata.start_datetime or item.datetime or acq.end
    cal = p.get("iceye:calibration_factor")
    return SliceCoords(
        acquisition_start=start.astimezone(UTC) if start.tzinfo else start.replace(tzinfo=UTC),
        acquisition_end=acq.end,
        incidence_angle=acq.incidence_angle,
        orbit_state=str(need("sat:orbit_state")),
        observation_direction=str(p.get("sar:observation_direction", "")),
        polarization="+".join(need("sar:polarizations")),
        platform=str(p.get("platform", "")),
        product_id=item.id,
        calibration_factor=float(cal) if cal is not None else math.nan,
    )


def source_ref(item: pystac.Item) -> SourceRef:
    """Where an item's pixels are and how they are laid out."""
    orientation = item.properties.get("iceye:orientation", "native")
    if orientation not in ("native", "shadows-down"):
        raise CatalogError(f"item {item.id!r}: unknown iceye:orientation {orientation!r}")
    return SourceRef(
        item_id=item.id,
        href=item_data_href(item),
        format=item_format(item),
        orientation=orientation,
        shape=item_physical_shape(item),
    )


def make_plan(
    axis: TimeAxis[ParsedItem],
    *,
    chunks: Chunks | None = None,
    shards: Chunks | None = None,
    attrs: Mapping[str, Any] | None = None,
    compression: Compression | None = None,
    labels: LabelPlan | None = None,
    grid: MapGrid | None = None,
) -> CubePlan:
    """Plan the cube of a selected time axis; no item is parsed again.

    :func:`~icecube_cloud.selection.select` applied the rules of the axis (one product level, one
    shape, distinct times); the plan adds the one rule of its own, one sample type.

    Args:
        axis: The selected time axis of parsed items.
        chunks: Chunk edges (config ``chunks``; validated there); default :data:`DEFAULT_CHUNK`.
        shards: Shard edges (config ``shards``, whole multiples of the chunk edges; validated there);
            ``None``: not sharded. A shard is clamped to the chunks that cover the image.
        attrs: Provenance attributes for the cube root; ``product_type`` is added.
        compression: Codec override.
        labels: The labels the cube carries.
        grid: The map grid every image is warped onto (a map-geometry cube); ``None``: SAR geometry.

    Raises:
        SelectionError: The axis holds no image, or GRD images of different sample types.
    """
    used = [s.acquisition for s in axis.slices if s.acquisition is not None]
    if not used:
        raise SelectionError("the time axis holds no image")
    level: ProductLevel = used[0].source.format.level
    dtypes = {a.dtype for a in used}
    if len(dtypes) != 1:
        raise SelectionError(f"the selected images have different sample types: {sorted(dtypes)}")
    shape = used[0].source.shape if grid is None else grid.shape
    chunk_edges = (
        min(chunks.azimuth if chunks else DEFAULT_CHUNK, shape[0]),
        min(chunks.range if chunks else DEFAULT_CHUNK, shape[1]),
    )
    inner: tuple[int, int] | None = None
    if shards is not None:
        inner = chunk_edges
        chunk_edges = (
            min(shards.azimuth, math.ceil(shape[0] / inner[0]) * inner[0]),
            min(shards.range, math.ceil(shape[1] / inner[1]) * inner[1]),
        )
    slices = tuple(
        PlannedSlice(time=s.time)
        if s.acquisition is None
        else PlannedSlice(
            time=s.time,
            source=s.acquisition.source
            if grid is None
            else dataclasses.replace(s.acquisition.source, grid=grid),
            coords=s.acquisition.coords,
        )
        for s in axis.slices
    )
    return CubePlan(
        product_level=level,
        variable="slc" if level == "SLC" else "amplitude",
        dtype=dtypes.pop(),
        shape=shape,
        chunks=chunk_edges,
        slices=slices,
        compression=compression or Compression(),
        attrs={**(attrs or {}), "product_type": level},
        labels=labels,
        grid=grid,
        inner_chunks=inner,
    )
