"""Run the benchmark suite and print a markdown table (SPEC §8, issue #6).

For each kind (GRD uint16, SLC complex64), size and store (local folder, S3 on moto), one run measures on
LocalClusters of the same size (a fresh one per case by default; the build's own ``local_cluster``, whose
workers get the build's malloc settings, for every case alike), in this order:

* **ceiling**: one task per source file reads it fully as raw bytes (one request: the I/O alone, no
  decoding) and writes those bytes, uncompressed, as one object to the same store (throughput in
  the image's pixel bytes);
* **ours**: ``build_cube`` (search, plan, source check, skeleton, chunk tasks, commit; no registration),
  then the first ``xr.open_zarr`` and first chunk read, and the bytes stored;
* **gaps**: ``build_cube`` with ``temporal_resolution=1`` (2 n gap slices): bytes under gap chunk keys;
* **naive**: ``rioxarray.open_rasterio`` per file → ``xr.concat`` → ``to_zarr`` (default codec).

With ``--repeat N``, ceiling and ours run N times interleaved, then naive N times; the fastest run of
each is reported and every run's seconds are kept in the JSON (``*_runs_s``; ``ratio_ceiling_median``
compares the medians, to show how much the fastest runs owe to luck). Throughputs are MiB of cube
pixels per wall second.

Every case starts from the same state, so that none pays for another: its workers have already
imported what any case's tasks import (:data:`WARM_MODULES`; a cold worker spends ~1 s importing
xarray, zarr, rasterio), as the cluster's start-up is not timed either; and dirty pages of earlier
cases are flushed to disk first (``os.sync``), so no case pays for an earlier one's writeback. Usage::

    python -m benchmarks.run [--size tiny|small|large ...] [--only grd|slc] [--no-s3] [--repeat N]
        [--json out.json]
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import logging
import math
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import distributed

from benchmarks import measure
from benchmarks.measure import MiB, PeakRss, Timed, track_rss
from benchmarks.stacks import SIZES, Kind, Size, Stack, catalogue, generate
from benchmarks.steps import KINDS, RequestLog
from icecube_cloud.build import build_cube
from icecube_cloud.cluster import local_cluster
from icecube_cloud.errors import IcecubeError
from icecube_cloud.storage import StorageOptions
from icecube_cloud.testing.moto import MotoServer

log = logging.getLogger("benchmarks")
T = TypeVar("T")
VARIABLE: dict[Kind, str] = {"grd": "amplitude", "slc": "slc"}
CHUNK = 1024

COLUMNS = (
    "kind", "flavour", "size", "store", "n_images", "shape", "pixel_mib",
    "ours_status", "ours_s", "ours_mibs", "ours_engine_s", "ceiling_s", "ceiling_mibs",
    "ceiling_task_read_s", "ceiling_task_write_s", "naive_s", "naive_mibs",
    "ratio_ceiling", "ratio_naive", "ratio_ceiling_median", "rss_ours", "rss_ceiling", "rss_naive",
    "stored_bytes", "raw_bytes", "stored_ratio", "naive_stored_bytes",
    "open_s", "first_chunk_s", "gap_slices", "gap_bytes", "gap_build_mibs",
    "ceiling_runs_s", "ours_runs_s", "naive_runs_s", "repeat",
    "ours_requests", "ceiling_requests", "naive_requests",
)  # fmt: skip
"""Every column of a result row (the JSON schema the smoke test checks)."""


@dataclass(frozen=True)
class Env:
    """Where one block runs."""

    store: str
    """``local`` or ``s3``."""
    out_root: str
    """Folder or ``s3://bucket/prefix`` for outputs."""
    storage_options: StorageOptions | None
    workers: int
    """Worker processes (one thread each, as ``icecube_cloud.cluster``)."""
    repeat: int = 1
    """Runs of the ceiling, ours and naive cases; the fastest of each is reported (all are kept)."""
    shared: distributed.Client | None = None
    """A cluster shared by every case; ``None``: a fresh LocalCluster per case (fresh memory and caches;
    ``Client.restart`` does not come back on this machine)."""
    warm: tuple[str, ...] = ()
    """Modules a fresh cluster's workers import before a case (default :data:`WARM_MODULES`)."""
    requests: RequestLog | None = None
    """The S3 server's request log (``s3`` blocks): requests of each case's first run are counted."""


