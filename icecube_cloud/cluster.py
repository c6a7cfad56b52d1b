"""The dask-distributed cluster a build runs on: a local one by default, or an existing scheduler.

Small builds in-process
-----------------------
A LocalCluster of worker processes costs its start-up, each worker's imports (xarray, zarr, rasterio:
~1 s of CPU each) and its shut-down: 1.5 s of a 2.3 s build of three 10x10 images. A build of at
most :data:`IN_PROCESS_BYTES` of pixels therefore runs on a cluster inside this process instead (one
worker, one thread per core; :func:`in_process_cluster`): the same tasks, submitted and gathered the
same way, starting in ~0.05 s with nothing to import again. Threads suffice because a band task's
work is GDAL's decoding and Blosc's encoding, which release the GIL. Measured whole-process on 2
cores (``python -m benchmarks.bench_fixed``): in-process was faster at every size tried, 3x10x10
(1.6 vs 4.2 s), 16x4096² deflate-tiled GeoTIFFs, 512 MiB (2.7 vs 3.7 s) and 8x8192² legacy GRDs,
1 GiB (2.2 vs 3.0 s). Bigger builds keep worker processes: not measured here, and with many cores
the tasks' Python (store calls, loops over chunks) would contend for one GIL; processes also get the
malloc settings below and survive the loss of a worker.

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

Scripts
-------
Worker processes are spawned: each imports the user's ``__main__`` script again before it starts, as
``multiprocessing`` does, so a script that starts a build at module level without an
``if __name__ == "__main__":`` guard would start it again in every worker, and every worker fails
("Nanny failed to start"). :func:`local_cluster` recognises that case and refuses with one clear error.
"""

from __future__ import annotations

import ast
import contextlib
import logging
import multiprocessing.spawn
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any, TypeGuard

import dask.config
from distributed import Client, LocalCluster

from icecube_cloud.errors import IcecubeError, UsageError

log = logging.getLogger(__name__)

WORKER_MALLOC_ENV: dict[str, str] = {
    "MALLOC_MMAP_THRESHOLD_": str(32 * 2**20),
    "MALLOC_TRIM_THRESHOLD_": str(64 * 2**20),
}
"""glibc malloc settings of worker processes (above a band task's largest buffer; see module doc)."""

IN_PROCESS_BYTES = 2**30
"""Builds of at most this many pixel bytes run in-process when no scheduler is given (module doc)."""


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


def _is_main_guard(node: ast.AST) -> TypeGuard[ast.If]:
    """Whether ``node`` is ``if __name__ == "__main__":`` (either operand order)."""
    if not isinstance(node, ast.If) or not isinstance(node.test, ast.Compare):
        return False
    test = node.test
    if len(test.ops) != 1 or not isinstance(test.ops[0], ast.Eq):
        return False
    sides = [test.left, test.comparators[0]]
    return any(isinstance(s, ast.Name) and s.id == "__name__" for s in sides) and any(
        isinstance(s, ast.Constant) and s.value == "__main__" for s in sides
    )


def unguarded_main_call() -> tuple[str, int] | None:
    """The script and line whose top-level code, outside a ``__main__`` guard, is running this call.

    Returns ``None`` when spawned worker processes will not import ``__main__`` again (interactive
    sessions, notebooks, the ``fork`` start method) or when the call runs from a function or under
    an ``if __name__ == "__main__":`` guard.
    """
    if dask.config.get("distributed.worker.multiprocessing-method", "spawn") == "fork":
        return None
    # What a spawned process imports before it runs (multiprocessing.spawn.prepare): the script by
    # path, or by module name for `python -m module` (never a package's __main__).
    prep = multiprocessing.spawn.get_preparation_data("icecube-cloud")
    name = prep.get("init_main_from_name")
    if name is None and "init_main_from_path" not in prep:
        return None
    if name is not None and (name == "__main__" or name.endswith(".__main__")):
        return None
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    if main is None or not path:
        return None
    frame: FrameType | None = sys._getframe(1)
    line = None
    while frame is not None:  # the outermost frame of the script's own top-level code
        if frame.f_globals is vars(main) and frame.f_code.co_name == "<module>":
            line = frame.f_lineno
        frame = frame.f_back
    if line is None:
        return None
    try:
        with open(path, encoding="utf-8") as f:
            tree = ast.parse(f.read(), filename=path)
    except (OSError, SyntaxError, ValueError):
        return None
    for node in ast.walk(tree):
        if _is_main_guard(node) and node.lineno <= line <= (node.end_lineno or node.lineno):
            return None
    return path, line


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

    Raises:
        UsageError: Called from a script's top-level code that has no ``if __name__ == "__main__":``
            guard (its worker processes would run the script again; see the module doc).
    """
    unguarded = unguarded_main_call()
    if unguarded is not None:
        path, line = unguarded
        raise UsageError(
            f"{path}, line {line}: starts a local dask cluster while the script is imported, and "
            "dask's worker processes import the script again (they would each run it again). Put "
            'the script\'s work under `if __name__ == "__main__":`, or pass scheduler= the address '
            "of a running dask cluster"
        )
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
def in_process_cluster(threads: int | None = None, **kwargs: Any) -> Iterator[Client]:
    """A cluster inside this process (one worker of ``threads`` threads) and a client of it.

    No process is spawned, so scripts need no ``__main__`` guard and nothing is imported again.

    Args:
        threads: Worker threads (default: one per core).
        **kwargs: More :class:`distributed.LocalCluster` arguments.
    """
    options: dict[str, Any] = {
        "silence_logs": worker_log_level(),
        # no dashboard, and its HTTP server (always started) on a free port rather than 8787
        "dashboard_address": ":0",
        "scheduler_kwargs": {"dashboard": False},
        **kwargs,
    }
    with (
        LocalCluster(
            n_workers=1,
            threads_per_worker=threads or os.cpu_count() or 1,
            processes=False,
            **options,
        ) as cluster,
        Client(cluster) as client,
    ):
        yield client


@contextmanager
def connect(
    scheduler: str | None = None, workers: int | None = None, *, nbytes: int | None = None
) -> Iterator[Client]:
    """A dask client for the duration of a build.

    Args:
        scheduler: Address of an existing scheduler (``tcp://host:port``); ``None`` starts a local
            cluster.
        workers: Number of local workers (default: one per core, one thread each — GDAL and the
            Zarr codecs release the GIL, and single-threaded workers keep file handles private); the
            threads of the in-process cluster.
        nbytes: Pixel bytes the build writes; at most :data:`IN_PROCESS_BYTES` runs the build on an
            in-process cluster (module doc). ``None``: worker processes.
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
    if nbytes is not None and nbytes <= IN_PROCESS_BYTES:
        log.info("running in this process with %d worker threads (%d pixel bytes)", n, nbytes)
        with in_process_cluster(n) as client:
            yield client
        return
    log.info("starting a local dask cluster with %d worker processes", n)
    with local_cluster(workers) as client:
        yield client
