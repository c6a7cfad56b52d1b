"""Map-geometry benchmark (SPEC §8, issue #14 item 6): sheared GRD COGs onto one north-up UTM grid.

A stack of non-coregistered ICEYE GRD COGs (EPSG:4326 with a rotated affine, each product on its own
grid: scene centres jittered, headings alternating) goes onto one 3 m UTM grid — the grid our own plan
gives (``plan_cube(cat, {"grid": ...}).grid``; the footprints' union, edges on multiples of 3 m) — and
is written as a Zarr store of that grid, ``(time, y, x)`` uint16, chunks one image × 1024², Blosc lz4
bit-shuffle (our default codec; the others are given the same, so every case encodes the same chunks).
One run measures, on LocalClusters of ``--workers`` single-threaded worker processes (the build's own
``local_cluster``, a fresh one per case unless ``--no-fresh``; every worker has imported what any case
imports before the clock starts, and dirty pages of earlier cases are flushed first), in this order:

* **ours**: ``build_cube(..., register=False)`` with ``{"grid": {"crs": <the grid's EPSG>,
  "resolution": 3.0, "resampling": r}}`` (search, plan, source check, warped band tasks, commit);
* **odc-stac**: read the catalog's items (pystac), ``odc.stac.load(items, bands=["grd-cog"],
  geobox=<odc-geo GeoBox of the grid>, resampling=r, use_overviews=False, dtype="uint16",
  chunks={time: 1, y: 1024, x: 1024})`` → ``to_zarr`` on the cluster. Our items need no fix for it: their
  ``proj:transform`` is the affine ``(a, b, c, d, e, f)`` of the file (normalised at ingest from ICEYE's
  GDAL order, with which odc-stac silently loads zeros), ``proj:code`` and ``proj:shape`` are set, and
  ``raster:bands`` says uint16 (without it odc-stac loads float32);
* **stackstac**: the same items as dicts with ``proj:epsg`` added (stackstac ignores ``proj:code``; the
  catalog is never touched), ``stackstac.stack(..., epsg=, resolution=3.0, bounds=<the grid's>,
  resampling=r, rescale=False, dtype=uint16, fill_value=0, xy_coords="center", properties=False)`` →
  ``to_zarr``;
* **ceiling**: a bare pool, one task per image: rasterio reads the file, ``rasterio.warp.reproject``
  (GDAL's defaults) puts it on the whole grid, zarr writes the slice (:func:`measure.warp_ceiling`).

Throughput is MiB of cube pixels (time × y × x × 2 bytes) per wall second, whole process (item
reading and graph building included). Each peer's cube is compared with ours on every pixel where
either is not fill (``agree``: equal; ``agree_1dn``: within 1 DN): with ``nearest`` the peers and the
ceiling use GDAL's default approximate transformer (0.125 source pixels) where ours is exact (the
source pixel under each map pixel's centre), so a few per cent of pixels may take a neighbouring one;
a peer that loads nothing agrees on 0. Other resamplings are not expected to agree: each tool sizes
GDAL's kernel its own way (ours once per product, the others per warped extent), so the JSON's
``mean_abs_dn`` tells how far apart they are. With ``--repeat N`` the four cases run N times
interleaved; the fastest run is reported, every run's seconds are kept. Usage::

    python -m benchmarks.bench_map [--size tiny|small|large] [--repeat N] [--json out.json]
        [--resampling nearest|bilinear ...] [--workers 2] [--no-fresh]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import distributed
import numpy as np
import odc.stac
import pystac
import rasterio.enums
import stackstac  # type: ignore[import-untyped]
import xarray as xr
from affine import Affine
from odc.geo import wh_
from odc.geo.geobox import GeoBox
from zarr.codecs import BloscCodec

from benchmarks import measure
from benchmarks import run as suite
from benchmarks.measure import MiB, PeakRss, Timed
from benchmarks.stacks import START, Size
from icecube_cloud.build import build_cube, plan_cube
from icecube_cloud.ingest import ingest
from icecube_cloud.model import Compression, MapGrid
from icecube_cloud.synthetic import make_stack

log = logging.getLogger("benchmarks")


@dataclass(frozen=True)
class MapSize:
    """One benchmark stack of square GRD COGs."""

    n: int
    """Number of images."""
    side: int
    """Rows and columns of every image."""
    jitter_m: float
    """Scene centres move by up to this many metres east and north (the images are not coregistered)."""


MAP_SIZES: dict[Size, MapSize] = {
    "tiny": MapSize(4, 128, 25.0),  # the smoke test: seconds
    "small": MapSize(8, 1024, 190.0),
    # issue #14: 8 × 4096² → 8 × 4349 × 4407 on the grid, 292 MiB of cube pixels
    "large": MapSize(8, 4096, 750.0),
}
SPACING_M = 2.5
"""Ground pixel spacing of the products (range and azimuth), metres."""
RESOLUTION_M = 3.0
"""The grid's pixel size, metres."""
CHUNK = 1024
ASSET = "grd-cog"
"""The data asset of our GRD COG items."""
VARIABLE = "amplitude"
CASES = ("ours", "odc-stac", "stackstac", "ceiling")
PEERS = ("odc-stac", "stackstac")
RESAMPLINGS = ("nearest", "bilinear")
WARM = (
    *suite.WARM_MODULES, "icecube_cloud.read.warp", "odc.stac", "odc.loader", "stackstac",
    "rasterio.warp", "zarr", "pystac",
)  # fmt: skip
"""Imported by every worker before a case is timed: what any of the four cases' tasks import."""
TARGET_PEER = 2.0
"""SPEC §8: nearest ≥ 2× the faster of odc-stac and stackstac."""
TARGET_CEILING = 0.8
"""SPEC §8: ≥ 0.8 of the bare read + reproject + write pool (every resampling)."""
MIN_AGREEMENT = 0.9
"""With nearest, a case below this share of equal data pixels is flagged (GDAL's default approximate
transformer alone moves ~4 % of a 4096² scene's pixels to a neighbouring source pixel)."""


