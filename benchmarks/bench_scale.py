"""Scale: a daily cube of a year from a catalog of thousands of items (issue 16, items 3 and 5).

One case is ``n`` time slices (``--slices``: n small daily GRD products, 64² legacy GeoTIFFs, one per
UTC day from 2023-01-01) in a catalog of ``m`` items (``--items``: the n products plus m − n items
cloned from them and dated in the years before, which the search must skip; nothing reads their
files), on a store (``--store``: local folder, or S3 on moto, where products, static catalog and cube
all live) with a catalog (``--catalog``: the static catalog, or a STAC API on pgstac). Measured, in
this order, on one shared LocalCluster (its start-up is not timed):

* **build**: ``build_cube`` of the n slices (no registration), split into steps by
  :mod:`benchmarks.steps`: ``search`` (open the catalog + search), ``plan`` (selection and plan),
  ``output check`` (inspect the output, lease), ``source check`` (one task per product), ``skeleton``
  (render and write the documents), ``journal`` (pending record, done listing), ``band tasks``,
  ``commit``, ``other`` (the rest: connecting to the cluster, ...);
* **ingest 1**: one new product's item upserted into the catalog (the day after the last slice);
* **update**: ``update_cube`` with that one new image, in the same steps (plus ``read cube``: reading
  the stored cube's layout, time axis and metadata; ``other`` holds comparing the time axes);
* **open**: ``open_cube`` (consolidated metadata, completeness check) and the ``time`` axis.

Each step reports wall seconds, cost per slice (ms; per item for the search), and on S3 the requests
the server saw (GET, PUT, LIST, HEAD, DELETE; counted from moto's access log, so worker requests
count too). Request counts are deterministic; wall times on a shared machine are not: with
``--repeat N`` every case runs N times (after the first, the new item is taken out of the catalog
again) and each step reports its fastest run (all runs are in the JSON). Run it at two or more sizes
to see growth: the table ends with each step's growth exponent k between the smallest and the
largest size (cost ∝ size^k: 1 is linear, 0 constant). Usage::

    python -m benchmarks.bench_scale [--slices 365 ...] [--items 5000 ...] [--store local|s3 ...]
        [--catalog static|api ...] [--repeat N] [--workers 2] [--json out.json]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks import scale_setup as setup
from benchmarks.run import machine
from benchmarks.steps import KINDS, RequestLog, StepRecorder
from icecube_cloud.build import build_cube
from icecube_cloud.cluster import local_cluster
from icecube_cloud.cube import open_cube
from icecube_cloud.testing.moto import MotoServer
from icecube_cloud.update import update_cube

log = logging.getLogger("benchmarks.bench_scale")
PHASES = ("build", "ingest 1", "update", "open")


@dataclass(frozen=True)
class Case:
    """One benchmark case."""

    slices: int
    items: int
    store: str
    catalog: str


def _run_once(
    case: Case, env: setup.CaseEnv, scheduler: str, requests: RequestLog | None
) -> dict[str, dict[str, Any]]:
    """One build, ingest, update and open of ``case``; returns phase -> step -> cost."""
    so = env.storage_options
    out: dict[str, dict[str, Any]] = {}
    setup.remove(env.cube_url, so)

    rec = StepRecorder(requests)
    with rec.watching(setup.step_targets()):
        rec.call(
            "other", build_cube, env.catalog_url, env.config, env.cube_url,
            storage_options=so, scheduler=scheduler, register=False,
            allowed_hrefs=env.allowed_hrefs,
        )  # fmt: skip
    out["build"] = {k: v.to_dict() for k, v in rec.steps.items()}

    rec = StepRecorder(requests)
    rec.call("catalog upsert", env.catalog().upsert, [env.new_item])
    out["ingest 1"] = {k: v.to_dict() for k, v in rec.steps.items()}

    rec = StepRecorder(requests)
    with rec.watching(setup.step_targets()):
        result = rec.call(
            "other", update_cube, env.cube_url, env.catalog_url, storage_options=so,
            scheduler=scheduler, allowed_hrefs=env.allowed_hrefs,
        )  # fmt: skip
    if result.added != (env.new_item.id,):
        raise RuntimeError(f"update added {result.added}, expected {env.new_item.id}")
    out["update"] = {k: v.to_dict() for k, v in rec.steps.items()}

    rec = StepRecorder(requests)
    ds = rec.call("open_cube", lambda: open_cube(env.cube_url, storage_options=so))
    if ds.sizes["time"] != case.slices + 1:
        raise RuntimeError(f"the updated cube has {ds.sizes['time']} slices, not {case.slices + 1}")
    out["open"] = {k: v.to_dict() for k, v in rec.steps.items()}
    env.forget_new_item()
    return out


def _merge(runs: Sequence[dict[str, dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """Per phase and step: the fastest run's seconds, every run's seconds, the first run's requests."""
    merged: dict[str, dict[str, Any]] = {}
    for phase in PHASES:
        merged[phase] = {}
        for step, first in runs[0][phase].items():
            seconds = [r[phase].get(step, {}).get("s", 0.0) for r in runs]
            merged[phase][step] = {
                **first,
                "s": min(seconds),
                "runs_s": seconds,
                "requests_stable": all(
                    r[phase].get(step, {}).get("requests") == first["requests"] for r in runs
                ),
            }
    return merged


