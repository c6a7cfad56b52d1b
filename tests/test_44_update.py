"""``update``: new acquisitions join a cube in place, idempotently, touching no old chunk (issue #7.3)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import xarray as xr
import zarr
from helpers import assert_gap_fill_values

from icecube_cloud.build import build_cube
from icecube_cloud.ingest import ingest
from icecube_cloud.synthetic import expected_pixels, make_stack
from icecube_cloud.update import update_cube

EXE = str(Path(sys.executable).parent / "icecube-cloud")
START = datetime(2021, 4, 20, 10, tzinfo=UTC)


def _objects(root: Path) -> dict[str, tuple[int, bytes]]:
    return {
        str(p.relative_to(root)): (p.stat().st_mtime_ns, p.read_bytes())
        for p in root.rglob("*")
        if p.is_file() and "_icecube" not in p.parts
    }


def _without_times(tree: dict[str, tuple[int, bytes]]) -> dict[str, bytes]:
    out = {k: v[1] for k, v in tree.items()}
    root = json.loads(out.pop("zarr.json"))
    for key in ("created", "updated"):
        root["attributes"].pop(key, None)
    out["zarr.json"] = json.dumps(root, sort_keys=True).encode()
    return out


def test_append_update_twice_equals_rebuild(tmp_path, dask_scheduler):
    cat, cube = str(tmp_path / "cat"), tmp_path / "cube.zarr"
    first = make_stack(tmp_path / "a", n=6, shape=(64, 48), start=START, days=12, seed=1)
    ingest([str(tmp_path / "a")], cat)
    cfg = {"chunks": {"azimuth": 32, "range": 32}}
    build_cube(cat, cfg, str(cube), scheduler=dask_scheduler, register=False)
    before = _objects(cube)

    later = make_stack(
        tmp_path / "b", n=3, shape=(64, 48), start=START + timedelta(days=20), days=4, seed=2
    )
    ingest([str(tmp_path / "b")], cat)
    result = update_cube(str(cube), scheduler=dask_scheduler)
    assert result.rewritten == (6, 7, 8) and len(result.added) == 3
    assert result.chunks_written == 3 * 4

    after = _objects(cube)
    old_chunks = [k for k in before if k.startswith("amplitude/c/")]
    assert old_chunks and all(
        after[k] == before[k] for k in old_chunks
    )  # untouched (same mtime, bytes)
    ds = xr.open_zarr(cube)
    assert ds.sizes["time"] == 9 and ds.attrs["icecube_cloud_status"] == "complete"
    for t, pid in enumerate(str(p) for p in ds["product_id"].values):
        spec = next(s for s in first + later if s.product_id == pid)
        np.testing.assert_array_equal(
            ds["amplitude"].isel(time=t).values, expected_pixels(spec, "GRD")
        )

    again = update_cube(str(cube), scheduler=dask_scheduler)  # nothing new: nothing written
    assert again.rewritten == () and _objects(cube) == after

    rebuilt = tmp_path / "rebuilt.zarr"
    build_cube(cat, cfg, str(rebuilt), scheduler=dask_scheduler, register=False)
    assert _without_times(_objects(cube)) == _without_times(_objects(rebuilt))


def test_update_of_a_sharded_cube_equals_rebuild(tmp_path, dask_scheduler):
    """Update writes whole shards with the cube's layout; old shards stay untouched."""
    cat, cube = str(tmp_path / "cat"), tmp_path / "cube.zarr"
    make_stack(tmp_path / "a", n=3, shape=(64, 48), start=START, days=6, seed=1)
    ingest([str(tmp_path / "a")], cat)
    cfg = {"chunks": {"azimuth": 16, "range": 16}, "shards": {"azimuth": 32, "range": 48}}
    build_cube(cat, cfg, str(cube), scheduler=dask_scheduler, register=False)
    before = _objects(cube)
    make_stack(tmp_path / "b", n=2, shape=(64, 48), start=START + timedelta(days=9), days=2, seed=2)
    ingest([str(tmp_path / "b")], cat)
    result = update_cube(str(cube), scheduler=dask_scheduler)
    assert result.rewritten == (3, 4) and result.chunks_written == 2 * 2  # 2 shards per image

    after = _objects(cube)
    old = [k for k in before if k.startswith("amplitude/c/")]
    assert len(old) == 3 * 2 and all(after[k] == before[k] for k in old)
    ds = xr.open_zarr(cube)
    assert ds["amplitude"].encoding["shards"] == (1, 32, 48) and ds.sizes["time"] == 5
    rebuilt = tmp_path / "rebuilt.zarr"
    build_cube(cat, cfg, str(rebuilt), scheduler=dask_scheduler, register=False)
    assert _without_times(_objects(cube)) == _without_times(_objects(rebuilt))