def codec() -> BloscCodec:
    """Our default pixel codec (:class:`Compression`), for every case's store."""
    c = Compression()
    return BloscCodec(cname=c.cname, clevel=c.clevel, shuffle=c.shuffle)


@dataclass(frozen=True)
class MapStack:
    """A generated, catalogued stack and the grid our plan puts it on."""

    size: MapSize
    catalog: str
    files: tuple[str, ...]
    """Data files in time order (the cube's order)."""
    grid: MapGrid
    """The nearest-neighbour grid of the plan (the resampling is each case's own)."""

    @property
    def nbytes(self) -> int:
        """Pixel bytes of the cube (uint16)."""
        ny, nx = self.grid.shape
        return self.size.n * ny * nx * 2

    @property
    def epsg(self) -> int:
        """The grid's EPSG code (a UTM zone)."""
        return int(self.grid.crs.split(":")[1])


def make_map_stack(folder: Path, size: MapSize) -> MapStack:
    """Write the products, catalogue them and plan the grid (never timed)."""
    make_stack(
        folder / "products", n=size.n, shape=(size.side, size.side), start=START, days=3 * size.n,
        flavour="grd-cog", seed=7, jitter_m=size.jitter_m,
        pixel_spacing_range=SPACING_M, pixel_spacing_azimuth=SPACING_M,
    )  # fmt: skip
    catalog = str(folder / "catalog")
    ingest([str(folder / "products")], catalog)
    grid = plan_cube(catalog, {"grid": {"resolution": RESOLUTION_M}}).grid
    assert grid is not None
    files = tuple(item.assets[ASSET].get_absolute_href() or "" for item in read_items(catalog))
    return MapStack(size, catalog, files, grid)


def read_items(catalog: str) -> list[pystac.Item]:
    """Every item of the static catalog, in time order (what a user of the peers starts from)."""
    cat = pystac.Catalog.from_file(f"{catalog}/catalog.json")
    return sorted(cat.get_items(recursive=True), key=lambda i: i.datetime or START)


# --- the four cases ---------------------------------------------------------------------------


