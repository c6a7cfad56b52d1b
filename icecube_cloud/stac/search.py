"""STAC search parameters, and the same search run in process over a static catalog.

(Skeleton: the in-process matcher is being written; the dataclass is the agreed interface.)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pystac


@dataclass(frozen=True, kw_only=True)
class SearchParams:
    """One STAC item search, as both a STAC API and the in-process static search understand it."""

    collections: tuple[str, ...] | None = None
    """Collection ids to search; ``None`` = all."""
    datetime: tuple[datetime | None, datetime | None] | None = None
    """Inclusive UTC interval (open ends allowed); items match when their
    [start_datetime, end_datetime] (or datetime) intersects it."""
    bbox: tuple[float, float, float, float] | None = None
    """lon/lat bounding box (west, south, east, north)."""
    intersects: Mapping[str, Any] | None = None
    """GeoJSON geometry the item geometry must intersect."""
    query: Mapping[str, Mapping[str, Any]] | None = None
    """STAC API query extension, e.g. ``{"view:incidence_angle": {"gte": 20, "lte": 30}}``."""
    filter: Mapping[str, Any] | None = None
    """CQL2-JSON filter expression."""


def match_item(item: pystac.Item, params: SearchParams) -> bool:
    """Whether ``item`` is returned by the search ``params`` (STAC API semantics)."""
    raise NotImplementedError