def run_case(case: Case, ctx: setup.Services, scheduler: str, repeat: int) -> dict[str, Any]:
    """Set up one case, run it ``repeat`` times; returns its result row."""
    log.info("case %s: setting up", case)
    with setup.case_env(ctx, case.slices, case.items, case.store, case.catalog) as env:
        requests = RequestLog(ctx.moto_log) if case.store == "s3" else None
        runs = []
        for i in range(repeat):
            log.info("case %s: run %d/%d", case, i + 1, repeat)
            runs.append(_run_once(case, env, scheduler, requests))
    row: dict[str, Any] = {**case.__dict__, "repeat": repeat, "phases": _merge(runs)}
    return row


# --- tables ------------------------------------------------------------------------------------


def _per(step: str, row: dict[str, Any]) -> tuple[int, str]:
    """What a step's cost is divided by: items for the search, slices for the rest."""
    return (row["items"], "item") if step == "search" else (row["slices"], "slice")


def table(rows: Sequence[dict[str, Any]]) -> str:
    """One line per case, phase and step: seconds, per-slice cost and requests."""
    head = (
        "| slices | items | store | catalog | phase | step | s | ms per slice (item) "
        "| " + " | ".join(KINDS[:5]) + " | requests per slice |"
    )
    lines = [head, "|" + "---|" * head.count(" | ") + "---|"]
    for r in rows:
        for phase, steps in r["phases"].items():
            for step, c in steps.items():
                n, unit = _per(step, r)
                req = c["requests"]
                total = sum(req.values())
                counts = " | ".join(str(req.get(k, 0)) if r["store"] == "s3" else "–"
                                    for k in KINDS[:5])  # fmt: skip
                per = f"{total / n:.2f}" if r["store"] == "s3" else "–"
                lines.append(
                    f"| {r['slices']} | {r['items']} | {r['store']} | {r['catalog']} | {phase} "
                    f"| {step} | {c['s']:.3f} | {1000 * c['s'] / n:.2f}"
                    f"{' /item' if unit == 'item' else ''} | {counts} | {per} |"
                )
    return "\n".join(lines)