def _to_zarr(client: distributed.Client, ds: xr.Dataset, out: str) -> None:
    encoding = {VARIABLE: {"compressors": [codec()], "chunks": (1, CHUNK, CHUNK)}}
    delayed = ds.to_zarr(
        out, mode="w", zarr_format=3, consolidated=True, compute=False, encoding=encoding
    )
    client.compute(delayed).result()  # type: ignore[no-untyped-call]


def run_ours(client: distributed.Client, stack: MapStack, out: str, resampling: str) -> None:
    """``build_cube`` on the grid (bbox: the footprints' union, as the plan's)."""
    config = {"grid": {"crs": stack.grid.crs, "resolution": RESOLUTION_M, "resampling": resampling}}
    address = client.scheduler_info()["address"]
    build_cube(stack.catalog, config, out, scheduler=address, register=False)


def run_odc_stac(client: distributed.Client, stack: MapStack, out: str, resampling: str) -> None:
    """``odc.stac.load`` onto the grid's GeoBox, then ``to_zarr``."""
    ny, nx = stack.grid.shape
    gbox = GeoBox(wh_(nx, ny), Affine(*stack.grid.transform), stack.grid.crs)
    ds = odc.stac.load(
        read_items(stack.catalog), bands=[ASSET], geobox=gbox, resampling=resampling,
        use_overviews=False, dtype="uint16", chunks={"time": 1, "y": CHUNK, "x": CHUNK},
    )  # fmt: skip
    _to_zarr(client, ds.rename({ASSET: VARIABLE}), out)


def stackstac_item(item: pystac.Item) -> dict[str, Any]:
    """A copy of ``item`` as a dict with the ``proj:epsg`` stackstac needs (from ``proj:code``)."""
    d = item.to_dict()
    code = str(d["properties"]["proj:code"])
    d["properties"]["proj:epsg"] = int(code.split(":")[1])
    return d


def run_stackstac(client: distributed.Client, stack: MapStack, out: str, resampling: str) -> None:
    """``stackstac.stack`` on the grid's bounds, then ``to_zarr``."""
    a, (ny, nx) = stack.grid.transform, stack.grid.shape
    bounds = (a[2], a[5] + a[4] * ny, a[2] + a[0] * nx, a[5])
    arr = stackstac.stack(
        [stackstac_item(i) for i in read_items(stack.catalog)], assets=[ASSET],
        epsg=stack.epsg, resolution=RESOLUTION_M, bounds=bounds, snap_bounds=False,
        resampling=rasterio.enums.Resampling[resampling], chunksize=CHUNK,
        dtype=np.dtype("uint16"), fill_value=np.uint16(0), rescale=False, xy_coords="center",
        properties=False, band_coords=False,
    )  # fmt: skip
    if arr.shape[2:] != (ny, nx):
        raise RuntimeError(f"stackstac made a {arr.shape[2:]} grid, ours is {(ny, nx)}")
    # object-valued coordinates and attributes (RasterSpec, Affine) are not Zarr material
    plain = arr.isel(band=0, drop=True).reset_coords(drop=True)
    plain.attrs = {}
    _to_zarr(client, plain.to_dataset(name=VARIABLE), out)


def run_ceiling(client: distributed.Client, stack: MapStack, out: str, resampling: str) -> None:
    """The bare pool (:func:`measure.warp_ceiling`)."""
    measure.warp_ceiling(
        client, stack.files, f"{out}/{VARIABLE}", stack.grid, resampling, CHUNK, [codec()]
    )


RUNNERS: dict[str, Callable[[distributed.Client, MapStack, str, str], None]] = {
    "ours": run_ours, "odc-stac": run_odc_stac, "stackstac": run_stackstac, "ceiling": run_ceiling,
}  # fmt: skip


# --- one block: a stack, one resampling -------------------------------------------------------


@dataclass
class _Runs:
    timed: list[tuple[Timed, PeakRss]] = field(default_factory=list)
    status: str = "ok"


def _timed(
    env: suite.Env, case: str, stack: MapStack, out: str, resampling: str
) -> tuple[Timed, PeakRss]:
    def go(client: distributed.Client) -> Timed:
        t0 = time.perf_counter()
        RUNNERS[case](client, stack, out, resampling)
        return Timed(time.perf_counter() - t0, stack.nbytes)

    return suite._case(env, go)


