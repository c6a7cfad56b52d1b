"""Quicklook PNG of a (labelled) cube: amplitude in dB, gaps, label outlines."""

from __future__ import annotations

import ast
import shutil
import tomllib
from datetime import UTC, datetime
from importlib.metadata import packages_distributions
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from click.testing import CliRunner
from matplotlib.collections import LineCollection
from matplotlib.colors import to_hex
from PIL import Image

from icecube_cloud.build import build_cube
from icecube_cloud.cli import cli
from icecube_cloud.cube import open_cube
from icecube_cloud.ingest import ingest
from icecube_cloud.quicklook import (
    class_colours,
    mask_edges,
    pick_times,
    quicklook,
    render,
    to_db,
)
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
    labels[1:, 20:50, 30:70] = 1  # the first time has class 2 only
    labels[:, 60:80, 90:120] = 2
    wkt = np.full(
        (ds.sizes["time"], 1), "POLYGON ((10 10, 40 10, 40 30, 10 30, 10 10))", dtype=object
    )
    extra = xr.Dataset(
        {
            "labels": (("time", "azimuth", "range"), labels, {"flag_values": [1, 2],
                                                              "flag_meanings": "water ship_wake"}),
            "label_geometry": (("time", "label"), wkt),
            "label_class": (("time", "label"), np.full((ds.sizes["time"], 1), "ship wake", object)),
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


def test_mask_outlines_run_along_pixel_edges() -> None:
    mask = np.zeros((6, 8), bool)
    mask[2:5, 3:7] = True  # rows 2..4, columns 3..6
    mask[3, 4] = False  # a one-pixel hole
    segments = sorted(tuple(map(tuple, s)) for s in mask_edges(mask))
    assert segments == sorted(
        [
            ((3, 2), (7, 2)), ((3, 5), (7, 5)), ((3, 2), (3, 5)), ((7, 2), (7, 5)),  # outer box
            ((4, 3), (5, 3)), ((4, 4), (5, 4)), ((4, 3), (4, 4)), ((5, 3), (5, 4)),  # the hole
        ]
    )  # fmt: skip
    # Decimated panels: panel pixel (i, j) covers [j*step, (j+1)*step) x [i*step, (i+1)*step).
    assert sorted(tuple(map(tuple, s)) for s in mask_edges(mask[:1, :1] | True, step=4)) == sorted(
        [((0, 0), (4, 0)), ((0, 4), (4, 4)), ((0, 0), (0, 4)), ((4, 0), (4, 4))]
    )
    assert mask_edges(np.zeros((3, 3), bool)) == []
    colours = class_colours(list(range(1, 40)))
    assert len(set(colours.values())) == 39


def test_classes_in_distinct_colours_with_a_legend(labelled_cube: str, tmp_path: Path) -> None:
    ds = open_cube(labelled_cube)
    fig, n = render(ds, max_times=8)
    (legend,) = fig.legends
    assert [t.get_text() for t in legend.get_texts()] == ["water", "ship_wake"]  # code order
    legend_colours = {
        t.get_text(): to_hex(h.get_color())
        for t, h in zip(legend.get_texts(), legend.legend_handles, strict=True)
    }
    assert legend_colours["water"] != legend_colours["ship_wake"]
    # Every panel outlines each class present in its colour, along pixel edges of the cube's mask.
    labels = ds["labels"].values
    panels = [
        ax for ax in fig.axes if ax.get_title() and "gap" not in [t.get_text() for t in ax.texts]
    ]
    valid_times = [t for t in range(ds.sizes["time"]) if bool(ds["valid"].values[t])]
    assert len(panels) == len(valid_times) == n - int((~ds["valid"].values).sum())
    for ax, t in zip(panels, valid_times, strict=True):
        outlines = {
            to_hex(c.get_colors()[0]): c for c in ax.collections if isinstance(c, LineCollection)
        }
        expected = {"ship_wake"} | ({"water"} if (labels[t] == 1).any() else set())
        assert set(outlines) == {legend_colours[name] for name in expected}
        code = {"water": 1, "ship_wake": 2}
        for name in expected:
            got = sorted(
                tuple(map(tuple, s)) for s in outlines[legend_colours[name]].get_segments()
            )
            want = sorted(tuple(map(tuple, s)) for s in mask_edges(labels[t] == code[name]))
            assert got == want
        # The vector label of class "ship wake" is dashed in that class's colour.
        (line,) = ax.get_lines()
        assert to_hex(line.get_color()) == legend_colours["ship_wake"]
    # The PNG shows both classes' colours.
    png = tmp_path / "classes.png"
    quicklook(ds, png, max_times=8)
    with Image.open(png) as img:
        pixels = np.asarray(img.convert("RGB")).astype(int)
    for name in ("water", "ship_wake"):
        rgb = np.array([int(legend_colours[name][k : k + 2], 16) for k in (1, 3, 5)])
        assert (np.abs(pixels - rgb).sum(axis=-1) < 30).sum() > 100, name


def _third_party_imports_of(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names - {"icecube_cloud", "__future__"} - set(__import__("sys").stdlib_module_names)


def _third_party_imports(package: Path) -> set[str]:
    names: set[str] = set()
    for path in package.rglob("*.py"):
        # Services for tests and demos, and offline schema validation for tests: the test extra.
        if "testing" in path.relative_to(package).parts or path.name == "validate.py":
            continue
        names |= _third_party_imports_of(path)
    return names


def test_default_install_has_every_import_of_the_package() -> None:
    """`pip install icecube-cloud` (no extras) brings what every command imports, quicklook's too."""
    root = Path(__file__).resolve().parents[1]
    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    pins = {d.split("==")[0].split("[")[0].lower(): d for d in project["dependencies"]}
    assert pins["matplotlib"] == "matplotlib==3.10.8"
    assert not any(d.startswith("matplotlib") for d in project["optional-dependencies"]["test"])
    distributions = packages_distributions()
    missing = {
        name
        for name in _third_party_imports(root / "icecube_cloud")
        if not {d.lower() for d in distributions.get(name, [name])} & set(pins)
    }
    # Dependencies of our pinned dependencies (rasterio's affine, s3fs's botocore, matplotlib's PIL),
    # and torch: the `ml` extra, imported only by the modules that need it (the rest of
    # icecube_cloud.ml, calibrate and split_regions, works on the default install).
    assert missing <= {"affine", "botocore", "PIL", "torch"}, missing
    assert project["optional-dependencies"]["ml"] == ["torch==2.13.0"]
    importers = {
        str(path.relative_to(root))
        for path in (root / "icecube_cloud").rglob("*.py")
        if "torch" in _third_party_imports_of(path)
    }
    # ml/__init__ imports it on first use of PatchDataset/predict_cube, with a clear error without it.
    assert importers == {
        "icecube_cloud/ml/__init__.py",
        "icecube_cloud/ml/dataset.py",
        "icecube_cloud/ml/predict.py",
    }, importers
