from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pystac
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from icecube_cloud.config import CubeConfig, load_config, parse_config
from icecube_cloud.errors import (
    CatalogError,
    ConfigError,
    EmptySelectionError,
    SelectionError,
    ShapeMismatchError,
)
from icecube_cloud.selection import Acquisition, TimeAxis, TimeSlice, select


def at(day: int, hour: int = 12, minute: int = 0, second: int = 0) -> datetime:
    return datetime(2021, 4, day, hour, minute, second, tzinfo=UTC)


def acq(
    item_id: str,
    end: datetime,
    angle: float = 25.0,
    level: str = "GRD",
    shape: tuple[int, int] | None = None,
) -> Acquisition:
    return Acquisition(
        item_id=item_id, end=end, incidence_angle=angle, product_level=level, shape=shape
    )


def cfg(**kw: Any) -> CubeConfig:
    return parse_config(kw)


# --- Acquisition.from_item ----------------------------------------------------------------------


def _item(**props: Any) -> pystac.Item:
    collection = props.pop("collection", "iceye-grd")
    dt = props.pop("dt", None)
    return pystac.Item(
        "x", {"type": "Point", "coordinates": [0, 0]}, None, dt, props, collection=collection
    )


def test_from_item_uses_end_datetime() -> None:
    item = _item(
        start_datetime="2021-04-27T23:59:50Z",
        end_datetime="2021-04-28T00:00:05Z",
        **{"view:incidence_angle": 30, "proj:shape": [100, 200]},
    )
    a = Acquisition.from_item(item)
    assert a.end == datetime(2021, 4, 28, 0, 0, 5, tzinfo=UTC) and a.day == date(2021, 4, 28)
    assert a.incidence_angle == 30.0 and a.product_level == "GRD" and a.shape == (100, 200)


def test_from_item_falls_back_to_datetime_and_product_type() -> None:
    item = _item(
        dt=at(27), collection=None, **{"view:incidence_angle": 30, "sar:product_type": "slc"}
    )
    a = Acquisition.from_item(item)
    assert a.end == at(27) and a.product_level == "SLC" and a.shape is None


@pytest.mark.parametrize(
    "props",
    [
        {"dt": at(27), "collection": None},  # no angle
        {"dt": at(27), "collection": "other", "view:incidence_angle": 30},  # no level
        {"dt": at(27), "view:incidence_angle": "30"},
    ],
)
def test_from_item_errors_name_the_item(props: dict[str, Any]) -> None:
    with pytest.raises(CatalogError, match="'x'"):
        Acquisition.from_item(_item(**props))


def test_from_item_opendata_sidecars(samples: Path) -> None:
    acqs = [
        Acquisition.from_item(pystac.Item.from_file(str(p)))
        for p in sorted((samples / "opendata").glob("*.json"))
    ]
    assert [a.product_level for a in acqs] == ["GRD", "SLC"]
    assert acqs[0].end == datetime(2025, 11, 10, 18, 21, 25, 353000, tzinfo=UTC)
    assert acqs[0].shape == (1024, 512)
    # GRD and SLC of one scene: the same acquisition end; without product_type that is an error
    with pytest.raises(ConfigError) as info:
        select(acqs, CubeConfig())
    assert info.value.key == "product_type"
    axis = select(acqs, cfg(product_type="SLC"))
    assert axis.item_ids == (acqs[1].item_id,)


# --- the day and angle rules ------------------------------------------------------------------


def test_day_rule_uses_acquisition_end() -> None:
    acqs = [
        acq("before", at(24, 23, 59, 59)),
        acq("first", at(25, 0, 0, 0)),
        acq("last", at(27, 23, 59, 59)),
        acq("after", at(28, 0, 0, 0)),
    ]
    axis = select(acqs, cfg(start_date=20210425, end_date=20210427))
    assert axis.item_ids == ("first", "last")


def test_angle_bounds_inclusive() -> None:
    acqs = [acq("lo", at(25), 20.0), acq("mid", at(26), 27.0), acq("hi", at(27), 34.0),
            acq("out", at(28), 34.0001)]  # fmt: skip
    axis = select(acqs, cfg(min_incidence_angle=20, max_incidence_angle=34))
    assert axis.item_ids == ("lo", "mid", "hi")


def test_empty_selection_says_what_was_searched() -> None:
    with pytest.raises(EmptySelectionError) as info:
        select([acq("a", at(20))], cfg(start_date=20210425, max_incidence_angle=30))
    msg = str(info.value)
    assert "1 image(s)" in msg and "2021-04-25" in msg and "30" in msg
    assert info.value.exit_code == 1
    with pytest.raises(EmptySelectionError, match="0 image"):
        select([], CubeConfig())


def test_mixed_levels_need_product_type() -> None:
    acqs = [acq("g", at(25)), acq("s", at(26), level="SLC")]
    with pytest.raises(ConfigError) as info:
        select(acqs, CubeConfig())
    assert info.value.key == "product_type" and info.value.exit_code == 2
    assert str(info.value) == (
        "config key 'product_type': the selection mixes 1 GRD and 1 SLC images and a cube holds "
        'one product type; add "product_type": "GRD" or "product_type": "SLC" to the config'
    )
    assert select(acqs, cfg(product_type="grd")).item_ids == ("g",)