def growth(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Growth exponents of every step between the smallest and largest case of each store/catalog.

    Cases that differ in slices give k over slices; cases that differ only in items give k over items.
    """
    out: list[dict[str, Any]] = []
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for r in rows:
        for axis, other in (("slices", "items"), ("items", "slices")):
            groups.setdefault((r["store"], r["catalog"], f"{axis}@{r[other]}"), []).append(r)
    for (store, catalog, axis_key), group in groups.items():
        axis = axis_key.split("@")[0]
        small, large = min(group, key=lambda r: r[axis]), max(group, key=lambda r: r[axis])
        if small[axis] == large[axis]:
            continue
        ratio = math.log(large[axis] / small[axis])
        for phase, steps in large["phases"].items():
            for step, c in steps.items():
                s0 = small["phases"].get(phase, {}).get(step)
                if s0 is None:
                    continue
                r0, r1 = sum(s0["requests"].values()), sum(c["requests"].values())
                out.append({
                    "store": store, "catalog": catalog, "axis": axis,
                    "from": small[axis], "to": large[axis], "phase": phase, "step": step,
                    "k_seconds": round(math.log(max(c["s"], 1e-4) / max(s0["s"], 1e-4)) / ratio, 2),
                    "k_requests": round(math.log(r1 / r0) / ratio, 2) if r0 and r1 else None,
                })  # fmt: skip
    return out


def growth_table(entries: Sequence[dict[str, Any]]) -> str:
    """The growth exponents as a markdown table."""
    head = "| store | catalog | axis | from → to | phase | step | k (seconds) | k (requests) |"
    lines = [head, "|" + "---|" * head.count(" | ") + "---|"]
    for g in entries:
        kr = "–" if g["k_requests"] is None else f"{g['k_requests']:.2f}"
        lines.append(
            f"| {g['store']} | {g['catalog']} | {g['axis']} | {g['from']} → {g['to']} "
            f"| {g['phase']} | {g['step']} | {g['k_seconds']:.2f} | {kr} |"
        )
    return "\n".join(lines)


# --- driver ------------------------------------------------------------------------------------


@contextmanager
def _cluster(workers: int) -> Iterator[str]:
    with local_cluster(workers, dashboard_address=None) as client:
        client.run(setup.warm_up)
        yield str(client.scheduler_info()["address"])


def run_suite(
    cases: Sequence[Case], *, workers: int, repeat: int, workdir: Path | None = None
) -> list[dict[str, Any]]:
    """Every case on one cluster, one moto server and (when asked) one STAC API."""
    tmp = Path(tempfile.mkdtemp(prefix="icecube-bench-scale-", dir=workdir))
    tmp.chmod(0o755)  # the STAC API's postgres user must enter it
    rows: list[dict[str, Any]] = []
    try:
        with contextlib.ExitStack() as stack:
            moto = None
            if any(c.store == "s3" for c in cases):
                moto = stack.enter_context(MotoServer(log_path=tmp / "moto.log"))
            api = None
            if any(c.catalog == "api" for c in cases):
                api = stack.enter_context(setup.stac_api(tmp / "stac-api"))
            ctx = setup.Services(tmp, moto, tmp / "moto.log", api)
            scheduler = stack.enter_context(_cluster(workers))
            for case in cases:
                t0 = time.perf_counter()
                rows.append(run_case(case, ctx, scheduler, repeat))
                log.info("case %s done in %.0f s", case, time.perf_counter() - t0)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_scale", description=__doc__)
    parser.add_argument("--slices", type=int, action="append",
                        help="time slices (repeatable; default 365)")  # fmt: skip
    parser.add_argument("--items", type=int, action="append",
                        help="catalog items (repeatable; default 5000)")  # fmt: skip
    parser.add_argument("--store", choices=["local", "s3"], action="append",
                        help="where products, static catalog and cube live (repeatable; default s3)")  # fmt: skip
    parser.add_argument("--catalog", choices=["static", "api"], action="append",
                        help="static catalog or STAC API on pgstac (repeatable; default static)")  # fmt: skip
    parser.add_argument("--repeat", type=int, default=1, help="runs of each case (fastest kept)")
    parser.add_argument("--workers", type=int, default=2, help="worker processes")
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    for name in ("fsspec", "distributed", "icecube_cloud"):
        logging.getLogger(name).setLevel(logging.WARNING)
    cases = [
        Case(n, max(m, n + 1), store, catalog)
        for store in args.store or ["s3"]
        for catalog in args.catalog or ["static"]
        for m in args.items or [5000]
        for n in args.slices or [365]
    ]
    info = machine()
    rows = run_suite(cases, workers=args.workers, repeat=args.repeat)
    grown = growth(rows)
    print(table(rows))
    if grown:
        print("\nGrowth: cost ∝ size^k between the smallest and the largest case\n")
        print(growth_table(grown))
    info["loadavg_end"] = os.getloadavg()
    if args.json:
        result = {"machine": info, "rows": rows, "growth": grown}
        args.json.write_text(json.dumps(result, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
