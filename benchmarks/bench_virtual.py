"""Benchmark virtual (kerchunk-referenced) cubes (issue #5) and print a markdown table.

For each product flavour: generate ``--n`` products, catalog them, build the reference cube on one
LocalCluster (one task per product), and report the build time (planning + reference tasks + the one
JSON write), the reference store size against the data it points at, and the time to open the cube and
read one time slice. With ``--zarr`` the materialised Zarr build of the same stack is timed too.

Usage::

    python benchmarks/bench_virtual.py [--n 100] [--size 256] [--workdir DIR] [--zarr]
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import distributed

from icecube_cloud.build import build_cube
from icecube_cloud.cube import open_cube
from icecube_cloud.ingest import ingest
from icecube_cloud.synthetic import Flavour, make_stack

FLAVOURS: tuple[Flavour, ...] = ("legacy-grd", "grd-cog", "legacy-slc")


def _case(
    work: Path, flavour: Flavour, n: int, size: int, scheduler: str, zarr: bool
) -> dict[str, Any]:
    products, cat = work / flavour / "products", work / flavour / "cat"
    make_stack(products, n=n, shape=(size, size), flavour=flavour, days=max(n, 1), seed=11)
    ingest([str(products)], str(cat))
    out = work / flavour / "cube.json"
    t0 = time.perf_counter()
    result = build_cube(
        str(cat), {}, str(out), scheduler=scheduler, format="kerchunk", register=False
    )
    build_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    ds = open_cube(str(out))
    ds[result.plan.variable].isel(time=0).values  # noqa: B018 (one slice read)
    open_s = time.perf_counter() - t0
    data = sum(p.stat().st_size for p in products.iterdir() if p.suffix in (".tif", ".h5"))
    row = {
        "flavour": flavour,
        "products": n,
        "image": f"{size}x{size}",
        "refs": result.chunks_written,
        "build_s": build_s,
        "refs_kib": out.stat().st_size / 1024,
        "data_mib": data / 2**20,
        "ratio": out.stat().st_size / data,
        "open_s": open_s,
        "zarr_s": None,
    }
    if zarr and flavour != "legacy-slc":  # the legacy SLC Zarr reader is issue #4
        t0 = time.perf_counter()
        build_cube(
            str(cat), {}, str(work / flavour / "cube.zarr"), scheduler=scheduler, register=False
        )
        row["zarr_s"] = time.perf_counter() - t0
    return row


def table(rows: Sequence[dict[str, Any]]) -> str:
    """The rows as a markdown table."""
    head = (
        "| flavour | products | image | references | build (s) | reference store (KiB) "
        "| data (MiB) | store / data | open + 1 slice (s) | zarr build (s) |"
    )
    lines = [head, "|" + "---|" * 10]
    for r in rows:
        zarr_s = "-" if r["zarr_s"] is None else f"{r['zarr_s']:.2f}"
        lines.append(
            f"| {r['flavour']} | {r['products']} | {r['image']} | {r['refs']} | {r['build_s']:.2f} "
            f"| {r['refs_kib']:.1f} | {r['data_mib']:.1f} | {r['ratio']:.4f} | {r['open_s']:.2f} "
            f"| {zarr_s} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the cases and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100, help="products per stack")
    parser.add_argument("--size", type=int, default=256, help="image edge in pixels")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--workdir", default=None)
    parser.add_argument("--zarr", action="store_true", help="also time the materialised build")
    parser.add_argument("--flavour", action="append", choices=FLAVOURS, default=None)
    args = parser.parse_args(argv)
    work = Path(args.workdir or tempfile.mkdtemp(prefix="bench-virtual-"))
    with distributed.LocalCluster(  # type: ignore[no-untyped-call]
        n_workers=args.workers, threads_per_worker=1, dashboard_address=None,
        silence_logs=logging.ERROR,
    ) as cluster:  # fmt: skip
        scheduler = str(cluster.scheduler_address)
        rows = [
            _case(work, fl, args.n, args.size, scheduler, args.zarr)
            for fl in (args.flavour or FLAVOURS)
        ]
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