WARM_MODULES = ("benchmarks.measure", "icecube_cloud.build", "rioxarray")
"""Imported by every worker before any case is timed: the modules the three cases' tasks import."""


def _warm_up(modules: Sequence[str] = WARM_MODULES) -> None:
    for name in modules:
        importlib.import_module(name)


def _case(
    env: Env, fn: Callable[[distributed.Client], T], requests: dict[str, int] | None = None
) -> tuple[T, PeakRss]:
    """Run ``fn`` on a cluster; with ``requests`` (and an S3 block), count the server's requests."""
    with contextlib.ExitStack() as stack:
        client = env.shared or stack.enter_context(
            _cluster(env.workers, warm=env.warm or WARM_MODULES)
        )
        os.sync()  # no case pays for the writeback of an earlier one
        log_ = env.requests if requests is not None else None
        before = log_.counts() if log_ is not None else None
        with track_rss(client) as peaks:
            result = fn(client)
        if log_ is not None and before is not None and requests is not None:
            after = log_.counts()
            requests.update({k: after[k] - before[k] for k in KINDS if after[k] - before[k]})
    return result, peaks


def _ours(
    env: Env, client: distributed.Client, stack: Stack, out: str, config: dict[str, Any]
) -> tuple[Timed, float]:
    t0 = time.perf_counter()
    result = build_cube(
        stack.catalog,
        config,
        out,
        storage_options=env.storage_options,
        scheduler=client.scheduler_info()["address"],
        register=False,
    )
    return Timed(time.perf_counter() - t0, result.nbytes), result.seconds


def _naive(env: Env, client: distributed.Client, stack: Stack, out: str) -> Timed:
    with measure.gdal_env_for_workers(client, env.storage_options):
        return measure.naive(stack.files, out, env.storage_options, client, CHUNK)


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a and b else None