def test_product_type_filters_even_when_collections_given() -> None:
    acqs = [acq("g", at(25)), acq("s", at(26), level="SLC")]
    c = cfg(collections=["mine"], product_type="SLC")
    assert select(acqs, c).item_ids == ("s",)


# --- resolution 0 ------------------------------------------------------------------------------


def test_one_slice_per_image_sorted() -> None:
    acqs = [acq("b", at(26)), acq("a", at(25)), acq("c", at(26, 13))]
    axis = select(acqs, CubeConfig())
    assert axis.item_ids == ("a", "b", "c")
    assert axis.times == (at(25), at(26), at(26, 13))
    assert axis.n_gaps == 0 and all(s.valid for s in axis.slices)


def test_same_end_time_is_an_error_naming_both() -> None:
    with pytest.raises(SelectionError, match=r"'one'.*'two'"):
        select([acq("two", at(25)), acq("one", at(25))], CubeConfig())


def test_overlap_false_keeps_latest_of_each_day() -> None:
    acqs = [acq("a1", at(25, 1)), acq("a2", at(25, 23)), acq("b", at(26, 5)), acq("a0", at(25, 0))]
    axis = select(acqs, cfg(temporal_overlap=False))
    assert axis.item_ids == ("a2", "b")
    assert axis.times == (at(25, 23), at(26, 5))


# --- bins ----------------------------------------------------------------------------------------


def test_bins_keep_earliest_and_make_gaps() -> None:
    acqs = [
        acq("late", at(25, 20)),
        acq("early", at(25, 3)),
        acq("d27", at(27)),
        acq("d30", at(30)),
    ]
    axis = select(acqs, cfg(start_date=20210425, end_date=20210430, temporal_resolution=2))
    midnight = datetime(2021, 4, 25, tzinfo=UTC)
    assert axis.times == tuple(midnight + timedelta(days=2 * k) for k in range(3))
    assert axis.item_ids == ("early", "d27", "d30")
    axis = select(acqs, cfg(start_date=20210425, end_date=20210430, temporal_resolution=1))
    assert axis.item_ids == ("early", None, "d27", None, None, "d30")
    assert axis.n_gaps == 3 and [s.valid for s in axis.slices].count(False) == 3


def test_bins_span_the_requested_range() -> None:
    axis = select(
        [acq("a", at(26))], cfg(start_date=20210425, end_date=20210430, temporal_resolution=1)
    )
    assert len(axis) == 6 and axis.item_ids[1] == "a" and axis.n_gaps == 5
    assert axis.times[0] == datetime(2021, 4, 25, tzinfo=UTC)
    assert axis.times[-1] == datetime(2021, 4, 30, tzinfo=UTC)


def test_bins_without_dates_start_at_first_image_day() -> None:
    axis = select([acq("b", at(29, 1)), acq("a", at(26, 22))], cfg(temporal_resolution=2))
    assert axis.times == (datetime(2021, 4, 26, tzinfo=UTC), datetime(2021, 4, 28, tzinfo=UTC))
    assert axis.item_ids == ("a", "b")


def test_bins_ignore_temporal_overlap() -> None:
    acqs = [acq("a", at(25, 1)), acq("b", at(25, 2))]
    assert select(acqs, cfg(temporal_resolution=1, temporal_overlap=False)).item_ids == ("a",)


def test_sample_use_case4_one_day(samples: Path) -> None:
    # the icecube sample: 2021-04-27, 20..34 deg, 1-day bins
    c = load_config(str(samples / "json_config" / "config_use_case4.json"))
    acqs = [acq("x", at(27, 8), 22.0), acq("y", at(27, 9), 33.0), acq("z", at(28, 1), 25.0)]
    axis = select(acqs, c)
    assert axis.item_ids == ("x",) and axis.times == (datetime(2021, 4, 27, tzinfo=UTC),)


# --- shapes --------------------------------------------------------------------------------------


def test_shape_mismatch_lists_items() -> None:
    acqs = [acq("a", at(25), shape=(10, 20)), acq("b", at(26), shape=(10, 21)), acq("c", at(27))]
    with pytest.raises(ShapeMismatchError) as info:
        select(acqs, CubeConfig())
    assert info.value.shapes == {"a": (10, 20), "b": (10, 21)}
    assert "a" in str(info.value) and "b" in str(info.value) and info.value.exit_code == 1


def test_shape_of_dropped_image_does_not_matter() -> None:
    acqs = [acq("a", at(25, 1), shape=(9, 9)), acq("b", at(25, 2), shape=(10, 20))]
    assert select(acqs, cfg(temporal_overlap=False)).item_ids == ("b",)


def test_time_axis_str() -> None:
    axis = TimeAxis((TimeSlice(at(25), acq("img-1", at(25))), TimeSlice(at(26), None)))
    text = str(axis)
    assert "2 slices, 1 images, 1 gaps" in text
    assert "2021-04-25T12:00:00.000000Z  img-1" in text and "(gap)" in text


