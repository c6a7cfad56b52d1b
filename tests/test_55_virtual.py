"""Virtual (kerchunk-referenced) cubes: same layout and values as materialised cubes, no pixel copied.

Real dask worker processes, real files and a real S3 API (moto); values compared bit-exactly with the
materialised Zarr cube, and (legacy SLC) with ``s_i + 1j*s_q`` read by h5py.
"""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import fsspec
import h5py
import numpy as np
import pytest
import rasterio
import rasterio.shutil
import s3fs
import xarray as xr
import zarr
import zarr.storage
from click.testing import CliRunner
from helpers import PER_TIME_COORDS, assert_gap_fill_values

from icecube_cloud.build import build_cube
from icecube_cloud.cli import cli
from icecube_cloud.cube import cube_info, open_cube
from icecube_cloud.errors import DataError, ProductError, UsageError
from icecube_cloud.ingest import ingest
from icecube_cloud.model import ProductFormat, SourceRef
from icecube_cloud.read.byte_ranges import source_references
from icecube_cloud.synthetic import expected_pixels, make_stack

REPO = Path(__file__).resolve().parents[1]
START = datetime(2021, 4, 20, 10, 0, tzinfo=UTC)
GAPPY = {"temporal_resolution": 1}
"""Six images over 12 days in 1-day bins: the time axis has gap slices."""
COORDS = ("time", "azimuth", "range", *PER_TIME_COORDS)


def _catalog(tmp_path: Path, flavour: str, shape: tuple[int, int], n: int = 6) -> str:
    products = tmp_path / "products"
    make_stack(products, n=n, shape=shape, start=START, days=12, flavour=flavour, seed=5)
    ingest([str(products)], str(tmp_path / "cat"))
    return str(tmp_path / "cat")


def _assert_same_cube(virtual: xr.Dataset, zarr_cube: xr.Dataset, variable: str) -> None:
    assert virtual[variable].dims == ("time", "azimuth", "range")
    assert virtual.sizes == zarr_cube.sizes
    assert virtual[variable].dtype == zarr_cube[variable].dtype
    for name in COORDS:
        np.testing.assert_array_equal(virtual[name].values, zarr_cube[name].values, err_msg=name)
    np.testing.assert_array_equal(virtual[variable].values, zarr_cube[variable].values)
    for key in ("product_type", "icecube_cloud_config", "icecube_cloud_search", "source_items"):
        assert virtual.attrs[key] == zarr_cube.attrs[key], key


def _iq(path: str | Path) -> np.ndarray:
    with h5py.File(path, "r") as h5:
        return (h5["s_i"][()].astype(np.float32) + 1j * h5["s_q"][()].astype(np.float32)).astype(
            np.complex64
        )


@pytest.mark.parametrize(("flavour", "shape"), [("legacy-grd", (37, 53)), ("grd-cog", (96, 64))])
def test_generated_grd_virtual_equals_zarr(tmp_path, dask_scheduler, flavour, shape):
    cat = _catalog(tmp_path, flavour, shape)
    build_cube(cat, GAPPY, str(tmp_path / "cube.zarr"), scheduler=dask_scheduler, register=False)
    result = build_cube(
        cat, GAPPY, str(tmp_path / "cube.json"), scheduler=dask_scheduler, format="kerchunk"
    )
    assert result.plan.n_gaps > 0
    assert not (tmp_path / "cube.zarr").joinpath("amplitude", "c").is_file()  # nothing copied

    virtual = open_cube(str(tmp_path / "cube.json"))
    _assert_same_cube(virtual, open_cube(str(tmp_path / "cube.zarr")), "amplitude")
    gaps = ~virtual["valid"].values
    assert (virtual["amplitude"].values[gaps] == 0).all()
    assert np.isnat(virtual["acquisition_start"].values[gaps]).all()
    # Plain zarr (v2, kerchunk's format) over the references sees declared fill values in gaps.
    fs = fsspec.filesystem("reference", fo=str(tmp_path / "cube.json"), asynchronous=True)
    store = zarr.storage.FsspecStore(fs, read_only=True, path="")
    assert_gap_fill_values(zarr.open_group(store, mode="r", zarr_format=2), zarr_format=2)
    orientation = virtual.attrs["icecube_cloud_virtual"]["orientation"]
    assert orientation == ("shadows-down" if flavour == "grd-cog" else "native")
    # A byte range per chunk, no pixels: smaller than the products (mostly their metadata here).
    products = sum(p.stat().st_size for p in (tmp_path / "products").glob("*.tif"))
    assert (tmp_path / "cube.json").stat().st_size < products / 2
    assert result.chunks_written == 6
    text = cube_info(virtual, str(tmp_path / "cube.json"))
    assert "virtual cube: kerchunk references to 6 products" in text


