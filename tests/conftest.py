"""Shared fixtures: ICEYE samples, STAC schemas, real components (dask, S3 via moto, a pgstac API)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import shared_resources
from distributed import Client
from hypothesis import settings

from icecube_cloud.cluster import local_cluster

REPO = Path(__file__).resolve().parents[1]

# Property tests check rules, not speed: hypothesis' 200 ms per-example deadline failed them at random
# on a loaded 2-core machine (DeadlineExceeded in test_10/test_12). Speed is measured by benchmarks.
settings.register_profile("icecube", deadline=None)
settings.load_profile("icecube")
DASK = str(Path(sys.executable).parent / "dask")


@pytest.fixture(scope="session")
def samples() -> Path:
    """ICEYE's own test products, laid out as ``../shared/iceye-samples`` (read-only; never written to).

    Found or fetched by ``shared_resources.require``; skips with one line saying how to get them.
    """
    return shared_resources.require("iceye-samples")


@pytest.fixture(scope="session")
def stac_schemas() -> Path:
    """The offline STAC schema mirror, laid out as ``../shared/stac-schemas`` (``validate_stac``)."""
    return shared_resources.require("stac-schemas")


@pytest.fixture(scope="session")
def dask_scheduler() -> Iterator[str]:
    """Address of a real dask cluster (two worker processes) shared by the build tests.

    The build's own LocalCluster (``icecube_cloud.cluster.local_cluster``), as ``connect`` starts it.
    """
    with local_cluster(2) as client:
        yield str(client.scheduler_info()["address"])


@pytest.fixture(scope="session")
def dask_processes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A ``dask scheduler`` process and a ``dask worker`` process (two workers) on loopback.

    The processes get an environment without AWS settings: anything they read from S3 they must reach
    with the storage options the client ships (as on a real cluster, whose nodes do not share ours).
    Their dask configuration is ``infra/dask/`` (``DASK_CONFIG``), as the deployment image installs it.
    """
    work = tmp_path_factory.mktemp("dask-cluster")
    sched_file = work / "scheduler.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env["DASK_CONFIG"] = str(REPO / "infra" / "dask")
    common = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL, "cwd": work, "env": env}
    scheduler = subprocess.Popen(
        [DASK, "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
         "--scheduler-file", str(sched_file)],
        **common,
    )  # fmt: skip
    worker = None
    try:
        deadline = time.monotonic() + 60
        while not sched_file.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        address = json.loads(sched_file.read_text())["address"]
        worker = subprocess.Popen(
            [DASK, "worker", address, "--nworkers", "2", "--nthreads", "1", "--no-dashboard",
             "--memory-limit", "2GiB", "--local-directory", str(work)],
            **common,
        )  # fmt: skip
        with Client(address, timeout="30s") as client:
            client.wait_for_workers(2, timeout=60)
        yield address
    finally:
        for proc in (worker, scheduler):
            if proc is not None:
                proc.terminate()
                proc.wait(timeout=30)


# --- real STAC API (pgstac + stac-fastapi-pgstac), started once per session --------------------------


@pytest.fixture(scope="session")
def stac_api() -> Iterator[str]:
    """Root URL of a real local STAC API with transactions (PostgreSQL + pgstac on loopback).

    Installs PostgreSQL/PostGIS with ``infra/local/install-system-packages.sh`` when they are missing;
    skips only when that is impossible here (``make test`` runs the script first, so CI never skips).
    """
    import subprocess
    import tempfile

    from icecube_cloud.testing.stac_api import (
        PostgresNotFoundError,
        StacApiServer,
        find_postgres_bin,
    )

    try:
        find_postgres_bin()
    except PostgresNotFoundError as missing:
        script = REPO / "infra" / "local" / "install-system-packages.sh"
        done = subprocess.run([str(script)], capture_output=True, text=True, check=False)
        try:
            find_postgres_bin()
        except PostgresNotFoundError:
            pytest.skip(f"{missing}; installing failed: {done.stderr.strip()[-300:]}")
    # Not under pytest's tmp dirs: they are private to root and the postgres user must enter it.
    with StacApiServer(tempfile.mkdtemp(prefix="icecube-stac-api-")) as server:
        yield server.url


