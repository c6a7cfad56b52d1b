"""Map-geometry cubes (SPEC §6b, issue #14): stacks that are not coregistered, warped onto one grid.

The truth is computed here without GDAL: each map pixel's centre is taken to lon/lat with pyproj and
into the product file through the file's own affine geolocation (a COG's transform, or the affine that
a legacy GRD's GCPs define); the file pixel there is what ``nearest`` must hold. Pixels whose centre
falls within a hair of a source pixel edge may take either neighbour (products located by GCPs: GDAL's
default tolerance; affine ones are exact, up to floating point).
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
import rasterio
import rasterio.transform
import xarray as xr
from affine import Affine
from pyproj import Transformer

from icecube_cloud.build import build_cube, plan_cube
from icecube_cloud.errors import ConfigError, UsageError
from icecube_cloud.ingest import ingest
from icecube_cloud.synthetic import make_stack

START = datetime(2021, 4, 20, 10, 0, tzinfo=UTC)
SHAPES = [(180, 150), (160, 170), (200, 140), (170, 160)]
EDGE = {"grd-cog": 1e-9, "legacy-grd": 0.13}
"""Centres closer than this (in source pixels) to a pixel edge may take either neighbour: floating point
(affine products: exact), GDAL's default 0.125 (products located by GCPs)."""


def _stack(root: Path, flavour: str) -> list[Path]:
    make_stack(
        root / "products", n=4, start=START, days=4, flavour=flavour, seed=5,
        jitter_m=40.0, shapes=SHAPES, pixel_spacing_range=1.0, pixel_spacing_azimuth=1.0,
    )  # fmt: skip
    ingest([str(root / "products")], str(root / "cat"))
    return sorted((root / "products").glob("*.tif"))


@pytest.fixture(scope="module")
def cogs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("map-cogs")
    _stack(root, "grd-cog")
    return root


def _file_affine(path: str) -> tuple[Affine, np.ndarray]:
    with rasterio.open(path) as ds:
        data = ds.read(1)
        if ds.crs is not None and not ds.transform.is_identity:
            return ds.transform, data
        gcps, _ = ds.gcps
        return rasterio.transform.from_gcps(gcps), data


def _truth(ds: xr.Dataset, t: int, edge: float) -> tuple[np.ndarray, np.ndarray]:
    """The source pixel under each map pixel's centre, and where that centre is near an edge."""
    crs = ds["spatial_ref"].attrs["crs_wkt"]
    path = _HREFS[str(ds["product_id"].values[t])]
    return _truth_on(crs, ds["x"].values, ds["y"].values, path, edge)