def run_block(env: suite.Env, stack: MapStack, size: Size, resampling: str) -> dict[str, Any]:
    """Every case on one stack with one resampling; returns one result row."""
    root = Path(env.out_root)
    # ours' first run: what the others are compared with
    reference = str(root / "ours-reference.zarr")
    runs = {case: _Runs() for case in CASES}
    agreement: dict[str, Any] = {}
    for i in range(env.repeat):
        for case in CASES:
            if runs[case].status != "ok":
                continue
            out = reference if case == "ours" and i == 0 else str(root / f"{case}.zarr")
            log.info("map %s %s: %s (%d/%d)", size, resampling, case, i + 1, env.repeat)
            try:
                runs[case].timed.append(_timed(env, case, stack, out, resampling))
                if i == 0 and case != "ours":
                    agreement[case] = measure.agreement(
                        f"{reference}/{VARIABLE}", f"{out}/{VARIABLE}"
                    )
            except Exception as err:
                if case == "ours":
                    raise
                traceback.print_exc()
                runs[case].status = f"error: {type(err).__name__}: {err}"[:300]
            if out != reference:
                measure.remove(out, None)
    measure.remove(reference, None)
    return _row(env, stack, size, resampling, runs, agreement)


def _row(
    env: suite.Env,
    stack: MapStack,
    size: Size,
    resampling: str,
    runs: dict[str, _Runs],
    agreement: dict[str, Any],
) -> dict[str, Any]:
    cases: dict[str, Any] = {}
    for case, r in runs.items():
        if r.status != "ok" or not r.timed:
            cases[case] = {"status": r.status, "s": None, "mibs": None, "runs_s": [], "rss": None}
            continue
        best, rss = min(r.timed, key=lambda x: x[0].seconds)
        cases[case] = {
            "status": "ok", "s": round(best.seconds, 3), "mibs": round(best.mib_per_s, 1),
            "runs_s": [round(t.seconds, 3) for t, _ in r.timed], "rss": rss.to_dict(),
        }  # fmt: skip
    peers = [p for p in PEERS if cases[p]["mibs"]]
    faster = max(peers, key=lambda p: cases[p]["mibs"]) if peers else None
    ours = cases["ours"]["mibs"]
    row: dict[str, Any] = {
        "size": size, "resampling": resampling, "n_images": stack.size.n,
        "image_shape": [stack.size.side, stack.size.side], "spacing_m": SPACING_M,
        "jitter_m": stack.size.jitter_m, "crs": stack.grid.crs, "resolution_m": RESOLUTION_M,
        "grid_shape": list(stack.grid.shape), "pixel_mib": round(stack.nbytes / MiB, 1),
        "workers": env.workers, "repeat": env.repeat, "cases": cases, "agreement": agreement,
        "faster_peer": faster,
        "ratio_faster_peer": suite._ratio(ours, cases[faster]["mibs"] if faster else None),
        "ratio_ceiling": suite._ratio(ours, cases["ceiling"]["mibs"]),
    }  # fmt: skip
    row["verdict"] = verdict(row)
    return row


def verdict(row: dict[str, Any]) -> str:
    """Whether a row meets SPEC §8's map-grid targets (nearest: vs the faster peer and the ceiling)."""
    ceiling, peer = row["ratio_ceiling"], row["ratio_faster_peer"]
    checks = [f"ours/ceiling {_fmt(ceiling, 2)} (target ≥ {TARGET_CEILING})"]
    met = ceiling is not None and ceiling >= TARGET_CEILING
    if row["resampling"] == "nearest":
        checks.append(f"ours/{row['faster_peer']} {_fmt(peer, 2)} (target ≥ {TARGET_PEER})")
        met = met and peer is not None and peer >= TARGET_PEER
    head = f"map {row['size']}, {row['resampling']}: "
    line = head + ", ".join(checks) + (": targets met" if met else ": TARGET MISSED")
    if row["resampling"] == "nearest":  # a peer that places pixels wrong is no peer to race
        for case, agree in row["agreement"].items():
            if agree["agree"] < MIN_AGREEMENT:
                line += f"; WARNING: {case} equals ours on only {agree['agree']:.2%} of data pixels"
    return line