@pytest.fixture(scope="session")
def moto_s3() -> Iterator[object]:
    """A real S3 API (``moto_server`` on loopback) that checks credentials; see ``MotoServer``."""
    from icecube_cloud.testing.moto import MotoServer

    with MotoServer(auth=True) as server:
        yield server


# --- Cubes for the training tests (test_58, test_59; issue #15) -------------------------------------

TRAIN_START = datetime(2021, 4, 20, 10, 0, tzinfo=UTC)
TRAIN_FIELD = (-6.25418, 37.44588, -6.25382, 37.44612)
"""A ~32 x 27 m lon/lat box at the synthetic scenes' centre, labelled "field"."""


def _labelled_catalog(root: Path, **stack: Any) -> str:
    from shapely.geometry import box, mapping

    from icecube_cloud.ingest import ingest
    from icecube_cloud.labels import ingest_labels
    from icecube_cloud.synthetic import make_stack

    make_stack(root / "products", start=TRAIN_START, **stack)
    cat = str(root / "cat")
    ingest([str(root / "products")], cat)
    feature = {
        "type": "Feature",
        "properties": {"class": "field"},
        "geometry": mapping(box(*TRAIN_FIELD)),
    }
    (root / "labels.geojson").write_text(
        json.dumps({"type": "FeatureCollection", "features": [feature]})
    )
    ingest_labels(str(root / "labels.geojson"), cat)
    return cat


@pytest.fixture(scope="session")
def grd_cube(tmp_path_factory: pytest.TempPathFactory, dask_scheduler: str) -> str:
    """SAR-geometry GRD cube, 6 slices of which 2 are gaps (2-day bins), labels, chunks 128²."""
    from icecube_cloud.build import build_cube

    root = tmp_path_factory.mktemp("train-grd")
    cat = _labelled_catalog(root, n=4, days=12, shape=(300, 260), flavour="legacy-grd")
    cfg = {"temporal_resolution": 2, "labels": True, "chunks": {"azimuth": 128, "range": 128}}
    build_cube(cat, cfg, str(root / "cube.zarr"), scheduler=dask_scheduler)
    return str(root / "cube.zarr")


@pytest.fixture(scope="session")
def slc_cube(tmp_path_factory: pytest.TempPathFactory, dask_scheduler: str) -> str:
    """Legacy SLC cube of 3 slices, 96 x 80, labels."""
    from icecube_cloud.build import build_cube

    root = tmp_path_factory.mktemp("train-slc")
    cat = _labelled_catalog(root, n=3, days=3, shape=(96, 80), flavour="legacy-slc")
    out = str(root / "cube.zarr")
    build_cube(cat, {"labels": True}, out, scheduler=dask_scheduler, register=False)
    return out


@pytest.fixture(scope="session")
def map_cube(tmp_path_factory: pytest.TempPathFactory, dask_scheduler: str) -> str:
    """Map-geometry cube of 3 jittered GRD COGs on a 1.5 m UTM grid, labels, chunks 64²."""
    from icecube_cloud.build import build_cube

    root = tmp_path_factory.mktemp("train-map")
    cat = _labelled_catalog(
        root, n=3, days=3, flavour="grd-cog", seed=5, jitter_m=40.0,
        shapes=[(180, 150), (160, 170), (200, 140)],
        pixel_spacing_range=1.0, pixel_spacing_azimuth=1.0,
    )  # fmt: skip
    out = str(root / "cube.zarr")
    cfg = {"grid": {"resolution": 1.5}, "labels": True, "chunks": {"azimuth": 64, "range": 64}}
    build_cube(cat, cfg, out, scheduler=dask_scheduler, register=False)
    return out
