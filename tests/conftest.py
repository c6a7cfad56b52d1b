"""Shared fixtures: paths to ICEYE's sample products, and a real dask cluster for builds."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from distributed import LocalCluster

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
SAMPLES = SHARED / "iceye-samples"
SCHEMAS = SHARED / "stac-schemas"


@pytest.fixture(scope="session")
def samples() -> Path:
    """ICEYE's own test products (read-only; never written to)."""
    if not SAMPLES.is_dir():
        pytest.skip(f"ICEYE samples not found at {SAMPLES}")
    return SAMPLES


@pytest.fixture(scope="session")
def dask_scheduler() -> Iterator[str]:
    """Address of a real dask cluster (two worker processes) shared by the build tests."""
    with LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        dashboard_address=None,
        silence_logs=logging.ERROR,
    ) as cluster:
        yield str(cluster.scheduler_address)


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
