"""Collections and the static catalog: create, upsert (no duplicates), reopen, fsspec, errors."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import fsspec
import pytest
from helpers import write_good_and_broken
from test_20_stac_items import cog_grd, legacy_grd, legacy_slc

from icecube_cloud.errors import CatalogError, ProductError
from icecube_cloud.ingest import IngestError, ingest
from icecube_cloud.stac.collections import COLLECTION_IDS, load_collection
from icecube_cloud.stac.items import product_to_item
from icecube_cloud.stac.search import SearchParams
from icecube_cloud.stac.static import StaticCatalog
from icecube_cloud.stac.static_index import INDEX_NAME
from icecube_cloud.stac.validate import validate_stac


def grd_series(n: int) -> list[Any]:
    """n legacy GRD products of one stack, one day apart."""
    base = legacy_grd()
    out = []
    for i in range(n):
        end = base.acquisition_end + timedelta(days=i)
        out.append(
            legacy_grd(
                product_id=f"ICEYE_GRD_STACK_{i:02d}",
                href=f"/data/stack/ICEYE_GRD_STACK_{i:02d}.tif",
                acquisition_start=end - timedelta(seconds=10),
                acquisition_end=end,
                incidence_angle=25.0 + i,
            )
        )
    return out


def item_files(root: Path) -> list[Path]:
    return sorted(p for p in root.glob("*/*/*.json"))


@pytest.mark.parametrize("cid", COLLECTION_IDS)
def test_collections_validate_offline(cid: str, stac_schemas: Path) -> None:
    coll = load_collection(cid)
    assert coll.id == cid
    report = validate_stac(coll, stac_schemas)
    assert report.valid, report.errors
    assert load_collection(cid) is not coll  # fresh object each call


def test_unknown_collection() -> None:
    with pytest.raises(CatalogError, match="iceye-foo"):
        load_collection("iceye-foo")


def test_create_on_first_upsert_and_layout(
    tmp_path: Path, samples: Path, stac_schemas: Path
) -> None:
    root = tmp_path / "cat"
    with pytest.raises(CatalogError, match=str(root)):
        StaticCatalog.open(str(root))
    cat = StaticCatalog.open(str(root), create=True)
    assert list(cat.items()) == []
    assert not (root / "catalog.json").exists()
    metas = [*grd_series(3), legacy_slc(), cog_grd(samples)]
    result = cat.upsert(product_to_item(m) for m in metas)
    assert set(result.added) == {m.product_id for m in metas} and result.updated == ()
    assert (root / "catalog.json").is_file()
    for m in metas:
        cid = "iceye-grd" if m.level == "GRD" else "iceye-slc"
        assert (root / cid / m.product_id / f"{m.product_id}.json").is_file()
    # every written object validates offline; links are relative, asset hrefs absolute
    for path in [root / "catalog.json", *root.glob("*/collection.json"), *item_files(root)]:
        data = json.loads(path.read_text())
        report = validate_stac(data, stac_schemas)
        assert report.valid, (path, report.errors)
        assert all(not link["href"].startswith(("/", "file:")) for link in data["links"]), path
    slc = json.loads(
        (root / "iceye-slc" / metas[3].product_id / f"{metas[3].product_id}.json").read_text()
    )
    assert slc["assets"]["slc-hdf5"]["href"] == metas[3].href  # s3:// kept
    grd = json.loads(
        (root / "iceye-grd" / "ICEYE_GRD_STACK_00" / "ICEYE_GRD_STACK_00.json").read_text()
    )
    assert grd["assets"]["grd-tiff"]["href"] == "/data/stack/ICEYE_GRD_STACK_00.tif"


def test_reupsert_updates_not_duplicates(tmp_path: Path) -> None:
    cat = StaticCatalog.open(str(tmp_path), create=True)
    metas = grd_series(3)
    cat.upsert(product_to_item(m) for m in metas)
    assert len(item_files(tmp_path)) == 3
    changed = legacy_grd(
        product_id=metas[1].product_id,
        href=metas[1].href,
        acquisition_start=metas[1].acquisition_start,
        acquisition_end=metas[1].acquisition_end,
        incidence_angle=33.3,
    )
    result = cat.upsert([product_to_item(changed), product_to_item(grd_series(4)[3])])
    assert result.updated == (metas[1].product_id,)
    assert result.added == ("ICEYE_GRD_STACK_03",)
    assert len(item_files(tmp_path)) == 4
    coll = json.loads((tmp_path / "iceye-grd" / "collection.json").read_text())
    item_links = [ln["href"] for ln in coll["links"] if ln["rel"] == "item"]
    assert len(item_links) == len(set(item_links)) == 4
    assert cat.get_item("iceye-grd", metas[1].product_id).properties["view:incidence_angle"] == 33.3
    assert sorted(i.id for i in StaticCatalog.open(str(tmp_path)).items()) == [
        f"ICEYE_GRD_STACK_{i:02d}" for i in range(4)
    ]


def test_collection_extent_follows_items(tmp_path: Path) -> None:
    cat = StaticCatalog.open(str(tmp_path), create=True)
    metas = grd_series(3)
    cat.upsert([product_to_item(metas[0])])
    cat.upsert(product_to_item(m) for m in metas[1:])
    coll = json.loads((tmp_path / "iceye-grd" / "collection.json").read_text())
    assert coll["extent"]["spatial"]["bbox"][0] == pytest.approx([24.80, 60.10, 24.84, 60.13])
    start, end = coll["extent"]["temporal"]["interval"][0]
    assert datetime.fromisoformat(start) == metas[0].acquisition_start
    assert datetime.fromisoformat(end) == metas[2].acquisition_end


def test_reopen_by_folder_catalog_json_and_file_url(tmp_path: Path) -> None:
    StaticCatalog.open(str(tmp_path), create=True).upsert(
        product_to_item(m) for m in [*grd_series(2), legacy_slc()]
    )
    expected = {("iceye-grd", "ICEYE_GRD_STACK_00"), ("iceye-grd", "ICEYE_GRD_STACK_01")}
    expected.add(("iceye-slc", legacy_slc().product_id))
    for url in (str(tmp_path), str(tmp_path / "catalog.json"), tmp_path.as_uri()):
        items = list(StaticCatalog.open(url).items())
        assert {(i.collection_id, i.id) for i in items} == expected, url
    only_slc = list(StaticCatalog.open(str(tmp_path)).items(["iceye-slc"]))
    assert [i.id for i in only_slc] == [legacy_slc().product_id]


@pytest.fixture
def memory_url() -> Iterator[str]:
    url = f"memory://icecube-test-{uuid.uuid4().hex}/catalog"
    yield url
    fs = fsspec.filesystem("memory")
    fs.rm(url.removeprefix("memory://").split("/")[0], recursive=True)


def test_fsspec_memory_url(memory_url: str, samples: Path) -> None:
    cog = cog_grd(samples)
    cat = StaticCatalog.open(memory_url, create=True)
    cat.upsert(product_to_item(m) for m in [*grd_series(2), cog])
    cat.upsert([product_to_item(grd_series(1)[0])])
    fs = fsspec.filesystem("memory")
    path = memory_url.removeprefix("memory://")
    assert fs.exists(f"{path}/catalog.json")
    assert len(fs.glob(f"{path}/*/*/*.json")) == 3
    again = StaticCatalog.open(f"{memory_url}/catalog.json")
    assert sorted(i.id for i in again.items()) == sorted(
        ["ICEYE_GRD_STACK_00", "ICEYE_GRD_STACK_01", cog.product_id]
    )
    stored = again.get_item("iceye-grd", cog.product_id)
    assert stored.assets["grd-cog"].href == cog.href


def test_missing_catalog_error_names_url() -> None:
    url = f"memory://nothing-here-{uuid.uuid4().hex}"
    with pytest.raises(CatalogError, match=url):
        StaticCatalog.open(url)


def test_broken_item_json_names_file(tmp_path: Path) -> None:
    StaticCatalog.open(str(tmp_path), create=True).upsert(product_to_item(m) for m in grd_series(2))
    bad = tmp_path / "iceye-grd" / "ICEYE_GRD_STACK_01" / "ICEYE_GRD_STACK_01.json"
    bad.write_text('{"type": "Feature", "id": ')
    with pytest.raises(CatalogError, match=r"ICEYE_GRD_STACK_01\.json"):
        list(StaticCatalog.open(str(tmp_path)).items())
    bad.write_text('{"type": "Feature"}')
    with pytest.raises(CatalogError, match=r"ICEYE_GRD_STACK_01\.json"):
        StaticCatalog.open(str(tmp_path)).get_item("iceye-grd", "ICEYE_GRD_STACK_01")
    bad.unlink()
    with pytest.raises(CatalogError, match=r"ICEYE_GRD_STACK_01\.json"):
        list(StaticCatalog.open(str(tmp_path)).items())


def test_missing_item_and_bad_ids(tmp_path: Path) -> None:
    cat = StaticCatalog.open(str(tmp_path), create=True)
    cat.upsert([product_to_item(legacy_grd())])
    with pytest.raises(CatalogError, match="nope"):
        cat.get_item("iceye-grd", "nope")
    with pytest.raises(CatalogError, match=r"\.\./evil"):
        cat.upsert([product_to_item(legacy_grd(product_id="../evil"))])
    item = product_to_item(legacy_grd())
    item.collection_id = "other"
    with pytest.raises(CatalogError, match="other"):
        cat.upsert([item])


def test_search_incidence_and_time(tmp_path: Path) -> None:
    """Depends on icecube_cloud.stac.search.search_items (sibling work)."""
    cat = StaticCatalog.open(str(tmp_path), create=True)
    metas = grd_series(4)  # incidence 25, 26, 27, 28; one day apart
    cat.upsert([*(product_to_item(m) for m in metas), product_to_item(legacy_slc())])
    found = cat.search(
        SearchParams(
            collections=("iceye-grd",),
            query={"view:incidence_angle": {"gte": 25.5, "lte": 27.5}},
        )
    )
    assert sorted(i.id for i in found) == ["ICEYE_GRD_STACK_01", "ICEYE_GRD_STACK_02"]
    day2 = metas[2].acquisition_end
    found = cat.search(SearchParams(datetime=(day2 - timedelta(hours=1), day2.replace(tzinfo=UTC))))
    assert [i.id for i in found] == ["ICEYE_GRD_STACK_02"]


def _day(meta: Any) -> SearchParams:
    end = meta.acquisition_end
    return SearchParams(datetime=(end - timedelta(hours=1), end + timedelta(hours=1)))


def test_search_reads_only_the_items_that_can_match(tmp_path: Path) -> None:
    """The collection's index lets a search skip items outside its interval unread (issue 16)."""
    cat = StaticCatalog.open(str(tmp_path), create=True)
    metas = grd_series(4)
    cat.upsert(product_to_item(m) for m in metas)
    index = json.loads((tmp_path / "iceye-grd" / INDEX_NAME).read_text())
    assert sorted(index["items"]) == [f"./{m.product_id}/{m.product_id}.json" for m in metas]
    # an item outside the searched day is never opened: breaking it changes nothing
    broken = tmp_path / "iceye-grd" / "ICEYE_GRD_STACK_00" / "ICEYE_GRD_STACK_00.json"
    broken.write_text("{")
    assert [i.id for i in cat.search(_day(metas[2]))] == ["ICEYE_GRD_STACK_02"]
    # a search that can match it reads it, and names the file
    with pytest.raises(CatalogError, match=r"ICEYE_GRD_STACK_00\.json"):
        cat.search(_day(metas[0]))