def _fmt(value: Any, digits: int = 1) -> str:
    return suite._fmt(value, digits)


def table(rows: Sequence[dict[str, Any]]) -> str:
    """The result rows as a markdown table."""
    head = (
        "| size | resampling | stack | grid | MiB | ours MiB/s | odc-stac MiB/s | stackstac MiB/s "
        "| ceiling MiB/s | ours/faster peer | ours/ceiling | agree odc-stac / stackstac / ceiling "
        "| peak worker RSS MiB ours / odc-stac / stackstac / ceiling |"
    )
    lines = [head, "|" + "---|" * head.count(" | ") + "---|"]
    for r in rows:
        c = r["cases"]
        speeds = [_fmt(c[k]["mibs"]) if c[k]["status"] == "ok" else "error" for k in CASES]
        agree = " / ".join(
            _fmt(r["agreement"][k]["agree"], 4) if k in r["agreement"] else "–" for k in CASES[1:]
        )
        rss = " / ".join(
            f"{max(c[k]['rss']['workers_mib']):.0f}" if c[k]["rss"] else "–" for k in CASES
        )
        ny, nx = r["grid_shape"]
        lines.append(
            f"| {r['size']} | {r['resampling']} | {r['n_images']}×{r['image_shape'][0]}² "
            f"| {r['n_images']}×{ny}×{nx} | {_fmt(r['pixel_mib'], 0)} | {' | '.join(speeds)} "
            f"| {_fmt(r['ratio_faster_peer'], 2)} ({r['faster_peer']}) "
            f"| {_fmt(r['ratio_ceiling'], 2)} | {agree} | {rss} |"
        )
    return "\n".join(lines)


def run_map(
    size: Size,
    resamplings: Sequence[str] = ("nearest",),
    *,
    workers: int = 2,
    repeat: int = 1,
    fresh: bool = True,
    workdir: Path | None = None,
) -> list[dict[str, Any]]:
    """Generate the stack of ``size`` and run every case for each resampling; one row each."""
    tmp = Path(tempfile.mkdtemp(prefix="icecube-bench-map-", dir=workdir))
    try:
        spec = MAP_SIZES[size]
        log.info("generating map %s: %d x %d² GRD COGs", size, spec.n, spec.side)
        stack = make_map_stack(tmp / "stack", spec)
        (tmp / "out").mkdir()
        with contextlib.ExitStack() as ctx:
            shared = None if fresh else ctx.enter_context(suite._cluster(workers, warm=WARM))
            env = suite.Env("local", str(tmp / "out"), None, workers, repeat, shared, WARM)
            rows = [run_block(env, stack, size, r) for r in resamplings]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_map", description=__doc__)
    parser.add_argument("--size", choices=list(MAP_SIZES), default="large")
    parser.add_argument("--resampling", choices=RESAMPLINGS, action="append",
                        help="resampling (repeatable; default: nearest)")  # fmt: skip
    parser.add_argument("--repeat", type=int, default=1,
                        help="runs of each case; the fastest is reported (default 1)")  # fmt: skip
    parser.add_argument("--workers", type=int, default=2,
                        help="worker processes, one thread each (default 2)")  # fmt: skip
    parser.add_argument("--fresh", action=argparse.BooleanOptionalAction, default=True,
                        help="a fresh LocalCluster for each case (else one shared cluster)")  # fmt: skip
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    info = suite.machine()
    rows = run_map(
        args.size,
        args.resampling or ["nearest"],
        workers=args.workers,
        repeat=args.repeat,
        fresh=args.fresh,
    )
    result: dict[str, Any] = {
        "machine": info,
        "rows": rows,
        "verdicts": [r["verdict"] for r in rows],
    }
    print(table(rows))
    for line in result["verdicts"]:
        print(f"\n{line}")
    result["machine"]["loadavg_end"] = os.getloadavg()
    if args.json:
        args.json.write_text(json.dumps(result, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