def test_insert_and_filled_gap_rewrite_only_what_moved(tmp_path, dask_scheduler):
    cat, cube = str(tmp_path / "cat"), tmp_path / "cube.zarr"
    make_stack(tmp_path / "a", n=6, shape=(32, 32), start=START, days=12, seed=3)
    ingest([str(tmp_path / "a")], cat)
    cfg = {"temporal_resolution": 2, "start_date": "20210420", "end_date": "20210503"}
    build_cube(cat, cfg, str(cube), scheduler=dask_scheduler, register=False)
    ds = xr.open_zarr(cube)
    gaps = [t for t, v in enumerate(ds["valid"].values) if not v]
    assert gaps, "the bins must leave gaps"
    gap = gaps[0]
    bin_start = ds["time"].values[gap].astype("datetime64[s]").item().replace(tzinfo=UTC)
    make_stack(
        tmp_path / "b", n=1, shape=(32, 32), start=bin_start + timedelta(hours=3), days=1, seed=4
    )
    ingest([str(tmp_path / "b")], cat)
    r = subprocess.run(
        [EXE, "update", str(cube), "--scheduler", dask_scheduler], capture_output=True, text=True
    )
    assert r.returncode == 0, r.stderr
    assert "1 new acquisitions, 1 time slices written" in r.stdout  # the filled bin only
    ds = xr.open_zarr(cube)
    assert bool(ds["valid"].values[gap]) and ds.sizes["time"] == len(ds["valid"])
    r = subprocess.run(
        [EXE, "update", str(cube), "--scheduler", dask_scheduler], capture_output=True, text=True
    )
    assert r.returncode == 0 and "up to date" in r.stdout


def test_update_with_gaps_equals_rebuild(tmp_path, dask_scheduler):
    """Gap slices old and new carry the same fill values as a fresh build's (same bytes)."""
    cat, cube = str(tmp_path / "cat"), tmp_path / "cube.zarr"
    make_stack(tmp_path / "a", n=3, shape=(32, 32), start=START, days=6, seed=5)
    ingest([str(tmp_path / "a")], cat)
    cfg = {"temporal_resolution": 1}
    build_cube(cat, cfg, str(cube), scheduler=dask_scheduler, register=False)
    n_before = xr.open_zarr(cube).sizes["time"]
    make_stack(tmp_path / "b", n=2, shape=(32, 32), start=START + timedelta(days=9), days=4, seed=6)
    ingest([str(tmp_path / "b")], cat)
    result = update_cube(str(cube), scheduler=dask_scheduler)
    assert len(result.added) == 2
    group = zarr.open_group(cube, mode="r", zarr_format=3)
    assert group["valid"].shape[0] > n_before
    assert_gap_fill_values(group, zarr_format=3)
    rebuilt = tmp_path / "rebuilt.zarr"
    build_cube(cat, cfg, str(rebuilt), scheduler=dask_scheduler, register=False)
    assert _without_times(_objects(cube)) == _without_times(_objects(rebuilt))


