"""SLC cubes: ``slc`` complex64 from legacy HDF5 (bit-exact I/Q) and from SLC COGs (amplitude, phase).

Real dask worker processes, real files (ICEYE's samples and generated stacks), real S3 (moto).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import fsspec
import h5py
import numpy as np
import pytest
import xarray as xr
from helpers import PER_TIME_COORDS

from icecube_cloud.build import build_cube
from icecube_cloud.errors import ProductError
from icecube_cloud.ingest import ingest
from icecube_cloud.products import read_product
from icecube_cloud.read import Hdf5SlcReader, SlcCogReader, Window
from icecube_cloud.synthetic import expected_pixels, make_stack

START = datetime(2021, 4, 20, 10, 0, tzinfo=UTC)


def _end(spec) -> np.datetime64:
    return np.datetime64(spec.acquisition_end.replace(tzinfo=None), "ns")


def _iq(path: Path) -> np.ndarray:
    """``s_i + 1j*s_q`` read straight from the file (the independent truth)."""
    with h5py.File(path, "r") as h5:
        return (h5["s_i"][()] + 1j * h5["s_q"][()]).astype(np.complex128)


def _build(catalog: Path, cfg: dict, out: Path, scheduler: str, **kwargs) -> xr.Dataset:
    build_cube(str(catalog), cfg, str(out), scheduler=scheduler, **kwargs)
    return xr.open_zarr(out)


def _assert_per_time_coords(ds: xr.Dataset, folder: Path) -> None:
    """Per-time coords and lossless metadata, as for GRD cubes."""
    for name in PER_TIME_COORDS:
        assert ds[name].dims == ("time",), name
    assert ds["valid"].values.all()
    assert (np.diff(ds["time"].values) > np.timedelta64(0)).all()
    np.testing.assert_array_equal(ds["time"].values, ds["acquisition_end"].values)
    for t, pid in enumerate(ds["product_id"].values):
        data = next(
            p for p in folder.iterdir() if p.stem in (pid, f"{pid}_SLC") and p.suffix != ".json"
        )
        want = json.dumps(dict(read_product(str(data)).metadata), default=str)
        assert json.loads(str(ds["metadata"].values[t])) == json.loads(want)


def test_iceye_sample_slc_stack_is_bit_exact(tmp_path, dask_scheduler, samples):
    folder = samples / "slc_stack"
    ingest([str(folder)], str(tmp_path / "cat"))
    ds = _build(tmp_path / "cat", {}, tmp_path / "cube.zarr", dask_scheduler)
    assert ds["slc"].dtype == np.complex64
    assert ds["slc"].dims == ("time", "azimuth", "range")
    # Acquisition ends: _1 2021-04-27, _0 2021-04-28, _2 2021-05-27 (the time of an image is its end).
    assert [str(p)[-1] for p in ds["product_id"].values] == ["1", "0", "2"]
    for t, pid in enumerate(ds["product_id"].values):
        want = _iq(folder / f"{pid}.h5")
        got = ds["slc"].isel(time=t).values
        assert got.dtype == np.complex64
        np.testing.assert_array_equal(got, want)
    _assert_per_time_coords(ds, folder)
    assert ds.attrs["product_type"] == "SLC"


@pytest.mark.parametrize(
    ("iq_dtype", "shape", "chunks"),
    [
        ("int16", (37, 53), {"azimuth": 16, "range": 24}),
        ("float32", (45, 29), {"azimuth": 20, "range": 8}),
    ],
)
def test_generated_legacy_slc_stack_is_bit_exact(tmp_path, dask_scheduler, iq_dtype, shape, chunks):
    folder = tmp_path / "products"
    specs = make_stack(
        folder, n=4, shape=shape, start=START, days=8, flavour="legacy-slc", iq_dtype=iq_dtype
    )
    ingest([str(folder)], str(tmp_path / "cat"))
    ds = _build(tmp_path / "cat", {"chunks": chunks}, tmp_path / "cube.zarr", dask_scheduler)
    assert ds.sizes == {"time": len(specs), "azimuth": shape[0], "range": shape[1]}
    assert ds["slc"].encoding["chunks"] == (1, chunks["azimuth"], chunks["range"])
    assert list(ds["time"].values) == sorted(_end(s) for s in specs)
    for spec in specs:
        t = list(ds["acquisition_end"].values).index(_end(spec))
        i, q = expected_pixels(spec, "SLC", iq_dtype=iq_dtype)
        assert i.dtype == np.dtype(iq_dtype)
        got = ds["slc"].isel(time=t).values
        np.testing.assert_array_equal(got.real, i)
        np.testing.assert_array_equal(got.imag, q)
        np.testing.assert_array_equal(got, _iq(folder / f"{spec.product_id}.h5"))
    _assert_per_time_coords(ds, folder)


def test_slc_cog_stack_equals_amplitude_phase_to_float32_precision(tmp_path, dask_scheduler):
    folder = tmp_path / "products"
    shape = (41, 30)  # shadows-down in the file: 30 rows (range) x 41 columns (azimuth, reversed)
    specs = make_stack(folder, n=3, shape=shape, start=START, days=6, flavour="slc-cog")
    ingest([str(folder)], str(tmp_path / "cat"))
    chunks = {"azimuth": 16, "range": 12}
    ds = _build(tmp_path / "cat", {"chunks": chunks}, tmp_path / "cube.zarr", dask_scheduler)
    assert ds["slc"].dtype == np.complex64
    assert ds.sizes == {"time": 3, "azimuth": shape[0], "range": shape[1]}
    for spec in specs:
        t = list(ds["acquisition_end"].values).index(_end(spec))
        amplitude, phase = expected_pixels(spec, "SLC", cog=True).astype(np.float64)
        want = amplitude * np.exp(1j * phase)
        # The cube computes in float32: each part is within a few float32 ulps of |slc| (numpy's
        # float32 sin/cos and one rounded product), i.e. |error| <= ~3e-7 * |slc|. assert_allclose on
        # complex numbers compares |got - want| with rtol * |want|, so rtol=1e-6 bounds that
        # relative error and no absolute slack is needed (a zero amplitude gives exactly 0).
        np.testing.assert_allclose(ds["slc"].isel(time=t).values, want, rtol=1e-6, atol=0)
    _assert_per_time_coords(ds, folder)


def test_slc_cog_reader_undoes_shadows_down(tmp_path):
    spec = make_stack(tmp_path, n=1, shape=(9, 7), start=START, flavour="slc-cog")[0]
    tif = next(tmp_path.glob("*.tif"))
    amplitude, phase = expected_pixels(spec, "SLC", cog=True)
    reader = SlcCogReader(str(tif), orientation="shadows-down")
    try:
        got = reader.read(Window(2, 8, 1, 5))
    finally:
        reader.close()
    np.testing.assert_allclose(got, (amplitude * np.exp(1j * phase))[2:8, 1:5], rtol=1e-6, atol=0)


@pytest.mark.parametrize("orientation", ["shadows-down", "native"])
def test_slc_cog_reader_is_the_float32_formula_bit_for_bit(tmp_path, orientation):
    # 1100 x 70 physical = 70 file rows x 1100 file columns: several of the reader's compute tiles
    # (32 x 1024) each way, and windows that start and end inside them.
    spec = make_stack(tmp_path, n=1, shape=(1100, 70), start=START, flavour="slc-cog")[0]
    tif = next(tmp_path.glob("*.tif"))
    bands = expected_pixels(spec, "SLC", cog=True)
    if orientation == "native":  # the file read as it is laid out: rows are range
        bands = np.ascontiguousarray(np.swapaxes(bands, 1, 2)[:, :, ::-1])
    amplitude, phase = bands
    want = np.empty(amplitude.shape, np.complex64)  # the contract, whole-band, in float32
    want.real = amplitude * np.cos(phase)
    want.imag = amplitude * np.sin(phase)
    reader = SlcCogReader(str(tif), orientation=orientation)
    try:
        h, w = amplitude.shape
        for win in (Window(0, h, 0, w), Window(7, h - 3, 5, w - 1), Window(h - 1, h, 0, 1)):
            got = reader.read(win)
            assert got.dtype == np.complex64 and got.flags.c_contiguous
            np.testing.assert_array_equal(
                got.view(np.uint64), want[win.az0 : win.az1, win.rg0 : win.rg1].view(np.uint64)
            )
    finally:
        reader.close()


def test_hdf5_reader_rejects_windows_outside_and_inexact_types(tmp_path):
    path = tmp_path / "x.h5"
    with h5py.File(path, "w") as h5:
        h5["s_i"] = np.zeros((4, 5), np.int16)
        h5["s_q"] = np.zeros((4, 5), np.float64)
    reader = Hdf5SlcReader(str(path), shape=(4, 5))
    try:
        with pytest.raises(ProductError, match=r"'s_q'.*float64"):
            reader.read(Window(0, 4, 0, 5))
    finally:
        reader.close()
    with h5py.File(path, "r+") as h5:
        del h5["s_q"]
        h5["s_q"] = np.zeros((4, 5), np.int16)
    reader = Hdf5SlcReader(str(path), shape=(4, 5))
    try:
        assert reader.read(Window(0, 4, 0, 5)).dtype == np.complex64
        with pytest.raises(ProductError, match="outside the image"):
            reader.read(Window(0, 5, 0, 5))
    finally:
        reader.close()


def test_slc_missing_s_q_fails_naming_file_and_leaves_no_cube(tmp_path, dask_scheduler):
    folder = tmp_path / "products"
    specs = make_stack(folder, n=3, shape=(16, 12), start=START, flavour="legacy-slc")
    ingest([str(folder)], str(tmp_path / "cat"))
    victim = folder / f"{specs[1].product_id}.h5"
    with h5py.File(victim, "r+") as h5:  # after ingest: the catalog still lists it
        del h5["s_q"]
    reader = Hdf5SlcReader(str(victim), shape=(16, 12))
    try:
        with pytest.raises(ProductError, match="missing dataset 's_q'") as info:
            reader.read(Window(0, 16, 0, 12))
        assert info.value.path == str(victim)
    finally:
        reader.close()
    out = tmp_path / "cube.zarr"
    with pytest.raises(ProductError, match=rf"{victim.name}.*s_q"):
        build_cube(str(tmp_path / "cat"), {}, str(out), scheduler=dask_scheduler)
    assert not out.exists()


def test_mixed_catalog_builds_only_slc(tmp_path, dask_scheduler):
    folder = tmp_path / "products"
    slc = make_stack(folder / "slc", n=3, shape=(20, 18), start=START, flavour="legacy-slc")
    make_stack(folder / "grd", n=3, shape=(24, 24), start=START, flavour="legacy-grd", seed=5)
    ingest([str(folder / "slc"), str(folder / "grd")], str(tmp_path / "cat"))
    ds = _build(tmp_path / "cat", {"product_type": "SLC"}, tmp_path / "cube.zarr", dask_scheduler)
    assert set(ds.data_vars) == {"slc"}
    assert sorted(map(str, ds["product_id"].values)) == sorted(s.product_id for s in slc)
    assert ds.attrs["product_type"] == "SLC"


def test_complex64_zarr_encoding_round_trips(tmp_path, dask_scheduler):
    folder = tmp_path / "products"
    make_stack(folder, n=2, shape=(33, 17), start=START, flavour="legacy-slc", iq_dtype="float32")
    ingest([str(folder)], str(tmp_path / "cat"))
    out = tmp_path / "cube.zarr"
    ds = _build(tmp_path / "cat", {"chunks": {"azimuth": 16, "range": 16}}, out, dask_scheduler)
    meta = json.loads((out / "slc" / "zarr.json").read_text())
    assert meta["data_type"] == "complex64"
    (blosc,) = (c for c in meta["codecs"] if c["name"] == "blosc")
    assert (
        blosc["configuration"]["cname"] == "lz4"
    )  # the documented default (README, config.Compression)
    assert blosc["configuration"]["shuffle"] == "bitshuffle"
    assert blosc["configuration"]["typesize"] == 8
    chunk_files = [p for p in (out / "slc" / "c").rglob("*") if p.is_file()]
    assert len(chunk_files) == 2 * 3 * 2
    # Plain xarray, fresh handle, no icecube_cloud code: values come back as complex64.
    plain = xr.open_zarr(out, consolidated=True)
    assert plain["slc"].dtype == np.complex64
    for t, pid in enumerate(plain["product_id"].values):
        np.testing.assert_array_equal(plain["slc"][t].values, _iq(folder / f"{pid}.h5"))
    assert ds["slc"].dtype == np.complex64


def test_slc_from_s3_reads_hdf5_windows(tmp_path, dask_scheduler, moto_s3):
    fs = fsspec.filesystem("s3", **dict(moto_s3.storage_options), skip_instance_cache=True)
    prefix = f"{moto_s3.make_bucket('icecube-slc')[5:]}/stack"
    local = tmp_path / "products"
    specs = make_stack(local, n=3, shape=(40, 36), start=START, flavour="legacy-slc", seed=4)
    fs.put(f"{local}/", f"{prefix}/products/", recursive=True)
    so = moto_s3.storage_options
    ingest([f"s3://{prefix}/products/"], f"s3://{prefix}/cat", storage_options=so)
    out = tmp_path / "cube.zarr"
    build_cube(
        f"s3://{prefix}/cat",
        {"chunks": {"azimuth": 16, "range": 16}},
        str(out),
        storage_options=so,
        scheduler=dask_scheduler,
    )
    ds = xr.open_zarr(out)
    for spec in specs:
        t = list(ds["product_id"].values).index(spec.product_id)
        np.testing.assert_array_equal(
            ds["slc"].isel(time=t).values, _iq(local / f"{spec.product_id}.h5")
        )


def test_remote_hdf5_window_read_fetches_a_fraction_of_the_file(tmp_path, moto_s3):
    fs = fsspec.filesystem("s3", **dict(moto_s3.storage_options), skip_instance_cache=True)
    prefix = f"{moto_s3.make_bucket('icecube-slc')[5:]}/big"
    spec = make_stack(
        tmp_path, n=1, shape=(1024, 768), start=START, flavour="legacy-slc", iq_dtype="float32"
    )[0]
    path = tmp_path / f"{spec.product_id}.h5"
    fs.put(str(path), f"{prefix}/x.h5")
    size = path.stat().st_size  # ~6 MiB of I/Q
    reader = Hdf5SlcReader(
        f"s3://{prefix}/x.h5", shape=(1024, 768), storage_options=moto_s3.storage_options
    )
    try:
        got = reader.read(Window(100, 132, 700, 768))
        fetched = reader.bytes_fetched
    finally:
        reader.close()
    np.testing.assert_array_equal(got, _iq(path)[100:132, 700:768])
    assert 0 < fetched < size / 4
