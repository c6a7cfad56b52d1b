"""Predictions back into a cube (issue #15, ``predict_cube``): values, seams, gaps, atomic write, item."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr
import zarr

from icecube_cloud.cube import open_cube
from icecube_cloud.errors import DataError, UsageError
from icecube_cloud.ml import calibrate, predict_cube
from icecube_cloud.stac.catalogs import open_catalog
from icecube_cloud.stac.cube_item import CUBE_COLLECTION, cube_item_id
from icecube_cloud.stac.search import SearchParams
from icecube_cloud.stac.validate import validate_stac


class Identity(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


class DistanceToTileEdge(torch.nn.Module):
    """Each pixel's distance (in pixels) to its tile's nearest edge: shows where a seam would be."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        i = torch.arange(h)[:, None].expand(h, w)
        j = torch.arange(w)[None, :].expand(h, w)
        d = torch.minimum(torch.minimum(i, h - 1 - i), torch.minimum(j, w - 1 - j))
        return d.to(torch.float32).expand(n, 1, h, w)


class Thresholds(torch.nn.Module):
    """Three classes by dB: below -22, -22 to -14, above (as channel scores)."""

    def __init__(self) -> None:
        super().__init__()
        self.centres = torch.nn.Parameter(torch.tensor([-30.0, -18.0, -6.0]), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return -((x[:, :1] - self.centres[None, :, None, None]) ** 2)


def _chunk_keys(cube: Path, t: int) -> list[str]:
    folder = cube / "prediction" / "c" / str(t)
    return [str(p) for p in folder.rglob("*") if p.is_file()] if folder.exists() else []


def test_identity_model_reproduces_its_input_everywhere(grd_cube, tmp_path):
    out = tmp_path / "pred.zarr"
    result = predict_cube(Identity(), grd_cube, str(out), size=64, overlap=12, register=False)
    pred = open_cube(str(out))
    source = open_cube(grd_cube)
    valid = source["valid"].values
    expected = calibrate(source).values
    assert result.slices == valid.sum() == 4 and result.dtype == "float32"
    assert pred["prediction"].dims == ("time", "azimuth", "range")
    assert pred["prediction"].dtype == np.float32
    np.testing.assert_array_equal(pred["prediction"].values[valid], expected[valid])
    np.testing.assert_array_equal(pred["valid"].values, valid)
    np.testing.assert_array_equal(pred["time"].values, source["time"].values)
    np.testing.assert_array_equal(pred["product_id"].values, source["product_id"].values)
    assert np.isnan(pred["prediction"].values[~valid]).all()  # gaps: fill ...
    for t in np.flatnonzero(~valid):
        assert _chunk_keys(out, int(t)) == []  # ... and no stored chunk
    assert _chunk_keys(out, int(np.flatnonzero(valid)[0]))
    assert json.loads(pred.attrs["icecube_cloud_prediction"])["overlap"] == 12


def test_tiles_keep_their_centres_so_no_seam_shows(grd_cube, map_cube, tmp_path):
    for cube, name in ((grd_cube, "sar"), (map_cube, "map")):
        out = tmp_path / f"{name}.zarr"
        predict_cube(DistanceToTileEdge(), cube, str(out), size=64, overlap=16, register=False)
        ds = open_cube(str(out))
        valid = ds["valid"].values
        d = ds["prediction"].values[valid]
        h, w = d.shape[1:]
        i = np.arange(h)[:, None]
        j = np.arange(w)[None, :]
        to_image_edge = np.minimum(np.minimum(i, h - 1 - i), np.minimum(j, w - 1 - j))
        # Every pixel is at least `overlap` inside its tile, unless it is that close to the image edge.
        assert (d >= np.minimum(16, to_image_edge)[None]).all(), name
        assert d.min() == 0  # the image's own edges are kept
    map_pred = open_cube(str(tmp_path / "map.zarr"))
    assert map_pred["prediction"].dims == ("time", "y", "x")
    assert map_pred["prediction"].attrs["grid_mapping"] == "spatial_ref"
    import rioxarray  # noqa: F401 - registers .rio

    assert map_pred["prediction"].rio.crs is not None


def test_several_channels_are_stored_as_argmax_classes(slc_cube, tmp_path):
    out = tmp_path / "classes.zarr"
    result = predict_cube(Thresholds(), slc_cube, str(out), size=32, overlap=4, register=False)
    assert result.dtype == "uint8"
    pred = open_cube(str(out))["prediction"]
    assert pred.dtype == np.uint8
    db = calibrate(open_cube(slc_cube)).values
    centres = np.array([-30.0, -18.0, -6.0], dtype=np.float32)
    expected = np.argmin((db[..., None] - centres) ** 2, axis=-1)
    np.testing.assert_array_equal(pred.values, expected)
    assert len(np.unique(expected)) > 1


class FailsOnCall(torch.nn.Module):
    def __init__(self, fail_at: int) -> None:
        super().__init__()
        self.calls, self.fail_at = 0, fail_at

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if self.calls == self.fail_at:
            raise RuntimeError("out of memory (simulated)")
        return x


def test_an_interrupted_prediction_looks_unfinished_and_resumes(grd_cube, tmp_path):
    out = tmp_path / "pred.zarr"
    # 7 x 6 tiles of 64 (stride 40) per 300 x 260 slice: 3 batches of 16 per slice. Calls 1-3 are
    # the first slice, 4-6 the second; the run dies in the third.
    with pytest.raises(RuntimeError, match="simulated"):
        predict_cube(FailsOnCall(8), grd_cube, str(out), size=64, overlap=12, register=False)
    assert not (out / "zarr.json").exists()  # readers find no cube
    with pytest.raises(DataError):
        open_cube(str(out))
    with pytest.raises(Exception):  # noqa: B017 - zarr's own "no group" error
        xr.open_zarr(out)
    model = FailsOnCall(0)
    predict_cube(model, grd_cube, str(out), size=64, overlap=12, register=False)
    # The resumed run redoes the first slice (it decides the dtype), skips the second, does 3 and 4.
    assert model.calls == 3 * 3
    source = open_cube(grd_cube)
    valid = source["valid"].values
    np.testing.assert_array_equal(
        open_cube(str(out))["prediction"].values[valid], calibrate(source).values[valid]
    )
    assert not (out / "_icecube" / "pending.json").exists()


def test_foreign_or_existing_outputs_are_refused_untouched(grd_cube, tmp_path):
    mine = tmp_path / "my-folder"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    before = {p: p.read_bytes() for p in mine.rglob("*") if p.is_file()}
    with pytest.raises(UsageError, match="my-folder"):
        predict_cube(Identity(), grd_cube, str(mine), size=64, overlap=8, register=False)
    assert {p: p.read_bytes() for p in mine.rglob("*") if p.is_file()} == before
    assert sorted(os.listdir(mine)) == ["notes.txt"]
    out = tmp_path / "pred.zarr"
    predict_cube(Identity(), grd_cube, str(out), size=64, overlap=8, register=False)
    with pytest.raises(UsageError, match="already exists"):
        predict_cube(Identity(), grd_cube, str(out), size=64, overlap=8, register=False)
    predict_cube(
        Thresholds(), grd_cube, str(out), size=64, overlap=8, register=False, overwrite=True
    )
    assert open_cube(str(out))["prediction"].dtype == np.uint8
    pixels_before = sorted(p.name for p in Path(grd_cube).rglob("*"))
    for inside in (grd_cube, f"{grd_cube}/pred.zarr", str(Path(grd_cube).parent)):
        with pytest.raises(UsageError, match="outside the input cube"):
            predict_cube(Identity(), grd_cube, inside, size=64, overlap=8, overwrite=True)
    assert sorted(p.name for p in Path(grd_cube).rglob("*")) == pixels_before
    with pytest.raises(UsageError, match="overlap"):
        predict_cube(Identity(), grd_cube, str(tmp_path / "x.zarr"), size=64, overlap=32)
    with pytest.raises(UsageError, match="does not fit"):
        predict_cube(Identity(), grd_cube, str(tmp_path / "x.zarr"), size=512)
    assert not (tmp_path / "x.zarr").exists()


class WrongShape(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[..., :10, :10]


def test_a_model_of_the_wrong_shape_is_named(grd_cube, tmp_path):
    with pytest.raises(UsageError, match=r"returned \(16, 1, 10, 10\)"):
        predict_cube(
            WrongShape(), grd_cube, str(tmp_path / "p.zarr"), size=64, overlap=8, register=False
        )
    assert not (tmp_path / "p.zarr").exists()


def test_prediction_item_derives_from_the_input_cube(grd_cube, tmp_path, stac_schemas):
    """grd_cube was built with registration: its catalog gets the prediction's item, linked to it."""
    out = tmp_path / "pred.zarr"
    result = predict_cube(Identity(), grd_cube, str(out), size=64, overlap=8)
    catalog_url = str(Path(grd_cube).parent / "cat")
    items = {
        it.id: it
        for it in open_catalog(catalog_url).search(SearchParams(collections=(CUBE_COLLECTION,)))
    }
    assert result.item_id == cube_item_id(str(out)) and result.item_id in items
    item, source = items[result.item_id], items[cube_item_id(grd_cube)]
    links = [link for link in item.links if link.rel == "derived_from"]
    assert len(links) == 1 and links[0].href == source.get_self_href()
    assert item.assets["zarr"].href == str(out)
    assert item.geometry == source.geometry
    assert list(item.properties["cube:variables"]) == ["prediction"]
    assert item.properties["cube:dimensions"] == source.properties["cube:dimensions"]
    report = validate_stac(item.to_dict(), stac_schemas)  # core + datacube schemas, offline
    assert report.valid, report.errors
    shutil.rmtree(out)


def test_prediction_over_s3(grd_cube, moto_s3, tmp_path):
    import s3fs

    fs = s3fs.S3FileSystem(**moto_s3.storage_options, skip_instance_cache=True)
    bucket = moto_s3.make_bucket("icecube-predict").removeprefix("s3://")
    fs.put(f"{grd_cube}/", f"{bucket}/cube.zarr/", recursive=True)
    so = moto_s3.storage_options
    out = f"s3://{bucket}/pred.zarr"
    predict_cube(
        Identity(),
        f"s3://{bucket}/cube.zarr",
        out,
        size=64,
        overlap=8,
        storage_options=so,
        register=False,
    )
    remote = zarr.open_group(out, mode="r", storage_options=dict(so))
    local = tmp_path / "local.zarr"
    predict_cube(Identity(), grd_cube, str(local), size=64, overlap=8, register=False)
    np.testing.assert_array_equal(
        remote["prediction"][...], zarr.open_group(local)["prediction"][...]
    )
