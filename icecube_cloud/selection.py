"""Selection rules (SPEC §4): from the searched acquisitions to the cube's time axis. Pure, no I/O.

The time of an image is its acquisition end everywhere. Rules, in order: the UTC day of the
acquisition end within [start_date, end_date]; inclusive incidence-angle bounds; one product level;
no two images with the very same end time; then the temporal rule (one slice per image, the latest
image of each UTC day, or bins of N days keeping their earliest image); finally equal image shapes.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Generic, TypeVar

import pystac

from icecube_cloud.config import CubeConfig
from icecube_cloud.errors import (
    CatalogError,
    ConfigError,
    EmptySelectionError,
    SelectionError,
    ShapeMismatchError,
)
from icecube_cloud.model import LEVEL_OF_COLLECTION, ProductLevel
from icecube_cloud.stac.items import item_physical_shape


@dataclass(frozen=True, kw_only=True)
class Acquisition:
    """What the selection rules need to know about one searched image."""

    item_id: str
    """STAC item id."""
    end: datetime
    """Acquisition end, timezone-aware UTC (the image's time)."""
    incidence_angle: float
    """Scene-centre incidence angle, degrees (``view:incidence_angle``)."""
    product_level: str
    """``"GRD"`` or ``"SLC"``."""
    shape: tuple[int, int] | None = None
    """Physical (azimuth, range) image shape, when the item tells it."""

    @property
    def day(self) -> date:
        """UTC day of the acquisition end."""
        return self.end.date()

    @classmethod
    def from_item(cls, item: pystac.Item) -> Acquisition:
        """Read an acquisition from a product item (SPEC §3).

        Raises:
            CatalogError: The item lacks a time, an incidence angle or a product level.
        """
        end = item.common_metadata.end_datetime or item.datetime
        if end is None:
            raise CatalogError(f"item {item.id!r}: no end_datetime or datetime")
        angle = item.properties.get("view:incidence_angle")
        if isinstance(angle, bool) or not isinstance(angle, int | float):
            raise CatalogError(f"item {item.id!r}: no numeric view:incidence_angle ({angle!r})")
        level = LEVEL_OF_COLLECTION.get(item.collection_id or "")
        if level is None:
            ptype = str(item.properties.get("sar:product_type", "")).upper()
            levels: tuple[ProductLevel, ...] = ("GRD", "SLC")
            level = next((lv for lv in levels if ptype.startswith(lv)), None)
        if level is None:
            raise CatalogError(
                f"item {item.id!r}: cannot tell GRD from SLC (collection {item.collection_id!r}, "
                f"sar:product_type {item.properties.get('sar:product_type')!r})"
            )
        return cls(
            item_id=item.id,
            end=end.replace(tzinfo=UTC) if end.tzinfo is None else end.astimezone(UTC),
            incidence_angle=float(angle),
            product_level=level,
            shape=_item_shape(item),
        )


def _item_shape(item: pystac.Item) -> tuple[int, int] | None:
    """Physical (azimuth, range) shape, so legacy products and shadows-down COGs compare correctly."""
    try:
        return item_physical_shape(item)
    except CatalogError:
        return None


A = TypeVar("A", bound=Acquisition)
"""What a time axis holds: :class:`Acquisition`, or a richer parsed item (the plan's)."""


@dataclass(frozen=True)
class TimeSlice(Generic[A]):
    """One step of the time axis: an image, or a gap (``acquisition`` is ``None``)."""

    time: datetime
    """Slice time (UTC): the image's acquisition end, or the bin start when binning."""
    acquisition: A | None = None
    """The image of this slice, as parsed from its item; ``None`` for a gap."""

    @property
    def item_id(self) -> str | None:
        """Item id of the image; ``None`` for a gap."""
        return None if self.acquisition is None else self.acquisition.item_id

    @property
    def valid(self) -> bool:
        """Whether the slice holds an image."""
        return self.acquisition is not None


@dataclass(frozen=True)
class TimeAxis(Generic[A]):
    """The cube's time axis: slices with strictly increasing times."""

    slices: tuple[TimeSlice[A], ...]

    @property
    def times(self) -> tuple[datetime, ...]:
        """Slice times."""
        return tuple(s.time for s in self.slices)

    @property
    def item_ids(self) -> tuple[str | None, ...]:
        """Item id of each slice (``None`` for gaps)."""
        return tuple(s.item_id for s in self.slices)

    @property
    def n_gaps(self) -> int:
        """Number of gap slices."""
        return sum(not s.valid for s in self.slices)

    def __len__(self) -> int:
        return len(self.slices)

    def __str__(self) -> str:
        n, gaps = len(self), self.n_gaps
        rows = [f"time axis: {n} slices, {n - gaps} images, {gaps} gaps"]
        rows.append(f"{'#':>4}  {'time (UTC)':<27}  item")
        for i, s in enumerate(self.slices):
            t = s.time.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
            rows.append(f"{i:>4}  {t:<27}  {s.item_id or '(gap)'}")
        return "\n".join(rows)


def _utc_midnight(day: date) -> datetime:
    return datetime.combine(day, time.min, UTC)


def _describe_rules(cfg: CubeConfig) -> str:
    start = cfg.start_date.isoformat() if cfg.start_date else "..."
    end = cfg.end_date.isoformat() if cfg.end_date else "..."
    lo = "..." if cfg.min_incidence_angle is None else f"{cfg.min_incidence_angle:g}"
    hi = "..." if cfg.max_incidence_angle is None else f"{cfg.max_incidence_angle:g}"
    level = f", product type {cfg.product_type}" if cfg.product_type else ""
    return (
        f"acquisition end on a UTC day in [{start}, {end}], "
        f"incidence angle in [{lo}, {hi}] deg{level}"
    )


def _in_range(acq: Acquisition, cfg: CubeConfig) -> bool:
    return (
        (cfg.start_date is None or acq.day >= cfg.start_date)
        and (cfg.end_date is None or acq.day <= cfg.end_date)
        and (cfg.min_incidence_angle is None or acq.incidence_angle >= cfg.min_incidence_angle)
        and (cfg.max_incidence_angle is None or acq.incidence_angle <= cfg.max_incidence_angle)
    )


def _filter(acquisitions: Sequence[A], cfg: CubeConfig) -> list[A]:
    """Day, angle and level rules, then the duplicate check; sorted by time."""
    kept = [a for a in acquisitions if _in_range(a, cfg)]
    if cfg.product_type is not None:
        kept = [a for a in kept if a.product_level == cfg.product_type]
    if not kept:
        raise EmptySelectionError(
            f"no image selected: {len(acquisitions)} image(s) found by the search, none with "
            + _describe_rules(cfg)
        )
    levels = sorted({a.product_level for a in kept})
    if len(levels) > 1:
        counts = [f"{sum(a.product_level == lv for a in kept)} {lv}" for lv in levels]
        choices = " or ".join(f'"product_type": "{lv}"' for lv in levels)
        raise ConfigError(
            "product_type",
            f"the selection mixes {' and '.join(counts)} images and a cube holds one product "
            f"type; add {choices} to the config",
        )
    kept.sort(key=lambda a: (a.end, a.item_id))
    for prev, cur in itertools.pairwise(kept):
        if prev.end == cur.end:
            raise SelectionError(
                f"items {prev.item_id!r} and {cur.item_id!r} have the very same acquisition end "
                f"{cur.end.isoformat()}: the same acquisition twice? Remove one or narrow the "
                "search"
            )
    return kept


def _bins(kept: list[A], cfg: CubeConfig) -> list[TimeSlice[A]]:
    n = cfg.temporal_resolution
    origin = cfg.start_date or kept[0].day
    last_day = cfg.end_date or kept[-1].day
    n_bins = (last_day - origin).days // n + 1
    chosen: dict[int, A] = {}
    for acq in kept:  # sorted by time: the first one seen in a bin is its earliest
        chosen.setdefault((acq.day - origin).days // n, acq)
    slices = []
    for k in range(n_bins):
        acq_k = chosen.get(k)
        start = _utc_midnight(origin + timedelta(days=k * n))
        slices.append(TimeSlice(start, acq_k))
    return slices


def select(acquisitions: Iterable[A], cfg: CubeConfig) -> TimeAxis[A]:
    """Apply the config's selection rules and return the time axis.

    Args:
        acquisitions: What the search returned (any order), parsed: each slice of the axis carries
            its acquisition as given (the plan's parsed items go through unchanged).
        cfg: The cube config.

    Raises:
        EmptySelectionError: No image passes the rules (the message says what was asked).
        ConfigError: GRD and SLC images are selected and ``product_type`` is not set.
        SelectionError: Two selected images have the very same acquisition end.
        ShapeMismatchError: The images of the time axis have different shapes (SAR geometry:
            without ``grid``).
    """
    kept = _filter(list(acquisitions), cfg)
    if cfg.temporal_resolution > 0:
        slices = _bins(kept, cfg)
    else:
        if not cfg.temporal_overlap:
            latest = {a.day: a for a in kept}  # sorted by time: the last one of a day wins
            kept = sorted(latest.values(), key=lambda a: a.end)
        slices = [TimeSlice(a.end, a) for a in kept]
    if cfg.grid is not None:  # a map-geometry cube: every image is warped onto one grid
        return TimeAxis(tuple(slices))
    used = {s.item_id for s in slices if s.item_id is not None}
    shapes = {a.item_id: a.shape for a in kept if a.item_id in used and a.shape is not None}
    if len(set(shapes.values())) > 1:
        raise ShapeMismatchError({k: v for k, v in shapes.items() if v is not None})
    return TimeAxis(tuple(slices))