# --- properties ----------------------------------------------------------------------------------

BASE = datetime(2021, 1, 1, tzinfo=UTC)


@st.composite
def stacks(draw: st.DrawFn) -> list[Acquisition]:
    """Acquisitions over ~30 days with distinct end times."""
    offsets = draw(st.lists(st.integers(0, 30 * 24 * 60), min_size=0, max_size=25, unique=True))
    angles = st.floats(15, 45, allow_nan=False)
    return [
        acq(f"i{k:03d}", BASE + timedelta(minutes=m), draw(angles)) for k, m in enumerate(offsets)
    ]


@st.composite
def rule_configs(draw: st.DrawFn, resolution: st.SearchStrategy[int]) -> CubeConfig:
    d: dict[str, Any] = {"temporal_resolution": draw(resolution)}
    days = sorted(draw(st.lists(st.integers(0, 31), min_size=2, max_size=2)))
    if draw(st.booleans()):
        d["start_date"] = (BASE + timedelta(days=days[0])).date().isoformat()
    if draw(st.booleans()):
        d["end_date"] = (BASE + timedelta(days=days[1])).date().isoformat()
    lo, hi = sorted(draw(st.lists(st.floats(10, 50, allow_nan=False), min_size=2, max_size=2)))
    if draw(st.booleans()):
        d["min_incidence_angle"] = lo
    if draw(st.booleans()):
        d["max_incidence_angle"] = hi
    d["temporal_overlap"] = draw(st.booleans())
    return parse_config(d)


def in_range(a: Acquisition, c: CubeConfig) -> bool:
    return (
        (c.start_date is None or a.end.date() >= c.start_date)
        and (c.end_date is None or a.end.date() <= c.end_date)
        and (c.min_incidence_angle is None or a.incidence_angle >= c.min_incidence_angle)
        and (c.max_incidence_angle is None or a.incidence_angle <= c.max_incidence_angle)
    )


def select_or_none(acqs: list[Acquisition], c: CubeConfig) -> TimeAxis | None:
    candidates = [a for a in acqs if in_range(a, c)]
    if not candidates:
        with pytest.raises(EmptySelectionError):
            select(acqs, c)
        return None
    return select(acqs, c)


@given(stacks(), rule_configs(st.just(0)))
def test_resolution0_overlap_true_keeps_every_image_once(
    acqs: list[Acquisition], c: CubeConfig
) -> None:
    assume(c.temporal_overlap)
    axis = select_or_none(acqs, c)
    if axis is None:
        return
    expected = {a.item_id for a in acqs if in_range(a, c)}
    assert sorted(i for i in axis.item_ids if i) == sorted(expected)
    assert len(axis.item_ids) == len(expected)
    assert all(t1 < t2 for t1, t2 in zip(axis.times, axis.times[1:], strict=False))
    assert axis.n_gaps == 0


@given(stacks(), rule_configs(st.just(0)))
def test_overlap_false_keeps_latest_per_day(acqs: list[Acquisition], c: CubeConfig) -> None:
    assume(not c.temporal_overlap)
    axis = select_or_none(acqs, c)
    if axis is None:
        return
    by_id = {a.item_id: a for a in acqs}
    candidates = [a for a in acqs if in_range(a, c)]
    days = [by_id[i].end.date() for i in axis.item_ids if i]
    assert len(days) == len(set(days)) == len({a.end.date() for a in candidates})
    for item_id in axis.item_ids:
        assert item_id is not None
        chosen = by_id[item_id]
        same_day = [a for a in candidates if a.end.date() == chosen.end.date()]
        assert chosen.end == max(a.end for a in same_day)
    assert all(t1 < t2 for t1, t2 in zip(axis.times, axis.times[1:], strict=False))


@given(stacks(), rule_configs(st.integers(1, 10)))
def test_bins(acqs: list[Acquisition], c: CubeConfig) -> None:
    axis = select_or_none(acqs, c)
    if axis is None:
        return
    n = c.temporal_resolution
    candidates = [a for a in acqs if in_range(a, c)]
    origin = c.start_date or min(a.end.date() for a in candidates)
    last = c.end_date or max(a.end.date() for a in candidates)
    midnight = datetime(origin.year, origin.month, origin.day, tzinfo=UTC)
    assert axis.times == tuple(midnight + timedelta(days=k * n) for k in range(len(axis)))
    assert len(axis) == (last - origin).days // n + 1
    by_id = {a.item_id: a for a in acqs}
    bins: dict[int, list[Acquisition]] = {}
    for a in candidates:
        bins.setdefault((a.end.date() - origin).days // n, []).append(a)
    for k, item_id in enumerate(axis.item_ids):
        if item_id is None:
            assert k not in bins
        else:
            assert (by_id[item_id].end.date() - origin).days // n == k
            assert by_id[item_id].end == min(a.end for a in bins[k])
    assert axis.n_gaps == len(axis) - len(bins)
