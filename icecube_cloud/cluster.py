"""The dask-distributed cluster a build runs on: a LocalCluster by default, or an existing scheduler."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager

from distributed import Client, LocalCluster

from icecube_cloud.errors import IcecubeError

log = logging.getLogger(__name__)


@contextmanager
def connect(scheduler: str | None = None, workers: int | None = None) -> Iterator[Client]:
    """A dask client for the duration of a build.

    Args:
        scheduler: Address of an existing scheduler (``tcp://host:port``); ``None`` starts a LocalCluster.
        workers: Number of local worker processes (default: one per core, one thread each — GDAL and
            the Zarr codecs release the GIL, and single-threaded workers keep file handles private).
    """
    if scheduler:
        try:
            client = Client(scheduler, timeout="10s")
        except (OSError, TimeoutError) as err:
            raise IcecubeError(f"cannot reach the dask scheduler at {scheduler}: {err}") from err
        try:
            yield client
        finally:
            client.close()
        return
    n = workers or os.cpu_count() or 1
    log.info("starting a local dask cluster with %d worker processes", n)
    with (
        LocalCluster(
            n_workers=n,
            threads_per_worker=1,
            processes=True,
            dashboard_address=":0",
            silence_logs=logging.ERROR,
        ) as cluster,
        Client(cluster) as client,
    ):
        yield client