def test_generated_legacy_slc_virtual_equals_iq(tmp_path, dask_scheduler):
    cat = _catalog(tmp_path, "legacy-slc", (37, 53))
    build_cube(cat, GAPPY, str(tmp_path / "cube.json"), scheduler=dask_scheduler, format="kerchunk")
    ds = open_cube(str(tmp_path / "cube.json"))
    assert ds["slc"].dtype == np.complex64
    assert ds["slc"].dims == ("time", "azimuth", "range")
    for t, pid in enumerate(ds["product_id"].values):
        if ds["valid"].values[t]:
            want = _iq(tmp_path / "products" / f"{pid}.h5")
            np.testing.assert_array_equal(ds["slc"].values[t], want)
        else:
            assert (ds["slc"].values[t] == 0).all()
    # ... and the materialised SLC cube of the same plan holds the very same values and coords.
    build_cube(cat, GAPPY, str(tmp_path / "cube.zarr"), scheduler=dask_scheduler, register=False)
    _assert_same_cube(ds, open_cube(str(tmp_path / "cube.zarr")), "slc")


def test_iceye_sample_grd_stack(tmp_path, dask_scheduler, samples):
    ingest([str(samples / "grd_stack")], str(tmp_path / "cat"))
    cat = str(tmp_path / "cat")
    build_cube(cat, {}, str(tmp_path / "cube.zarr"), scheduler=dask_scheduler, register=False)
    build_cube(
        cat, {}, str(tmp_path / "cube.json"), scheduler=dask_scheduler, format="kerchunk",
        register=False,
    )  # fmt: skip
    virtual = open_cube(str(tmp_path / "cube.json"))
    _assert_same_cube(virtual, open_cube(str(tmp_path / "cube.zarr")), "amplitude")
    for t, pid in enumerate(virtual["product_id"].values):
        with rasterio.open(samples / "grd_stack" / f"{pid}.tif") as src:
            np.testing.assert_array_equal(virtual["amplitude"].values[t], src.read(1))


def test_iceye_sample_slc_stack(tmp_path, dask_scheduler, samples):
    ingest([str(samples / "slc_stack")], str(tmp_path / "cat"))
    out = str(tmp_path / "cube.json")
    build_cube(
        str(tmp_path / "cat"), {}, out, scheduler=dask_scheduler, format="kerchunk", register=False
    )
    ds = open_cube(out)
    assert ds.sizes["time"] == 3
    for t, pid in enumerate(ds["product_id"].values):
        np.testing.assert_array_equal(ds["slc"].values[t], _iq(samples / "slc_stack" / f"{pid}.h5"))
    zarr_out = str(tmp_path / "cube.zarr")
    build_cube(str(tmp_path / "cat"), {}, zarr_out, scheduler=dask_scheduler, register=False)
    _assert_same_cube(ds, open_cube(zarr_out), "slc")


