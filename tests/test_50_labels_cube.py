"""Labels in the cube (issue #4): x and y in one object, at the right times and pixels."""

from __future__ import annotations

import json
import shutil

import numpy as np
import rasterio
import shapely
import xarray as xr

from icecube_cloud.build import build_cube
from icecube_cloud.ingest import ingest
from icecube_cloud.labels import ingest_labels
from icecube_cloud.stac.catalogs import open_catalog

STEM = "ICEYE_GRD_54549_20210427T215124_hollow_10x10pixels_fake_"


def test_sample_masks_and_vector_labels_land_in_the_cube(tmp_path, samples, dask_scheduler):
    cat = str(tmp_path / "cat")
    ingest([str(samples / "grd_stack")], cat)
    masks = [
        {
            "product_file": f"{STEM}{i}.tif",
            "labels": {"segmentation": str(samples / "masks" / f"{STEM}{i}.png")},
        }
        for i in (0, 2)  # product _1 gets vector labels only, so one time has no mask
    ]
    (tmp_path / "masks.json").write_text(json.dumps(masks))
    ingest_labels(str(tmp_path / "masks.json"), cat)
    ingest_labels(str(samples / "labels" / "dummy_vector_labels.json"), cat)
    mask_only = tmp_path / "masks_cube.zarr"
    build_cube(cat, {"labels": True}, str(tmp_path / "cube.zarr"), scheduler=dask_scheduler)
    ds = xr.open_zarr(tmp_path / "cube.zarr")

    assert ds["labels"].dtype == np.uint8 and ds["labels"].dims == ("time", "azimuth", "range")
    codes = dict(
        zip(
            ds["labels"].attrs["flag_meanings"].split(),
            ds["labels"].attrs["flag_values"],
            strict=True,
        )
    )
    vectors = json.loads((samples / "labels" / "dummy_vector_labels.json").read_text())
    by_file = {v["product_file"].removesuffix(".tif"): v["labels"]["objects"] for v in vectors}
    for t, pid in enumerate(str(p) for p in ds["product_id"].values):
        # Vector labels: every bbox object of this product, as pixel-coordinate WKT with its class.
        geoms = [g for g in ds["label_geometry"].values[t] if g]
        classes = [c for c in ds["label_class"].values[t] if c]
        objects = by_file[pid]
        assert len(geoms) == len(objects) and sorted(classes) == sorted(o["class"] for o in objects)
        for wkt, obj in zip(geoms, objects, strict=True):
            b = obj["bbox"]  # inclusive pixel boxes: they cover [min, max + 1) in pixel coordinates
            assert shapely.from_wkt(wkt).bounds == (
                b["xmin"],
                b["ymin"],
                b["xmax"] + 1,
                b["ymax"] + 1,
            )
        labels = ds["labels"].isel(time=t).values
        last_box = objects[-1]["bbox"]  # drawn last: its pixels carry its class
        inside = labels[
            last_box["ymin"] : last_box["ymax"] + 1, last_box["xmin"] : last_box["xmax"] + 1
        ]
        assert (inside == codes[objects[-1]["class"]]).all()
        if pid.endswith(("0", "2")):
            with rasterio.open(samples / "masks" / f"{pid}.png") as src:
                mask = src.read(1)
            untouched = np.ones(mask.shape, bool)
            for o in objects:
                bb = o["bbox"]
                untouched[bb["ymin"] : bb["ymax"] + 1, bb["xmin"] : bb["xmax"] + 1] = False
            # Where no box was drawn over it, the mask's own class codes are in the cube.
            lut = np.zeros(256, np.uint8)
            for v in np.unique(mask):
                if v:
                    lut[v] = codes[f"class_{int(v)}"]
            np.testing.assert_array_equal(labels[untouched], lut[mask][untouched])
    assert not mask_only.exists()


def test_times_without_labels_are_empty_not_missing(tmp_path, samples, dask_scheduler):
    cat = str(tmp_path / "cat")
    ingest([str(samples / "grd_stack")], cat)
    only_one = [
        {
            "product_file": f"{STEM}1.tif",
            "labels": {"segmentation": str(samples / "masks" / f"{STEM}1.png")},
        }
    ]
    (tmp_path / "one.json").write_text(json.dumps(only_one))
    ingest_labels(str(tmp_path / "one.json"), cat)
    build_cube(cat, {"labels": True}, str(tmp_path / "cube.zarr"), scheduler=dask_scheduler)
    ds = xr.open_zarr(tmp_path / "cube.zarr")
    per_time = ds["labels"].sum(dim=("azimuth", "range")).values
    pids = [str(p) for p in ds["product_id"].values]
    assert per_time[pids.index(f"{STEM}1")] > 0
    assert all(per_time[i] == 0 for i, p in enumerate(pids) if p != f"{STEM}1")
    assert ds["label_geometry"].sizes["label"] == 0


