"""Quicklook PNG of a (labelled) cube: amplitude in dB, gaps, label outlines."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from click.testing import CliRunner
from PIL import Image

from icecube_cloud.build import build_cube
from icecube_cloud.cli import cli
from icecube_cloud.cube import open_cube
from icecube_cloud.ingest import ingest
from icecube_cloud.quicklook import pick_times, quicklook, to_db
from icecube_cloud.synthetic import make_stack


def test_db_and_time_picking() -> None:
    np.testing.assert_allclose(to_db(np.array([10.0, 100.0])), [20.0, 40.0])
    np.testing.assert_allclose(to_db(np.array([10.0]), 0.01), [0.0])
    assert np.isnan(to_db(np.array([0.0]))[0])
    np.testing.assert_allclose(to_db(np.array([3 + 4j])), [20 * np.log10(5)])
    assert pick_times(3, 12) == [0, 1, 2]
    assert pick_times(10, 4) == [0, 3, 6, 9]


@pytest.fixture(scope="module")
def labelled_cube(tmp_path_factory: pytest.TempPathFactory, dask_scheduler: str) -> str:
    tmp = tmp_path_factory.mktemp("ql")
    make_stack(tmp / "products", n=4, shape=(96, 128), start=datetime(2021, 4, 20, tzinfo=UTC),
               days=16, flavour="legacy-grd", seed=3)  # fmt: skip
    ingest([str(tmp / "products")], str(tmp / "cat"))
    out = str(tmp / "cube.zarr")
    build_cube(str(tmp / "cat"), {"temporal_resolution": 3}, out, scheduler=dask_scheduler)
    # Simulate the labels integration: a labels raster and vector labels.
    ds = xr.open_zarr(out)
    labels = np.zeros((ds.sizes["time"], 96, 128), np.uint8)
    labels[:, 20:50, 30:70] = 1
    labels[:, 60:80, 90:120] = 2
    wkt = np.full(
        (ds.sizes["time"], 1), "POLYGON ((10 10, 40 10, 40 30, 10 30, 10 10))", dtype=object
    )
    extra = xr.Dataset(
        {
            "labels": (("time", "azimuth", "range"), labels, {"flag_values": [1, 2],
                                                              "flag_meanings": "a b"}),
            "label_geometry": (("time", "label"), wkt),
        }
    )  # fmt: skip
    extra.attrs = dict(ds.attrs)  # mode="a" rewrites the root attributes (incl. the build status)
    extra.to_zarr(out, mode="a", consolidated=True, zarr_format=3)
    return out


def test_quicklook_png_of_labelled_cube(labelled_cube: str, tmp_path: Path) -> None:
    ds = open_cube(labelled_cube)
    assert "labels" in ds and not bool(ds["valid"].all())  # has gaps
    png = tmp_path / "ql.png"
    n = quicklook(ds, png, max_times=8)
    assert n == min(8, ds.sizes["time"])
    with Image.open(png) as img:
        assert img.format == "PNG"
        assert 300 <= img.width <= 4000 and 200 <= img.height <= 4000
        pixels = np.asarray(img.convert("RGB"))
    assert pixels.std() > 10  # non-uniform
    # red label outlines are drawn
    red = (pixels[..., 0] > 200) & (pixels[..., 1] < 100) & (pixels[..., 2] < 100)
    assert red.sum() > 20
    shutil.copy(png, "/tmp/quicklook-check.png")


def test_quicklook_decimates_and_cli(labelled_cube: str, tmp_path: Path) -> None:
    ds = open_cube(labelled_cube)
    assert quicklook(ds, tmp_path / "small.png", max_times=2, max_pixels=32) == 2
    result = CliRunner().invoke(cli, ["quicklook", labelled_cube, "-o", str(tmp_path / "c.png")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "c.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    missing = CliRunner().invoke(cli, ["quicklook", str(tmp_path / "nope.zarr"), "-o", "x.png"])
    assert missing.exit_code == 1
