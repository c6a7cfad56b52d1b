from __future__ import annotations

import json
import re
import warnings
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from icecube_cloud.config import CONFIG_KEYS, CubeConfig, load_config, parse_config, search_params
from icecube_cloud.errors import ConfigError, IgnoredConfigKeyWarning
from icecube_cloud.model import Chunks, Compression


@pytest.fixture
def sample_configs(samples: Path) -> Path:
    """icecube's own sample configs (``iceye-samples/json_config``)."""
    return samples / "json_config"


def _err(obj: dict[str, Any]) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        parse_config(obj)
    assert info.value.exit_code == 2
    return info.value


# --- the original icecube sample configs --------------------------------------------------------


def test_sample_use_case1(sample_configs: Path) -> None:
    with pytest.warns(IgnoredConfigKeyWarning, match="space_overlap"):
        cfg = load_config(str(sample_configs / "config_use_case1.json"))
    assert cfg.start_date == date(2020, 4, 2)
    assert cfg.end_date == date(2021, 4, 20)
    assert (cfg.min_incidence_angle, cfg.max_incidence_angle) == (20.0, 21.0)
    assert cfg.temporal_resolution == 1
    assert cfg.temporal_overlap is True and cfg.coregistered is True
    assert cfg.raw["start_date"] == "20200402"


def test_sample_use_case2_unknown_keys(sample_configs: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(str(sample_configs / "config_use_case2.json"))
    assert info.value.key == "test1"
    assert "unknown key" in str(info.value)
    assert info.value.exit_code == 2


def test_sample_use_case3_fractional_resolution(sample_configs: Path) -> None:
    with pytest.raises(ConfigError, match="whole number") as info:
        load_config(str(sample_configs / "config_use_case3.json"))
    assert info.value.key == "temporal_resolution"


@pytest.mark.parametrize(
    ("name", "start", "end"),
    [("config_use_case4.json", date(2021, 4, 27), date(2021, 4, 27)),
     ("config_use_case5.json", date(2021, 4, 25), date(2021, 4, 30))],
)  # fmt: skip
def test_sample_use_case4_5_int_overlap(
    sample_configs: Path, name: str, start: date, end: date
) -> None:
    cfg = load_config(str(sample_configs / name))
    assert (cfg.start_date, cfg.end_date) == (start, end)
    assert cfg.temporal_overlap is True  # `1` accepted as true for icecube compatibility
    assert cfg.temporal_resolution == 1
    assert (cfg.min_incidence_angle, cfg.max_incidence_angle) == (20.0, 34.0)


def test_sample_use_case6_defaults(sample_configs: Path) -> None:
    cfg = load_config(str(sample_configs / "config_use_case6.json"))
    assert cfg.temporal_resolution == 0 and cfg.temporal_overlap is True


def test_sample_default_empty(sample_configs: Path) -> None:
    cfg = load_config(str(sample_configs / "config_use_case_default.json"))
    assert cfg == CubeConfig()
    # Products only: a catalog also holds cube items (and later labels).
    assert search_params(cfg).collections == ("iceye-grd", "iceye-slc")


def test_every_sample_is_covered(sample_configs: Path) -> None:
    names = {p.name for p in sample_configs.glob("*.json")}
    assert names == {f"config_use_case{i}.json" for i in range(1, 7)} | {
        "config_use_case_default.json"
    }


# --- loading --------------------------------------------------------------------------------------


def test_load_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nope\.json") as info:
        load_config(str(tmp_path / "nope.json"))
    assert info.value.key is None and info.value.exit_code == 2


def test_load_invalid_json(tmp_path: Path) -> None:
    p = tmp_path / "bad.json"
    p.write_text("{'start_date': 1}")
    with pytest.raises(ConfigError, match=r"bad\.json.*not valid JSON"):
        load_config(str(p))


def test_load_not_an_object(tmp_path: Path) -> None:
    p = tmp_path / "list.json"
    p.write_text("[1, 2]")
    with pytest.raises(ConfigError, match="JSON object"):
        load_config(f"file://{p}")


# --- individual keys ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (20210427, date(2021, 4, 27)),
        ("20210427", date(2021, 4, 27)),
        ("2021-04-27", date(2021, 4, 27)),
        ("2021-04-27T10:00:00Z", date(2021, 4, 27)),
        ("2021-04-27T23:30:00-02:00", date(2021, 4, 28)),  # its UTC day
        ("2021-04-27T23:30:00", date(2021, 4, 27)),  # naive = UTC
    ],
)
def test_dates(value: Any, expected: date) -> None:
    assert parse_config({"start_date": value}).start_date == expected


