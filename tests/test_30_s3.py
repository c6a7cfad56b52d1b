"""Object storage for real: products, static catalog and cube in a moto S3 bucket (SPEC §1, §5, §9).

The moto server checks credentials (an IAM user is created first), so wrong keys fail as on AWS.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import re
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
import s3fs
from helpers import write_good_and_broken

from icecube_cloud.build import build_cube
from icecube_cloud.errors import CatalogError, IcecubeError, ProductError
from icecube_cloud.ingest import ingest
from icecube_cloud.storage import (
    StorageOptions,
    StorageTarget,
    filesystem,
    is_remote,
    local_path,
    storage_options_from_env,
)
from icecube_cloud.synthetic import expected_pixels, make_stack
from icecube_cloud.testing.moto import MotoServer

BUCKET = "icecube-s3-tests"
START = datetime(2021, 4, 20, 10, 0, tzinfo=UTC)
MOTO_CLI = (sys.executable, "-m", "icecube_cloud.testing.moto")
EXE = str(Path(sys.executable).parent / "icecube-cloud")

READ_CUBE = """
import json, sys
import numpy as np, xarray as xr
assert "icecube_cloud" not in sys.modules
ds = xr.open_zarr(sys.argv[1], storage_options=json.loads(sys.argv[2]))
np.save(sys.argv[3], ds["amplitude"].values)
print(json.dumps([str(p) for p in ds["product_id"].values]))
assert "icecube_cloud" not in sys.modules
"""


def _fs(moto_s3: MotoServer) -> s3fs.S3FileSystem:
    return s3fs.S3FileSystem(**moto_s3.storage_options, skip_instance_cache=True)


@pytest.fixture(scope="module")
def bucket(moto_s3: MotoServer) -> str:
    return moto_s3.make_bucket(BUCKET)


@pytest.fixture(scope="module")
def s3_stacks(bucket: str, moto_s3: MotoServer, tmp_path_factory: pytest.TempPathFactory):
    """Legacy GRD and GRD-COG stacks uploaded to the bucket and ingested into a catalog there."""
    fs = _fs(moto_s3)
    stacks = {}
    for flavour, shape in (("legacy-grd", (37, 53)), ("grd-cog", (96, 64))):
        local = tmp_path_factory.mktemp(flavour)
        specs = make_stack(local, n=4, shape=shape, start=START, days=8, flavour=flavour, seed=3)
        fs.put(f"{local}/", f"{bucket}/{flavour}/products/", recursive=True)
        catalog = f"{bucket}/{flavour}/catalog"
        ingest([f"{bucket}/{flavour}/products/"], catalog, storage_options=moto_s3.storage_options)
        stacks[flavour] = (catalog, specs)
    return stacks


def _read_in_fresh_process(url: str, moto_s3: MotoServer, out: Path) -> list[str]:
    opts = {
        "endpoint_url": moto_s3.endpoint_url,
        "key": moto_s3.key,
        "secret": moto_s3.secret,
    }
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    r = subprocess.run(
        [sys.executable, "-c", READ_CUBE, url, json.dumps(opts), str(out)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    ids: list[str] = json.loads(r.stdout)
    return ids


def test_storage_options_never_print_secrets():
    opts = StorageOptions(endpoint_url="http://h:1", key="AKIAXX", secret="s3cr3t", token="T0K3N")
    for text in (repr(opts), str(opts), repr(StorageTarget.from_url("s3://b/c", opts))):
        assert "s3cr3t" not in text and "AKIAXX" not in text and "T0K3N" not in text
    assert dict(opts) == {
        "endpoint_url": "http://h:1",
        "key": "AKIAXX",
        "secret": "s3cr3t",
        "token": "T0K3N",
    }
    assert pickle.loads(pickle.dumps(opts)) == opts  # ships to workers
    wrapped = StorageOptions.of({"key": "k", "secret": "pw", "anon": False})
    assert "pw" not in repr(wrapped) and dict(wrapped)["anon"] is False
    assert StorageOptions.of(wrapped) is wrapped


def test_storage_options_from_env(monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "envkey")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "envsecret")
    opts = storage_options_from_env()
    assert (opts.endpoint_url, opts.key, opts.secret) == (
        "http://127.0.0.1:9",
        "envkey",
        "envsecret",
    )
    assert storage_options_from_env(resolve_credentials=False).key is None


def test_local_and_remote_urls_have_one_meaning(tmp_path, monkeypatch):
    """A local href names the same file for direct opens (``local_path``) and for fsspec."""
    from fsspec.implementations.local import LocalFileSystem

    home = tmp_path / "home"
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(tmp_path)
    local = {
        "rel/x.tif": tmp_path / "rel" / "x.tif",
        "./rel/../x.tif": tmp_path / "x.tif",
        "~/x.tif": home / "x.tif",
        f"file://{tmp_path}/x.tif": tmp_path / "x.tif",
        "file://rel/x.tif": tmp_path / "rel" / "x.tif",
        f"{tmp_path}/dir/": tmp_path / "dir",
    }
    for url, path in local.items():
        assert not is_remote(url), url
        assert local_path(url) == str(path), url
        fs, in_fs = filesystem(url)
        assert isinstance(fs, LocalFileSystem) and in_fs == str(path), url
    for url in ("s3://bucket/k.tif", "memory://cat/item.json", "https://host/a.tif"):
        assert is_remote(url), url
    fs, in_fs = filesystem("s3://bucket/k.tif", {"anon": True})
    assert fs.protocol[0] == "s3" and in_fs == "bucket/k.tif"


def test_moto_server_start_stop_restart():
    server = MotoServer()
    assert server.pid is None
    with server:
        assert server.make_bucket("first-bucket") == "s3://first-bucket"
        assert server.make_bucket("first-bucket") == "s3://first-bucket"  # idempotent
        assert _fs(server).ls("") == ["first-bucket"]
        pid = server.pid
        server.restart()
        assert server.pid != pid and _fs(server).ls("") == []  # fresh state, same port
    assert server.pid is None


def test_moto_cli_up_down(tmp_path):
    port = MotoServer().port
    up = subprocess.run(
        [*MOTO_CLI, "up", "--port", str(port), "--dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert up.returncode == 0, up.stderr
    assert f"export AWS_ENDPOINT_URL=http://127.0.0.1:{port}" in up.stdout
    state = json.loads((tmp_path / "moto.json").read_text())
    fs = s3fs.S3FileSystem(
        endpoint_url=state["AWS_ENDPOINT_URL"],
        key=state["AWS_ACCESS_KEY_ID"],
        secret=state["AWS_SECRET_ACCESS_KEY"],
        skip_instance_cache=True,
    )
    fs.mkdir("cli-bucket")
    assert fs.ls("") == ["cli-bucket"]
    down = subprocess.run(
        [*MOTO_CLI, "down", "--dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert down.returncode == 0, down.stderr
    assert not (tmp_path / "moto.json").exists()
    with pytest.raises(ProcessLookupError):
        os.kill(state["pid"], 0)


def test_catalog_in_bucket_has_s3_hrefs(s3_stacks, moto_s3):
    fs = _fs(moto_s3)
    catalog, specs = s3_stacks["grd-cog"]
    hrefs = []
    for path in fs.find(catalog):
        doc = json.loads(fs.cat(path))
        if doc.get("type") == "Feature":
            hrefs += [a["href"] for a in doc["assets"].values()]
    assert len(hrefs) >= len(specs)
    assert all(h.startswith(f"s3://{BUCKET}/grd-cog/products/") for h in hrefs)


@pytest.mark.parametrize("flavour", ["legacy-grd", "grd-cog"])
def test_build_into_bucket_read_by_plain_xarray(
    s3_stacks, moto_s3, dask_scheduler, tmp_path, flavour, caplog
):
    catalog, specs = s3_stacks[flavour]
    out = f"s3://{BUCKET}/{flavour}/cube.zarr"
    caplog.set_level(logging.DEBUG)
    t0 = time.perf_counter()
    result = build_cube(
        catalog,
        {"chunks": {"azimuth": 16, "range": 24}},
        out,
        storage_options=moto_s3.storage_options,
        scheduler=dask_scheduler,
        overwrite=True,
    )
    logging.getLogger(__name__).info("S3 build of %s took %.2fs", flavour, time.perf_counter() - t0)
    assert result.chunks_written > 0

    ids = _read_in_fresh_process(out, moto_s3, tmp_path / "px.npy")
    pixels = np.load(tmp_path / "px.npy")
    by_id = {s.product_id: s for s in specs}
    assert sorted(ids) == sorted(by_id)
    for t, pid in enumerate(ids):
        np.testing.assert_array_equal(pixels[t], expected_pixels(by_id[pid], "GRD"))

    # Credentials never land in the catalog, the cube's documents or the logs.
    fs = _fs(moto_s3)
    documents = [p for p in fs.find(f"{BUCKET}/{flavour}") if p.endswith(".json")]
    assert any(p.endswith("cube.zarr/zarr.json") for p in documents)
    assert any("/catalog/" in p for p in documents)
    for path in documents:
        text = fs.cat(path).decode()
        assert moto_s3.secret not in text, path
        assert moto_s3.key not in text, path
    assert moto_s3.secret not in caplog.text


def _cli(moto_s3: MotoServer, *args: str, secret: str | None = None):
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(moto_s3.env)
    if secret is not None:
        env["AWS_SECRET_ACCESS_KEY"] = secret
    return subprocess.run([EXE, *args], capture_output=True, text=True, env=env, timeout=300)


def test_cli_over_s3(s3_stacks, moto_s3, dask_scheduler, tmp_path):
    prefix = f"s3://{BUCKET}/legacy-grd"
    cat = f"{prefix}/cli-catalog"
    r = _cli(moto_s3, "catalog", "ingest", f"{prefix}/products/", "--stac-url", cat, "-v")
    assert r.returncode == 0, r.stderr
    assert "4 added" in r.stdout
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({"chunks": {"azimuth": 20, "range": 20}}))
    out = f"{prefix}/cli-cube.zarr"
    r = _cli(
        moto_s3,
        "build",
        "--stac-url",
        cat,
        "--config",
        str(cfg),
        "--out",
        out,
        "--scheduler",
        dask_scheduler,
        "--overwrite",
        "-v",
    )
    assert r.returncode == 0, r.stderr
    assert moto_s3.secret not in r.stderr + r.stdout
    r = _cli(moto_s3, "info", out)
    assert r.returncode == 0, r.stderr
    assert "time" in r.stdout


def test_missing_object_fails_naming_the_url(s3_stacks, moto_s3, dask_scheduler, tmp_path):
    fs = _fs(moto_s3)
    local = tmp_path / "products"
    specs = make_stack(local, n=2, shape=(20, 20), start=START, flavour="legacy-grd", seed=9)
    prefix = f"{BUCKET}/gone"
    fs.put(f"{local}/", f"{prefix}/products/", recursive=True)
    ingest(
        [f"s3://{prefix}/products/"], f"s3://{prefix}/cat", storage_options=moto_s3.storage_options
    )
    victim = f"{prefix}/products/{specs[0].product_id}.tif"
    fs.rm(victim)
    out = f"s3://{prefix}/cube.zarr"
    with pytest.raises(ProductError, match=f"s3://{victim}"):
        build_cube(
            f"s3://{prefix}/cat",
            {},
            out,
            storage_options=moto_s3.storage_options,
            scheduler=dask_scheduler,
        )
    assert not fs.exists(out)
    with pytest.raises(ProductError, match=f"s3://{victim}"):
        ingest([f"s3://{victim}"], f"s3://{prefix}/cat2", storage_options=moto_s3.storage_options)

    cfg = tmp_path / "cfg.json"
    cfg.write_text("{}")
    r = _cli(
        moto_s3,
        "build",
        "--stac-url",
        f"s3://{prefix}/cat",
        "--config",
        str(cfg),
        "--out",
        out,
        "--scheduler",
        dask_scheduler,
    )
    assert r.returncode == 1, r.stderr
    assert f"s3://{victim}" in r.stderr and "Traceback" not in r.stderr
    assert not fs.exists(out)


def test_ingest_from_s3_names_every_broken_product(bucket, moto_s3, tmp_path):
    """The folder of good and broken products, in a bucket: the same failures, found from the objects'
    sizes and headers (range requests), the readable products registered."""
    good, bad = write_good_and_broken(tmp_path / "p")
    prefix = f"{bucket}/broken"
    _fs(moto_s3).put(f"{tmp_path / 'p'}/", f"{prefix}/products/", recursive=True)
    result = ingest(
        [f"{prefix}/products/"],
        f"{prefix}/cat",
        storage_options=moto_s3.storage_options,
        skip_bad=True,
    )
    assert sorted(result.added) == sorted(good)
    failed = {f.href.removeprefix(f"{prefix}/products/"): f.reason for f in result.failed}
    assert failed.keys() == bad.keys()
    for name, reason in bad.items():
        assert re.search(reason, failed[name]), (name, failed[name])


def test_wrong_credentials_and_missing_bucket(s3_stacks, moto_s3, dask_scheduler, tmp_path):
    catalog, _ = s3_stacks["legacy-grd"]
    out = f"s3://{BUCKET}/legacy-grd/forbidden.zarr"
    bad = StorageOptions(endpoint_url=moto_s3.endpoint_url, key=moto_s3.key, secret="wrong")
    with pytest.raises(IcecubeError, match=catalog):
        build_cube(catalog, {}, out, storage_options=bad, scheduler=dask_scheduler)
    with pytest.raises(CatalogError, match="s3://no-such-bucket"):
        build_cube("s3://no-such-bucket/cat", {}, out, storage_options=moto_s3.storage_options)

    cfg = tmp_path / "cfg.json"
    cfg.write_text("{}")
    r = _cli(
        moto_s3,
        "build",
        "--stac-url",
        catalog,
        "--config",
        str(cfg),
        "--out",
        out,
        "--scheduler",
        dask_scheduler,
        secret="wrong",
    )
    assert r.returncode == 1, r.stderr
    assert catalog in r.stderr and "Traceback" not in r.stderr
    assert "wrong" not in r.stderr.replace(catalog, "")
    r = _cli(
        moto_s3,
        "catalog",
        "ingest",
        f"s3://{BUCKET}/legacy-grd/products/",
        "--stac-url",
        f"s3://{BUCKET}/x",
        secret="wrong",
    )
    assert r.returncode == 1, r.stderr
    assert f"s3://{BUCKET}/legacy-grd/products" in r.stderr
    assert not _fs(moto_s3).exists(out)
