"""A built cube is registered back in the catalog as a datacube STAC item (SPEC §3)."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest

from icecube_cloud.build import build_cube, plan_cube
from icecube_cloud.ingest import ingest
from icecube_cloud.stac.cube_item import CUBE_COLLECTION, ZARR_MEDIA_TYPE, cube_item_id
from icecube_cloud.stac.static import StaticCatalog
from icecube_cloud.stac.validate import validate_stac
from icecube_cloud.synthetic import make_stack


@pytest.fixture
def built(tmp_path, dask_scheduler):
    specs = make_stack(
        tmp_path / "products",
        n=6,
        shape=(24, 24),
        start=datetime(2021, 4, 20, tzinfo=UTC),
        days=12,
        flavour="legacy-grd",
        seed=3,
    )
    ingest([str(tmp_path / "products")], str(tmp_path / "cat"))
    cfg = {"temporal_resolution": 3, "start_date": "20210420", "end_date": "20210501"}
    result = build_cube(
        str(tmp_path / "cat"), cfg, str(tmp_path / "cube.zarr"), scheduler=dask_scheduler
    )
    return tmp_path, specs, cfg, result


def test_cube_item_is_registered_and_valid(built, stac_schemas):
    tmp, _, _, result = built
    catalog = StaticCatalog.open(str(tmp / "cat"))
    items = list(catalog.items([CUBE_COLLECTION]))
    assert [it.id for it in items] == [result.item_id]
    item = items[0]
    report = validate_stac(item.to_dict(), stac_schemas)
    assert report.valid, report.errors
    assert item.assets["zarr"].href == str(tmp / "cube.zarr")
    assert item.assets["zarr"].media_type == ZARR_MEDIA_TYPE and item.assets["zarr"].roles == [
        "data"
    ]
    dims = item.properties["cube:dimensions"]
    assert len(dims["time"]["values"]) == len(result.plan.slices)
    assert dims["azimuth"]["extent"] == [0, 23] and dims["range"]["extent"] == [0, 23]
    assert item.properties["cube:variables"]["amplitude"]["dimensions"] == [
        "time",
        "azimuth",
        "range",
    ]
    derived = {link.title for link in item.links if link.rel == "derived_from"}
    assert derived == {s.source.item_id for s in result.plan.slices if s.source is not None}
    assert item.geometry is not None


def test_cube_items_stay_out_of_product_searches(built, dask_scheduler):
    tmp, specs, cfg, result = built
    # A second plan over the same catalog sees only products, not the registered cube.
    assert len(plan_cube(str(tmp / "cat"), {}).slices) == len(specs)
    # Rebuilding to the same place updates the cube's item instead of adding one.
    again = build_cube(
        str(tmp / "cat"), cfg, str(tmp / "cube.zarr"), scheduler=dask_scheduler, overwrite=True
    )
    assert again.item_id == result.item_id
    assert len(list(StaticCatalog.open(str(tmp / "cat")).items([CUBE_COLLECTION]))) == 1


def test_virtual_cube_item_points_at_references(built, dask_scheduler, stac_schemas):
    tmp, _, cfg, _ = built
    result = build_cube(
        str(tmp / "cat"), cfg, str(tmp / "cube.json"), scheduler=dask_scheduler, format="kerchunk"
    )
    item = next(
        it
        for it in StaticCatalog.open(str(tmp / "cat")).items([CUBE_COLLECTION])
        if it.id == result.item_id
    )
    assert "zarr" not in item.assets
    assert re.fullmatch(r"cube-cube-[0-9a-f]{10}", item.id), item.id  # no ".json" in the id
    assert item.assets["references"].href == str(tmp / "cube.json")
    assert item.assets["references"].media_type == "application/json"
    report = validate_stac(item.to_dict(), stac_schemas)
    assert report.valid, report.errors


def test_cube_item_ids_are_clean_stable_and_unique_per_url():
    urls = ["/d/cube.zarr", "/d/cube.json", "/e/cube.zarr", "s3://b/p/cube.zarr", "/d/my cube.zarr"]
    ids = [cube_item_id(u) for u in urls]
    assert len(set(ids)) == len(urls)  # one item per output location
    assert [cube_item_id(u) for u in urls] == ids  # stable: a rebuild updates its item
    assert all(re.fullmatch(r"cube-[A-Za-z0-9_.-]+-[0-9a-f]{10}", i) for i in ids), ids
    assert [i.rsplit("-", 1)[0] for i in ids] == ["cube-cube"] * 4 + ["cube-my_cube"]
