"""Never destroy what we did not create (SPEC §9, issue #12.1): outputs tried as a careless user would.

Every case runs the real CLI (exit code, message) and compares every byte, name and modification time
left at the output location (folders included, so that bookkeeping added and removed again shows).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
import s3fs
import xarray as xr

from icecube_cloud.ingest import ingest
from icecube_cloud.synthetic import make_stack
from icecube_cloud.testing.moto import MotoServer

EXE = str(Path(sys.executable).parent / "icecube-cloud")
START = datetime(2021, 4, 20, 10, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four small legacy GRDs in a static catalog, and a config; the tests never write here."""
    root = tmp_path_factory.mktemp("safety")
    make_stack(root / "products", n=4, shape=(24, 20), start=START, days=4, flavour="legacy-grd")
    ingest([str(root / "products")], str(root / "cat"))
    (root / "cfg.json").write_text("{}")
    return root


def run(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None):
    return subprocess.run(
        [EXE, *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=300
    )


def build(stack: Path, out: str, scheduler: str, *extra: str, cwd: Path | None = None):
    return run(
        "build", "--stac-url", str(stack / "cat"), "--config", str(stack / "cfg.json"),
        "--out", out, "--scheduler", scheduler, "--no-register", *extra, cwd=cwd,
    )  # fmt: skip


def snapshot(root: Path) -> dict[str, tuple[object, ...]]:
    """Every entry under ``root`` (itself included): kind, bytes, mode and modification time."""
    entries: dict[str, tuple[object, ...]] = {}
    for path in [root, *sorted(root.rglob("*"))]:
        st = path.lstat()
        rel = str(path.relative_to(root))
        if path.is_dir():
            entries[rel] = ("dir", st.st_mode, st.st_mtime_ns)
        else:
            entries[rel] = ("file", path.read_bytes(), st.st_mode, st.st_mtime_ns)
    return entries


@pytest.fixture
def user_folder(tmp_path: Path) -> Path:
    """A folder of a user's own files, nested ones included."""
    folder = tmp_path / "mydata"
    (folder / "raw").mkdir(parents=True)
    (folder / "notes.txt").write_text("field notes, not backed up anywhere")
    (folder / "raw" / "scene.bin").write_bytes(os.urandom(4096))
    return folder


@pytest.mark.parametrize("overwrite", [False, True])
def test_users_folder_is_refused_and_left_as_it_was(stack, user_folder, dask_scheduler, overwrite):
    before = snapshot(user_folder)
    r = build(stack, str(user_folder), dask_scheduler, *(["--overwrite"] if overwrite else []))
    assert r.returncode == 2, r.stderr
    assert str(user_folder) in r.stderr and "notes.txt" in r.stderr
    assert "Nothing was changed" in r.stderr and "Traceback" not in r.stderr
    assert snapshot(user_folder) == before


def test_working_directory_is_refused(stack, tmp_path, dask_scheduler):
    work = tmp_path / "work"
    work.mkdir()
    (work / "catalog.json").write_text('{"user": "catalog"}')
    (work / "config.json").write_text("{}")
    before = snapshot(work)
    for extra in ((), ("--overwrite",)):
        r = build(stack, ".", dask_scheduler, *extra, cwd=work)
        assert r.returncode == 2, r.stderr
        assert str(work) in r.stderr and "Traceback" not in r.stderr
    assert snapshot(work) == before


def test_foreign_zarr_store_is_refused_without_bookkeeping_inside(stack, tmp_path, dask_scheduler):
    foreign = tmp_path / "other.zarr"
    xr.Dataset({"v": (("y", "x"), np.arange(12.0).reshape(3, 4))}).to_zarr(foreign, zarr_format=3)
    before = snapshot(foreign)
    for extra in ((), ("--overwrite",)):
        r = build(stack, str(foreign), dask_scheduler, *extra)
        assert r.returncode == 2, r.stderr
        assert "did not write" in r.stderr
    assert snapshot(foreign) == before
    assert not (foreign / "_icecube").exists()
    r = run("update", str(foreign))
    assert r.returncode == 2 and "did not write" in r.stderr, r.stderr
    assert snapshot(foreign) == before


def test_file_as_output_is_refused(stack, tmp_path, dask_scheduler):
    target = tmp_path / "cube.zarr"
    target.write_text("a file of the user's")
    before = snapshot(tmp_path)
    r = build(stack, str(target), dask_scheduler, "--overwrite")
    assert r.returncode == 2 and "is a file" in r.stderr, r.stderr
    assert snapshot(tmp_path) == before


def test_empty_folder_is_used_and_kept_when_the_build_fails(stack, tmp_path, dask_scheduler):
    empty = tmp_path / "empty"
    empty.mkdir()
    broken = tmp_path / "broken"  # a copy of the stack whose first product is cut short
    broken.mkdir()
    make_stack(broken / "products", n=4, shape=(24, 20), start=START, days=4, flavour="legacy-grd")
    ingest([str(broken / "products")], str(broken / "cat"))
    (broken / "cfg.json").write_text("{}")
    victim = sorted((broken / "products").glob("*.tif"))[0]
    victim.write_bytes(victim.read_bytes()[:300])
    r = build(broken, str(empty), dask_scheduler)
    assert r.returncode == 1 and victim.name in r.stderr, r.stderr
    assert empty.is_dir() and list(empty.iterdir()) == []  # kept, and empty again

    r = build(stack, str(empty), dask_scheduler)
    assert r.returncode == 0, r.stderr
    assert xr.open_zarr(empty).sizes["time"] == 4


def test_our_cube_is_replaced_only_with_overwrite(stack, tmp_path, dask_scheduler):
    out = tmp_path / "cube.zarr"
    assert build(stack, str(out), dask_scheduler).returncode == 0
    before = snapshot(out)
    r = build(stack, str(out), dask_scheduler)
    assert r.returncode == 2 and "already exists; pass --overwrite" in r.stderr, r.stderr
    assert snapshot(out) == before
    r = build(stack, str(out), dask_scheduler, "--overwrite")
    assert r.returncode == 0, r.stderr
    assert xr.open_zarr(out).sizes["time"] == 4

    (out / "my-notes.txt").write_text("a user's file dropped into the cube folder")
    before = snapshot(out)
    r = build(stack, str(out), dask_scheduler, "--overwrite")
    assert r.returncode == 2 and "my-notes.txt" in r.stderr, r.stderr
    assert snapshot(out) == before


def test_kerchunk_output_never_replaces_a_users_file(stack, tmp_path, dask_scheduler):
    users = tmp_path / "cube.json"
    users.write_text('{"refs": {"a": "user data"}}')
    before = snapshot(tmp_path)
    for extra in ((), ("--overwrite",)):
        r = build(stack, str(users), dask_scheduler, "--format", "kerchunk", *extra)
        assert r.returncode == 2 and "did not write" in r.stderr, r.stderr
    assert snapshot(tmp_path) == before

    ours = tmp_path / "virtual.json"
    assert build(stack, str(ours), dask_scheduler, "--format", "kerchunk").returncode == 0
    r = build(stack, str(ours), dask_scheduler, "--format", "kerchunk")
    assert r.returncode == 2 and "--overwrite" in r.stderr
    r = build(stack, str(ours), dask_scheduler, "--format", "kerchunk", "--overwrite")
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cube.json", "virtual.json"]


# --- object storage: a bucket prefix with other objects -------------------------------------------


@pytest.fixture
def bucket_with_objects(moto_s3: MotoServer) -> Iterator[tuple[s3fs.S3FileSystem, str]]:
    fs = s3fs.S3FileSystem(**moto_s3.storage_options, skip_instance_cache=True)
    bucket = moto_s3.make_bucket("icecube-safety").removeprefix("s3://")
    fs.pipe(
        {
            f"{bucket}/data/report.csv": b"a,b\n1,2\n",
            f"{bucket}/data/deep/model.bin": os.urandom(2048),
            f"{bucket}/data.zarr/zarr.json": json.dumps({"zarr_format": 3}).encode(),
        }
    )
    yield fs, bucket
    fs.rm(bucket, recursive=True)


def _objects(fs: s3fs.S3FileSystem, bucket: str) -> dict[str, tuple[str, bytes]]:
    infos = fs.find(bucket, detail=True, refresh=True)
    return {k: (str(v.get("ETag")), fs.cat_file(k)) for k, v in infos.items()}


def test_bucket_prefix_with_objects_is_refused(stack, moto_s3, bucket_with_objects, dask_scheduler):
    fs, bucket = bucket_with_objects
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(moto_s3.env)
    before = _objects(fs, bucket)
    for out in (f"s3://{bucket}/data", f"s3://{bucket}/data.zarr", f"s3://{bucket}"):
        for extra in ((), ("--overwrite",)):
            r = run(
                "build", "--stac-url", str(stack / "cat"), "--config", str(stack / "cfg.json"),
                "--out", out, "--scheduler", dask_scheduler, "--no-register", *extra, env=env,
            )  # fmt: skip
            assert r.returncode == 2, (out, r.stderr)
            assert out in r.stderr and "did not write" in r.stderr
            assert "Traceback" not in r.stderr
    assert _objects(fs, bucket) == before

    out = f"s3://{bucket}/cube.zarr"  # a new prefix beside them: built, nothing else touched
    r = run(
        "build", "--stac-url", str(stack / "cat"), "--config", str(stack / "cfg.json"),
        "--out", out, "--scheduler", dask_scheduler, "--no-register", env=env,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    after = _objects(fs, bucket)
    assert {k: v for k, v in after.items() if not k.startswith(f"{bucket}/cube.zarr/")} == before


def test_demo_never_touches_a_users_folder(user_folder):
    """``demo --workdir`` replaces an earlier demo only: a user's products/ and catalog/ survive."""
    (user_folder / "products").mkdir()
    (user_folder / "products" / "mine.tif").write_bytes(b"II*\x00 a user's product")
    (user_folder / "catalog").mkdir()
    before = snapshot(user_folder)
    r = run("demo", "--workdir", str(user_folder), "--images", "6", "--size", "16")
    assert r.returncode == 2 and "notes.txt" in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert snapshot(user_folder) == before


def test_demo_never_takes_a_users_products_folder_for_its_own(tmp_path):
    """A folder holding only ``products/`` (the demo's name) with a user's own product in it."""
    folder = tmp_path / "work"
    (folder / "products").mkdir(parents=True)
    (folder / "products" / "ICEYE_X2_GRDH_20210427.tif").write_bytes(b"II*\x00 a real product")
    before = snapshot(folder)
    r = run("demo", "--workdir", str(folder), "--images", "6", "--size", "16")
    assert r.returncode == 2 and "ICEYE_X2_GRDH_20210427.tif" in r.stderr, r.stderr
    assert snapshot(folder) == before