@pytest.mark.parametrize("value", ["2021-13-01", 20211341, 2021042, True, 20210427.0, "yesterday"])
def test_bad_dates(value: Any) -> None:
    assert _err({"end_date": value}).key == "end_date"


def test_end_before_start() -> None:
    e = _err({"start_date": 20210430, "end_date": 20210425})
    assert e.key == "end_date" and "before" in e.reason


def test_same_day_is_fine() -> None:
    cfg = parse_config({"start_date": 20210427, "end_date": "2021-04-27"})
    assert cfg.start_date == cfg.end_date


def test_unknown_key_suggests_closest() -> None:
    e = _err({"start_dat": 20210427})
    assert e.key == "start_dat" and "did you mean 'start_date'?" in str(e)


def test_unknown_key_without_close_match_lists_keys() -> None:
    assert "valid keys" in str(_err({"zzzz": 1}))


def test_not_a_mapping() -> None:
    with pytest.raises(ConfigError):
        parse_config([1, 2])  # type: ignore[arg-type]


@pytest.mark.parametrize(("value", "expected"), [(0, 0), (3, 3), (1.0, 1)])
def test_resolution(value: Any, expected: int) -> None:
    cfg = parse_config({"temporal_resolution": value})
    assert cfg.temporal_resolution == expected and isinstance(cfg.temporal_resolution, int)


@pytest.mark.parametrize("value", [0.5, -1, -2.0, "1", True, None.__class__, float("nan")])
def test_bad_resolution(value: Any) -> None:
    assert _err({"temporal_resolution": value}).key == "temporal_resolution"


@pytest.mark.parametrize(
    ("value", "expected"), [(True, True), (False, False), (1, True), (0, False)]
)
def test_overlap(value: Any, expected: bool) -> None:
    assert parse_config({"temporal_overlap": value}).temporal_overlap is expected


@pytest.mark.parametrize("value", ["False", "true", 2, 1.0, [], None.__class__])
def test_bad_overlap(value: Any) -> None:
    e = _err({"temporal_overlap": value})
    assert e.key == "temporal_overlap"
    if isinstance(value, str):
        assert "a string is not a boolean" in e.reason


def test_coregistered_false_is_error() -> None:
    e = _err({"coregistered": False})
    assert e.key == "coregistered" and "must be true" in e.reason


def test_coregistered_string_is_error() -> None:
    assert _err({"coregistered": "True"}).key == "coregistered"


def test_space_overlap_warns_and_is_ignored() -> None:
    with pytest.warns(IgnoredConfigKeyWarning):
        cfg = parse_config({"space_overlap": False})
    assert search_params(cfg) == search_params(CubeConfig())


def test_null_values_mean_default() -> None:
    assert parse_config({"start_date": None, "temporal_resolution": None}) == CubeConfig()


@pytest.mark.parametrize(
    ("obj", "key"),
    [
        ({"min_incidence_angle": "20"}, "min_incidence_angle"),
        ({"max_incidence_angle": 95}, "max_incidence_angle"),
        ({"max_incidence_angle": -1}, "max_incidence_angle"),
        ({"min_incidence_angle": True}, "min_incidence_angle"),
        ({"min_incidence_angle": 30, "max_incidence_angle": 20}, "min_incidence_angle"),
    ],
)
def test_bad_angles(obj: dict[str, Any], key: str) -> None:
    assert _err(obj).key == key


def test_equal_angles_ok() -> None:
    cfg = parse_config({"min_incidence_angle": 25, "max_incidence_angle": 25.0})
    assert cfg.min_incidence_angle == cfg.max_incidence_angle == 25.0