def test_contiguous_hdf5_is_cut_into_row_blocks(tmp_path):
    (spec,) = make_stack(tmp_path, n=1, shape=(40, 30), flavour="legacy-slc")
    path = tmp_path / f"{spec.product_id}.h5"
    src = SourceRef(spec.product_id, str(path), ProductFormat.LEGACY_SLC, "native", (40, 30))
    refs = source_references(src, target_rows=10)
    s_i = refs.arrays["s_i"]
    assert s_i.chunks == (10, 30)
    with h5py.File(path, "r") as h5:
        base = h5["s_i"].id.get_offset()
    assert s_i.refs == {f"{k}.0": (str(path), base + k * 600, 600) for k in range(4)}
    raw = path.read_bytes()
    rows = [np.frombuffer(raw[o : o + n], dtype=s_i.dtype) for _, o, n in s_i.refs.values()]
    np.testing.assert_array_equal(
        np.concatenate(rows).reshape(40, 30), expected_pixels(spec, "SLC")[0]
    )


def test_opening_a_virtual_cube_imports_no_build_stack(tmp_path, dask_scheduler):
    """Readers of a virtual cube need fsspec's references, not the writers or dask.distributed."""
    cat = _catalog(tmp_path, "legacy-grd", (24, 20), n=3)
    out = str(tmp_path / "cube.json")
    build_cube(cat, {}, out, scheduler=dask_scheduler, format="kerchunk", register=False)
    code = (
        "import sys\n"
        "from icecube_cloud.cube import open_cube\n"
        f"ds = open_cube({out!r})\n"
        "assert ds.sizes['time'] == 3, ds\n"
        "heavy = ['icecube_cloud.build', 'icecube_cloud.write.executor', 'icecube_cloud.write.bands',\n"
        "         'icecube_cloud.write.references', 'icecube_cloud.read.byte_ranges', 'distributed']\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert r.stdout.strip() == "[]"


def test_plain_xarray_recipe_local(tmp_path, dask_scheduler):
    cat = _catalog(tmp_path, "legacy-grd", (37, 53), n=3)
    out = str(tmp_path / "cube.json")
    build_cube(cat, {}, out, scheduler=dask_scheduler, format="kerchunk", register=False)
    ds = xr.open_dataset(
        "reference://",
        engine="zarr",
        chunks={},
        backend_kwargs={"consolidated": True, "zarr_format": 2, "storage_options": {"fo": out}},
    )
    np.testing.assert_array_equal(ds["amplitude"].values, open_cube(out)["amplitude"].values)


def test_changed_product_is_detected(tmp_path, dask_scheduler):
    cat = _catalog(tmp_path, "legacy-grd", (37, 53), n=3)
    out = str(tmp_path / "cube.json")
    build_cube(cat, {}, out, scheduler=dask_scheduler, format="kerchunk", register=False)
    victim = sorted((tmp_path / "products").glob("*.tif"))[1]
    with victim.open("ab") as f:
        f.write(b"\0" * 16)
    with pytest.raises(DataError, match=rf"{victim.name}: referenced product changed.*size"):
        open_cube(out)


def test_refusals_point_to_zarr(tmp_path, dask_scheduler):
    (spec,) = make_stack(tmp_path / "p", n=1, shape=(32, 32), flavour="legacy-grd")
    tif = tmp_path / "p" / f"{spec.product_id}.tif"
    for name, opts in (("predictor", {"compress": "DEFLATE", "predictor": 2}),
                       ("LZW", {"compress": "LZW"})):  # fmt: skip
        bad = tmp_path / f"{name}.tif"
        rasterio.shutil.copy(tif, bad, driver="GTiff", **opts)
        src = SourceRef(spec.product_id, str(bad), ProductFormat.LEGACY_GRD, "native", (32, 32))
        with pytest.raises(ProductError, match=rf"{bad.name}.*{name}.*--format zarr"):
            source_references(src)
    # SLC-COG amplitude/phase: refused at build time, nothing written.
    cat = _catalog(tmp_path / "slc", "slc-cog", (32, 24), n=2)
    out = tmp_path / "slc.json"
    with pytest.raises(ProductError, match=r"SLC-COG.*--format zarr"):
        build_cube(cat, {}, str(out), scheduler=dask_scheduler, format="kerchunk", register=False)
    assert not out.exists()


def test_cli_build_kerchunk_and_info(tmp_path, dask_scheduler):
    cat = _catalog(tmp_path, "grd-cog", (40, 24), n=3)
    (tmp_path / "cfg.json").write_text("{}")
    out = str(tmp_path / "cube.json")
    args = ["build", "--stac-url", cat, "--config", str(tmp_path / "cfg.json"), "--out", out,
            "--format", "kerchunk", "--scheduler", dask_scheduler, "--no-register", "--quiet"]  # fmt: skip
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(cli, ["info", out])
    assert r.exit_code == 0, r.output
    assert "azimuth=40" in r.output and "range=24" in r.output and "virtual cube" in r.output


# --- over S3 (moto) ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("flavour", "shape"), [("legacy-grd", (37, 53)), ("grd-cog", (96, 64)),
                                                ("legacy-slc", (37, 53))])  # fmt: skip
