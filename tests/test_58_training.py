"""Training data (issue #15): calibration, patches equal to the cube's windows, splits, DataLoader."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr
import zarr

from icecube_cloud.build import build_cube
from icecube_cloud.cube import open_cube
from icecube_cloud.errors import DataError, UsageError
from icecube_cloud.ingest import ingest
from icecube_cloud.ml import PatchDataset, Region, calibrate, split_regions
from icecube_cloud.ml.cubestore import ChunkFiles
from icecube_cloud.synthetic import make_stack


def test_calibration_follows_the_formula_and_floors(grd_cube):
    ds = open_cube(grd_cube)
    dn = ds["amplitude"].values.astype(np.float64)
    cf = ds["calibration_factor"].values[:, None, None]
    sin = np.sin(np.deg2rad(ds["incidence_angle"].values))[:, None, None]
    valid = ds["valid"].values
    assert (~valid).sum() == 2 and (dn[valid] > 0).all()
    beta0 = calibrate(ds, "beta0", db=False)
    assert beta0.dtype == np.float32 and beta0.dims == ds["amplitude"].dims
    np.testing.assert_allclose(beta0.values[valid], (cf * dn**2)[valid], rtol=1e-6)
    assert np.isnan(beta0.values[~valid]).all()  # a gap has no calibration factor
    sigma0 = calibrate(ds, "sigma0", db=False).values
    np.testing.assert_allclose(sigma0[valid], (cf * dn**2 * sin)[valid], rtol=1e-6)
    sigma0_db = calibrate(ds).values  # the defaults: sigma0 in dB, floor -50
    np.testing.assert_allclose(
        sigma0_db[valid], 10 * np.log10(np.maximum(cf * dn**2 * sin, 1e-5))[valid], atol=1e-4
    )
    assert (sigma0_db[~valid] == -50.0).all() and np.isfinite(sigma0_db).all()
    # DN 0 and anything at or below the floor are the floor, never -inf.
    zeroed = ds.copy()
    zeroed["amplitude"] = ds["amplitude"].where(ds["amplitude"] > 400, 0)
    low = calibrate(zeroed, "beta0", floor_db=-20.0).values
    assert np.isfinite(low).all() and low.min() == -20.0
    assert ((low == -20.0) == ~(10 * np.log10(np.maximum(cf * dn**2, 1e-30)) > -20.0))[
        zeroed["amplitude"].values > 0
    ].all()


def test_calibration_of_slc_uses_the_complex_power(slc_cube):
    ds = open_cube(slc_cube)
    slc = ds["slc"].values
    cf = ds["calibration_factor"].values[:, None, None]
    expected = cf * (slc.real.astype(np.float64) ** 2 + slc.imag.astype(np.float64) ** 2)
    np.testing.assert_allclose(calibrate(ds, "beta0", db=False).values, expected, rtol=1e-6)
    with pytest.raises(UsageError, match="quantity"):
        calibrate(ds, "gamma0")  # type: ignore[arg-type]


@pytest.mark.parametrize("input", ["amplitude", "beta0_db", "sigma0_db"])
@pytest.mark.parametrize("sampler", ["grid", "random"])
def test_grd_patches_equal_the_cubes_windows(grd_cube, input, sampler):
    ds = open_cube(grd_cube)
    expected = {
        "amplitude": ds["amplitude"].astype(np.float32),
        "beta0_db": calibrate(ds, "beta0"),
        "sigma0_db": calibrate(ds, "sigma0"),
    }[input].values
    labels = ds["labels"].values
    data = PatchDataset(grd_cube, size=64, input=input, sampler=sampler, times=2, num_samples=30)
    rng = np.random.default_rng(3)
    for i in rng.choice(len(data), 12, replace=False):
        item = data[int(i)]
        t, r, c = item["time"], item["row"], item["col"]
        assert item["x"].dtype == torch.float32 and item["x"].shape == (2, 64, 64)
        np.testing.assert_array_equal(
            item["x"].numpy(), expected[t : t + 2, r : r + 64, c : c + 64]
        )
        assert item["y"].dtype == torch.int64 and item["y"].shape == (64, 64)
        np.testing.assert_array_equal(item["y"].numpy(), labels[t + 1, r : r + 64, c : c + 64])
        assert ds["valid"].values[t : t + 2].all()
    assert (labels > 0).any()  # the field is in the cube, so y can be compared with something


def test_slc_and_map_patches_equal_the_cubes_windows(slc_cube, map_cube):
    ds = open_cube(slc_cube)
    data = PatchDataset(slc_cube, size=32, input="complex", sampler="random", num_samples=8)
    for i in range(8):
        item = data[i]
        t, r, c = item["time"], item["row"], item["col"]
        window = ds["slc"].values[t, r : r + 32, c : c + 32]
        assert item["x"].shape == (1, 2, 32, 32)
        np.testing.assert_array_equal(item["x"].numpy()[0, 0], window.real)
        np.testing.assert_array_equal(item["x"].numpy()[0, 1], window.imag)
        np.testing.assert_array_equal(
            item["y"].numpy(), ds["labels"].values[t, r : r + 32, c : c + 32]
        )
    sigma = calibrate(ds, "sigma0").values
    data = PatchDataset(slc_cube, size=40, input="sigma0_db", label=None)
    assert "y" not in data[0]
    for i in range(len(data)):
        item = data[i]
        t, r, c = item["time"], item["row"], item["col"]
        np.testing.assert_array_equal(item["x"].numpy()[0], sigma[t, r : r + 40, c : c + 40])
    ds = open_cube(map_cube)
    sigma = calibrate(ds).values
    data = PatchDataset(map_cube, size=48, sampler="random", num_samples=10, seed=4)
    for i in range(10):
        item = data[i]
        t, r, c = item["time"], item["row"], item["col"]
        np.testing.assert_array_equal(item["x"].numpy()[0], sigma[t, r : r + 48, c : c + 48])
        np.testing.assert_array_equal(
            item["y"].numpy(), ds["labels"].values[t, r : r + 48, c : c + 48]
        )


def test_grid_sampler_covers_every_pixel_of_every_image_edges_included(grd_cube):
    ds = open_cube(grd_cube)
    valid = ds["valid"].values
    data = PatchDataset(grd_cube, size=64, input="amplitude", label=None)
    hits = np.zeros(ds["amplitude"].shape, dtype=np.int32)
    for i in range(len(data)):
        t, r, c = data.window(i)
        assert 0 <= r <= 300 - 64 and 0 <= c <= 260 - 64
        hits[t, r : r + 64, c : c + 64] += 1
    assert (hits[valid] >= 1).all()  # every pixel of every image, the last rows/cols included
    assert (hits[~valid] == 0).all()  # gap slices are never sampled
    # 300 rows: 0, 64, 128, 192 and the last shifted in to 236; 260 cols: ..., 192, 196.
    assert len(data) == valid.sum() * 5 * 5
    assert list(np.flatnonzero(valid)) == [0, 2, 3, 5]
    pairs = PatchDataset(grd_cube, size=64, label=None, times=2)  # two images in a row: 2 and 3
    assert len(pairs) == 25 and {pairs.window(i)[0] for i in range(25)} == {2}


def test_random_sampler_is_seeded_and_chunk_aligned(grd_cube):
    a = PatchDataset(grd_cube, size=64, sampler="random", num_samples=50, seed=7, label=None)
    b = PatchDataset(grd_cube, size=64, sampler="random", num_samples=50, seed=7, label=None)
    other = PatchDataset(grd_cube, size=64, sampler="random", num_samples=50, seed=8, label=None)
    windows = [a.window(i) for i in range(50)]
    assert windows == [b.window(i) for i in range(50)]
    assert windows != [other.window(i) for i in range(50)]
    assert all(r in (0, 64, 128, 192, 236) and c in (0, 64, 128, 192, 196) for _, r, c in windows)
    free = PatchDataset(
        grd_cube, size=64, sampler="random", num_samples=50, aligned=False, label=None
    )
    assert {r % 64 for _, r, _ in (free.window(i) for i in range(50))} - {0}


def test_min_data_skips_fill_of_map_cubes(map_cube):
    ds = open_cube(map_cube)
    amplitude = ds["amplitude"].values
    every = PatchDataset(map_cube, size=32, input="amplitude", label=None)
    kept = PatchDataset(map_cube, size=32, input="amplitude", label=None, min_data=0.9)
    assert 0 < len(kept) < len(every)
    fractions = {}
    for i in range(len(every)):
        t, r, c = every.window(i)
        fractions[(t, r, c)] = (amplitude[t, r : r + 32, c : c + 32] != 0).mean()
    assert {kept.window(i) for i in range(len(kept))} == {
        w for w, f in fractions.items() if f >= 0.9
    }
    drawn = PatchDataset(
        map_cube, size=32, label=None, sampler="random", num_samples=20, min_data=0.9
    )
    for i in range(20):
        item = drawn[i]
        t, r, c = item["time"], item["row"], item["col"]
        assert (amplitude[t, r : r + 32, c : c + 32] != 0).mean() >= 0.9


def test_split_by_space_leaves_no_shared_pixel_and_keeps_the_buffer(grd_cube):
    regions = split_regions(grd_cube, by="space", fractions=(0.6, 0.2, 0.2), buffer=20, seed=1)
    assert len(regions) == 3
    covered = []
    for region in regions:
        mask = np.zeros((300, 260), dtype=bool)
        data = PatchDataset(grd_cube, size=32, label=None, region=region)
        for i in range(len(data)):
            _, r, c = data.window(i)
            mask[r : r + 32, c : c + 32] = True
        covered.append(mask)
        rows = region.rows
        assert mask[rows[0] : rows[1]].all()  # the grid covers the whole strip ...
        assert not mask[: rows[0]].any() and not mask[rows[1] :].any()  # ... and nothing else
    sizes = [r.rows[1] - r.rows[0] for r in regions]
    assert sum(sizes) == 300 - 2 * 20 and sizes[0] > sizes[1]
    for i in range(3):
        for j in range(i + 1, 3):
            assert not (covered[i] & covered[j]).any()
            ri, rj = sorted([regions[i].rows, regions[j].rows])
            assert rj[0] - ri[1] >= 20
    assert split_regions(grd_cube, fractions=(0.5, 0.5), seed=0) != split_regions(
        grd_cube, fractions=(0.5, 0.5), seed=2
    ) or split_regions(grd_cube, fractions=(0.5, 0.5), seed=3) != split_regions(
        grd_cube, fractions=(0.5, 0.5), seed=0
    )


def test_split_by_time_gives_whole_slices(grd_cube):
    valid = open_cube(grd_cube)["valid"].values  # images at 0, 2, 3, 5
    first, second = split_regions(grd_cube, by="time", fractions=(3, 1))
    assert (first.rows, first.cols) == ((0, 300), (0, 260)) == (second.rows, second.cols)
    times = [
        {PatchDataset(grd_cube, size=64, label=None, region=r).window(i)[0] for i in range(25 * k)}
        for r, k in ((first, 3), (second, 1))
    ]
    assert times == [{0, 2, 3}, {5}] and valid[[0, 2, 3, 5]].all()
    with pytest.raises(UsageError, match="cannot make 2 parts"):
        split_regions(grd_cube, by="time", buffer=3)


def test_dataloader_with_forked_workers_after_dask_in_the_parent(grd_cube, moto_s3):
    """The Linux default (fork) with 2 worker processes, after the parent computed with dask (the
    state in which xbatcher's workers hang), over a local cube and the same cube in S3 (moto)."""
    import s3fs

    calibrate(open_cube(grd_cube)).mean().compute()  # dask's thread pool now exists in the parent
    fs = s3fs.S3FileSystem(**moto_s3.storage_options, skip_instance_cache=True)
    bucket = moto_s3.make_bucket("icecube-train").removeprefix("s3://")
    fs.put(f"{grd_cube}/", f"{bucket}/cube.zarr/", recursive=True)
    ds = open_cube(grd_cube)
    sigma, labels = calibrate(ds).values, ds["labels"].values
    for url, options in ((grd_cube, None), (f"s3://{bucket}/cube.zarr", moto_s3.storage_options)):
        data = PatchDataset(url, size=64, storage_options=options)
        loader = torch.utils.data.DataLoader(
            data, batch_size=16, num_workers=2, shuffle=True, timeout=120
        )
        assert loader.multiprocessing_context is None  # the platform default: fork on Linux
        seen = 0
        for batch in loader:
            for k in range(len(batch["time"])):
                t, r, c = (int(batch[n][k]) for n in ("time", "row", "col"))
                np.testing.assert_array_equal(
                    batch["x"][k, 0].numpy(), sigma[t, r : r + 64, c : c + 64]
                )
                np.testing.assert_array_equal(
                    batch["y"][k].numpy(), labels[t, r : r + 64, c : c + 64]
                )
            seen += len(batch["time"])
        assert seen == len(data) == 4 * 25


def test_bad_arguments_name_what_is_wrong(grd_cube, slc_cube, tmp_path):
    with pytest.raises(UsageError, match="input='complex' needs an SLC cube"):
        PatchDataset(grd_cube, input="complex")
    with pytest.raises(UsageError, match="input='db'"):
        PatchDataset(grd_cube, input="db")
    with pytest.raises(UsageError, match="does not fit"):
        PatchDataset(slc_cube, size=128)
    with pytest.raises(UsageError, match="exceeds"):
        PatchDataset(grd_cube, size=8, region=Region((0, 6), (0, 400), (0, 10)))
    with pytest.raises(DataError, match="not a cube"):
        PatchDataset(str(tmp_path / "nothing.zarr"))
    with pytest.raises(UsageError, match="build the cube with --format zarr"):
        PatchDataset(str(tmp_path / "virtual.json"))
    with pytest.raises(UsageError, match="fractions"):
        split_regions(grd_cube, fractions=(1.0,))
    with pytest.raises(UsageError, match="cannot hold 2 regions"):
        split_regions(slc_cube, buffer=200)


def test_unlabelled_cube_needs_label_none(tmp_path, dask_scheduler):
    make_stack(tmp_path / "p", n=2, shape=(40, 40), flavour="legacy-grd")
    ingest([str(tmp_path / "p")], str(tmp_path / "cat"))
    out = str(tmp_path / "c.zarr")
    build_cube(str(tmp_path / "cat"), {}, out, scheduler=dask_scheduler, register=False)
    with pytest.raises(UsageError, match="label=None"):
        PatchDataset(out, size=16)
    assert len(PatchDataset(out, size=16, label=None)) == 2 * 9
    assert isinstance(open_cube(out), xr.Dataset)


def test_local_windows_are_read_from_chunk_files_exactly_as_zarr_reads_them(map_cube, tmp_path):
    """Local cubes are decoded straight from their chunk files (``ChunkFiles``), bit for bit what
    zarr reads: windows across chunk edges, padded edge chunks, chunks never written (fill), labels;
    other layouts (here a sharded array) are read by zarr."""
    group = zarr.open_group(map_cube, mode="r")
    arrays = {name: group[name] for name in ("amplitude", "labels")}
    amplitude = arrays["amplitude"]
    grid = [-(-n // c) for n, c in zip(amplitude.shape, amplitude.chunks, strict=True)]
    stored = list((Path(map_cube) / "amplitude" / "c").rglob("*"))
    assert 0 < len([p for p in stored if p.is_file()]) < np.prod(grid)  # some chunks are fill only
    rng = np.random.default_rng(3)
    for name, array in arrays.items():
        files = ChunkFiles.of(array)
        assert files is not None, name
        whole = tuple(slice(0, n) for n in array.shape)
        np.testing.assert_array_equal(files.read(whole), array[whole])
        for _ in range(40):
            starts = [int(rng.integers(0, n)) for n in array.shape]
            window = tuple(
                slice(a, int(rng.integers(a + 1, n + 1)))
                for a, n in zip(starts, array.shape, strict=True)
            )
            got = files.read(window)
            assert got.dtype == array.dtype
            np.testing.assert_array_equal(got, array[window])
    sharded = zarr.create_array(
        str(tmp_path / "sharded.zarr"), shape=(2, 70, 50), chunks=(1, 16, 16), shards=(1, 32, 32),
        dtype="uint16", fill_value=0, zarr_format=3,
    )  # fmt: skip
    sharded[...] = np.arange(2 * 70 * 50, dtype=np.uint16).reshape(2, 70, 50)
    assert ChunkFiles.of(sharded) is None
