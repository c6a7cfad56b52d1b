"""Builds on a dask cluster made of separate ``dask scheduler`` and ``dask worker`` processes.

Checks that workers read the sources and write the chunks themselves: what comes back to the client
is task bookkeeping (byte counts, metadata JSON), never pixels; and that small builds, which run on
a cluster inside the client's process, write the same bytes.
"""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from distributed import Client, get_task_stream
from helpers import cube_files

from icecube_cloud.build import build_cube, plan_cube
from icecube_cloud.ingest import ingest
from icecube_cloud.synthetic import expected_pixels, make_stack
from icecube_cloud.write.bands import plan_bands
from icecube_cloud.write.materialise import execute

DASK = str(Path(sys.executable).parent / "dask")


@pytest.fixture
def catalog(tmp_path):
    specs = make_stack(
        tmp_path / "products",
        n=6,
        shape=(200, 160),
        start=datetime(2021, 4, 20, tzinfo=UTC),
        days=12,
        flavour="grd-cog",
        seed=11,
    )
    ingest([str(tmp_path / "products")], str(tmp_path / "cat"))
    return tmp_path, specs


def test_workers_write_chunks_the_client_only_metadata(catalog, dask_processes):
    tmp, specs = catalog
    plan = plan_cube(str(tmp / "cat"), {"chunks": {"azimuth": 64, "range": 64}})
    with Client(dask_processes) as client, get_task_stream(client=client) as stream:
        client_pid = client.run(lambda: __import__("os").getpid())
        result = execute(plan, str(tmp / "cube.zarr"), client=client)
    tasks = stream.data
    writes = [t for t in tasks if "write_band" in str(t["key"])]
    assert result.chunks_written == plan.n_chunks
    assert len(writes) == len(plan.slices) * len(plan_bands(plan))  # one task per chunk row
    # Pixels never travel back: a band task returns a byte count, the only other tasks return
    # each product's metadata JSON (what the client writes as the `metadata` coordinate).
    assert result.nbytes == plan.nbytes
    assert max(t.get("nbytes", 0) for t in writes) <= 64
    metadata_bytes = sum(
        len(m.encode()) for m in xr.open_zarr(tmp / "cube.zarr")["metadata"].values
    )
    others = sum(t.get("nbytes", 0) for t in tasks if t not in writes)
    assert others < 2 * metadata_bytes + 10_000, (others, metadata_bytes)
    # The work ran in the worker processes, not in this one.
    workers = {t["worker"] for t in writes}
    assert workers <= set(client_pid) and len(workers) == 2
    ds = xr.open_zarr(tmp / "cube.zarr")
    for t, pid in enumerate(ds["product_id"].values):
        spec = next(s for s in specs if s.product_id == pid)
        np.testing.assert_array_equal(
            ds["amplitude"].isel(time=t).values, expected_pixels(spec, "GRD")
        )


def test_build_cube_with_scheduler_address(catalog, dask_processes):
    tmp, specs = catalog
    result = build_cube(str(tmp / "cat"), {}, str(tmp / "cube.zarr"), scheduler=dask_processes)
    assert result.chunks_written == len(specs)
    ds = xr.open_zarr(tmp / "cube.zarr")
    assert ds.sizes["time"] == len(specs)


def test_unreachable_scheduler_is_a_clear_error(catalog):
    tmp, _ = catalog
    cfg = tmp / "cfg.json"
    cfg.write_text("{}")
    exe = str(Path(sys.executable).parent / "icecube-cloud")
    r = subprocess.run(
        [exe, "build", "--stac-url", str(tmp / "cat"), "--config", str(cfg), "--out",
         str(tmp / "cube.zarr"), "--scheduler", "tcp://127.0.0.1:9"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert r.returncode == 1
    assert "tcp://127.0.0.1:9" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp / "cube.zarr").exists()


# A lambda: cloudpickle ships it by value (the worker processes cannot import this test module).
_malloc_env = lambda: {  # noqa: E731
    k: __import__("os").environ.get(k) for k in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")
}


def test_local_cluster_workers_get_the_build_malloc_settings():
    # Band tasks run 3x slower in workers with dask's default MALLOC_TRIM_THRESHOLD_ (cluster.py).
    from icecube_cloud.cluster import WORKER_MALLOC_ENV, connect

    with connect(workers=1) as client:
        (env,) = client.run(_malloc_env).values()
    assert env == WORKER_MALLOC_ENV


def test_dask_worker_processes_with_the_infra_config_get_the_same_settings(dask_processes):
    import yaml

    from icecube_cloud.cluster import WORKER_MALLOC_ENV

    config = yaml.safe_load((Path(__file__).parents[1] / "infra/dask/workers.yaml").read_text())
    environ = config["distributed"]["nanny"]["pre-spawn-environ"]
    assert {k: str(v) for k, v in environ.items()} == WORKER_MALLOC_ENV
    with Client(dask_processes) as client:
        envs = list(client.run(_malloc_env).values())
    assert envs == [WORKER_MALLOC_ENV] * 2


def test_small_builds_run_in_process_and_large_ones_on_worker_processes():
    from icecube_cloud.cluster import IN_PROCESS_BYTES, connect

    with connect(workers=2, nbytes=IN_PROCESS_BYTES) as client:
        pids = list(client.run(os.getpid).values())
        threads = sum(client.nthreads().values())
    assert pids == [os.getpid()] and threads == 2  # no process spawned: nothing imported again
    with connect(workers=1, nbytes=IN_PROCESS_BYTES + 1) as client:
        pids = list(client.run(os.getpid).values())
    assert len(pids) == 1 and pids[0] != os.getpid()


def test_in_process_build_writes_the_same_bytes_as_worker_processes(tmp_path, dask_scheduler):
    make_stack(tmp_path / "products", n=4, shape=(200, 150), start=datetime(2021, 4, 20, tzinfo=UTC),
               days=12, flavour="grd-cog", seed=3)  # fmt: skip
    ingest([str(tmp_path / "products")], str(tmp_path / "cat"))
    cfg = {"chunks": {"azimuth": 64, "range": 64}}
    cat = str(tmp_path / "cat")
    build_cube(cat, cfg, str(tmp_path / "procs.zarr"), scheduler=dask_scheduler, register=False)
    result = build_cube(cat, cfg, str(tmp_path / "inproc.zarr"), workers=2, register=False)
    assert result.chunks_written == result.plan.n_chunks == 4 * 4 * 3
    assert cube_files(tmp_path / "inproc.zarr") == cube_files(tmp_path / "procs.zarr")
