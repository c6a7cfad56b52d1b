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