def run_block(env: Env, stack: Stack, size: Size) -> dict[str, Any]:
    """Every case of one stack on one store; returns one result row."""
    so, root = env.storage_options, env.out_root
    az, rg = stack.size.shape
    row: dict[str, Any] = dict.fromkeys(COLUMNS)
    row.update(
        kind=stack.kind, flavour=stack.flavour, size=size, store=env.store, n_images=stack.size.n,
        shape=f"{az}x{rg}", pixel_mib=round(stack.nbytes / MiB, 1), raw_bytes=stack.nbytes,
        repeat=env.repeat,
    )  # fmt: skip

    per_image = stack.nbytes // stack.size.n
    ceiling_requests: dict[str, int] = {}
    ours_requests: dict[str, int] = {}
    naive_requests: dict[str, int] = {}
    out = f"{root}/ours.zarr"
    ceilings: list[tuple[Timed, PeakRss]] = []
    ours_runs: list[tuple[tuple[Timed, float], PeakRss]] = []
    for i in range(env.repeat):  # interleaved, so that both see the same machine state
        log.info("%s %s %s: ceiling (%d/%d)", stack.kind, size, env.store, i + 1, env.repeat)
        ceilings.append(
            _case(
                env,
                lambda c: measure.ceiling(c, stack.files, f"{root}/ceiling", per_image, so),
                None if i else ceiling_requests,
            )
        )
        measure.remove(f"{root}/ceiling", so)
        if row["ours_status"] is not None:
            continue
        log.info("%s %s %s: ours (%d/%d)", stack.kind, size, env.store, i + 1, env.repeat)
        if i:
            measure.remove(out, so)
        try:
            ours_runs.append(
                _case(env, lambda c: _ours(env, c, stack, out, {}), None if i else ours_requests)
            )
        except IcecubeError as err:
            supported = "not supported" not in str(err)
            row["ours_status"] = f"{'error' if supported else 'not supported'}: {err}"[:300]
            log.warning("ours failed on %s %s %s: %s", stack.kind, size, env.store, err)
    ceil, rss = min(ceilings, key=lambda r: r[0].seconds)
    row.update(
        ceiling_s=round(ceil.seconds, 3), ceiling_mibs=round(ceil.mib_per_s, 1),
        ceiling_task_read_s=ceil.detail["task_read_s"],
        ceiling_task_write_s=ceil.detail["task_write_s"], rss_ceiling=rss.to_dict(),
        ceiling_runs_s=[round(r[0].seconds, 3) for r in ceilings],
    )  # fmt: skip
    if row["ours_status"] is None:
        (ours, engine_s), rss = min(ours_runs, key=lambda r: r[0][0].seconds)
        row.update(
            ours_status="ok", ours_s=round(ours.seconds, 3), ours_mibs=round(ours.mib_per_s, 1),
            ours_engine_s=round(engine_s, 3), rss_ours=rss.to_dict(),
            ours_runs_s=[round(r[0][0].seconds, 3) for r in ours_runs],
        )  # fmt: skip
        open_s, chunk_s = measure.first_access(out, VARIABLE[stack.kind], so, CHUNK)
        stored = measure.stored_bytes(out, so, VARIABLE[stack.kind])
        row.update(
            stored_bytes=stored, stored_ratio=round(stored / stack.nbytes, 3),
            open_s=round(open_s, 3), first_chunk_s=round(chunk_s, 3),
        )  # fmt: skip
        measure.remove(out, so)

        log.info("%s %s %s: gaps", stack.kind, size, env.store)
        out = f"{root}/gaps.zarr"
        (gap_build, _), _ = _case(
            env, lambda c: _ours(env, c, stack, out, {"temporal_resolution": 1})
        )
        n_gaps, gap_bytes = measure.gap_bytes(out, VARIABLE[stack.kind], so)
        row.update(gap_slices=n_gaps, gap_bytes=gap_bytes,
                   gap_build_mibs=round(gap_build.mib_per_s, 1))  # fmt: skip
        measure.remove(out, so)

    out = f"{root}/naive.zarr"
    naives: list[tuple[Timed, PeakRss]] = []
    for i in range(env.repeat):
        log.info("%s %s %s: naive (%d/%d)", stack.kind, size, env.store, i + 1, env.repeat)
        naives.append(
            _case(env, lambda c: _naive(env, c, stack, out), None if i else naive_requests)
        )
        if not i:  # the same bytes every run: one listing
            stored_naive = measure.stored_bytes(out, so, "pixels")
        measure.remove(out, so)
    naive, rss = min(naives, key=lambda r: r[0].seconds)
    row.update(
        naive_s=round(naive.seconds, 3), naive_mibs=round(naive.mib_per_s, 1), rss_naive=rss.to_dict(),
        naive_stored_bytes=stored_naive, naive_runs_s=[round(r[0].seconds, 3) for r in naives],
    )  # fmt: skip
    if env.requests is not None:
        row.update(ceiling_requests=ceiling_requests, naive_requests=naive_requests,
                   ours_requests=ours_requests if row["ours_status"] == "ok" else None)  # fmt: skip
    row["ratio_ceiling"] = _ratio(row["ours_mibs"], row["ceiling_mibs"])
    row["ratio_naive"] = _ratio(row["ours_mibs"], row["naive_mibs"])
    if row["ours_runs_s"]:  # the same bytes: the ratio of throughputs is the inverse ratio of times
        row["ratio_ceiling_median"] = _ratio(
            statistics.median(row["ceiling_runs_s"]), statistics.median(row["ours_runs_s"])
        )
    return row


