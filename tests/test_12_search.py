from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pystac
import pytest
from hypothesis import given
from hypothesis import strategies as st

from icecube_cloud.errors import ConfigError
from icecube_cloud.stac.search import SearchParams, match_item, search_items

T0 = datetime(2021, 4, 27, 10, 0, 0, tzinfo=UTC)


def square(x: float, y: float, size: float = 1.0) -> dict[str, Any]:
    ring = [[x, y], [x + size, y], [x + size, y + size], [x, y + size], [x, y]]
    return {"type": "Polygon", "coordinates": [ring]}


def make_item(
    item_id: str = "a",
    *,
    start: datetime | None = T0,
    end: datetime | None = T0 + timedelta(seconds=10),
    dt: datetime | None = None,
    angle: float | None = 25.0,
    collection: str | None = "iceye-grd",
    geometry: dict[str, Any] | None = None,
    **props: Any,
) -> pystac.Item:
    geometry = square(0, 0) if geometry is None else geometry
    properties: dict[str, Any] = dict(props)
    if start is not None:
        properties["start_datetime"] = start.isoformat()
    if end is not None:
        properties["end_datetime"] = end.isoformat()
    if angle is not None:
        properties["view:incidence_angle"] = angle
    item = pystac.Item(
        id=item_id,
        geometry=geometry or None,
        bbox=None,
        datetime=dt,
        properties=properties,
        collection=collection,
    )
    if dt is None and start is None:
        item.datetime = None
    return item


def test_no_params_match_everything() -> None:
    assert match_item(make_item(), SearchParams())


def test_collections() -> None:
    assert match_item(make_item(), SearchParams(collections=("iceye-grd", "x")))
    assert not match_item(make_item(), SearchParams(collections=("iceye-slc",)))
    assert not match_item(make_item(collection=None), SearchParams(collections=("iceye-slc",)))


@pytest.mark.parametrize(
    ("lo", "hi", "expected"),
    [
        (T0 - timedelta(days=1), T0 - timedelta(seconds=1), False),
        (T0 - timedelta(days=1), T0, True),  # touches the start: inclusive
        (T0 + timedelta(seconds=5), T0 + timedelta(seconds=6), True),  # inside the acquisition
        (T0 + timedelta(seconds=10), None, True),  # touches the end
        (T0 + timedelta(seconds=11), None, False),
        (None, T0 - timedelta(microseconds=1), False),
        (None, None, True),
    ],
)
def test_datetime_interval_intersects_acquisition(
    lo: datetime | None, hi: datetime | None, expected: bool
) -> None:
    assert match_item(make_item(), SearchParams(datetime=(lo, hi))) is expected


def test_datetime_only_item() -> None:
    item = make_item(start=None, end=None, dt=T0)
    assert match_item(item, SearchParams(datetime=(T0, T0)))
    assert not match_item(item, SearchParams(datetime=(T0 + timedelta(seconds=1), None)))


def test_naive_bounds_are_utc() -> None:
    naive = T0.replace(tzinfo=None)
    assert match_item(make_item(), SearchParams(datetime=(naive, naive)))


def test_bbox_and_intersects() -> None:
    item = make_item(geometry=square(10, 10))
    assert match_item(item, SearchParams(bbox=(10.5, 10.5, 20, 20)))
    assert match_item(item, SearchParams(bbox=(11, 11, 12, 12)))  # touching counts
    assert not match_item(item, SearchParams(bbox=(0, 0, 5, 5)))
    assert match_item(item, SearchParams(intersects=square(10.9, 10.9)))
    assert not match_item(item, SearchParams(intersects={"type": "Point", "coordinates": [0, 0]}))


def test_no_geometry_never_matches_a_spatial_search() -> None:
    item = make_item(geometry={})
    assert item.geometry is None
    assert not match_item(item, SearchParams(bbox=(-180, -90, 180, 90)))
    assert match_item(item, SearchParams())


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"view:incidence_angle": {"gte": 25, "lte": 25}}, True),
        ({"view:incidence_angle": {"gt": 25}}, False),
        ({"view:incidence_angle": {"lt": 25.1}}, True),
        ({"view:incidence_angle": {"eq": 25}}, True),
        ({"view:incidence_angle": {"neq": 25}}, False),
        ({"view:incidence_angle": {"in": [1, 25]}}, True),
        ({"sar:product_type": {"eq": "GRD"}}, True),
        ({"sar:product_type": {"gt": 3}}, False),  # incomparable types: no match
        ({"missing": {"neq": 1}}, False),  # a missing property never matches (SQL NULL)
    ],
)
def test_query(query: dict[str, Any], expected: bool) -> None:
    extra: dict[str, Any] = {"sar:product_type": "GRD"}
    item = make_item(**extra)
    assert match_item(item, SearchParams(query=query)) is expected