@pytest.mark.parametrize(("value", "expected"), [("GRD", "GRD"), ("slc", "SLC"), (" Grd ", "GRD")])
def test_product_type(value: str, expected: str) -> None:
    assert parse_config({"product_type": value}).product_type == expected


@pytest.mark.parametrize("value", ["GRD-COG", "", 1, None.__class__])
def test_bad_product_type(value: Any) -> None:
    assert _err({"product_type": value}).key == "product_type"


def test_collections() -> None:
    assert parse_config({"collections": ["a", "b"]}).collections == ("a", "b")


@pytest.mark.parametrize("value", ["iceye-grd", [], [1], [""]])
def test_bad_collections(value: Any) -> None:
    assert _err({"collections": value}).key == "collections"


def test_bbox() -> None:
    assert parse_config({"bbox": [1, 2, 3, 4]}).bbox == (1.0, 2.0, 3.0, 4.0)


@pytest.mark.parametrize(
    "value", [[1, 2, 3], [1, 2, 3, "4"], [3, 0, 1, 1], [0, 5, 1, 1], [0, 0, 200, 1], "1,2,3,4"]
)
def test_bad_bbox(value: Any) -> None:
    assert _err({"bbox": value}).key == "bbox"


SQUARE = {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 1], [0, 0]]]}


def test_intersects() -> None:
    assert parse_config({"intersects": SQUARE}).intersects == SQUARE


@pytest.mark.parametrize(
    "value",
    [
        {"type": "Polygon", "coordinates": [[[0, 0], [1, 1], [1, 0], [0, 1], [0, 0]]]},  # bow-tie
        {"type": "Feature", "geometry": SQUARE, "properties": {}},
        {"type": "Polygon", "coordinates": "nope"},
        "POLYGON((0 0, 1 0, 1 1, 0 0))",
    ],
)
def test_bad_intersects(value: Any) -> None:
    assert _err({"intersects": value}).key == "intersects"


def test_bbox_and_intersects_exclusive() -> None:
    assert _err({"bbox": [0, 0, 1, 1], "intersects": SQUARE}).key == "intersects"


FILTER = {"op": ">=", "args": [{"property": "view:incidence_angle"}, 20]}


def test_filter() -> None:
    assert parse_config({"filter": FILTER}).filter == FILTER


def test_filter_text_becomes_json() -> None:
    cfg = parse_config({"filter": "view:incidence_angle >= 20"})
    assert cfg.filter is not None and cfg.filter["op"] == ">="


@pytest.mark.parametrize(
    "value",
    [
        {"op": "s_crosses", "args": [{"property": "geometry"}, SQUARE]},
        {"op": "=", "args": [1]},
        {"op": "and", "args": [FILTER, {"function": {"name": "f", "args": []}}]},
        3,
    ],
)
def test_bad_filter(value: Any) -> None:
    assert _err({"filter": value}).key == "filter"


@pytest.mark.parametrize("value", ["my-labels", True, False])
def test_labels(value: Any) -> None:
    assert parse_config({"labels": value}).labels == value


@pytest.mark.parametrize("value", ["", 1, ["a"]])
def test_bad_labels(value: Any) -> None:
    assert _err({"labels": value}).key == "labels"


def test_chunks() -> None:
    cfg = parse_config({"chunks": {"azimuth": 512, "range": 256}})
    assert cfg.chunks == Chunks(azimuth=512, range=256)
    cfg = parse_config({"chunks": {"azimuth": 512, "range": 256, "time": 1}})
    assert cfg.chunks is not None and cfg.chunks.time == 1
    assert dict(cfg.chunks) == {"azimuth": 512, "range": 256, "time": 1}  # also a Mapping


@pytest.mark.parametrize(
    ("value", "key"),
    [
        ({"azimuth": 512}, "chunks"),
        ({"azimuth": 512, "range": 0}, "chunks.range"),
        ({"azimuth": 1.5, "range": 1}, "chunks.azimuth"),
        ({"azimuth": 1, "range": 1, "band": 1}, "chunks"),
        ({"azimuth": 1, "range": 1, "time": -1}, "chunks.time"),
        ({"azimuth": 1, "range": 1, "time": 2}, "chunks.time"),  # one image per chunk (exit 2)
        ([512, 512], "chunks"),
    ],
)
def test_bad_chunks(value: Any, key: str) -> None:
    assert _err({"chunks": value}).key == key


