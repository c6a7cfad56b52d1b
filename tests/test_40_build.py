"""Cube builds end to end on the embedded default: products → static catalog → search → Zarr cube.

Real dask worker processes (session fixture), real files; pixels compared bit-exactly with the sources.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
import rasterio
import rasterio.shutil
import xarray as xr
import zarr
from helpers import assert_gap_fill_values, cut, header_first

from icecube_cloud.build import build_cube, plan_cube
from icecube_cloud.cube import open_cube
from icecube_cloud.errors import (
    ConfigError,
    DataError,
    EmptySelectionError,
    ProductError,
    ShapeMismatchError,
    UsageError,
)
from icecube_cloud.ingest import ingest
from icecube_cloud.products import read_product
from icecube_cloud.storage import StorageTarget
from icecube_cloud.synthetic import expected_pixels, make_stack
from icecube_cloud.write.bands import write_band
from icecube_cloud.write.chunks import ShardEncoder, encoder_for
from icecube_cloud.write.journal import ROOT_DOC
from icecube_cloud.write.skeleton import put_documents, skeleton, skeleton_documents

START = datetime(2021, 4, 20, 10, 0, tzinfo=UTC)


def _stack(
    tmp_path: Path, flavour: str, shape: tuple[int, int], n: int = 6, days: int = 12, seed: int = 1
):
    products = tmp_path / "products"
    specs = make_stack(
        products, n=n, shape=shape, start=START, days=days, flavour=flavour, seed=seed
    )
    ingest([str(products)], str(tmp_path / "cat"))
    return specs


def _ends(specs) -> list[np.datetime64]:
    return sorted(np.datetime64(s.acquisition_end.replace(tzinfo=None), "ns") for s in specs)


@pytest.mark.parametrize(
    ("flavour", "shape", "chunks"),
    [
        ("legacy-grd", (37, 53), {"azimuth": 16, "range": 32}),
        ("grd-cog", (96, 64), {"azimuth": 40, "range": 24}),
    ],
)
def test_generated_grd_stack_is_bit_exact(tmp_path, dask_scheduler, flavour, shape, chunks):
    specs = _stack(tmp_path, flavour, shape)
    cfg = {"chunks": chunks}
    result = build_cube(
        str(tmp_path / "cat"), cfg, str(tmp_path / "cube.zarr"), scheduler=dask_scheduler
    )

    ds = xr.open_zarr(tmp_path / "cube.zarr")
    assert ds["amplitude"].dims == ("time", "azimuth", "range")
    assert ds.sizes == {"time": len(specs), "azimuth": shape[0], "range": shape[1]}
    assert list(ds["time"].values) == _ends(specs)
    assert ds["amplitude"].encoding["chunks"] == (1, chunks["azimuth"], chunks["range"])
    by_id = {str(p): i for i, p in enumerate(ds["product_id"].values)}
    for spec in specs:
        t = next(
            i
            for i, end in enumerate(ds["acquisition_end"].values)
            if end == np.datetime64(spec.acquisition_end.replace(tzinfo=None), "ns")
        )
        want = expected_pixels(spec, "GRD")
        got = ds["amplitude"].isel(time=t).values
        assert got.dtype == want.dtype == np.uint16
        np.testing.assert_array_equal(got, want)
        assert float(ds["incidence_angle"][t]) == pytest.approx(spec.incidence_angle)
    assert result.chunks_written == len(specs) * int(np.ceil(shape[0] / chunks["azimuth"])) * int(
        np.ceil(shape[1] / chunks["range"])
    )
    assert len(by_id) == len(specs)
    assert ds["valid"].values.all()


def test_metadata_is_lossless_and_provenance_recorded(tmp_path, dask_scheduler):
    _stack(tmp_path, "legacy-grd", (32, 32), n=6)
    build_cube(
        str(tmp_path / "cat"),
        {"min_incidence_angle": 0},
        str(tmp_path / "cube.zarr"),
        scheduler=dask_scheduler,
    )
    ds = xr.open_zarr(tmp_path / "cube.zarr")
    for t in range(ds.sizes["time"]):
        meta = json.loads(str(ds["metadata"].values[t]))
        item_href = next(
            p
            for p in (tmp_path / "products").iterdir()
            if p.stem == str(ds["product_id"].values[t])
        )
        assert meta == json.loads(
            json.dumps(dict(read_product(str(item_href)).metadata), default=str)
        )
        with rasterio.open(item_href) as src:  # the cube alone geolocates its pixels
            gcps, crs = src.gcps
        assert meta["gcps"]["crs"] == crs.to_string() and len(gcps) == 81
        assert meta["gcps"]["points"] == [[g.row, g.col, g.x, g.y, g.z] for g in gcps]
    attrs = ds.attrs
    assert attrs["icecube_cloud_status"] == "complete"
    assert attrs["product_type"] == "GRD"
    assert attrs["icecube_cloud_config"]["min_incidence_angle"] == 0
    assert attrs["icecube_cloud_search"]["catalog"] == str(tmp_path / "cat")
    assert "created" in attrs and "icecube_cloud_version" in attrs
    root = json.loads((tmp_path / "cube.zarr" / "zarr.json").read_text())
    assert "consolidated_metadata" in root  # one read opens the cube
    codecs = json.loads((tmp_path / "cube.zarr" / "amplitude" / "zarr.json").read_text())["codecs"]
    assert any(c["name"] == "blosc" for c in codecs)


def test_iceye_sample_grd_stack(tmp_path, dask_scheduler, samples):
    ingest([str(samples / "grd_stack")], str(tmp_path / "cat"))
    build_cube(str(tmp_path / "cat"), {}, str(tmp_path / "cube.zarr"), scheduler=dask_scheduler)
    ds = xr.open_zarr(tmp_path / "cube.zarr")
    # Acquisition ends: _1 2021-04-27, _0 2021-04-28, _2 2021-05-27 (the time of an image is its end).
    assert [str(p)[-1] for p in ds["product_id"].values] == ["1", "0", "2"]
    for t, pid in enumerate(ds["product_id"].values):
        with rasterio.open(samples / "grd_stack" / f"{pid}.tif") as src:
            np.testing.assert_array_equal(ds["amplitude"].isel(time=t).values, src.read(1))
            gcps, _ = src.gcps
        stored = json.loads(str(ds["metadata"].values[t]))["gcps"]["points"]
        assert len(stored) == 810 and stored == [[g.row, g.col, g.x, g.y, g.z] for g in gcps]
    assert list(ds["orbit_state"].values) == ["descending", "ascending", "ascending"]
    assert list(ds["incidence_angle"].values) == [29.5, 30.5, 28.5]


def test_gap_slices_store_no_chunks(tmp_path, dask_scheduler):
    specs = _stack(tmp_path, "legacy-grd", (20, 24), n=6, days=12)
    first = min(s.acquisition_end for s in specs).date()
    cfg = {
        "temporal_resolution": 1,
        "start_date": first.isoformat(),
        "end_date": (max(s.acquisition_end for s in specs)).date().isoformat(),
    }
    build_cube(str(tmp_path / "cat"), cfg, str(tmp_path / "cube.zarr"), scheduler=dask_scheduler)
    ds = xr.open_zarr(tmp_path / "cube.zarr")
    valid = ds["valid"].values
    assert (~valid).any(), "6 images over 12 daily bins must leave gaps"
    chunk_dir = tmp_path / "cube.zarr" / "amplitude" / "c"
    stored_times = {int(p.name) for p in chunk_dir.iterdir()}
    assert stored_times == {i for i, v in enumerate(valid) if v}
    assert np.isnat(ds["acquisition_end"].values[~valid]).all()
    assert (ds["time"].values[1:] - ds["time"].values[:-1] == np.timedelta64(1, "D")).all()


def test_gap_slices_hold_declared_fill_values(tmp_path, dask_scheduler):
    """Readers other than xarray see declared missing values in gaps, not int64-minimum sentinels."""
    _stack(tmp_path, "legacy-grd", (20, 24), n=4, days=8)
    cfg = {"temporal_resolution": 1}
    build_cube(str(tmp_path / "cat"), cfg, str(tmp_path / "cube.zarr"), scheduler=dask_scheduler)
    group = zarr.open_group(tmp_path / "cube.zarr", mode="r", zarr_format=3)
    assert_gap_fill_values(group, zarr_format=3)
    ds = xr.open_zarr(tmp_path / "cube.zarr")  # xarray decodes the fill values as before
    gaps = ~ds["valid"].values
    for name in ("acquisition_start", "acquisition_end"):
        assert ds[name].dtype == "datetime64[ns]"
        assert np.isnat(ds[name].values[gaps]).all() and not np.isnat(ds[name].values[~gaps]).any()
    for name in ("incidence_angle", "calibration_factor"):
        assert np.isnan(ds[name].values[gaps]).all() and not np.isnan(ds[name].values[~gaps]).any()
    assert set(ds["product_id"].values[gaps]) == {""}


def test_plan_is_printable_without_reading_pixels(tmp_path):
    specs = _stack(tmp_path, "legacy-grd", (16, 16), n=6)
    for p in (tmp_path / "products").iterdir():
        if p.suffix == ".tif":
            p.write_bytes(b"")  # pixels gone: planning must not need them
    plan = plan_cube(str(tmp_path / "cat"), {})
    assert len(plan.slices) == len(specs)
    text = str(plan)
    assert "amplitude uint16" in text and all(s.product_id in text for s in specs)
    assert json.loads(json.dumps(plan.to_dict()))["n_chunks"] == len(specs)


def test_corrupt_product_fails_and_leaves_no_cube(tmp_path, dask_scheduler):
    _stack(tmp_path, "legacy-grd", (64, 64), n=6)
    victim = sorted((tmp_path / "products").glob("*.tif"))[2]
    victim.write_bytes(victim.read_bytes()[:300])
    with pytest.raises(ProductError, match=victim.name):
        build_cube(str(tmp_path / "cat"), {}, str(tmp_path / "cube.zarr"), scheduler=dask_scheduler)
    assert not (tmp_path / "cube.zarr").exists()


@pytest.mark.parametrize(
    ("flavour", "ext"), [("legacy-grd", "tif"), ("grd-cog", "tif"), ("legacy-slc", "h5")]
)
def test_product_cut_short_after_ingest_fails_the_build_by_name(
    tmp_path, dask_scheduler, flavour, ext
):
    """Header intact, pixel data cut (an interrupted copy after ingest): the source check names the file
    as truncated before anything is written; no cube is published."""
    products = tmp_path / "products"
    make_stack(products, n=4, shape=(96, 64), start=START, flavour=flavour, seed=4)
    if flavour == "legacy-grd":
        for tif in products.glob("*.tif"):
            header_first(tif)  # else the cut would reach the tags (as test_00 shows)
    ingest([str(products)], str(tmp_path / "cat"))
    victim = sorted(products.glob(f"*.{ext}"))[1]
    cut(victim, 2000)
    out = tmp_path / "cube.zarr"
    with pytest.raises(ProductError, match=rf"{victim.name}: truncated: the file has \d+ bytes"):
        build_cube(str(tmp_path / "cat"), {}, str(out), scheduler=dask_scheduler, register=False)
    assert not (out / "zarr.json").exists()
    with pytest.raises(Exception, match=r"(?i)group|not found|zarr|no such"):
        xr.open_zarr(out)


def test_mismatched_shapes_are_listed(tmp_path, dask_scheduler):
    make_stack(
        tmp_path / "a", n=3, shape=(16, 16), start=START, days=3, flavour="legacy-grd", seed=1
    )
    make_stack(
        tmp_path / "b",
        n=3,
        shape=(16, 20),
        start=datetime(2021, 5, 1, tzinfo=UTC),
        days=3,
        flavour="legacy-grd",
        seed=2,
    )
    ingest([str(tmp_path / "a"), str(tmp_path / "b")], str(tmp_path / "cat"))
    with pytest.raises(ShapeMismatchError) as err:
        build_cube(str(tmp_path / "cat"), {}, str(tmp_path / "cube.zarr"), scheduler=dask_scheduler)
    assert "16x16" in str(err.value) and "16x20" in str(err.value)
    assert len(err.value.shapes) == 6
    assert not (tmp_path / "cube.zarr").exists()


def test_empty_search_and_existing_output(tmp_path, dask_scheduler):
    _stack(tmp_path, "legacy-grd", (16, 16), n=6)
    with pytest.raises(EmptySelectionError):
        build_cube(
            str(tmp_path / "cat"),
            {"start_date": "19990101", "end_date": "19990102"},
            str(tmp_path / "c.zarr"),
            scheduler=dask_scheduler,
        )
    assert not (tmp_path / "c.zarr").exists()
    with pytest.raises(ConfigError, match="min_incidence_angle"):
        build_cube(
            str(tmp_path / "cat"),
            {"min_incidence_angle": 40, "max_incidence_angle": 20},
            str(tmp_path / "c.zarr"),
        )
    (tmp_path / "c.zarr").mkdir()
    (tmp_path / "c.zarr" / "notes.txt").write_text("somebody's data")  # never clobbered
    with pytest.raises(UsageError, match="did not write"):
        build_cube(str(tmp_path / "cat"), {}, str(tmp_path / "c.zarr"), scheduler=dask_scheduler)
    assert [p.name for p in (tmp_path / "c.zarr").iterdir()] == ["notes.txt"]


def test_plain_xarray_reader_in_a_fresh_process(tmp_path, dask_scheduler):
    specs = _stack(tmp_path, "legacy-grd", (24, 24), n=6)
    build_cube(str(tmp_path / "cat"), {}, str(tmp_path / "cube.zarr"), scheduler=dask_scheduler)
    code = (
        "import sys, xarray as xr\n"
        f"ds = xr.open_zarr({str(tmp_path / 'cube.zarr')!r})\n"
        "assert 'icecube_cloud' not in sys.modules\n"
        "print(int(ds.amplitude.sum()), ds.sizes['time'])\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True
    ).stdout.split()
    assert int(out[1]) == len(specs)
    assert int(out[0]) == sum(int(expected_pixels(s, "GRD").astype(np.int64).sum()) for s in specs)


def _corrupt_one_strip(tif: Path, strip: int) -> None:
    """Recompress ``tif`` with DEFLATE (tags kept) and destroy one strip: the header stays readable."""
    deflated = tif.with_suffix(".deflate.tif")
    rasterio.shutil.copy(tif, deflated, driver="GTiff", compress="DEFLATE")
    deflated.replace(tif)
    with rasterio.open(tif) as ds:
        offset = int(ds.get_tag_item(f"BLOCK_OFFSET_0_{strip}", "TIFF", bidx=1))
        size = int(ds.get_tag_item(f"BLOCK_SIZE_0_{strip}", "TIFF", bidx=1))
    data = bytearray(tif.read_bytes())
    data[offset : offset + size] = bytes(size)
    tif.write_bytes(bytes(data))


def _tree(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


@pytest.mark.parametrize("cluster", ["processes", "in-process"])
def test_failed_build_is_not_a_cube_and_a_rerun_resumes_it(tmp_path, request, cluster):
    """A build that dies mid-write leaves no cube; the rerun writes only what is missing (issue #7.2).

    On worker processes (a scheduler) and on the in-process cluster of small builds alike.
    """
    dask_scheduler = request.getfixturevalue("dask_scheduler") if cluster == "processes" else None
    _stack(tmp_path, "legacy-grd", (256, 128), n=6)
    victim = sorted((tmp_path / "products").glob("*.tif"))[4]
    good = victim.read_bytes()
    cfg = {"chunks": {"azimuth": 64, "range": 64}}
    out = tmp_path / "cube.zarr"
    clean = tmp_path / "clean.zarr"
    build_cube(str(tmp_path / "cat"), cfg, str(clean), scheduler=dask_scheduler, register=False)

    _corrupt_one_strip(victim, strip=3)
    read_product(str(victim))  # the header is intact: the failure happens in a chunk task
    with pytest.raises(ProductError, match=victim.name):
        build_cube(str(tmp_path / "cat"), cfg, str(out), scheduler=dask_scheduler, register=False)
    with pytest.raises(Exception, match=r"(?i)group|not found|zarr"):
        xr.open_zarr(out)  # nothing a reader would take for a cube
    with pytest.raises(DataError):
        open_cube(str(out))
    before = {p: p.stat().st_mtime_ns for p in (out / "amplitude").rglob("*") if p.is_file()}

    victim.write_bytes(good)  # the data is fixed: rerun the same build
    result = build_cube(
        str(tmp_path / "cat"), cfg, str(out), scheduler=dask_scheduler, register=False
    )
    plan = result.plan
    assert 0 < result.chunks_written < plan.n_chunks  # only the missing chunks
    unchanged = {p for p, m in before.items() if p.exists() and p.stat().st_mtime_ns == m}
    assert len(unchanged) >= plan.n_chunks - result.chunks_written
    got, want = _tree(out), _tree(clean)
    root_got, root_want = json.loads(got.pop("zarr.json")), json.loads(want.pop("zarr.json"))
    for root in (root_got, root_want):
        root["attributes"].pop("created")
    assert root_got == root_want
    assert got == want  # every chunk and array document byte-identical to an uninterrupted build


def test_interrupted_build_is_not_a_cube(tmp_path):
    """A build that died after writing metadata and some chunks: readers must not take it as a cube."""
    _stack(tmp_path, "legacy-grd", (32, 32), n=6)
    plan = plan_cube(str(tmp_path / "cat"), {})
    target = StorageTarget.from_url(str(tmp_path / "cube.zarr"))
    docs = skeleton_documents(skeleton(plan, ["{}"] * len(plan.slices)))
    docs.pop(ROOT_DOC)  # held back until the commit, which never came
    put_documents(target, docs)
    source = plan.slices[0].source
    assert source is not None
    write_band(target, plan.variable, 0, (next(plan.windows()),), source)
    with pytest.raises(Exception, match=r"(?i)group|not found|zarr"):
        xr.open_zarr(tmp_path / "cube.zarr")
    with pytest.raises(DataError, match=r"cube\.zarr"):
        open_cube(str(tmp_path / "cube.zarr"))


@pytest.mark.parametrize(("flavour", "bands"), [("grd-cog", 4), ("legacy-grd", 1)])
def test_one_task_per_band_and_bit_exact(tmp_path, dask_scheduler, flavour, bands):
    """Band tasks: one task per (time, band) reads its rows once and writes all their chunks.

    A band is one chunk row for sources decoded into a band buffer (COGs); memory-mapped local
    legacy GRDs merge whole chunk rows (here all four) into one band.
    """
    from distributed import Client, get_task_stream

    from icecube_cloud.write.bands import plan_bands
    from icecube_cloud.write.materialise import execute

    specs = _stack(tmp_path, flavour, (200, 150), n=3)
    plan = plan_cube(str(tmp_path / "cat"), {"chunks": {"azimuth": 64, "range": 48}})
    assert plan.n_chunks == 3 * 4 * 4  # partial chunks at both edges
    with Client(dask_scheduler) as client, get_task_stream(client=client) as stream:
        result = execute(plan, str(tmp_path / "cube.zarr"), client=client)
    writes = [t for t in stream.data if "write_band" in str(t["key"])]
    assert len(plan_bands(plan)) == bands
    assert len(writes) == 3 * bands  # per band, not per chunk (48)
    assert max(t.get("nbytes", 0) for t in writes) <= 64  # a byte count comes back, never pixels
    assert result.chunks_written == plan.n_chunks and result.nbytes == plan.nbytes
    ds = xr.open_zarr(tmp_path / "cube.zarr")
    for t, pid in enumerate(ds["product_id"].values):
        spec = next(s for s in specs if s.product_id == pid)
        np.testing.assert_array_equal(
            ds["amplitude"].isel(time=t).values, expected_pixels(spec, "GRD")
        )


def test_bands_are_chunk_rows_capped_in_bytes():
    from icecube_cloud.model import Window
    from icecube_cloud.write.bands import chunk_bands

    windows = [
        Window(a, min(a + 10, 25), r, min(r + 10, 35))
        for a in (0, 10, 20)
        for r in range(0, 35, 10)
    ]
    rows = chunk_bands(windows, chunk_nbytes=100, max_bytes=1000)
    assert [len(b) for b in rows] == [4, 4, 4]
    assert all(len({w.az0 for w in b}) == 1 for b in rows)
    capped = chunk_bands(windows, chunk_nbytes=100, max_bytes=250)
    assert [len(b) for b in capped] == [2, 2, 2, 2, 2, 2]
    assert [w for b in capped for w in b] == windows  # every chunk once, in order
    assert [len(b) for b in chunk_bands(windows, 100, 10)] == [1] * 12
    # Object-store sources: whole chunk rows merge while the band stays under the cap.
    merged = chunk_bands(windows, chunk_nbytes=100, max_bytes=1000, merge_rows=True)
    assert [len(b) for b in merged] == [8, 4]
    assert [w for b in merged for w in b] == windows
    assert (
        chunk_bands(windows, 100, 250, merge_rows=True) == capped
    )  # rows too wide: split as before
    assert [len(b) for b in chunk_bands(windows, 100, 10**6, merge_rows=True)] == [12]


@pytest.mark.parametrize("flavour", ["legacy-slc", "legacy-grd"])
def test_cached_reader_never_serves_a_changed_file(tmp_path, flavour):
    """Readers are reused across tasks of a worker, but a file replaced since is reopened."""
    import os
    import shutil

    from icecube_cloud.model import Window
    from icecube_cloud.read.cache import cached_reader, clear_readers

    specs = make_stack(tmp_path / "p", n=2, shape=(64, 48), start=START, flavour=flavour)
    ingest([str(tmp_path / "p")], str(tmp_path / "cat"))
    plan = plan_cube(str(tmp_path / "cat"), {})
    source = plan.slices[0].source
    assert source is not None
    spec = next(s for s in specs if s.product_id in source.href)
    other = next(s for s in specs if s is not spec)
    window = Window(0, 64, 0, 48)

    def pixels(s):
        if flavour == "legacy-grd":
            return expected_pixels(s, "GRD")
        i, q = expected_pixels(s, "SLC")
        return i + 1j * q.astype(np.complex64)

    with cached_reader(source) as first:
        np.testing.assert_array_equal(first.read(window), pixels(spec))
    with cached_reader(source) as again:
        assert again is first  # reused
    suffix = Path(source.href).suffix
    shutil.copyfile(tmp_path / "p" / f"{other.product_id}{suffix}", tmp_path / f"new{suffix}")
    os.replace(tmp_path / f"new{suffix}", source.href)  # the file is replaced in place
    with cached_reader(source) as reopened:
        assert reopened is not first
        np.testing.assert_array_equal(reopened.read(window), pixels(other))
    clear_readers()


def test_injected_reader_class_is_what_the_build_reads(tmp_path, dask_scheduler):
    """Readers are injectable, as stackstac's: the cube holds the injected class's pixels, its traits
    set the band width, and each source is opened once per worker (its readers stay open there)."""
    from distributed import Client
    from fake_readers import CountingReader, MappedCountingReader, fake_pixels, opened

    from icecube_cloud.model import ProductFormat, Window
    from icecube_cloud.write.bands import plan_bands

    specs = _stack(tmp_path, "grd-cog", (200, 150), n=3)
    config = {"chunks": {"azimuth": 64, "range": 48}}
    plan = plan_cube(str(tmp_path / "cat"), config)
    readers = {ProductFormat.GRD_COG: CountingReader}
    assert len(plan_bands(plan, readers)) == 4  # decodes into a band buffer: one chunk row per band
    assert len(plan_bands(plan, {ProductFormat.GRD_COG: MappedCountingReader})) == 1  # rows merge
    with pytest.raises(UsageError, match="readers apply to zarr builds"):
        build_cube(str(tmp_path / "cat"), config, str(tmp_path / "c.json"), format="kerchunk",
                   scheduler=dask_scheduler, register=False, readers=readers)  # fmt: skip
    build_cube(str(tmp_path / "cat"), config, str(tmp_path / "cube.zarr"),
               scheduler=dask_scheduler, register=False, readers=readers)  # fmt: skip
    ds = open_cube(str(tmp_path / "cube.zarr"))
    hrefs = [s.source.href for s in plan.slices if s.source is not None]
    assert len(hrefs) == 3
    for t, href in enumerate(hrefs):
        cube = ds["amplitude"].isel(time=t).values
        np.testing.assert_array_equal(cube, fake_pixels(href, Window(0, 200, 0, 150)))
        spec = next(s for s in specs if s.product_id in href)
        assert not np.array_equal(cube, expected_pixels(spec, "GRD"))  # not the file's pixels
    with Client(dask_scheduler) as client:
        per_worker = {
            worker: {h: counts[h] for h in hrefs if h in counts}
            for worker, counts in client.run(opened).items()
        }
    assert sum(reads for w in per_worker.values() for _, reads in w.values()) == 3 * 4  # per band
    assert {h for w in per_worker.values() for h in w} == set(hrefs)
    assert all(opens == 1 for w in per_worker.values() for opens, _ in w.values()), per_worker


def _stored(root: Path, name: str) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted((root / name / "c").rglob("*"))
        if p.is_file()
    }


SHARDED = {"chunks": {"azimuth": 8, "range": 8}, "shards": {"azimuth": 32, "range": 16}}


@pytest.mark.parametrize(
    ("flavour", "shape", "variable"),
    [
        ("legacy-grd", (70, 53), "amplitude"),  # edge shards both ways, mapped wide bands
        ("grd-cog", (64, 40), "amplitude"),  # shadows-down COG, one-row bands
        ("legacy-slc", (40, 36), "slc"),
    ],
)
def test_sharded_cube_is_what_zarr_writes(tmp_path, dask_scheduler, flavour, shape, variable):
    """Config ``shards``: one object per shard of 8² chunks; its bytes are what zarr's own writer
    stores for the same values, and plain ``xr.open_zarr`` reads the values of the unsharded cube."""
    specs = _stack(tmp_path, flavour, shape, n=3)
    cat, out, plain = str(tmp_path / "cat"), tmp_path / "cube.zarr", tmp_path / "plain.zarr"
    result = build_cube(cat, SHARDED, str(out), scheduler=dask_scheduler, register=False)
    build_cube(cat, {"chunks": SHARDED["chunks"]}, str(plain), scheduler=dask_scheduler)

    ds = xr.open_zarr(out)
    assert ds[variable].encoding["chunks"] == (1, 8, 8)
    assert ds[variable].encoding["shards"] == (1, 32, 16)
    np.testing.assert_array_equal(ds[variable].values, xr.open_zarr(plain)[variable].values)
    if variable == "amplitude":
        for t, pid in enumerate(str(p) for p in ds["product_id"].values):
            spec = next(s for s in specs if s.product_id == pid)
            np.testing.assert_array_equal(ds[variable][t].values, expected_pixels(spec, "GRD"))
    n_shards = int(np.ceil(shape[0] / 32)) * int(np.ceil(shape[1] / 16))
    assert result.chunks_written == len(specs) * n_shards  # stored objects: shards
    assert len(_stored(out, variable)) == len(specs) * n_shards

    ours = zarr.open_array(store=str(out), path=variable, mode="r")
    assert isinstance(encoder_for(ours), ShardEncoder)  # the band tasks' direct path, not zarr's
    theirs = zarr.create_array(
        store=str(tmp_path / "zarr.zarr"), name=variable, shape=ours.shape, dtype=ours.dtype,
        chunks=ours.chunks, shards=ours.shards, compressors=ours.compressors,
        fill_value=ours.fill_value, zarr_format=3,
    )  # fmt: skip
    theirs[:] = ours[:]
    assert _stored(out, variable) == _stored(tmp_path / "zarr.zarr", variable)
    plan = plan_cube(cat, SHARDED)
    assert plan.to_dict()["shards"] == {"time": 1, "azimuth": 32, "range": 16}
    assert "chunks (1, 8, 8) in shards (1, 32, 16)" in str(plan)


def test_sharded_labels_equal_unsharded(tmp_path, dask_scheduler, samples):
    """The label raster shares the pixel variable's shards (a training patch reads x and y alike)."""
    cat = str(tmp_path / "cat")
    ingest([str(samples / "grd_stack")], cat)
    stem = "ICEYE_GRD_54549_20210427T215124_hollow_10x10pixels_fake_"
    masks = [
        {"product_file": f"{stem}{i}.tif",
         "labels": {"segmentation": str(samples / "masks" / f"{stem}{i}.png")}}
        for i in (0, 2)
    ]  # fmt: skip
    (tmp_path / "masks.json").write_text(json.dumps(masks))
    from icecube_cloud.labels import ingest_labels

    ingest_labels(str(tmp_path / "masks.json"), cat)
    cfg = {"labels": True, "chunks": {"azimuth": 4, "range": 4}}
    build_cube(cat, cfg, str(tmp_path / "plain.zarr"), scheduler=dask_scheduler, register=False)
    cfg["shards"] = {"azimuth": 8, "range": 8}
    build_cube(cat, cfg, str(tmp_path / "cube.zarr"), scheduler=dask_scheduler, register=False)
    ds, plain = xr.open_zarr(tmp_path / "cube.zarr"), xr.open_zarr(tmp_path / "plain.zarr")
    assert ds["labels"].encoding["shards"] == (1, 8, 8)
    assert ds["labels"].values.any()
    np.testing.assert_array_equal(ds["labels"].values, plain["labels"].values)
    np.testing.assert_array_equal(ds["amplitude"].values, plain["amplitude"].values)


def test_progress_true_draws_tqdm_bars_and_callbacks_keep_three_arguments(
    tmp_path, dask_scheduler, capsys
):
    _stack(tmp_path, "legacy-grd", (40, 30))
    cat = str(tmp_path / "cat")
    build_cube(cat, {}, str(tmp_path / "a.zarr"), scheduler=dask_scheduler, progress=True)
    err = capsys.readouterr().err
    for stage, unit in (("check", "products"), ("write", "tasks")):
        assert re.search(rf"{stage}: 100%\|[^|]*\| 6/6 \[[^\]]*{unit}/s", err), err
    assert re.search(r"write: 100%.*, 0\.0 MiB, [\d.]+ MiB/s\]", err), err  # 6 x 40 x 30 uint16

    calls: list[tuple[object, ...]] = []

    def old_style(stage: str, done: int, total: int) -> None:  # written before bytes were reported
        calls.append((stage, done, total))

    build_cube(cat, {}, str(tmp_path / "b.zarr"), scheduler=dask_scheduler, progress=old_style)
    assert capsys.readouterr().err == ""  # a callback draws nothing itself
    assert calls[0] == ("plan", 1, 1)
    assert [c for c in calls if c[0] == "check"][-1] == ("check", 6, 6)
    writes = [c for c in calls if c[0] == "write"]  # finished tasks may arrive in batches
    assert writes[0] == ("write", 0, 6) and writes[-1] == ("write", 6, 6)
    assert [c[1] for c in writes] == sorted({c[1] for c in writes})

    sizes: list[int | None] = []

    def with_bytes(stage: str, done: int, total: int, nbytes: int | None = None) -> None:
        if stage == "write":
            sizes.append(nbytes)

    build_cube(cat, {}, str(tmp_path / "c.zarr"), scheduler=dask_scheduler, progress=with_bytes)
    assert sizes[0] == 0 and sizes[-1] == 6 * 40 * 30 * 2  # the uncompressed bytes written