def test_insert_in_the_middle_rewrites_the_tail_only(tmp_path, dask_scheduler):
    cat, cube = str(tmp_path / "cat"), tmp_path / "cube.zarr"
    specs = make_stack(tmp_path / "a", n=6, shape=(32, 32), start=START, days=12, seed=5)
    ingest([str(tmp_path / "a")], cat)
    build_cube(cat, {}, str(cube), scheduler=dask_scheduler, register=False)
    before = _objects(cube)
    ends = sorted(s.acquisition_end for s in specs)
    middle = ends[2] + (ends[3] - ends[2]) / 2  # strictly between the 3rd and 4th image
    extra = make_stack(tmp_path / "b", n=1, shape=(32, 32), start=middle, days=1, seed=6)
    ingest([str(tmp_path / "b")], cat)
    result = update_cube(str(cube), scheduler=dask_scheduler)
    assert result.rewritten == (3, 4, 5, 6)  # the new slice and the ones it shifted
    after = _objects(cube)
    for t in range(3):
        assert after[f"amplitude/c/{t}/0/0"] == before[f"amplitude/c/{t}/0/0"]
    ds = xr.open_zarr(cube)
    for t, pid in enumerate(str(p) for p in ds["product_id"].values):
        spec = next(s for s in specs + extra if s.product_id == pid)
        np.testing.assert_array_equal(
            ds["amplitude"].isel(time=t).values, expected_pixels(spec, "GRD")
        )


def test_append_on_s3_keeps_old_chunk_etags(tmp_path, moto_s3, dask_scheduler):
    """On object storage: old chunk objects keep their ETags, and only the new slices are PUT."""
    import fsspec

    cat = str(tmp_path / "cat")
    make_stack(tmp_path / "a", n=6, shape=(48, 40), start=START, days=12, seed=7)
    ingest([str(tmp_path / "a")], cat)
    bucket = moto_s3.make_bucket("icecube-update")
    cube = f"{bucket}/cube.zarr"
    so = moto_s3.storage_options
    build_cube(
        cat,
        {"chunks": {"azimuth": 16, "range": 16}},
        cube,
        storage_options=so,
        scheduler=dask_scheduler,
    )
    fs = fsspec.filesystem("s3", **dict(so))

    def etags() -> dict[str, str]:
        fs.invalidate_cache()
        return {p: fs.info(p)["ETag"] for p in fs.find(f"{cube}/amplitude/c")}

    before = etags()
    make_stack(
        tmp_path / "b", n=2, shape=(48, 40), start=START + timedelta(days=30), days=2, seed=8
    )
    ingest([str(tmp_path / "b")], cat)
    result = update_cube(cube, storage_options=so, scheduler=dask_scheduler)
    after = etags()
    assert result.rewritten == (6, 7)
    assert {k: after[k] for k in before} == before  # not one old chunk object rewritten
    assert len(after) - len(before) == result.chunks_written == 2 * 3 * 3


def _codec(cube: Path) -> dict[str, object]:
    doc = json.loads((cube / "amplitude" / "zarr.json").read_text())
    (blosc,) = [c["configuration"] for c in doc["codecs"] if c["name"] == "blosc"]
    return {k: blosc[k] for k in ("cname", "clevel", "shuffle")}


def test_update_keeps_the_codec_the_cube_was_built_with(tmp_path, dask_scheduler):
    # A cube from a version whose default codec was zstd: its stored config names no codec.
    cat, cube = str(tmp_path / "cat"), tmp_path / "cube.zarr"
    make_stack(tmp_path / "a", n=3, shape=(32, 32), start=START, days=6, seed=5)
    ingest([str(tmp_path / "a")], cat)
    zstd = {"cname": "zstd", "clevel": 3, "shuffle": "bitshuffle"}
    build_cube(cat, {"compression": zstd}, str(cube), scheduler=dask_scheduler, register=False)
    root = json.loads((cube / "zarr.json").read_text())
    for doc in (root["attributes"], root["consolidated_metadata"]["metadata"]["time"]):
        doc.get("icecube_cloud_config", {}).pop("compression", None)
    (cube / "zarr.json").write_text(json.dumps(root))
    assert "compression" not in xr.open_zarr(cube).attrs["icecube_cloud_config"]

    make_stack(tmp_path / "b", n=1, shape=(32, 32), start=START + timedelta(days=9), days=1, seed=6)
    ingest([str(tmp_path / "b")], cat)
    result = update_cube(str(cube), scheduler=dask_scheduler)
    assert result.rewritten == (3,)
    assert _codec(cube) == zstd  # not today's default
    assert xr.open_zarr(cube).sizes["time"] == 4