def test_shards() -> None:
    """Zarr v3 sharding: chunks are what readers decode, shards the objects a build stores."""
    cfg = parse_config(
        {"chunks": {"azimuth": 256, "range": 256}, "shards": {"azimuth": 1024, "range": 512}}
    )
    assert cfg.shards == Chunks(azimuth=1024, range=512)
    assert cfg.to_dict()["shards"] == {"azimuth": 1024, "range": 512}
    assert (
        parse_config({"shards": {"azimuth": 4096, "range": 2048}}).shards is not None
    )  # 1024 chunks
    assert parse_config({}).shards is None


@pytest.mark.parametrize(
    ("obj", "key", "reason"),
    [
        ({"shards": {"azimuth": 1000, "range": 1024}}, "shards.azimuth",
         "multiple of the chunk edge 1024 (the default"),
        ({"chunks": {"azimuth": 256, "range": 256}, "shards": {"azimuth": 1024, "range": 640}},
         "shards.range", "a shard holds whole chunks: 640 is not a multiple of the chunk edge 256"),
        ({"shards": {"azimuth": 1024}}, "shards", "missing ['range']"),
        ({"shards": {"azimuth": 1024, "range": 1024, "time": 2}}, "shards.time", "a shard holds one image"),
        ({"shards": {"azimuth": 1024, "range": 1024, "inner": 256}}, "shards", "unknown dimension"),
        ({"shards": 1024}, "shards", "expected"),
        ({"shard": {"azimuth": 1024, "range": 1024}}, "shard", "did you mean 'shards'?"),
    ],
)  # fmt: skip
def test_bad_shards(obj: dict[str, Any], key: str, reason: str) -> None:
    err = _err(obj)
    assert err.key == key
    assert reason in str(err)


def test_compression() -> None:
    assert parse_config({}).compression is None  # the planner's default codec
    cfg = parse_config({"compression": {"cname": "zstd", "clevel": 3}})
    assert cfg.compression == Compression(cname="zstd", clevel=3, shuffle="bitshuffle")
    assert cfg.to_dict()["compression"] == {"cname": "zstd", "clevel": 3, "shuffle": "bitshuffle"}
    assert parse_config(cfg.to_dict()) == cfg


@pytest.mark.parametrize(
    ("value", "key"),
    [
        ("zstd", "compression"),
        ({"codec": "zstd"}, "compression"),
        ({"cname": "gzip"}, "compression.cname"),
        ({"clevel": 10}, "compression.clevel"),
        ({"clevel": True}, "compression.clevel"),
        ({"clevel": 2.5}, "compression.clevel"),
        ({"shuffle": "byte"}, "compression.shuffle"),
    ],
)
def test_bad_compression(value: Any, key: str) -> None:
    assert _err({"compression": value}).key == key


# --- search parameters --------------------------------------------------------------------------


def test_search_params_full() -> None:
    cfg = parse_config(
        {
            "start_date": 20210425,
            "end_date": 20210430,
            "min_incidence_angle": 20,
            "max_incidence_angle": 34,
            "product_type": "slc",
            "bbox": [0, 0, 1, 1],
            "filter": FILTER,
        }
    )
    p = search_params(cfg)
    assert p.collections == ("iceye-slc",)
    assert p.datetime == (
        datetime(2021, 4, 25, tzinfo=UTC),
        datetime.combine(date(2021, 4, 30), time(23, 59, 59, 999999), UTC),
    )
    assert p.query == {"view:incidence_angle": {"gte": 20.0, "lte": 34.0}}
    assert p.bbox == (0, 0, 1, 1) and p.filter == FILTER and p.intersects is None


def test_search_params_open_ends_and_one_bound() -> None:
    p = search_params(parse_config({"end_date": 20210430, "min_incidence_angle": 20}))
    assert p.datetime is not None and p.datetime[0] is None
    assert p.query == {"view:incidence_angle": {"gte": 20.0}}
    assert p.collections == ("iceye-grd", "iceye-slc")