@pytest.mark.parametrize(
    "query",
    [
        {"view:incidence_angle": {"startsWith": "2"}},
        {"view:incidence_angle": {"in": 25}},
        {"view:incidence_angle": 25},
    ],
)
def test_bad_query(query: Any) -> None:
    with pytest.raises(ConfigError) as info:
        match_item(make_item(), SearchParams(query=query))
    assert info.value.key == "query" and info.value.exit_code == 2


def _prop(name: str) -> dict[str, str]:
    return {"property": name}


ANGLE = _prop("view:incidence_angle")


@pytest.mark.parametrize(
    ("flt", "expected"),
    [
        ({"op": "=", "args": [ANGLE, 25]}, True),
        ({"op": "<>", "args": [ANGLE, 25]}, False),
        ({"op": "<", "args": [ANGLE, 30]}, True),
        ({"op": "<=", "args": [ANGLE, 24]}, False),
        ({"op": ">", "args": [ANGLE, 24]}, True),
        ({"op": ">=", "args": [ANGLE, 26]}, False),
        ({"op": "between", "args": [ANGLE, 20, 25]}, True),
        ({"op": "between", "args": [ANGLE, 26, 30]}, False),
        ({"op": "in", "args": [_prop("collection"), ["iceye-grd", "x"]]}, True),
        ({"op": "in", "args": [_prop("id"), ["b"]]}, False),
        ({"op": "isNull", "args": [_prop("missing")]}, True),
        ({"op": "isNull", "args": [ANGLE]}, False),
        ({"op": "not", "args": [{"op": "=", "args": [ANGLE, 25]}]}, False),
        ({"op": "and", "args": [{"op": ">", "args": [ANGLE, 1]}, {"op": "<", "args": [ANGLE, 2]}]},
         False),
        ({"op": "or", "args": [{"op": ">", "args": [ANGLE, 1]}, {"op": "<", "args": [ANGLE, 2]}]},
         True),
        # a comparison on a missing property is NULL: it never matches, but OR can still be true
        ({"op": "<", "args": [_prop("missing"), 3]}, False),
        ({"op": "or", "args": [{"op": "<", "args": [_prop("missing"), 3]},
                               {"op": "=", "args": [ANGLE, 25]}]}, True),
        ({"op": "s_intersects", "args": [_prop("geometry"), square(0.5, 0.5)]}, True),
        ({"op": "s_intersects", "args": [_prop("geometry"), square(5, 5)]}, False),
        # t_intersects on `datetime` tests the acquisition interval, as pgstac does
        ({"op": "t_intersects", "args": [_prop("datetime"), {"interval": [
            "2021-04-27T10:00:05Z", "2021-04-27T11:00:00Z"]}]}, True),
        ({"op": "t_intersects", "args": [_prop("datetime"), {"interval": [
            "2021-04-27T10:00:11Z", "2021-04-27T11:00:00Z"]}]}, False),
        ({"op": "t_intersects", "args": [_prop("datetime"), {"timestamp": "2021-04-27T10:00:10Z"}]},
         True),
    ],
)  # fmt: skip
def test_filter(flt: dict[str, Any], expected: bool) -> None:
    assert match_item(make_item(), SearchParams(filter=flt)) is expected


@pytest.mark.parametrize(
    "flt",
    [
        {"op": "s_crosses", "args": [_prop("geometry"), square(0, 0)]},
        {"op": "a_contains", "args": [_prop("x"), [1]]},
        {"op": "=", "args": [ANGLE]},
    ],
)
def test_unsupported_filter(flt: dict[str, Any]) -> None:
    with pytest.raises(ConfigError) as info:
        match_item(make_item(), SearchParams(filter=flt))
    assert info.value.key == "filter" and info.value.exit_code == 2


