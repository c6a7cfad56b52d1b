"""STAC search parameters, and the same search run in process over a static catalog.

The in-process matcher follows what a STAC API on pgstac returns, so a static catalog and an API
give the same items: inclusive datetime intervals intersected with each item's [start_datetime,
end_datetime], a missing property never matches (SQL ``NULL``), and CQL2-JSON filters are evaluated
by the ``cql2`` library.
"""

from __future__ import annotations

import copy
import functools
import json
import logging
import operator
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import pystac
import shapely.geometry
from shapely.geometry.base import BaseGeometry

from icecube_cloud.errors import ConfigError

if TYPE_CHECKING:
    import cql2

logger = logging.getLogger(__name__)

QUERY_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "eq": operator.eq,
    "neq": operator.ne,
    "lt": operator.lt,
    "lte": operator.le,
    "gt": operator.gt,
    "gte": operator.ge,
    "in": lambda value, options: value in options,
}
"""Operators of the STAC API query extension that the in-process search supports."""

CQL2_OPS: frozenset[str] = frozenset(
    {
        "and", "or", "not",
        "=", "<>", "<", "<=", ">", ">=", "between", "in", "isNull", "like",
        "s_intersects", "s_within", "s_contains", "s_disjoint",
        "t_intersects", "t_before", "t_after", "t_during",
    }
)  # fmt: skip
"""CQL2 operators accepted in ``filter`` (checked before any search: API and static agree)."""


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

    def datetime_str(self) -> str | None:
        """The interval as RFC 3339 ``"start/end"``, ``..`` for open ends (``None``: no limit)."""
        if self.datetime is None:
            return None
        lo, hi = self.datetime
        return f"{_rfc3339(lo) if lo else '..'}/{_rfc3339(hi) if hi else '..'}"

    def to_pystac_client_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``pystac_client.Client.search``.

        Raises:
            ConfigError: ``query`` or ``filter`` uses an unsupported operator.
        """
        _check_query(self.query)
        kwargs: dict[str, Any] = {}
        if self.collections is not None:
            kwargs["collections"] = list(self.collections)
        if self.datetime is not None:
            kwargs["datetime"] = self.datetime_str()
        if self.bbox is not None:
            kwargs["bbox"] = list(self.bbox)
        if self.intersects is not None:
            kwargs["intersects"] = copy.deepcopy(dict(self.intersects))
        if self.query is not None:
            kwargs["query"] = {k: dict(v) for k, v in self.query.items()}
        if self.filter is not None:
            kwargs["filter"] = compile_filter(self.filter)
            kwargs["filter_lang"] = "cql2-json"
        return kwargs

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (STAC API search body keys); inverse of :meth:`from_dict`."""
        out = self.to_pystac_client_kwargs()
        out.pop("filter_lang", None)
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SearchParams:
        """Rebuild the parameters recorded by :meth:`to_dict` (e.g. from a cube's attributes)."""
        interval = None
        if d.get("datetime") is not None:
            lo, _, hi = str(d["datetime"]).partition("/")
            interval = (_parse_dt(lo), _parse_dt(hi or lo))
        return cls(
            collections=tuple(d["collections"]) if d.get("collections") is not None else None,
            datetime=interval,
            bbox=tuple(d["bbox"]) if d.get("bbox") is not None else None,
            intersects=d.get("intersects"),
            query=d.get("query"),
            filter=d.get("filter"),
        )


def _rfc3339(dt: datetime) -> str:
    return _utc(dt).isoformat().replace("+00:00", "Z")


def _parse_dt(text: str) -> datetime | None:
    return None if text in ("", "..") else _utc(datetime.fromisoformat(text.replace("Z", "+00:00")))


def _utc(dt: datetime) -> datetime:
    """Aware UTC datetime (naive = UTC)."""
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


# --------------------------------------------------------------------------------------------------
# CQL2


def _check_cql2_node(node: Any) -> None:
    if isinstance(node, list):
        for n in node:
            _check_cql2_node(n)
    elif isinstance(node, Mapping):
        if "function" in node:
            raise ConfigError("filter", f"CQL2 functions are not supported: {node['function']!r}")
        if "op" in node:
            if node["op"] not in CQL2_OPS:
                supported = ", ".join(sorted(CQL2_OPS))
                raise ConfigError(
                    "filter", f"unsupported CQL2 operator {node['op']!r}; supported: {supported}"
                )
            _check_cql2_node(node.get("args", []))
        elif "interval" in node:
            _check_cql2_node(node["interval"])


def compile_filter(expr: Mapping[str, Any] | str) -> dict[str, Any]:
    """Validate a CQL2 filter and return its CQL2-JSON form.

    Args:
        expr: CQL2-JSON (a mapping) or CQL2-text.

    Raises:
        ConfigError: ``filter`` does not parse, fails the CQL2 schema, or has an unsupported op.
    """
    import cql2  # only searches with a filter need it

    try:
        parsed = cql2.Expr(expr if isinstance(expr, str) else copy.deepcopy(dict(expr)))
        parsed.validate()
    except Exception as exc:  # cql2 raises ParseError, ValidationError or ValueError
        raise ConfigError("filter", f"not a valid CQL2 expression: {exc}") from None
    out: dict[str, Any] = parsed.to_json() if isinstance(expr, str) else copy.deepcopy(dict(expr))
    _check_cql2_node(out)
    return out