def test_virtual_cube_over_s3(tmp_path, moto_s3, dask_scheduler, flavour, shape):
    bucket = moto_s3.make_bucket(f"virtual-{flavour}").removeprefix("s3://")
    so = moto_s3.storage_options
    fs = s3fs.S3FileSystem(**so, skip_instance_cache=True)
    local = tmp_path / "products"
    make_stack(local, n=4, shape=shape, start=START, days=8, flavour=flavour, seed=7)
    fs.put(f"{local}/", f"{bucket}/products/", recursive=True)
    catalog = f"s3://{bucket}/catalog"
    ingest([f"s3://{bucket}/products/"], catalog, storage_options=so)
    out = f"s3://{bucket}/cube.json"
    build_cube(catalog, {}, out, storage_options=so, scheduler=dask_scheduler, format="kerchunk")
    text = fs.cat(out).decode()
    assert moto_s3.secret not in text and moto_s3.key not in text
    virtual = open_cube(out, storage_options=so)
    if flavour == "legacy-slc":
        for t, pid in enumerate(virtual["product_id"].values):
            np.testing.assert_array_equal(virtual["slc"].values[t], _iq(local / f"{pid}.h5"))
        return
    zarr_out = f"s3://{bucket}/cube.zarr"
    build_cube(catalog, {}, zarr_out, storage_options=so, scheduler=dask_scheduler, register=False)
    _assert_same_cube(virtual, open_cube(zarr_out, storage_options=so), "amplitude")

    # The plain-xarray recipe (README): file order, no icecube-cloud needed.
    remote = {"endpoint_url": moto_s3.endpoint_url, "key": moto_s3.key, "secret": moto_s3.secret}
    plain = xr.open_dataset(
        "reference://",
        engine="zarr",
        chunks={},
        backend_kwargs={
            "consolidated": True,
            "zarr_format": 2,
            "storage_options": {
                "fo": out,
                "target_options": remote,
                "remote_protocol": "s3",
                "remote_options": {**remote, "asynchronous": True},
            },
        },
    )
    if flavour == "grd-cog":  # shadows-down: plain readers see file order, labels still right
        assert plain["amplitude"].dims == ("time", "range", "azimuth")
        plain = plain.transpose("time", "azimuth", "range").sortby("azimuth")
    np.testing.assert_array_equal(plain["amplitude"].values, virtual["amplitude"].values)

    # A product replaced after referencing (different size) is detected on open.
    victim = f"{bucket}/products/{virtual['product_id'].values[0]}"
    victim = next(p for p in fs.find(f"{bucket}/products") if p.startswith(victim) and
                  p.endswith(".tif"))  # fmt: skip
    fs.pipe_file(victim, fs.cat(victim) + b"\0")
    with pytest.raises(DataError, match="referenced product changed"):
        open_cube(out, storage_options=so)


