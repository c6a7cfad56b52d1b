"""The dask-distributed cluster a build runs on: a LocalCluster by default, or an existing scheduler.

Worker memory allocator
-----------------------
dask's nanny starts every worker process with ``MALLOC_TRIM_THRESHOLD_=65536`` (config
``distributed.nanny.pre-spawn-environ``) so that freed memory goes back to the OS quickly. Setting any
glibc malloc threshold also switches off malloc's *dynamic* mmap threshold, so in such a worker every
buffer above 128 KiB — each band a task reads (up to 16 MiB), each chunk Zarr cuts from it and each
compressed chunk — is a fresh ``mmap`` whose pages are faulted in and zeroed, then unmapped again.
Measured on a 2-core machine (``benchmarks``, 16 MiB uint16 bands): 170 ms per band in a default worker,
55 ms with :data:`WORKER_MALLOC_ENV`, the same as in a plain process; the whole 1 GiB GRD build went
from 136 to 347 MiB/s. The price is up to ``MALLOC_TRIM_THRESHOLD_`` of freed memory a worker keeps
(~30 MiB more peak RSS measured), which stays flat in the number of images.

Workers started by :func:`connect` get these settings; workers you start yourself (``dask worker``, the
Kubernetes cluster of ``infra/``) get them from a dask config file
(``infra/dask/workers.yaml``, installed in the image as ``/etc/dask/icecube-workers.yaml``).
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import dask.config
from distributed import Client, LocalCluster

from icecube_cloud.errors import IcecubeError

log = logging.getLogger(__name__)

WORKER_MALLOC_ENV: dict[str, str] = {
    "MALLOC_MMAP_THRESHOLD_": str(32 * 2**20),
    "MALLOC_TRIM_THRESHOLD_": str(64 * 2**20),
}
"""glibc malloc settings of worker processes (above a band task's largest buffer; see module doc)."""


@contextmanager
def worker_environment() -> Iterator[None]:
    """Within the block, worker processes that nannies spawn get :data:`WORKER_MALLOC_ENV`.

    The settings go into ``distributed.nanny.pre-spawn-environ`` (the only place where a nanny sets
    variables before its worker process starts, as malloc needs); other entries there are kept.
    """
    current: dict[str, Any] = dict(dask.config.get("distributed.nanny.pre-spawn-environ", {}) or {})
    with dask.config.set({"distributed.nanny.pre-spawn-environ": {**current, **WORKER_MALLOC_ENV}}):
        yield


def worker_log_level() -> int:
    """The level from which local worker processes print their logs on our stderr.

    Workers are processes of their own whose ``distributed`` loggers write to the stderr they
    inherit: a failed task logs "Compute Failed" and a traceback there, while the client raises the
    same error to the caller. They print no more than this process's ``distributed`` logger does
    (the CLI without ``--verbose`` silences it, so a user sees only the CLI's one ``error:`` line),
    and at least errors otherwise.
    """
    return max(logging.ERROR, logging.getLogger("distributed").getEffectiveLevel())


@contextmanager
def local_cluster(
    workers: int | None = None,
    *,
    dashboard_address: str | None = ":0",
    **kwargs: Any,
) -> Iterator[Client]:
    """A LocalCluster of single-threaded worker processes tuned for builds, and a client of it.

    Args:
        workers: Worker processes (default: one per core).
        dashboard_address: Where the dashboard listens (``None``: no dashboard).
        **kwargs: More :class:`distributed.LocalCluster` arguments (e.g. ``memory_limit``).
    """
    n = workers or os.cpu_count() or 1
    options: dict[str, Any] = {"silence_logs": worker_log_level(), **kwargs}
    with contextlib.ExitStack() as stack:
        with worker_environment():
            cluster = stack.enter_context(
                LocalCluster(
                    n_workers=n,
                    threads_per_worker=1,
                    processes=True,
                    dashboard_address=dashboard_address,
                    **options,
                )
            )
        yield stack.enter_context(Client(cluster))


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
    log.info(
        "starting a local dask cluster with %d worker processes", workers or os.cpu_count() or 1
    )
    with local_cluster(workers) as client:
        yield client
