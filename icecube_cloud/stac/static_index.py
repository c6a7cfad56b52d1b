"""The item index of a static catalog's collection: what a search needs to skip an item unread.

A search of a static catalog must not read every item of a collection (5,000 items on S3: one GET
each). :class:`~icecube_cloud.stac.static.StaticCatalog` therefore keeps, beside each
``collection.json``, a small index (:data:`INDEX_NAME`): per item link, the item's time interval and
bbox. A search reads the collection and its index (two GETs), reads only the items whose interval and
bbox can match, and then matches those exactly (:func:`icecube_cloud.stac.search.match_item`), so the
index only ever narrows what is read, never what is found. An item link the index lacks (a catalog
written before the index, or edited by another tool) is always read; :meth:`StaticCatalog.upsert`
adds the rows it lacks. The index is JSON (no Parquet dependency): ~250 bytes an item.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import pystac
import shapely.geometry

from icecube_cloud.stac.search import SearchParams, _item_interval, _utc

INDEX_NAME = ".items-index.json"
"""File name beside ``collection.json`` (item ids never start with a dot: no collision)."""
INDEX_VERSION = 1


def index_row(item: pystac.Item) -> dict[str, Any]:
    """The index row of ``item``: its [start, end] interval (ISO 8601 UTC) and bbox."""
    start, end = _item_interval(item)
    return {
        "start": start.isoformat() if start else None,
        "end": end.isoformat() if end else None,
        "bbox": [float(v) for v in item.bbox] if item.bbox else None,
    }


def index_document(rows: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """The index file's content: rows keyed by the item link's href, as in ``collection.json``."""
    return {"icecube_cloud_index": INDEX_VERSION, "items": {h: rows[h] for h in sorted(rows)}}


def index_rows(doc: Mapping[str, Any] | None) -> dict[str, dict[str, Any]]:
    """The rows of an index document (none for a missing or unknown one: every item is read)."""
    if not doc or doc.get("icecube_cloud_index") != INDEX_VERSION:
        return {}
    items = doc.get("items")
    return dict(items) if isinstance(items, dict) else {}


def may_match(row: Mapping[str, Any], params: SearchParams) -> bool:
    """Whether an item with index ``row`` can match ``params`` (a superset of the exact match).

    Only the interval and the bbox are tested; a row that cannot be read is a possible match.
    """
    try:
        if params.datetime is not None:
            start, end = row["start"], row["end"]
            if start is None or end is None:
                return False  # as the exact match: an item without time never matches an interval
            lo, hi = params.datetime
            if lo is not None and datetime.fromisoformat(end) < _utc(lo):
                return False
            if hi is not None and datetime.fromisoformat(start) > _utc(hi):
                return False
        bbox = row["bbox"]
        if bbox is None or (params.bbox is None and params.intersects is None):
            return True
        box = shapely.geometry.box(*(bbox[:2] + bbox[3:5] if len(bbox) == 6 else bbox))
        if params.bbox is not None and not box.intersects(shapely.geometry.box(*params.bbox)):
            return False
        area = params.intersects
        return area is None or bool(box.intersects(shapely.geometry.shape(dict(area))))
    except (KeyError, TypeError, ValueError):
        return True