def test_search_items_sorted_by_datetime_then_id() -> None:
    items = [
        make_item("c", start=T0 + timedelta(days=1)),
        make_item("b", start=T0),
        make_item("a", start=T0),
        make_item("z", collection="iceye-slc"),
    ]
    found = search_items(items, SearchParams(collections=("iceye-grd",)))
    assert [i.id for i in found] == ["a", "b", "c"]


def test_opendata_sidecar_items(samples: Path) -> None:
    opendata = samples / "opendata"
    items = [pystac.Item.from_file(str(p)) for p in sorted(opendata.glob("*.json"))]
    assert len(items) == 2
    day = SearchParams(
        datetime=(
            datetime(2025, 11, 10, tzinfo=UTC),
            datetime(2025, 11, 10, 23, 59, 59, tzinfo=UTC),
        ),
        query={"view:incidence_angle": {"gte": 29.0, "lte": 29.1}},
        bbox=(-180, -90, 180, 90),
    )
    assert len(search_items(items, day)) == 2
    slc = SearchParams(filter={"op": "=", "args": [_prop("sar:product_type"), "SLC-COG"]})
    assert [i.id for i in search_items(items, slc)] == [items[1].id]
    later = SearchParams(datetime=(datetime(2025, 11, 11, tzinfo=UTC), None))
    assert search_items(items, later) == []


def test_pystac_client_kwargs() -> None:
    flt = {"op": ">=", "args": [ANGLE, 20]}
    p = SearchParams(
        collections=("iceye-grd",),
        datetime=(datetime(2021, 4, 25, tzinfo=UTC), None),
        bbox=(0, 0, 1, 1),
        query={"view:incidence_angle": {"gte": 20}},
        filter=flt,
    )
    kw = p.to_pystac_client_kwargs()
    assert kw == {
        "collections": ["iceye-grd"],
        "datetime": "2021-04-25T00:00:00Z/..",
        "bbox": [0, 0, 1, 1],
        "query": {"view:incidence_angle": {"gte": 20}},
        "filter": flt,
        "filter_lang": "cql2-json",
    }
    assert SearchParams().to_pystac_client_kwargs() == {}
    assert SearchParams(datetime=(None, T0)).datetime_str() == "../2021-04-27T10:00:00Z"


def test_to_dict_from_dict_roundtrip() -> None:
    p = SearchParams(
        collections=("iceye-slc",),
        datetime=(T0, T0 + timedelta(hours=1, microseconds=5)),
        intersects=square(0, 0),
        query={"view:incidence_angle": {"lte": 30}},
    )
    d = json.loads(json.dumps(p.to_dict()))
    assert SearchParams.from_dict(d) == p


def test_kwargs_reject_bad_query() -> None:
    with pytest.raises(ConfigError):
        SearchParams(query={"x": {"like": "a"}}).to_pystac_client_kwargs()


# --- property: datetime matching agrees with a brute-force interval check -----------------------

instants = st.datetimes(
    min_value=datetime(2021, 1, 1), max_value=datetime(2021, 1, 3), timezones=st.just(UTC)
)


@given(
    start=instants,
    length=st.timedeltas(min_value=timedelta(0), max_value=timedelta(hours=12)),
    lo=st.none() | instants,
    hi=st.none() | instants,
    ranged=st.booleans(),
)
def test_datetime_matches_bruteforce(
    start: datetime, length: timedelta, lo: datetime | None, hi: datetime | None, ranged: bool
) -> None:
    end = start + length if ranged else start
    item = make_item(start=start, end=end) if ranged else make_item(start=None, end=None, dt=start)
    expected = (lo is None or lo <= end) and (hi is None or start <= hi)
    assert match_item(item, SearchParams(datetime=(lo, hi))) is expected
    # the same through a CQL2 filter (what a pgstac API would evaluate)
    if lo is not None and hi is not None and lo <= hi:
        iv = {
            "interval": [
                lo.isoformat().replace("+00:00", "Z"),
                hi.isoformat().replace("+00:00", "Z"),
            ]
        }
        flt = {"op": "t_intersects", "args": [{"property": "datetime"}, iv]}
        assert match_item(item, SearchParams(filter=flt)) is expected