@contextmanager
def _cluster(
    workers: int, memory_limit: str | None = None, warm: Sequence[str] = WARM_MODULES
) -> Iterator[distributed.Client]:
    """The build's own LocalCluster (``icecube_cloud.cluster``), for every case alike."""
    with local_cluster(workers, dashboard_address=None, memory_limit=memory_limit or "auto") as c:
        c.run(_warm_up, tuple(warm))
        yield c


def run_suite(
    sizes: Sequence[Size],
    kinds: Sequence[Kind],
    *,
    s3: bool = True,
    local: bool = True,
    workers: int | None = None,
    fresh: bool = True,
    workdir: Path | None = None,
    repeat: int = 1,
) -> list[dict[str, Any]]:
    """Run every block; returns the result rows (one per kind × size × store)."""
    rows: list[dict[str, Any]] = []
    tmp = Path(tempfile.mkdtemp(prefix="icecube-bench-", dir=workdir))
    try:
        n = workers or os.cpu_count() or 1
        with contextlib.ExitStack() as ctx:
            moto = ctx.enter_context(MotoServer(log_path=tmp / "moto.log"))
            requests = RequestLog(tmp / "moto.log")
            client = None if fresh else ctx.enter_context(_cluster(n))
            for size in sizes:
                for kind in kinds:
                    spec = SIZES[size][kind]
                    block = tmp / f"{kind}-{size}"
                    log.info("generating %s %s: %d x %s", kind, size, spec.n, spec.shape)
                    products = generate(block, kind, spec)
                    if local:
                        stack = catalogue(products, block, kind, spec)
                        env = Env("local", str(block / "out"), None, n, repeat, client)
                        rows.append(run_block(env, stack, size))
                        log.info("row %s", json.dumps(rows[-1], default=str))
                    if s3:
                        moto.restart()  # moto keeps every object in memory: start each block fresh
                        bucket = moto.make_bucket("bench")
                        so = moto.storage_options
                        stack = catalogue(
                            products,
                            block,
                            kind,
                            spec,
                            s3_prefix=f"{bucket}/src",
                            storage_options=so,
                        )
                        env = Env("s3", f"{bucket}/out", so, n, repeat, client, requests=requests)
                        rows.append(run_block(env, stack, size))
                        log.info("row %s", json.dumps(rows[-1], default=str))
                    shutil.rmtree(block, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return rows


def _fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return "inf" if math.isinf(value) else f"{value:.{digits}f}"
    return str(value)


def table(rows: Sequence[dict[str, Any]]) -> str:
    """The result rows as a markdown table."""
    head = (
        "| kind | size | store | stack | MiB | ours MiB/s | ceiling MiB/s | naive MiB/s | ours/ceiling "
        "| ours/naive | peak RSS ours: client / workers MiB | stored/raw | open s | 1st chunk s "
        "| gap slices / bytes |"
    )
    lines = [head, "|" + "---|" * head.count(" | ") + "---|"]
    for r in rows:
        ours = _fmt(r["ours_mibs"]) if r["ours_status"] == "ok" else str(r["ours_status"])[:13]
        rss = r["rss_ours"]
        rss_s = (
            f"{rss['client_mib']:.0f} / {', '.join(f'{w:.0f}' for w in rss['workers_mib'])}"
            if rss
            else "–"
        )
        gaps = f"{r['gap_slices']} / {r['gap_bytes']}" if r["gap_slices"] is not None else "–"
        lines.append(
            f"| {r['kind']} ({r['flavour']}) | {r['size']} | {r['store']} "
            f"| {r['n_images']}×{r['shape']} | {_fmt(r['pixel_mib'], 0)} | {ours} "
            f"| {_fmt(r['ceiling_mibs'])} | {_fmt(r['naive_mibs'])} | {_fmt(r['ratio_ceiling'], 2)} "
            f"| {_fmt(r['ratio_naive'], 2)} | {rss_s} | {_fmt(r['stored_ratio'], 3)} "
            f"| {_fmt(r['open_s'], 3)} | {_fmt(r['first_chunk_s'], 3)} | {gaps} |"
        )
    return "\n".join(lines)


def requests_table(rows: Sequence[dict[str, Any]]) -> str:
    """Requests the S3 server received per build (first run of each case), as a markdown table."""
    head = "| kind | size | stack | case | " + " | ".join(KINDS) + " | total |"
    lines = [head, "|" + "---|" * head.count(" | ") + "---|"]
    for r in rows:
        for case in ("ours", "ceiling", "naive"):
            counts = r.get(f"{case}_requests")
            if r["store"] != "s3" or counts is None:
                continue
            cells = " | ".join(str(counts.get(k, 0)) for k in KINDS)
            lines.append(
                f"| {r['kind']} ({r['flavour']}) | {r['size']} | {r['n_images']}×{r['shape']} "
                f"| {case} | {cells} | {sum(counts.values())} |"
            )
    return "\n".join(lines) if len(lines) > 2 else ""


TARGET_CEILING = 0.8
"""SPEC §8 target for ours / I/O ceiling on the large GRD stack, locally and on S3."""
TARGET_NAIVE = 2.0
"""SPEC §8 target for ours / naive recipe on the same stack."""


def verdicts(rows: Sequence[dict[str, Any]]) -> list[str]:
    """One line per large GRD row: whether it meets the throughput targets of SPEC §8."""
    lines = []
    for r in rows:
        if r["kind"] != "grd" or r["size"] != "large":
            continue
        ceiling, naive = r["ratio_ceiling"], r["ratio_naive"]
        met = (
            ceiling is not None
            and naive is not None
            and ceiling >= TARGET_CEILING
            and naive >= TARGET_NAIVE
        )
        median = r.get("ratio_ceiling_median")
        spread = f" (median of runs {_fmt(median, 2)})" if median is not None else ""
        lines.append(
            f"large GRD, {r['store']}: ours/ceiling {_fmt(ceiling, 2)}{spread} (target ≥ "
            f"{TARGET_CEILING}), ours/naive {_fmt(naive, 2)} (target ≥ {TARGET_NAIVE}): "
            + ("targets met" if met else "TARGET MISSED")
        )
    return lines


def machine() -> dict[str, Any]:
    """Context of the run (load average matters: other jobs share the cores)."""
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "loadavg_start": os.getloadavg(),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__)
    parser.add_argument("--size", choices=list(SIZES), action="append",
                        help="stack size (repeatable; default: small and large)")  # fmt: skip
    parser.add_argument("--only", choices=["grd", "slc"], action="append", help="kind (repeatable)")
    parser.add_argument("--s3", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--local", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--fresh", action=argparse.BooleanOptionalAction, default=True,
                        help="a fresh LocalCluster for each case (else one shared cluster)")  # fmt: skip
    parser.add_argument(
        "--workers", type=int, default=None, help="worker processes (default: cores)"
    )
    parser.add_argument("--memory", action=argparse.BooleanOptionalAction, default=False,
                        help="also run the memory-flatness case (benchmarks.memory)")  # fmt: skip
    parser.add_argument("--repeat", type=int, default=1,
                        help="runs of each case; the fastest is reported (default 1)")  # fmt: skip
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    info = machine()
    rows = run_suite(
        args.size or ["small", "large"],
        args.only or ["grd", "slc"],
        s3=args.s3,
        local=args.local,
        workers=args.workers,
        fresh=args.fresh,
        repeat=args.repeat,
    )
    result: dict[str, Any] = {"machine": info, "rows": rows, "verdicts": verdicts(rows)}
    print(table(rows))
    requests = requests_table(rows)
    if requests:
        print(f"\nRequests to S3 per build (moto's access log; client and workers):\n\n{requests}")
    for line in result["verdicts"]:
        print(f"\n{line}")
    if args.memory:
        from benchmarks.memory import memory_case

        try:
            result["memory"] = memory_case()
        except Exception:
            traceback.print_exc()
        else:
            print(json.dumps(result["memory"], indent=2))
    result["machine"]["loadavg_end"] = os.getloadavg()
    if args.json:
        args.json.write_text(json.dumps(result, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