def test_collections_win_over_product_type() -> None:
    p = search_params(parse_config({"collections": ["mine"], "product_type": "GRD"}))
    assert p.collections == ("mine",)


def test_grd_collection() -> None:
    assert search_params(parse_config({"product_type": "grd"})).collections == ("iceye-grd",)


# --- round trip ---------------------------------------------------------------------------------

dates = st.dates(min_value=date(2015, 1, 1), max_value=date(2035, 12, 31))
angles = st.floats(min_value=0, max_value=90, allow_nan=False)
names = st.text(alphabet="abcdefghijklmnopqrstuvwxyz-_0123456789", min_size=1, max_size=12)


@st.composite
def configs(draw: st.DrawFn) -> dict[str, Any]:
    d: dict[str, Any] = {}
    if draw(st.booleans()):
        d["start_date"] = draw(dates).strftime("%Y%m%d")
    if draw(st.booleans()):
        d["end_date"] = draw(dates).isoformat()
    if "start_date" in d and "end_date" in d and d["end_date"].replace("-", "") < d["start_date"]:
        d["start_date"], d["end_date"] = d["end_date"].replace("-", ""), d["start_date"]
    a, b = sorted([draw(angles), draw(angles)])
    if draw(st.booleans()):
        d["min_incidence_angle"] = a
    if draw(st.booleans()):
        d["max_incidence_angle"] = b
    d["temporal_resolution"] = draw(st.integers(min_value=0, max_value=400))
    d["temporal_overlap"] = draw(st.sampled_from([True, False, 0, 1]))
    if draw(st.booleans()):
        d["collections"] = draw(st.lists(names, min_size=1, max_size=3))
    if draw(st.booleans()):
        d["product_type"] = draw(st.sampled_from(["GRD", "slc", "Grd"]))
    if draw(st.booleans()):
        w, e = sorted([draw(st.floats(-180, 180)), draw(st.floats(-180, 180))])
        s, n = sorted([draw(st.floats(-90, 90)), draw(st.floats(-90, 90))])
        d["bbox"] = [w, s, e, n]
    elif draw(st.booleans()):
        d["intersects"] = SQUARE
    if draw(st.booleans()):
        d["filter"] = FILTER
    d["labels"] = draw(st.one_of(st.booleans(), names))
    if draw(st.booleans()):
        d["chunks"] = {"azimuth": draw(st.integers(1, 4096)), "range": draw(st.integers(1, 4096))}
        if draw(st.booleans()):
            d["shards"] = {k: v * draw(st.integers(1, 4)) for k, v in d["chunks"].items()}
    if draw(st.booleans()):
        d["compression"] = draw(
            st.fixed_dictionaries(
                {},
                optional={
                    "cname": st.sampled_from(["lz4", "zstd", "zlib"]),
                    "clevel": st.integers(0, 9),
                    "shuffle": st.sampled_from(["noshuffle", "shuffle", "bitshuffle"]),
                },
            )
        )
    return d


@given(configs())
def test_parse_to_dict_roundtrip(obj: dict[str, Any]) -> None:
    cfg = parse_config(obj)
    again = parse_config(json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg
    assert again.to_dict() == cfg.to_dict()
    assert cfg.raw == obj


def test_roundtrip_keeps_space_overlap() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", IgnoredConfigKeyWarning)
        cfg = parse_config({"space_overlap": True})
        assert parse_config(cfg.to_dict()) == cfg


def test_readme_config_table_lists_every_key() -> None:
    """Every key the parser accepts is explained in the README's config table, and no other."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme.split("### The config", 1)[1].split("\n#", 1)[0]
    rows = [line.split("|")[1] for line in section.splitlines() if line.startswith("| `")]
    documented = {key for row in rows for key in re.findall(r"`(\w+)`", row)}
    # space_overlap is explained in the coregistered row.
    documented |= set(re.findall(r"`(space_overlap)`", section))
    assert documented == set(CONFIG_KEYS)
