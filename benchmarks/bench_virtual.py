"""Benchmark virtual (kerchunk-referenced) cubes (issue #5) and print a markdown table.

For each product flavour: generate ``--n`` products, catalog them, build the reference cube on one
LocalCluster (one task per product), and report the build time (planning + reference tasks + the one
JSON write), the reference store size against the data it points at, and the time to open the cube and
read one time slice. With ``--zarr`` the materialised Zarr build of the same stack is timed too.
``--references json --references parquet`` builds and opens each stack as one JSON reference file and
as kerchunk's Parquet reference store (issue 16 item 4: where the crossover is).

Usage::

    python benchmarks/bench_virtual.py [--n 100] [--size 256] [--workdir DIR] [--zarr]
        [--references json|parquet ...]
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
import kerchunk.utils

from icecube_cloud.build import build_cube
from icecube_cloud.cube import open_cube
from icecube_cloud.ingest import ingest
from icecube_cloud.storage import StorageTarget
from icecube_cloud.synthetic import Flavour, make_stack
from icecube_cloud.write.references import write_parquet

FLAVOURS: tuple[Flavour, ...] = ("legacy-grd", "grd-cog", "legacy-slc")
META = (".zarray", ".zattrs", ".zgroup")


def _store_bytes(out: Path) -> int:
    return (
        sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
        if out.is_dir()
        else out.stat().st_size
    )


def _case(
    work: Path, flavour: Flavour, n: int, size: int, scheduler: str, zarr: bool, refs: str
) -> dict[str, Any]:
    products, cat = work / flavour / "products", work / flavour / "cat"
    if not cat.exists():
        make_stack(products, n=n, shape=(size, size), flavour=flavour, days=max(n, 1), seed=11)
        ingest([str(products)], str(cat))
    out = work / flavour / ("cube.parq" if refs == "parquet" else "cube.json")
    t0 = time.perf_counter()
    result = build_cube(
        str(cat), {}, str(out), scheduler=scheduler, format="kerchunk", register=False,
        overwrite=True,
    )  # fmt: skip
    build_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    ds = open_cube(str(out))
    open_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    ds[result.plan.variable].isel(time=0).values  # noqa: B018 (the first slice's chunks)
    first_s = time.perf_counter() - t0
    data = sum(p.stat().st_size for p in products.iterdir() if p.suffix in (".tif", ".h5"))
    stored = _store_bytes(out)
    row = {
        "flavour": flavour,
        "references": refs,
        "products": n,
        "image": f"{size}x{size}",
        "refs": result.chunks_written,
        "build_s": build_s,
        "refs_kib": stored / 1024,
        "data_mib": data / 2**20,
        "ratio": stored / data,
        "open_s": open_s,
        "first_s": first_s,
        "zarr_s": None,
    }
    if zarr and flavour != "legacy-slc":  # the legacy SLC Zarr reader is issue #4
        t0 = time.perf_counter()
        build_cube(
            str(cat), {}, str(work / flavour / "cube.zarr"), scheduler=scheduler, register=False,
            overwrite=True,
        )  # fmt: skip
        row["zarr_s"] = time.perf_counter() - t0
    return row


def crossover(cube: Path, factors: Sequence[int], repeat: int = 3) -> list[dict[str, Any]]:
    """Open + first-slice time of the same references as JSON and as Parquet, at growing counts.

    ``cube`` is a legacy-GRD JSON cube (uncompressed, one reference per product); each factor ``f``
    splits every product's reference into ``f`` row blocks (``kerchunk.utils.subchunk``), so the
    reference count grows while the metadata stays the same. Best of ``repeat`` runs.
    """
    doc = json.loads(cube.read_text())
    rows = []
    for f in factors:
        refs = kerchunk.utils.subchunk(dict(doc["refs"]), "amplitude", f)
        meta = {k: json.loads(v) for k, v in refs.items() if k.endswith(META) and k != ".zmetadata"}
        refs[".zmetadata"] = json.dumps({"zarr_consolidated_format": 1, "metadata": meta})
        split = {"version": 1, "refs": refs}
        chunks = [k for k in refs if k.startswith("amplitude/") and not k.endswith(META)]
        row: dict[str, Any] = {"references": len(chunks)}
        for fmt, out in (("json", cube.with_name(f"split{f}.json")),
                         ("parquet", cube.with_name(f"split{f}.parq"))):  # fmt: skip
            if fmt == "json":
                out.write_text(json.dumps(split, separators=(",", ":")))
            else:
                write_parquet(StorageTarget.from_url(str(out)), split, None)
            runs = []
            for _ in range(repeat):
                t0 = time.perf_counter()
                ds = open_cube(str(out))
                ds["amplitude"].isel(time=0).values  # noqa: B018
                runs.append(time.perf_counter() - t0)
            row[f"{fmt}_kib"], row[f"{fmt}_s"] = _store_bytes(out) / 1024, min(runs)
        rows.append(row)
    return rows


def table(rows: Sequence[dict[str, Any]]) -> str:
    """The rows as a markdown table."""
    head = (
        "| flavour | format | products | image | references | build (s) | reference store (KiB) "
        "| data (MiB) | store / data | open (s) | first slice (s) | zarr build (s) |"
    )
    lines = [head, "|" + "---|" * 12]
    for r in rows:
        zarr_s = "-" if r["zarr_s"] is None else f"{r['zarr_s']:.2f}"
        lines.append(
            f"| {r['flavour']} | {r['references']} | {r['products']} | {r['image']} | {r['refs']} "
            f"| {r['build_s']:.2f} | {r['refs_kib']:.1f} | {r['data_mib']:.1f} | {r['ratio']:.4f} "
            f"| {r['open_s']:.3f} | {r['first_s']:.3f} | {zarr_s} |"
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
    parser.add_argument(
        "--references", action="append", choices=("json", "parquet"), default=None,
        help="reference format(s) to build and open (default: json)",
    )  # fmt: skip
    parser.add_argument(
        "--crossover", type=int, action="append", default=None, metavar="F",
        help="after the legacy-grd JSON case: split each product's reference into F row blocks and "
        "time opening it as JSON and as Parquet (repeatable; F must divide --size)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    work = Path(args.workdir or tempfile.mkdtemp(prefix="bench-virtual-"))
    with distributed.LocalCluster(  # type: ignore[no-untyped-call]
        n_workers=args.workers, threads_per_worker=1, dashboard_address=None,
        silence_logs=logging.ERROR,
    ) as cluster:  # fmt: skip
        scheduler = str(cluster.scheduler_address)
        rows = [
            _case(work, fl, args.n, args.size, scheduler, args.zarr, refs)
            for fl in (args.flavour or FLAVOURS)
            for refs in (args.references or ["json"])
        ]
    print(table(rows))
    if args.crossover:
        cube = work / "legacy-grd" / "cube.json"
        print("\n| chunk references | JSON (KiB) | JSON open + first slice (s) | Parquet (KiB) "
              "| Parquet open + first slice (s) |\n|---|---|---|---|---|")  # fmt: skip
        for r in crossover(cube, args.crossover):
            print(f"| {r['references']} | {r['json_kib']:.0f} | {r['json_s']:.3f} "
                  f"| {r['parquet_kib']:.0f} | {r['parquet_s']:.3f} |")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
