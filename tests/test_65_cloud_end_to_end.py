"""Issue #3's whole way, for real: products in a moto bucket → ``catalog ingest`` into the pgstac API →
``icecube-cloud build --stac-url http://… --out s3://… --scheduler tcp://…`` on separate dask processes
(which do not share our AWS environment) → a fresh process opens the cube with plain ``xr.open_zarr``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import fsspec
import numpy as np
import pystac_client

from icecube_cloud.synthetic import expected_pixels, make_stack

EXE = str(Path(sys.executable).parent / "icecube-cloud")


def test_bucket_api_cluster_reader(tmp_path, moto_s3, stac_api, dask_processes):
    # The API is shared by the session: this test's acquisitions get dates no other test uses.
    specs = make_stack(
        tmp_path / "products", n=6, shape=(150, 110), start=datetime(2019, 3, 1, tzinfo=UTC),
        days=12, flavour="grd-cog", seed=21,
    )  # fmt: skip
    bucket = moto_s3.make_bucket("icecube-e2e")
    fs = fsspec.filesystem("s3", **dict(moto_s3.storage_options))
    fs.put(f"{tmp_path / 'products'}/", f"{bucket}/products/", recursive=True)
    env = {**os.environ, **moto_s3.env}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([EXE, *args], env=env, capture_output=True, text=True, timeout=300)

    r = cli("catalog", "ingest", f"{bucket}/products/", "--stac-url", stac_api)
    assert r.returncode == 0, r.stderr
    cfg = tmp_path / "cfg.json"
    cfg.write_text(
        json.dumps(
            {
                "start_date": "20190301",
                "end_date": "20190313",
                "chunks": {"azimuth": 64, "range": 64},
            }
        )
    )
    out = f"{bucket}/cube.zarr"
    r = cli(
        "build",
        "--stac-url",
        stac_api,
        "--config",
        str(cfg),
        "--out",
        out,
        "--scheduler",
        dask_processes,
    )
    assert r.returncode == 0, r.stderr
    assert moto_s3.secret not in r.stdout + r.stderr

    reader = (
        "import json, sys, numpy as np, xarray as xr\n"
        "ds = xr.open_zarr(sys.argv[1], storage_options=json.loads(sys.argv[2]))\n"
        "assert 'icecube_cloud' not in sys.modules\n"
        "np.save(sys.argv[3], ds['amplitude'].values)\n"
        "print(json.dumps([str(p) for p in ds['product_id'].values]))\n"
    )
    options = {"endpoint_url": moto_s3.endpoint_url, "key": moto_s3.key, "secret": moto_s3.secret}
    npy = tmp_path / "amplitude.npy"
    done = subprocess.run(
        [sys.executable, "-c", reader, out, json.dumps(options), str(npy)],
        capture_output=True, text=True, check=True, timeout=120,
    )  # fmt: skip
    product_ids = json.loads(done.stdout)
    pixels = np.load(npy)
    assert sorted(product_ids) == sorted(s.product_id for s in specs)
    for t, pid in enumerate(product_ids):
        spec = next(s for s in specs if s.product_id == pid)
        np.testing.assert_array_equal(pixels[t], expected_pixels(spec, "GRD"))
    # The cube is in the API too, as a datacube item pointing at the bucket.
    cubes = list(pystac_client.Client.open(stac_api).search(collections=["icecube-cubes"]).items())
    assert out in [c.assets["zarr"].href for c in cubes]
