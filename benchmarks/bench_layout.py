"""Cube layout for training (issue 15, item 9): today's chunks against Zarr v3 shards.

One GRD stack (default 16 × 4096², legacy GeoTIFFs, like the issue's) is built into each layout on one
shared LocalCluster, and each cube is then read the way a training loader reads it:

* build: whole ``build_cube`` time → MiB/s of pixels; stored bytes and objects of ``amplitude``;
* patch reads: random 256² windows (aligned to the patch grid, and at random offsets) read with raw
  zarr (``zarr.open_array``, no dask), in one thread, in a 2-thread pool, and in 2 processes (as a
  ``DataLoader``'s workers read) → patches/s; every layout reads the same windows and must return
  the same pixels; the reads come in blocks that visit every layout in turn;
* ``xr.open_zarr`` (plain, default dask chunks: the inner chunks): a few random patches equal the raw
  reads, and the time to load one whole time slice (what an analysis or a quicklook does).

Layouts: ``chunks`` C² (today's default, C = ``--chunk``), shards C² of P² inner chunks and of (2P)²
(P = ``--patch``), and plain P² chunks (small objects instead of shards). Rounds interleave the
layouts so that they share the machine's noise; each round's ratio to today's layout is taken in that
round, and the table gives medians over rounds. The cubes are read from the page cache (local disk
after the build): the patch rates are decode-bound, as a loader on a machine with the cube cached or
on fast storage is.

Usage::

    python -m benchmarks.bench_layout [--n 16] [--size 4096] [--rounds 3] [--patches 400]
        [--chunk 1024] [--patch 256] [--workers 2] [--json bench-layout.json]
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr
import zarr

from benchmarks import run as suite
from benchmarks.patch_reader import Window, read_patch
from benchmarks.stacks import StackSize, catalogue, generate
from icecube_cloud.build import build_cube

log = logging.getLogger("benchmarks.bench_layout")


def layouts(chunk: int, patch: int) -> dict[str, dict[str, Any]]:
    """The layouts compared, by name → config keys (the first is today's default)."""

    def edges(n: int) -> dict[str, int]:
        return {"azimuth": n, "range": n}

    out: dict[str, dict[str, Any]] = {f"chunks {chunk}²": {"chunks": edges(chunk)}}
    for inner in (patch, 2 * patch):
        if inner < chunk and chunk % inner == 0:
            key = f"shards {chunk}² / chunks {inner}²"
            out[key] = {"chunks": edges(inner), "shards": edges(chunk)}
    out[f"chunks {patch}²"] = {"chunks": edges(patch)}
    return out


def patch_windows(
    n: int, side: int, patch: int, count: int, *, aligned: bool, seed: int
) -> list[Window]:
    """``count`` random patch windows of an ``n`` × ``side``² stack (aligned to the patch grid or not)."""
    rng = np.random.default_rng(seed)
    t = rng.integers(0, n, count)
    if aligned:
        rc = rng.integers(0, side // patch, (count, 2)) * patch
    else:
        rc = rng.integers(0, side - patch + 1, (count, 2))
    return [(int(a), int(b), int(c)) for a, (b, c) in zip(t, rc, strict=True)]


READERS = ("1t", "2t", "2p")
"""One thread; a pool of 2 threads (one zarr event loop); 2 processes (as a DataLoader's workers)."""


def read_rates(
    cubes: dict[str, str],
    windows: Sequence[Window],
    patch: int,
    pools: tuple[ThreadPoolExecutor, ProcessPoolExecutor],
    block: int = 50,
) -> dict[str, dict[str, tuple[float, int]]]:
    """Per reader and cube: patches/s reading ``windows``, and the sum of the pixels read.

    The windows are read in blocks, each block by every cube in turn (the first cube rotating), so
    that the machine's noise falls on every layout alike.
    """
    out: dict[str, dict[str, tuple[float, int]]] = {}
    threads, procs = pools
    names = list(cubes)
    for cube in cubes.values():  # every reader opens every cube before timing
        list(map(read_patch, [cube] * 4, windows[:4], [patch] * 4))
        list(procs.map(read_patch, [cube] * 4, windows[:4], [patch] * 4))
    for reader in READERS:
        seconds = dict.fromkeys(cubes, 0.0)
        sums = dict.fromkeys(cubes, 0)
        for k in range(0, len(windows), block):
            part = windows[k : k + block]
            first = k // block % len(names)
            for name in names[first:] + names[:first]:
                args = ([cubes[name]] * len(part), part, [patch] * len(part))
                t0 = time.perf_counter()
                if reader == "1t":
                    got = list(map(read_patch, *args))
                elif reader == "2t":
                    got = list(threads.map(read_patch, *args))
                else:
                    got = list(procs.map(read_patch, *args, chunksize=max(1, len(part) // 8)))
                seconds[name] += time.perf_counter() - t0
                sums[name] += sum(got)
        out[reader] = {n: (len(windows) / seconds[n], sums[n]) for n in cubes}
    return out


def stored(cube: Path, variable: str = "amplitude") -> tuple[int, int]:
    """Bytes and number of the stored pixel objects of ``variable``."""
    files = [p for p in (cube / variable / "c").rglob("*") if p.is_file()]
    return sum(p.stat().st_size for p in files), len(files)


def check_xarray(
    cube: Path, array: zarr.Array[Any], windows: Sequence[Window], patch: int
) -> float:
    """Plain ``xr.open_zarr``: patches equal the raw reads (else AssertionError); seconds per slice."""
    ds = xr.open_zarr(cube)
    for t, r, c in windows[:8]:
        got = ds["amplitude"][t, r : r + patch, c : c + patch].values
        np.testing.assert_array_equal(got, array[t, r : r + patch, c : c + patch])
    t0 = time.perf_counter()
    ds["amplitude"][0].values  # noqa: B018 (one whole slice through dask)
    return time.perf_counter() - t0


def one_round(
    cat: str,
    work: Path,
    configs: dict[str, dict[str, Any]],
    scheduler: str,
    reads: dict[str, list[Window]],
    patch: int,
    pools: tuple[ThreadPoolExecutor, ProcessPoolExecutor],
) -> dict[str, dict[str, Any]]:
    """Build every layout once, then read every cube; per layout the measurements of this round."""
    out: dict[str, dict[str, Any]] = {}
    for name, cfg in configs.items():
        cube = work / f"{len(out)}.zarr"
        shutil.rmtree(cube, ignore_errors=True)
        os.sync()  # no build pays for the writeback of an earlier one
        t0 = time.perf_counter()
        result = build_cube(cat, cfg, str(cube), scheduler=scheduler, register=False)
        seconds = time.perf_counter() - t0
        nbytes, objects = stored(cube)
        out[name] = {
            "build_s": seconds,
            "build_mibs": result.plan.nbytes / 2**20 / seconds,
            "stored_bytes": nbytes,
            "objects": objects,
            "cube": cube,
        }
    cubes = {name: str(row["cube"]) for name, row in out.items()}
    for kind, windows in reads.items():
        for reader, by_cube in read_rates(cubes, windows, patch, pools).items():
            for name, (rate, checksum) in by_cube.items():
                out[name][f"{kind}_{reader}"] = rate
                out[name][f"{kind}_checksum"] = checksum
    for row in out.values():
        array = zarr.open_array(store=str(row["cube"]), path="amplitude", mode="r")
        row["xr_slice_s"] = check_xarray(row.pop("cube"), array, reads["aligned"], patch)
    return out


READS = tuple(f"{kind}_{reader}" for kind in ("aligned", "unaligned") for reader in READERS)
METRICS = ("build_mibs", "stored_bytes", "objects", *READS, "xr_slice_s")


def summarise(rounds: Sequence[dict[str, dict[str, Any]]]) -> list[dict[str, Any]]:
    """Per layout: the median of each metric over rounds, and the median of its per-round ratios to
    the first (today's) layout."""
    base = next(iter(rounds[0]))
    rows = []
    for name in rounds[0]:
        row: dict[str, Any] = {"layout": name}
        for m in METRICS:
            values = [r[name][m] for r in rounds]
            row[m] = statistics.median(values)
            row[f"{m}_runs"] = values
            row[f"{m}_ratio"] = statistics.median(r[name][m] / r[base][m] for r in rounds)
        for kind in ("aligned", "unaligned"):
            sums = {r[name][f"{kind}_checksum"] for r in rounds} | {
                r[base][f"{kind}_checksum"] for r in rounds
            }
            assert len(sums) == 1, f"{name}: {kind} patches differ from {base}'s"
        rows.append(row)
    return rows


def table(rows: Sequence[dict[str, Any]]) -> str:
    """Markdown: medians, with the ratio to today's layout in parentheses."""
    head = (
        "| layout | build MiB/s | stored MiB | objects | aligned 1 thread | aligned 2 threads "
        "| aligned 2 processes | unaligned 1 thread | unaligned 2 threads | unaligned 2 processes "
        "| xr.open_zarr slice (s) |"
    )
    lines = [head, "|" + "---|" * 11]

    def cell(r: dict[str, Any], m: str, fmt: Callable[[float], str]) -> str:
        return f"{fmt(r[m])} ({r[m + '_ratio']:.2f}×)"

    for r in rows:
        lines.append(
            f"| {r['layout']} | {cell(r, 'build_mibs', '{:.0f}'.format)} "
            f"| {cell(r, 'stored_bytes', lambda v: f'{v / 2**20:.0f}')} | {r['objects']:.0f} "
            + " ".join(f"| {cell(r, m, '{:.0f}'.format)}" for m in READS)
            + f" | {cell(r, 'xr_slice_s', '{:.2f}'.format)} |"
        )
    return "\n".join(lines)


def run_layouts(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Generate and catalogue the stack, then run ``args.rounds`` rounds; the summary rows."""
    size = StackSize(args.n, (args.size, args.size))
    configs = layouts(min(args.chunk, args.size), args.patch)
    reads = {
        kind: patch_windows(args.n, args.size, args.patch, args.patches, aligned=kind == "aligned",
                            seed=11)
        for kind in ("aligned", "unaligned")
    }  # fmt: skip
    tmp = Path(tempfile.mkdtemp(prefix="icecube-bench-layout-", dir=args.workdir))
    try:
        log.info("generating %d x %d² legacy GRDs", args.n, args.size)
        products = generate(tmp / "stack", "grd", size)
        stack = catalogue(products, tmp, "grd", size)
        rounds = []
        spawn = multiprocessing.get_context("spawn")
        with (
            suite._cluster(args.workers) as client,
            ThreadPoolExecutor(2) as threads,
            ProcessPoolExecutor(2, mp_context=spawn) as procs,
        ):
            address = client.scheduler.address
            for k in range(args.rounds):
                log.info("round %d of %d", k + 1, args.rounds)
                rounds.append(
                    one_round(
                        stack.catalog, tmp, configs, address, reads, args.patch, (threads, procs)
                    )
                )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return summarise(rounds)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_layout", description=__doc__)
    parser.add_argument("--n", type=int, default=16, help="images (default 16)")
    parser.add_argument(
        "--size", type=int, default=4096, help="image side in pixels (default 4096)"
    )
    parser.add_argument("--chunk", type=int, default=1024, help="today's chunk / the shard side")
    parser.add_argument("--patch", type=int, default=256, help="patch side (default 256)")
    parser.add_argument("--patches", type=int, default=400, help="patches per read (default 400)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of all layouts (default 3)")
    parser.add_argument("--workers", type=int, default=2, help="build worker processes (default 2)")
    parser.add_argument("--workdir", type=Path, default=None, help="where the stack is made")
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    info = suite.machine()
    rows = run_layouts(args)
    print(table(rows))
    info["loadavg_end"] = os.getloadavg()
    if args.json:
        result = {"machine": info, "args": {k: str(v) for k, v in vars(args).items()}, "rows": rows}
        args.json.write_text(json.dumps(result, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