def _item_interval_for_temporal_ops(node: Any) -> Any:
    """Rewrite ``{"property": "datetime"}`` in temporal operators to the item's time interval.

    pgstac does the same: ``t_intersects(datetime, ...)`` tests the item's [datetime, end_datetime].
    """
    if isinstance(node, list):
        return [_item_interval_for_temporal_ops(n) for n in node]
    if isinstance(node, dict):
        if str(node.get("op", "")).startswith("t_"):
            args = [
                {"interval": [{"property": "start_datetime"}, {"property": "end_datetime"}]}
                if a == {"property": "datetime"}
                else a
                for a in node.get("args", [])
            ]
            return {**node, "args": args}
        return {k: _item_interval_for_temporal_ops(v) for k, v in node.items()}
    return node


@functools.lru_cache(maxsize=64)
def _compiled(filter_json: str) -> cql2.Expr:
    import cql2

    return cql2.Expr(_item_interval_for_temporal_ops(json.loads(filter_json)))


def _filter_matches(item: pystac.Item, flt: Mapping[str, Any]) -> bool:
    expr = _compiled(json.dumps(compile_filter(flt), sort_keys=True))
    d = item.to_dict(include_self_link=False, transform_hrefs=False)
    props = d.setdefault("properties", {})
    start, end = _item_interval(item)
    if start is not None and end is not None:
        props.setdefault("start_datetime", _rfc3339(start))
        props.setdefault("end_datetime", _rfc3339(end))
        if props.get("datetime") is None:
            props["datetime"] = _rfc3339(start)
    try:
        return bool(expr.matches(d))
    except Exception as exc:  # cql2 cannot reduce NULL comparisons: SQL would not return the row
        logger.debug("filter does not match item %s: %s", item.id, exc)
        return False


# --------------------------------------------------------------------------------------------------
# matching


def _check_query(query: Mapping[str, Mapping[str, Any]] | None) -> None:
    for prop, ops in (query or {}).items():
        if not isinstance(ops, Mapping):
            raise ConfigError("query", f"{prop!r}: expected {{operator: value}}, got {ops!r}")
        for op, value in ops.items():
            if op not in QUERY_OPS:
                supported = ", ".join(QUERY_OPS)
                raise ConfigError(
                    "query", f"{prop!r}: unsupported operator {op!r}; supported: {supported}"
                )
            if op == "in" and not isinstance(value, list | tuple):
                raise ConfigError("query", f"{prop!r}: 'in' takes a list, got {value!r}")


def _item_interval(item: pystac.Item) -> tuple[datetime | None, datetime | None]:
    """The item's [start, end] time interval (``datetime`` for both ends when it has no range)."""
    common = item.common_metadata
    start = common.start_datetime or item.datetime
    end = common.end_datetime or item.datetime
    return (_utc(start) if start else None, _utc(end) if end else None)


def _geometry(item: pystac.Item) -> BaseGeometry | None:
    return shapely.geometry.shape(item.geometry) if item.geometry else None


def _query_matches(item: pystac.Item, query: Mapping[str, Mapping[str, Any]]) -> bool:
    for prop, ops in query.items():
        value = item.properties.get(prop)
        if value is None:
            return False
        for op, arg in ops.items():
            try:
                if not QUERY_OPS[op](value, arg):
                    return False
            except TypeError:
                return False
    return True


def match_item(item: pystac.Item, params: SearchParams) -> bool:
    """Whether ``item`` is returned by the search ``params`` (STAC API semantics).

    Raises:
        ConfigError: ``query`` or ``filter`` uses an unsupported operator.
    """
    _check_query(params.query)
    if params.collections is not None and item.collection_id not in params.collections:
        return False
    if params.datetime is not None:
        start, end = _item_interval(item)
        lo, hi = params.datetime
        if start is None or end is None:
            return False
        if (lo is not None and end < _utc(lo)) or (hi is not None and start > _utc(hi)):
            return False
    if params.bbox is not None or params.intersects is not None:
        geom = _geometry(item)
        if geom is None:
            return False
        if params.bbox is not None and not geom.intersects(shapely.geometry.box(*params.bbox)):
            return False
        shape = shapely.geometry.shape
        area = None if params.intersects is None else shape(dict(params.intersects))
        if area is not None and not geom.intersects(area):
            return False
    if params.query and not _query_matches(item, params.query):
        return False
    return params.filter is None or _filter_matches(item, params.filter)


def _sort_key(item: pystac.Item) -> tuple[datetime, str]:
    dt = item.datetime or item.common_metadata.start_datetime
    return (_utc(dt) if dt else datetime.min.replace(tzinfo=UTC), item.id)


def search_items(items: Iterable[pystac.Item], params: SearchParams) -> list[pystac.Item]:
    """The items a STAC API would return for ``params``, sorted by datetime then id."""
    return sorted((it for it in items if match_item(it, params)), key=_sort_key)