# --- benchmark smoke ---------------------------------------------------------------------------------


def test_benchmark_script_smoke(tmp_path):
    r = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "bench_virtual.py"), "--n", "3", "--size", "32",
         "--workdir", str(tmp_path)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "| products |" in r.stdout and "| 3 |" in r.stdout


def test_kerchunk_cube_with_shards_is_refused(tmp_path, dask_scheduler):
    """A virtual cube references the products' own strips (Zarr v2): config shards cannot apply."""
    cat = _catalog(tmp_path, "legacy-grd", (32, 24), n=2)
    out = tmp_path / "cube.json"
    cfg = {"chunks": {"azimuth": 8, "range": 8}, "shards": {"azimuth": 16, "range": 16}}
    with pytest.raises(UsageError, match=r"config shards.*--format zarr") as info:
        build_cube(cat, cfg, str(out), scheduler=dask_scheduler, format="kerchunk", register=False)
    assert info.value.exit_code == 2
    assert not out.exists()


# --- Parquet references (kerchunk's format, issue 16 item 4) ------------------------------------------


@pytest.mark.parametrize(("flavour", "shape"), [("grd-cog", (96, 64)), ("legacy-slc", (37, 53))])
def test_parquet_references_equal_zarr(tmp_path, dask_scheduler, flavour, shape):
    cat = _catalog(tmp_path, flavour, shape)
    build_cube(cat, GAPPY, str(tmp_path / "cube.zarr"), scheduler=dask_scheduler, register=False)
    out = tmp_path / "cube.parq"
    result = build_cube(cat, GAPPY, str(out), scheduler=dask_scheduler, format="kerchunk")
    assert result.plan.n_gaps > 0
    assert (out / ".zmetadata").is_file() and list(out.glob("*/refs.0.parq"))  # kerchunk's layout
    virtual = open_cube(str(out))
    variable = result.plan.variable
    _assert_same_cube(virtual, open_cube(str(tmp_path / "cube.zarr")), variable)
    assert "virtual cube: kerchunk references to 6 products" in cube_info(virtual, str(out))
    # fsspec alone (no icecube-cloud) opens the store; a changed product is detected by open_cube.
    fs = fsspec.filesystem("reference", fo=str(out), asynchronous=True)
    store = zarr.storage.FsspecStore(fs, read_only=True, path="")
    group = zarr.open_group(store, mode="r", zarr_format=2)
    assert group["s_i" if variable == "slc" else "amplitude"].shape[0] == virtual.sizes["time"]
    victim = sorted((tmp_path / "products").glob("*.tif" if variable == "amplitude" else "*.h5"))[0]
    with victim.open("ab") as f:
        f.write(b"\0")
    with pytest.raises(DataError, match=rf"{victim.name}: referenced product changed"):
        open_cube(str(out))


def test_parquet_store_replaces_only_its_own(tmp_path, dask_scheduler):
    cat = _catalog(tmp_path, "legacy-grd", (24, 20), n=2)
    out = tmp_path / "cube.parq"
    build_cube(cat, {}, str(out), scheduler=dask_scheduler, format="kerchunk", register=False)
    with pytest.raises(UsageError, match="already exists; pass --overwrite"):
        build_cube(cat, {}, str(out), scheduler=dask_scheduler, format="kerchunk", register=False)
    build_cube(
        cat, {}, str(out), scheduler=dask_scheduler, format="kerchunk", register=False,
        overwrite=True,
    )  # fmt: skip
    assert open_cube(str(out)).sizes["time"] == 2
    foreign = tmp_path / "mine.parq"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(UsageError, match=r"mine\.parq is not a reference store.*notes\.txt"):
        build_cube(
            cat, {}, str(foreign), scheduler=dask_scheduler, format="kerchunk", register=False,
            overwrite=True,
        )  # fmt: skip
    assert (foreign / "notes.txt").read_text() == "keep me"
