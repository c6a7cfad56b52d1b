"""Whole-process benchmark of a build's fixed cost (issue #16 item 1), as a user times the command.

Every case is a fresh subprocess, start-up and imports included; wall time and CPU time (user + sys
of the process and the worker processes it waited for) are measured around it:

* **ours**: ``icecube-cloud build --no-register -q`` (a build of at most
  ``icecube_cloud.cluster.IN_PROCESS_BYTES`` of pixels runs in-process);
* **ours-processes**: the same build forced onto a LocalCluster of worker processes (the threshold set
  to -1 before the CLI runs), to show what the in-process path saves and where the threshold goes;
* **ours-in-process**: the same build forced in-process (the threshold set to 2**50);
* **naive**: ``rioxarray.open_rasterio`` per file (1024² dask chunks) → ``xr.concat`` → ``to_zarr``
  on dask's default threaded scheduler, as a script would run it.

Stacks: ``tiny`` is 3 legacy GRDs of 10x10 pixels; ``large`` is 16 legacy GRDs of 4096² re-encoded as
deflate-compressed tiled GeoTIFFs (512² tiles; ICEYE's metadata kept), 512 MiB of pixels; ``grd-1g``
is 8 legacy GRDs of 8192² as written (uncompressed strips, memory-mapped by the build), 1 GiB. Cases run
``--repeat`` times interleaved; the fastest and the median are printed. Usage::

    python -m benchmarks.bench_fixed [--size tiny|large ...] [--repeat N] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

MiB = 2**20
EXE = str(Path(sys.executable).parent / "icecube-cloud")
SIZES = {"tiny": (3, 10), "large": (16, 4096), "grd-1g": (8, 8192)}
NAIVE = """
import sys, glob, rioxarray, xarray as xr
files = sorted(glob.glob(sys.argv[1] + "/*.tif"))
arrays = [rioxarray.open_rasterio(f, chunks={"band": 1, "y": 1024, "x": 1024}, lock=False) for f in files]
cube = xr.concat(arrays, dim="time", join="override", coords="minimal", compat="override")
cube.to_dataset(name="pixels").to_zarr(sys.argv[2], mode="w", zarr_format=3, consolidated=True)
"""
FORCE = (
    "import sys, icecube_cloud.cluster as c; c.IN_PROCESS_BYTES = {}; "
    "from icecube_cloud.cli import main; main(sys.argv[1:])"
)


def make(workdir: Path, size: str) -> Path:
    """Products (deflate-tiled for ``large``), catalog and an empty config under ``workdir/size``."""
    import rasterio.shutil

    from icecube_cloud.ingest import ingest
    from icecube_cloud.synthetic import make_stack

    root = workdir / size
    if (root / "catalog").exists():
        return root
    n, side = SIZES[size]
    raw = root / "raw"
    make_stack(raw, n=n, shape=(side, side), start=datetime(2021, 4, 20, tzinfo=UTC), days=3 * n,
               flavour="legacy-grd", seed=7)  # fmt: skip
    (root / "products").mkdir(parents=True, exist_ok=True)
    for f in sorted(raw.iterdir()):
        dst = root / "products" / f.name
        if f.suffix == ".tif" and size != "grd-1g":
            rasterio.shutil.copy(f, dst, driver="GTiff", tiled=True, blockxsize=512,
                                 blockysize=512, compress="DEFLATE")  # fmt: skip
        else:
            shutil.copy(f, dst)
    shutil.rmtree(raw)
    ingest([str(root / "products")], str(root / "catalog"))
    (root / "config.json").write_text("{}")
    return root


def timed(cmd: list[str]) -> tuple[float, float]:
    """Wall and CPU seconds of one subprocess (and the children it waited for)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    run = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if run.returncode != 0:
        raise RuntimeError(f"{cmd[:3]} failed: {run.stderr[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def cases(root: Path, out: Path) -> dict[str, list[str]]:
    """The command of each case."""
    build = ["build", "--stac-url", str(root / "catalog"), "--config", str(root / "config.json"),
             "--out", str(out), "--no-register", "-q"]  # fmt: skip
    return {
        "ours": [EXE, *build],
        "ours-processes": [sys.executable, "-c", FORCE.format(-1), *build],
        "ours-in-process": [sys.executable, "-c", FORCE.format(2**50), *build],
        "naive": [sys.executable, "-c", NAIVE, str(root / "products"), str(out)],
    }


def run(root: Path, repeat: int) -> dict[str, dict[str, float]]:
    """Every case ``repeat`` times, interleaved; per case the fastest and median wall and CPU."""
    out = root / "out.zarr"
    runs: dict[str, list[tuple[float, float]]] = {}
    for _ in range(repeat):
        for name, cmd in cases(root, out).items():
            shutil.rmtree(out, ignore_errors=True)
            os.sync()
            runs.setdefault(name, []).append(timed(cmd))
    shutil.rmtree(out, ignore_errors=True)
    return {
        name: {
            "wall_min": round(min(w for w, _ in r), 3),
            "wall_median": round(statistics.median(w for w, _ in r), 3),
            "cpu_median": round(statistics.median(c for _, c in r), 3),
            "runs": [round(w, 3) for w, _ in r],  # type: ignore[dict-item]
        }
        for name, r in runs.items()
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--size", choices=sorted(SIZES), action="append")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--workdir", default="/tmp/icecube-bench-fixed")
    args = p.parse_args(argv)
    results = {}
    for size in args.size or ["tiny", "large"]:
        n, side = SIZES[size]
        mib = n * side * side * 2 / MiB
        res = run(make(Path(args.workdir), size), args.repeat)
        for row in res.values():
            row["mibs_best"] = round(mib / row["wall_min"], 1)
        res["ratio_naive_best"] = round(res["naive"]["wall_min"] / res["ours"]["wall_min"], 2)  # type: ignore[assignment]
        results[size] = res
        print(size, json.dumps(res, indent=1), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