def test_update_of_a_virtual_cube_rewrites_its_references(tmp_path, dask_scheduler):
    """A kerchunk cube is updated like a Zarr one (issue #12.5: was a NotADirectoryError traceback)."""
    cat, cube = str(tmp_path / "cat"), tmp_path / "cube.json"
    first = make_stack(tmp_path / "a", n=6, shape=(32, 24), start=START, days=12, seed=5)
    ingest([str(tmp_path / "a")], cat)
    build_cube(cat, {}, str(cube), scheduler=dask_scheduler, register=False, format="kerchunk")
    r = subprocess.run(
        [EXE, "update", str(cube), "--scheduler", dask_scheduler],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert r.returncode == 0 and "up to date" in r.stdout, r.stderr
    later = make_stack(
        tmp_path / "b", n=2, shape=(32, 24), start=START + timedelta(days=20), days=4, seed=6
    )
    ingest([str(tmp_path / "b")], cat)
    r = subprocess.run(
        [EXE, "update", str(cube), "--scheduler", dask_scheduler],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert r.returncode == 0 and "2 new acquisitions" in r.stdout, r.stderr
    from icecube_cloud.cube import open_cube

    ds = open_cube(str(cube))
    assert ds.sizes["time"] == 8
    for t, pid in enumerate(str(p) for p in ds["product_id"].values):
        spec = next(s for s in first + later if s.product_id == pid)
        np.testing.assert_array_equal(
            ds["amplitude"].isel(time=t).values, expected_pixels(spec, "GRD")
        )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b", "cat", "cube.json"]


def test_update_refuses_what_is_not_a_cube(tmp_path):
    missing = subprocess.run(
        [EXE, "update", str(tmp_path / "nothing.zarr")], capture_output=True, text=True
    )
    assert missing.returncode == 1 and "no cube to update" in missing.stderr
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "a.txt").write_text("user data")
    r = subprocess.run([EXE, "update", str(folder)], capture_output=True, text=True)
    assert r.returncode == 2 and "did not write" in r.stderr and "Traceback" not in r.stderr
    assert [p.name for p in folder.iterdir()] == ["a.txt"]
    users_json = tmp_path / "refs.json"
    users_json.write_text('{"version": 1, "refs": {}}')
    r = subprocess.run([EXE, "update", str(users_json)], capture_output=True, text=True)
    assert r.returncode == 2 and "did not write" in r.stderr, r.stderr
    assert users_json.read_text() == '{"version": 1, "refs": {}}'


def test_update_of_a_damaged_cube_names_what_is_missing(tmp_path, dask_scheduler):
    """A cube that lost an array (hand-edited, half-copied) is one clear error; nothing is written."""
    cat, cube = str(tmp_path / "cat"), tmp_path / "cube.zarr"
    make_stack(tmp_path / "a", n=2, shape=(16, 16), start=START, days=2, seed=1)
    ingest([str(tmp_path / "a")], cat)
    build_cube(cat, {}, str(cube), scheduler=dask_scheduler, register=False)
    shutil.rmtree(cube / "product_id")
    root = json.loads((cube / "zarr.json").read_text())
    del root["consolidated_metadata"]["metadata"]["product_id"]
    (cube / "zarr.json").write_text(json.dumps(root))
    before = _objects(cube)
    r = subprocess.run([EXE, "update", str(cube), "-q"], capture_output=True, text=True)
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    assert f"{cube}: the cube has no array 'product_id'" in r.stderr
    assert _objects(cube) == before and not list((cube / "_icecube").glob("lease*"))