def _truth_on(
    crs: str, x: np.ndarray, y: np.ndarray, path: str, edge: float
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_truth` on the grid of pixel centres ``x``, ``y`` in ``crs``, for the file ``path``."""
    a, data = _file_affine(path)
    xx, yy = np.meshgrid(x, y)
    lon, lat = Transformer.from_crs(crs, "EPSG:4326", always_xy=True).transform(xx, yy)
    inv = ~a
    col = inv.a * lon + inv.b * lat + inv.c
    row = inv.d * lon + inv.e * lat + inv.f
    inside = (col >= 0) & (col < data.shape[1]) & (row >= 0) & (row < data.shape[0])
    truth = np.zeros(xx.shape, data.dtype)
    truth[inside] = data[np.floor(row[inside]).astype(int), np.floor(col[inside]).astype(int)]
    frac = np.minimum.reduce([col % 1, 1 - col % 1, row % 1, 1 - row % 1])
    border = (np.abs(col) < edge) | (np.abs(row) < edge)
    border |= (np.abs(col - data.shape[1]) < edge) | (np.abs(row - data.shape[0]) < edge)
    return truth, (frac < edge) | border


_HREFS: dict[str, str] = {}
"""Product id -> its file (filled by the tests that compare pixels)."""


def _remember(products: Path) -> None:
    from icecube_cloud.products import read_product

    for p in products.glob("*.tif"):
        _HREFS[read_product(p).product_id] = str(p)


@pytest.mark.parametrize("flavour", ["grd-cog", "legacy-grd"])
def test_nearest_holds_the_source_pixel_under_each_map_pixel(tmp_path, dask_scheduler, flavour):
    _stack(tmp_path, flavour)
    _remember(tmp_path / "products")
    out = tmp_path / "map.zarr"
    cfg = {"grid": {"resolution": 1.5}, "chunks": {"azimuth": 64, "range": 64}}
    result = build_cube(
        str(tmp_path / "cat"), cfg, str(out), scheduler=dask_scheduler, register=False
    )
    grid = result.plan.grid
    assert grid is not None and grid.crs.startswith("EPSG:326")
    ds = xr.open_zarr(out)
    assert ds["amplitude"].dims == ("time", "y", "x") and ds.sizes["time"] == 4
    assert ds["amplitude"].dtype == np.uint16
    assert (np.diff(ds["y"].values) < 0).all() and (np.diff(ds["x"].values) > 0).all()
    assert ds["x"].values[0] == grid.transform[2] + 0.75
    for t in range(4):
        got = ds["amplitude"].isel(time=t).values
        truth, near_edge = _truth(ds, t, EDGE[flavour])
        wrong = (got != truth) & ~near_edge
        assert not wrong.any(), f"slice {t}: {int(wrong.sum())} pixels differ from the truth"
        assert (got[(truth == 0) & ~near_edge] == 0).all() and (got > 0).sum() > 0.3 * got.size
        assert (got != truth).mean() < (1e-6 if flavour == "grd-cog" else 0.08)
    # The stack is not coregistered: footprints differ, so do the filled areas.
    filled = [(ds["amplitude"].isel(time=t).values > 0) for t in range(4)]
    assert any((filled[0] != f).any() for f in filled[1:])


def test_rpc_located_legacy_grds_follow_gdals_rpc_warp(tmp_path, dask_scheduler):
    """Legacy GRDs with an RPC and no GCPs: each slice is ``rasterio.warp.reproject`` of its product
    with its RPC onto the cube's own grid (at the RPC's reference height, as the cube warps)."""
    import rasterio.warp
    from rasterio.transform import RPCTransformer

    make_stack(
        tmp_path / "products", n=3, start=START, days=3, flavour="legacy-grd", seed=6, gcps=False,
        jitter_m=40.0, shapes=SHAPES[:3], pixel_spacing_range=1.0, pixel_spacing_azimuth=1.0,
    )  # fmt: skip
    ingest([str(tmp_path / "products")], str(tmp_path / "cat"))
    _remember(tmp_path / "products")
    out = tmp_path / "map.zarr"
    cfg = {"grid": {"resolution": 1.5}, "chunks": {"azimuth": 64, "range": 64}}
    grid = build_cube(
        str(tmp_path / "cat"), cfg, str(out), scheduler=dask_scheduler, register=False
    ).plan.grid
    assert grid is not None
    ds = xr.open_zarr(out)
    xx, yy = np.meshgrid(ds["x"].values, ds["y"].values)
    lon, lat = Transformer.from_crs(grid.crs_wkt, "EPSG:4326", always_xy=True).transform(xx, yy)
    for t in range(3):
        with rasterio.open(_HREFS[str(ds["product_id"].values[t])]) as src:
            assert src.gcps[0] == [] and src.rpcs is not None
            data, rpcs = src.read(1), src.rpcs
        truth = np.zeros(grid.shape, np.uint16)
        rasterio.warp.reproject(
            data, truth, rpcs=rpcs, src_crs="EPSG:4326", dst_transform=Affine(*grid.transform),
            dst_crs=grid.crs_wkt, dst_nodata=0, resampling=rasterio.warp.Resampling.nearest,
            RPC_HEIGHT=rpcs.height_off,
        )  # fmt: skip
        with RPCTransformer(rpcs, RPC_HEIGHT=rpcs.height_off) as tr:
            row, col = (
                np.asarray(v).reshape(xx.shape) for v in tr.rowcol(lon, lat, op=np.positive)
            )
        edge = EDGE["legacy-grd"]  # both warps interpolate GDAL's mapping to 0.125 px
        near_edge = np.minimum.reduce([col % 1, 1 - col % 1, row % 1, 1 - row % 1]) < edge
        got = ds["amplitude"].isel(time=t).values
        wrong = (got != truth) & ~near_edge
        assert not wrong.any(), f"slice {t}: {int(wrong.sum())} pixels differ from GDAL's RPC warp"
        assert (got > 0).sum() > 0.3 * got.size and (got != truth).mean() < 0.08


def test_a_product_without_geolocation_is_named(tmp_path, dask_scheduler):
    """Neither GCPs nor RPC (nor a transform): the map build fails naming the file, before a cube
    exists; the same product still builds in SAR geometry."""
    from icecube_cloud.errors import ProductError

    make_stack(
        tmp_path / "products", n=2, start=START, days=2, flavour="legacy-grd", seed=7, gcps=False,
        rpc=False, shape=(64, 48),
    )  # fmt: skip
    ingest([str(tmp_path / "products")], str(tmp_path / "cat"))
    out = tmp_path / "map.zarr"
    with pytest.raises(ProductError, match=r"ICEYE_GRD_SYNTH_\w+\.tif.*no geolocation"):
        build_cube(
            str(tmp_path / "cat"), {"grid": {}}, str(out), scheduler=dask_scheduler, register=False
        )
    assert not (out / "zarr.json").exists()
    sar = tmp_path / "sar.zarr"
    build_cube(str(tmp_path / "cat"), {}, str(sar), scheduler=dask_scheduler, register=False)
    assert xr.open_zarr(sar)["amplitude"].shape == (2, 64, 48)


@pytest.mark.parametrize(("crs", "resolution"), [("utm", 0.7), ("EPSG:3857", 2.0)])
def test_nearest_reads_are_exact_whatever_the_window(cogs, monkeypatch, crs, resolution):
    """Every grid window read with ``nearest`` holds the file pixel under each map pixel's centre,
    through the lattice (finer and coarser grids, windows off the lattice, many gather tiles) and
    through the exact per-pixel path alike: the same bytes however the grid is cut."""
    from icecube_cloud.model import Window
    from icecube_cloud.read import nearest
    from icecube_cloud.read.warp import WarpedReader

    plan = plan_cube(str(cogs / "cat"), {"grid": {"crs": crs, "resolution": resolution}})
    grid = plan.grid
    assert grid is not None
    ny, nx = grid.shape
    windows = [Window(0, ny, 0, nx), Window(3, ny - 40, 7, nx - 5), Window(17, ny, 0, 33)]
    monkeypatch.setattr(nearest, "TILE", (16, 64))
    for s in plan.slices:
        assert s.source is not None
        truth, near_edge = _truth_on(
            grid.crs_wkt, np.array(grid.x()), np.array(grid.y()), s.source.href, EDGE["grd-cog"]
        )
        assert (truth > 0).sum() > 0.2 * truth.size
        reader = WarpedReader.open_source(s.source, None)
        try:
            for exact_path in (False, True):
                monkeypatch.setattr(nearest, "MAX_CELL", 0.0 if exact_path else 1024)
                for w in windows:
                    wrong = (reader.read(w) != truth[w.slices]) & ~near_edge[w.slices]
                    assert not wrong.any(), f"{w}: {int(wrong.sum())} pixels differ from the truth"
        finally:
            reader.close()


def test_plain_rioxarray_and_odc_geo_read_the_georeferencing(cogs, tmp_path, dask_scheduler):
    out = tmp_path / "map.zarr"
    cfg = {"grid": {"crs": "EPSG:32629", "resolution": 2.0}}
    result = build_cube(str(cogs / "cat"), cfg, str(out), scheduler=dask_scheduler, register=False)
    grid = result.plan.grid
    assert grid is not None
    code = (
        "import sys, json, xarray as xr, rioxarray, odc.geo.xr\n"
        f"ds = xr.open_zarr({str(out)!r})\n"
        "a = ds['amplitude']\n"
        "gb = a.odc.geobox\n"
        "print(json.dumps({'epsg': a.rio.crs.to_epsg(), 'transform': list(a.rio.transform())[:6],\n"
        "  'nodata': int(a.rio.nodata), 'geobox_shape': list(gb.shape), 'geobox_epsg': gb.crs.epsg,\n"
        "  'icecube': 'icecube_cloud' in sys.modules}))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    seen = json.loads(r.stdout)
    assert seen["epsg"] == 32629 and seen["geobox_epsg"] == 32629
    assert seen["transform"] == pytest.approx(list(grid.transform))
    assert seen["geobox_shape"] == list(grid.shape) and seen["nodata"] == 0
    assert seen["icecube"] is False


def test_other_resamplings_follow_gdal(cogs, tmp_path, dask_scheduler):
    """Bilinear: the cube equals GDAL's warp of each whole product onto the whole grid, within 1 DN."""
    from icecube_cloud.model import Window
    from icecube_cloud.read.warp import WarpedReader

    out = tmp_path / "bilinear.zarr"
    cfg = {
        "grid": {"resolution": 1.5, "resampling": "bilinear"},
        "chunks": {"azimuth": 50, "range": 50},
    }
    result = build_cube(str(cogs / "cat"), cfg, str(out), scheduler=dask_scheduler, register=False)
    plan = result.plan
    ds = xr.open_zarr(out)
    for t, s in enumerate(plan.slices):
        assert s.source is not None and plan.grid is not None
        whole = WarpedReader.open_source(s.source, None).read(
            Window(0, plan.shape[0], 0, plan.shape[1])
        )
        got = ds["amplitude"].isel(time=t).values
        assert np.abs(got.astype(int) - whole.astype(int)).max() <= 1
    assert isinstance(plan, type(plan_cube(str(cogs / "cat"), cfg)))


def test_sharded_map_cube_equals_unsharded(cogs, tmp_path, dask_scheduler):
    """Config shards on a map grid: azimuth/range are the y/x edges, as in chunks."""
    cat = str(cogs / "cat")
    chunks = {"azimuth": 16, "range": 16}
    grid = {"resolution": 2.0}
    sharded = {"grid": grid, "chunks": chunks, "shards": {"azimuth": 64, "range": 32}}
    build_cube(cat, sharded, str(tmp_path / "s.zarr"), scheduler=dask_scheduler, register=False)
    plain = {"grid": grid, "chunks": chunks}
    build_cube(cat, plain, str(tmp_path / "p.zarr"), scheduler=dask_scheduler, register=False)
    ds = xr.open_zarr(tmp_path / "s.zarr")
    assert ds["amplitude"].dims == ("time", "y", "x")
    assert ds["amplitude"].encoding["shards"] == (1, 64, 32)
    assert ds["amplitude"].encoding["chunks"] == (1, 16, 16)
    assert ds["amplitude"].values.any()
    xr.testing.assert_identical(ds["amplitude"], xr.open_zarr(tmp_path / "p.zarr")["amplitude"])


def test_map_cube_refusals(cogs, tmp_path):
    with pytest.raises(ConfigError) as err:
        plan_cube(str(cogs / "cat"), {"grid": {}, "product_type": "SLC"})
    assert err.value.key == "grid"
    with pytest.raises(UsageError, match="--format zarr"):
        build_cube(str(cogs / "cat"), {"grid": {}}, str(tmp_path / "c.json"), format="kerchunk")
    assert not (tmp_path / "c.json").exists()
    with pytest.raises(ConfigError, match="grid"):
        plan_cube(str(cogs / "cat"), {"coregistered": False})


def test_map_cube_item_carries_its_grid(cogs, tmp_path, dask_scheduler, stac_schemas):
    """The registered cube item: spatial x/y dimensions and the projection extension, schema-valid."""
    import shutil

    from icecube_cloud.stac.cube_item import CUBE_COLLECTION
    from icecube_cloud.stac.static import StaticCatalog
    from icecube_cloud.stac.validate import validate_stac

    cat = tmp_path / "cat"
    shutil.copytree(cogs / "cat", cat)
    cfg = {"grid": {"resolution": 2.0, "bbox": [-6.2555, 37.4455, -6.2525, 37.4465]}}
    result = build_cube(str(cat), cfg, str(tmp_path / "map.zarr"), scheduler=dask_scheduler)
    grid = result.plan.grid
    assert grid is not None
    item = next(iter(StaticCatalog.open(str(cat)).items([CUBE_COLLECTION])))
    assert item.id == result.item_id
    report = validate_stac(item.to_dict(), stac_schemas)
    assert report.valid, report.errors
    props = item.properties
    assert props["proj:code"] == grid.crs and props["proj:shape"] == list(grid.shape)
    assert props["proj:transform"] == list(grid.transform)
    dims = props["cube:dimensions"]
    assert dims["x"]["type"] == "spatial" and dims["x"]["step"] == 2.0
    assert dims["y"]["extent"] == [grid.y()[-1], grid.y()[0]]
    assert props["cube:variables"]["amplitude"]["dimensions"] == ["time", "y", "x"]
    # The asked bbox (lon/lat) is covered, with pixel edges on multiples of 2 m.
    assert grid.transform[2] % 2 == 0 and grid.transform[5] % 2 == 0


def test_cli_map_cube_build_info_quicklook(cogs, tmp_path, dask_scheduler):
    exe = str(Path(sys.executable).parent / "icecube-cloud")
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({"grid": {"resolution": 2.0}, "coregistered": False}))
    out = tmp_path / "map.zarr"
    r = subprocess.run(
        [exe, "build", "--stac-url", str(cogs / "cat"), "--config", str(cfg), "--out", str(out),
         "--scheduler", dask_scheduler, "--no-register"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    r = subprocess.run([exe, "info", str(out)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and "y=" in r.stdout and "x=" in r.stdout, r.stderr
    png = tmp_path / "q.png"
    r = subprocess.run([exe, "quicklook", str(out), "-o", str(png)], capture_output=True, text=True)
    assert r.returncode == 0 and png.stat().st_size > 1000, r.stderr
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"grid": {"resampling": "bilinar"}}))
    r = subprocess.run(
        [exe, "search", "--stac-url", str(cogs / "cat"), "--config", str(bad)],
        capture_output=True, text=True,
    )  # fmt: skip
    assert r.returncode == 2 and "grid.resampling" in r.stderr and "bilinear" in r.stderr


def test_map_cube_over_s3_equals_the_local_one(cogs, tmp_path, moto_s3, dask_scheduler):
    """Products, catalog and cube in a moto bucket: the same pixels as the local build of that grid."""
    import s3fs

    fs = s3fs.S3FileSystem(**moto_s3.storage_options, skip_instance_cache=True)
    bucket = moto_s3.make_bucket("icecube-map").removeprefix("s3://")
    fs.put(f"{cogs / 'products'}/", f"{bucket}/products/", recursive=True)
    ingest(
        [f"s3://{bucket}/products/"], f"s3://{bucket}/cat", storage_options=moto_s3.storage_options
    )
    cfg = {
        "grid": {
            "crs": "EPSG:32629",
            "resolution": 2.0,
            "bbox": [-6.2560, 37.4452, -6.2520, 37.4468],
        }
    }
    local = tmp_path / "local.zarr"
    build_cube(str(cogs / "cat"), cfg, str(local), scheduler=dask_scheduler, register=False)
    out = f"s3://{bucket}/map.zarr"
    build_cube(
        f"s3://{bucket}/cat", cfg, out, storage_options=moto_s3.storage_options,
        scheduler=dask_scheduler, register=False,
    )  # fmt: skip
    remote = xr.open_zarr(out, storage_options=dict(moto_s3.storage_options))
    here = xr.open_zarr(local)
    assert remote["amplitude"].dims == ("time", "y", "x")
    np.testing.assert_array_equal(remote["amplitude"].values, here["amplitude"].values)
    np.testing.assert_array_equal(remote["x"].values, here["x"].values)
    assert (remote["amplitude"].values > 0).any()


def test_update_of_a_map_cube(tmp_path, dask_scheduler):
    """With a fixed grid.bbox a new acquisition joins the map cube as a rebuild would place it; a grid
    that follows the footprints and would move is refused, naming the fix."""
    from datetime import timedelta

    from icecube_cloud.errors import DataError
    from icecube_cloud.update import update_cube

    _stack(tmp_path, "grd-cog")
    cat = str(tmp_path / "cat")
    fixed = {"grid": {"resolution": 2.0, "bbox": [-6.2560, 37.4452, -6.2520, 37.4468]}}
    loose = {"grid": {"resolution": 2.0}}
    build_cube(cat, fixed, str(tmp_path / "fixed.zarr"), scheduler=dask_scheduler, register=False)
    build_cube(cat, loose, str(tmp_path / "loose.zarr"), scheduler=dask_scheduler, register=False)
    make_stack(
        tmp_path / "later", n=1, start=START + timedelta(days=10), flavour="grd-cog", seed=9,
        jitter_m=200.0, shapes=[(190, 150)], pixel_spacing_range=1.0, pixel_spacing_azimuth=1.0,
    )  # fmt: skip
    ingest([str(tmp_path / "later")], cat)
    result = update_cube(str(tmp_path / "fixed.zarr"), scheduler=dask_scheduler)
    assert result.rewritten == (4,) and len(result.added) == 1
    rebuilt = tmp_path / "rebuilt.zarr"
    build_cube(cat, fixed, str(rebuilt), scheduler=dask_scheduler, register=False)
    np.testing.assert_array_equal(
        xr.open_zarr(tmp_path / "fixed.zarr")["amplitude"].values,
        xr.open_zarr(rebuilt)["amplitude"].values,
    )
    with pytest.raises(DataError, match=r"grid\.bbox"):
        update_cube(str(tmp_path / "loose.zarr"), scheduler=dask_scheduler)


def _source_pixel(ds: xr.Dataset, t: int) -> tuple[np.ndarray, np.ndarray]:
    """Continuous physical (azimuth, range) of the product point under each map pixel's centre."""
    path = _HREFS[str(ds["product_id"].values[t])]
    a, data = _file_affine(path)
    xx, yy = np.meshgrid(ds["x"].values, ds["y"].values)
    crs = ds["spatial_ref"].attrs["crs_wkt"]
    lon, lat = Transformer.from_crs(crs, "EPSG:4326", always_xy=True).transform(xx, yy)
    inv = ~a
    col, row = inv.a * lon + inv.b * lat + inv.c, inv.d * lon + inv.e * lat + inv.f
    from icecube_cloud.products import read_product

    if read_product(path).orientation == "shadows-down":  # COG: range down the rows
        return data.shape[1] - col, row
    return row, col


@pytest.mark.parametrize("flavour", ["grd-cog", "legacy-grd"])
def test_labels_on_the_map_grid(tmp_path, dask_scheduler, flavour):
    """GeoJSON labels in lon/lat are drawn straight on the grid: on every pixel of every slice,
    ``rasterio.features.rasterize`` of the polygon transformed to the grid's CRS (pixel centres), and
    ``label_geometry`` is that polygon. Pixel labels (icecube JSON) go through each product's own
    geolocation: a map pixel is labelled when the product pixel under its centre is."""
    import rasterio.features
    import shapely
    from shapely.geometry import box, mapping
    from shapely.ops import transform as shp_transform

    from icecube_cloud.labels import ingest_labels

    _stack(tmp_path, flavour)
    _remember(tmp_path / "products")
    cat = str(tmp_path / "cat")
    field = box(-6.25418, 37.44588, -6.25382, 37.44612)  # ~32 x 27 m at the scenes' centre
    fc = {"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {"class": "field"}, "geometry": mapping(field)}]}  # fmt: skip
    (tmp_path / "labels.geojson").write_text(json.dumps(fc))
    assert len(ingest_labels(str(tmp_path / "labels.geojson"), cat).products) == 4
    bbox = {"xmin": 10, "ymin": 12, "xmax": 40, "ymax": 30}  # pixels: range x, azimuth y
    boats = [{"product_file": Path(h).name, "labels": {"objects": [{"class": "boat", "bbox": bbox}]}}
             for h in _HREFS.values() if Path(h).parent == tmp_path / "products"]  # fmt: skip
    (tmp_path / "boats.json").write_text(json.dumps(boats))
    assert len(ingest_labels(str(tmp_path / "boats.json"), cat).products) == 4
    out = tmp_path / "map.zarr"
    cfg = {"grid": {"resolution": 1.5}, "labels": True}
    result = build_cube(cat, cfg, str(out), scheduler=dask_scheduler, register=False)
    grid = result.plan.grid
    assert grid is not None
    ds = xr.open_zarr(out)
    assert ds["labels"].dims == ("time", "y", "x")
    to_grid = Transformer.from_crs("EPSG:4326", grid.crs, always_xy=True)
    expected_poly = shp_transform(to_grid.transform, field)
    expected = rasterio.features.rasterize(
        [(expected_poly, 1)], out_shape=grid.shape, transform=Affine(*grid.transform),
        all_touched=False,
    )  # fmt: skip
    attrs = ds["labels"].attrs
    code = dict(zip(attrs["flag_meanings"].split(), attrs["flag_values"], strict=True))
    edge = EDGE[flavour]
    for t in range(4):
        got = ds["labels"].isel(time=t).values
        np.testing.assert_array_equal(got == code["field"], expected == 1)  # every pixel
        az, rg = _source_pixel(ds, t)
        in_box = (az >= 12) & (az < 31) & (rg >= 10) & (rg < 41)
        on_outline = (
            np.minimum.reduce([np.abs(az - 12), np.abs(az - 31), np.abs(rg - 10), np.abs(rg - 41)])
            < edge
        )
        wrong = ((got == code["boat"]) != in_box) & ~on_outline
        assert in_box.sum() > 200 and not wrong.any(), f"slice {t}: {int(wrong.sum())} pixels"
        vectors = dict(
            (str(c), shapely.from_wkt(str(w)))
            for w, c in zip(
                ds["label_geometry"].isel(time=t).values,
                ds["label_class"].isel(time=t).values,
                strict=True,
            )
            if str(w)
        )
        assert set(vectors) == {"field", "boat"}
        assert vectors["field"].equals_exact(expected_poly, 1e-6)  # metres, in the grid CRS
        assert vectors["boat"].area == pytest.approx(31 * 19, rel=0.01)  # 1 m pixels