def test_search_without_or_with_a_stale_index_finds_every_match(tmp_path: Path) -> None:
    """An item the index lacks (older catalog, another tool) is always read; upsert indexes it."""
    cat = StaticCatalog.open(str(tmp_path), create=True)
    metas = grd_series(3)
    cat.upsert(product_to_item(m) for m in metas)
    index = tmp_path / "iceye-grd" / INDEX_NAME
    index.unlink()  # a catalog written before the index
    assert [i.id for i in cat.search(_day(metas[1]))] == ["ICEYE_GRD_STACK_01"]
    cat.upsert([product_to_item(grd_series(4)[3])])  # rebuilds the missing rows
    assert len(json.loads(index.read_text())["items"]) == 4
    # an item linked by hand, unknown to the index, is still found
    rows = json.loads(index.read_text())
    del rows["items"]["./ICEYE_GRD_STACK_02/ICEYE_GRD_STACK_02.json"]
    index.write_text(json.dumps(rows))
    assert [i.id for i in cat.search(_day(metas[2]))] == ["ICEYE_GRD_STACK_02"]
    both = SearchParams(datetime=(metas[1].acquisition_start, metas[2].acquisition_end))
    assert [i.id for i in cat.search(both)] == ["ICEYE_GRD_STACK_01", "ICEYE_GRD_STACK_02"]


