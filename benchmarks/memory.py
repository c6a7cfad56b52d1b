"""Memory flat in stack length (issue #6 item 3): a cube several times a worker's memory limit.

One stack of 24 GRD images of 4096 x 8192 uint16 (64 MiB each, 1.5 GiB in all) is built twice on a
LocalCluster whose workers have ``memory_limit=512MiB`` (dask spills at 60 %, pauses a worker at 80 %
and kills it at 95 %): with its first 4 images (``end_date``) and with all 24. The workers are the
build's own (``icecube_cloud.cluster.local_cluster``): their malloc settings keep up to ~90 MiB of freed
heap, which is why the limit is not smaller (a worker baseline is ~200 MiB of libraries). Each build
gets a fresh cluster; the case reports each worker's peak RSS (``VmHWM``), whether a worker process
was replaced (died), the bytes dask spilled to disk, and the build time. Flat means peak(24) ≈ peak(4).

Usage: ``python -m benchmarks.memory [--n 4 24] [--shape 4096 8192] [--limit 512MiB]``.
The test ``tests/test_42_memory.py`` runs exactly this.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import distributed

from benchmarks.measure import MiB, track_rss
from benchmarks.stacks import StackSize, catalogue, generate
from icecube_cloud.build import build_cube, plan_cube
from icecube_cloud.cluster import local_cluster

log = logging.getLogger("benchmarks.memory")


def _spilled(dask_worker: distributed.Worker) -> int:
    """Bytes this worker wrote to its spill directory (cumulative, from its metric digests)."""
    digests = getattr(dask_worker, "digests_total", {})
    return int(sum(v for k, v in digests.items() if "disk-write" in str(k) and "bytes" in str(k)))


def _build(catalog: str, last_day: str, out: Path, workers: int, limit: str) -> dict[str, Any]:
    with local_cluster(workers, dashboard_address=None, memory_limit=limit) as client:
        pids_before = sorted(client.run(lambda: __import__("os").getpid()).values())
        t0 = time.perf_counter()
        with track_rss(client) as peaks:
            result = build_cube(
                catalog,
                {"end_date": last_day},
                str(out),
                scheduler=client.scheduler_info()["address"],
                register=False,
                overwrite=True,
            )
        seconds = time.perf_counter() - t0
        pids_after = sorted(client.run(lambda: __import__("os").getpid()).values())
        spilled = sum(client.run(_spilled).values())
    return {
        "n_images": len(result.plan.slices),
        "pixel_mib": round(result.nbytes / MiB, 1),
        "seconds": round(seconds, 2),
        "mib_per_s": round(result.nbytes / MiB / seconds, 1),
        "peak_rss_workers_mib": peaks.to_dict()["workers_mib"],
        "peak_rss_client_mib": peaks.to_dict()["client_mib"],
        "workers_replaced": pids_before != pids_after,
        "spilled_bytes": spilled,
    }


def memory_case(
    counts: Sequence[int] = (4, 24),
    shape: tuple[int, int] = (4096, 8192),
    limit: str = "512MiB",
    workers: int = 2,
) -> dict[str, Any]:
    """Build the first ``n`` images of one stack for each ``n`` in ``counts``; returns the numbers."""
    with tempfile.TemporaryDirectory(prefix="icecube-bench-mem-") as tmp:
        work = Path(tmp)
        size = StackSize(max(counts), shape)
        log.info("generating %d x %s", size.n, shape)
        stack = catalogue(generate(work, "grd", size), work, "grd", size)
        times = plan_cube(stack.catalog, {}).times
        runs = []
        for n in counts:
            log.info("memory case: %d images, workers limited to %s", n, limit)
            last_day = times[n - 1].date().isoformat()  # one image per UTC day: the first n
            runs.append(_build(stack.catalog, last_day, work / f"cube-{n}.zarr", workers, limit))
    peaks = [max(r["peak_rss_workers_mib"]) for r in runs]
    return {
        "memory_limit": limit,
        "workers": workers,
        "shape": list(shape),
        "runs": runs,
        "peak_growth": round(peaks[-1] / peaks[0], 3),
        "flat": peaks[-1] <= 1.1 * peaks[0] and not any(r["workers_replaced"] for r in runs),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.memory", description=__doc__)
    parser.add_argument("--n", type=int, nargs="+", default=[4, 24])
    parser.add_argument("--shape", type=int, nargs=2, default=[4096, 8192])
    parser.add_argument("--limit", default="512MiB")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    result = memory_case(args.n, (args.shape[0], args.shape[1]), args.limit)
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
