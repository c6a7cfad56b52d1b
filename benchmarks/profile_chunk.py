"""Where a chunk task's time goes: a one-chunk ``write_band`` split into open / read / encode / store.

Builds the skeleton of a real cube (a 2-image stack of the given size), then for a few chunk windows of
the first image times, in this process and one thread (as a worker does):

* ``open_source``: ``open_reader`` (GDAL open; over S3 a HEAD + header GET);
* ``read``: ``reader.read(window)`` (GDAL decode of the strips/tiles under the window);
* ``open_array``: ``zarr.open_array`` on the cube (reads the array metadata);
* ``encode``: the cube's Blosc codec on the window's pixels;
* ``put``: writing the encoded bytes as one object to the same store;
* ``write_band``: the engine's task itself for one chunk, end to end (for comparison with the sum).

Usage: ``python -m benchmarks.profile_chunk [--kind grd|slc] [--size large] [--s3] [--chunks 6]``.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numcodecs
import zarr

from benchmarks.measure import MiB
from benchmarks.stacks import SIZES, Kind, Size, StackSize, catalogue, generate
from icecube_cloud.build import plan_cube
from icecube_cloud.read import open_reader
from icecube_cloud.storage import StorageOptions, StorageTarget
from icecube_cloud.testing.moto import MotoServer
from icecube_cloud.write.bands import write_band
from icecube_cloud.write.journal import ROOT_DOC
from icecube_cloud.write.skeleton import put_documents, skeleton, skeleton_documents

log = logging.getLogger("benchmarks.profile_chunk")
T = TypeVar("T")


def _timed(fn: Callable[[], T]) -> tuple[T, float]:
    t0 = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - t0


def profile(catalog: str, out: str, so: StorageOptions | None, n_chunks: int) -> dict[str, Any]:
    """Median seconds per step over ``n_chunks`` windows of the first image."""
    plan = plan_cube(catalog, {}, storage_options=so)
    target = StorageTarget.from_url(out, so)
    docs = skeleton_documents(skeleton(plan, [""] * len(plan.slices)))
    docs.pop(ROOT_DOC)  # no cube for readers: only the arrays are needed here
    put_documents(target, docs)
    source = plan.slices[0].source
    assert source is not None
    c = plan.compression
    shuffle = {"noshuffle": 0, "shuffle": 1, "bitshuffle": 2}[c.shuffle]
    codec = numcodecs.Blosc(cname=c.cname, clevel=c.clevel, shuffle=shuffle)
    steps: dict[str, list[float]] = {}
    windows = list(plan.windows())
    step = max(1, len(windows) // n_chunks)
    nbytes = encoded = 0
    for w in windows[::step][:n_chunks]:
        reader, t_open = _timed(lambda: open_reader(source, storage_options=so))
        data, t_read = _timed(lambda: reader.read(w))  # noqa: B023 - called at once
        reader.close()
        _, t_arr = _timed(
            lambda: zarr.open_array(store=target.zarr_store(), path=plan.variable, mode="r+")
        )
        blob, t_enc = _timed(lambda: codec.encode(data))  # noqa: B023
        fs = target.fs
        key = f"{target.path}/_profile/{w.az0}_{w.rg0}"
        fs.makedirs(fs._parent(key), exist_ok=True)
        _, t_put = _timed(lambda: fs.pipe_file(key, bytes(blob)))  # noqa: B023
        _, t_task = _timed(lambda: write_band(target, plan.variable, 0, (w,), source, so))  # noqa: B023
        for name, t in (("open_source", t_open), ("read", t_read), ("open_array", t_arr),
                        ("encode", t_enc), ("put", t_put), ("write_band", t_task)):  # fmt: skip
            steps.setdefault(name, []).append(t)
        nbytes, encoded = data.nbytes, len(blob)
    target.remove()
    med = {k: round(statistics.median(v) * 1000, 1) for k, v in steps.items()}
    parts = sum(v for k, v in med.items() if k != "write_band")
    return {
        "chunk": list(plan.chunks),
        "chunk_mib": round(nbytes / MiB, 2),
        "encoded_ratio": round(encoded / nbytes, 3),
        "median_ms": med,
        "sum_of_parts_ms": round(parts, 1),
        "chunks_sampled": len(steps["read"]),
        "tasks_per_image": len(windows),
    }


def run(kind: Kind, size: Size, s3: bool, n_chunks: int) -> dict[str, Any]:
    """Generate a 2-image stack of ``size`` and profile its chunk task locally (and over S3)."""
    spec = StackSize(2, SIZES[size][kind].shape)
    results: dict[str, Any] = {"kind": kind, "shape": list(spec.shape)}
    with tempfile.TemporaryDirectory(prefix="icecube-bench-prof-") as tmp:
        work = Path(tmp)
        products = generate(work, kind, spec)
        stack = catalogue(products, work, kind, spec)
        results["local"] = profile(stack.catalog, str(work / "cube.zarr"), None, n_chunks)
        if s3:
            with MotoServer() as moto:
                bucket, so = moto.make_bucket("prof"), moto.storage_options
                stack = catalogue(
                    products, work, kind, spec, s3_prefix=f"{bucket}/src", storage_options=so
                )
                results["s3"] = profile(stack.catalog, f"{bucket}/cube.zarr", so, n_chunks)
    return results


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.profile_chunk", description=__doc__)
    parser.add_argument("--kind", choices=["grd", "slc"], default="grd")
    parser.add_argument("--size", choices=list(SIZES), default="large")
    parser.add_argument("--s3", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--chunks", type=int, default=6)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    print(json.dumps(run(args.kind, args.size, args.s3, args.chunks), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