def test_ingest_registers_the_readable_and_reports_the_rest(tmp_path: Path) -> None:
    good, bad = write_good_and_broken(tmp_path / "p")
    with pytest.raises(IngestError) as info:
        ingest([str(tmp_path / "p")], str(tmp_path / "cat"))
    result = info.value.result
    assert sorted(result.added) == sorted(good) and result.updated == ()
    failed = {Path(f.href).relative_to(tmp_path / "p").as_posix(): f.reason for f in result.failed}
    assert failed.keys() == bad.keys()
    for name, reason in bad.items():
        assert re.search(reason, failed[name]), (name, failed[name])
        assert str(tmp_path / "p" / name) in str(info.value)  # the message lists every file
    assert sorted(i.id for i in StaticCatalog.open(str(tmp_path / "cat")).items()) == sorted(good)

    again = ingest([str(tmp_path / "p")], str(tmp_path / "cat"), skip_bad=True)
    assert again.added == () and sorted(again.updated) == sorted(good)
    assert again.failed == result.failed  # the same answer every time


def test_ingest_of_nothing_readable_creates_no_catalog(tmp_path: Path) -> None:
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "ICEYE_GRD_X.tif").write_text("not a tiff")
    with pytest.raises(IngestError, match=r"ICEYE_GRD_X\.tif: not a TIFF file"):
        ingest([str(tmp_path / "p")], str(tmp_path / "cat"))
    assert not (tmp_path / "cat").exists()
    (tmp_path / "p" / "ICEYE_GRD_X.tif").unlink()
    (tmp_path / "p" / "README.txt").write_text("no products here")
    with pytest.raises(ProductError, match="no ICEYE product found"):
        ingest([str(tmp_path / "p")], str(tmp_path / "cat"), skip_bad=True)


def test_ingest_of_a_folder_holding_its_own_catalog(tmp_path: Path) -> None:
    """A catalog's items are named after their products: re-ingesting the folder that holds both
    updates the products and passes over the items (they are not broken sidecars)."""
    from icecube_cloud.synthetic import make_stack

    specs = make_stack(
        tmp_path / "products", n=3, shape=(16, 16), start=datetime(2021, 4, 20, tzinfo=UTC)
    )
    first = ingest([str(tmp_path)], str(tmp_path / "catalog"))
    assert len(first.added) == 3
    items = sorted((tmp_path / "catalog").rglob("ICEYE*.json"))
    assert len(items) == len(specs)
    again = ingest([str(tmp_path)], str(tmp_path / "catalog"))
    assert (len(again.added), len(again.updated), again.failed) == (0, 3, ())