def test_quicklook_of_a_labelled_cube(tmp_path, samples, dask_scheduler):
    """The quicklook of a real labelled cube (built with "labels": true) is a PNG with every slice."""
    from icecube_cloud.cube import open_cube
    from icecube_cloud.quicklook import quicklook

    cat = str(tmp_path / "cat")
    ingest([str(samples / "grd_stack")], cat)
    ingest_labels(str(samples / "labels" / "dummy_vector_labels.json"), cat)
    build_cube(cat, {"labels": True}, str(tmp_path / "cube.zarr"), scheduler=dask_scheduler)
    png = tmp_path / "quicklook.png"
    assert quicklook(open_cube(str(tmp_path / "cube.zarr")), png) == 3
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with rasterio.open(png) as img:
        pixels = img.read()
    assert img.width > 300 and img.height > 200 and len(np.unique(pixels)) > 50


def test_a_moved_catalog_builds_the_same_labelled_cube(tmp_path, samples, dask_scheduler):
    """Hrefs into the catalog's folder are relative: move the folder, and a build still finds all."""
    cat = tmp_path / "before" / "cat"
    shutil.copytree(samples / "grd_stack", cat / "products")  # products kept in the catalog folder
    ingest([str(cat / "products")], str(cat))
    masks = [{"product_file": f"{STEM}0.tif",
              "labels": {"segmentation": str(samples / "masks" / f"{STEM}0.png")}}]  # fmt: skip
    (tmp_path / "masks.json").write_text(json.dumps(masks))
    ingest_labels(str(tmp_path / "masks.json"), str(cat))
    ingest_labels(str(samples / "labels" / "dummy_vector_labels.json"), str(cat))
    build_cube(str(cat), {"labels": True}, str(tmp_path / "a.zarr"), scheduler=dask_scheduler)

    pid = f"{STEM}0"
    product = json.loads((cat / "iceye-grd" / pid / f"{pid}.json").read_text())
    assert product["assets"]["grd-tiff"]["href"] == f"../../products/{pid}.tif"
    (cube_json,) = (cat / "icecube-cubes").glob("*/*.json")
    cube = json.loads(cube_json.read_text())
    assert cube["assets"]["zarr"]["href"] == str(tmp_path / "a.zarr")  # outside: absolute
    assert {ln["href"] for ln in cube["links"] if ln["rel"] == "derived_from"} == {
        f"../../iceye-grd/{STEM}{i}/{STEM}{i}.json" for i in range(3)
    }
    mask_items = [json.loads(p.read_text()) for p in (cat / "iceye-labels").glob("*/*.json")]
    hrefs = [a["href"] for it in mask_items for a in it["assets"].values()]
    assert str(samples / "masks" / f"{STEM}0.png") in hrefs  # the user's mask: absolute
    assert all(h.startswith("./") for h in hrefs if h.endswith(".geojson"))

    moved = tmp_path / "after" / "moved-cat"
    moved.parent.mkdir()
    shutil.move(cat, moved)
    for path in moved.rglob("*.json"):
        assert "before" not in path.read_text(), path
    items = list(open_catalog(str(moved)).items(["iceye-labels"]))
    assert all(a.href.startswith(str(moved)) for it in items for a in it.assets.values()
               if a.href.endswith(".geojson"))  # fmt: skip
    build_cube(str(moved), {"labels": True}, str(tmp_path / "b.zarr"), scheduler=dask_scheduler)
    a, b = xr.open_zarr(tmp_path / "a.zarr"), xr.open_zarr(tmp_path / "b.zarr")
    assert int(b["labels"].astype(int).sum()) > 0
    for name in ("amplitude", "labels", "label_geometry", "label_class", "product_id"):
        np.testing.assert_array_equal(a[name].values, b[name].values)
    assert a["labels"].attrs["flag_meanings"] == b["labels"].attrs["flag_meanings"]


def test_training_stack_geojson_labels_are_the_cube_truth(tmp_path, dask_scheduler):
    """Generated scene + per-product lon/lat GeoJSON -> ingest -> build: y equals the truth masks."""
    from icecube_cloud.synthetic import CLASSES, make_training_stack

    stack = make_training_stack(tmp_path / "ts", n=4, shape=(96, 128), flavour="grd-cog", seed=3)
    cat = str(tmp_path / "cat")
    ingest([str(stack.products_folder)], cat)
    for path, products in stack.label_sources("geojson"):
        ingest_labels(str(path), cat, products=products)
    build_cube(cat, {"labels": True}, str(tmp_path / "cube.zarr"), scheduler=dask_scheduler)
    ds = xr.open_zarr(tmp_path / "cube.zarr")
    attrs = ds["labels"].attrs
    assert dict(zip(attrs["flag_meanings"].split(), attrs["flag_values"], strict=True)) == CLASSES
    assert [str(p) for p in ds["product_id"].values] == [s.product_id for s in stack.specs]
    truth = stack.truth()
    # No pixel centre of this stack lies on a water edge (test_47 checks that rule), so: exact.
    np.testing.assert_array_equal(ds["labels"].values, truth)
    assert (truth[0] != truth[-1]).any()  # a target appeared or left: the series has a change
    amplitude = ds["amplitude"].values.astype(np.float64) ** 2
    water, target = (amplitude[truth == CLASSES[c]].mean() for c in ("water", "target"))
    land = amplitude[truth == 0].mean()
    assert water < land / 10 < land < target / 10
