"""``icecube-cloud demo``: synthesise a GRD stack, catalog it, build a cube, and summarise it.

Everything happens under one work folder with no servers: products in ``products/``, a static STAC
catalog in ``catalog/``, the cube in ``cube.zarr``. Rerunning replaces the previous demo.
"""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

from icecube_cloud.build import build_cube
from icecube_cloud.cube import cube_info, open_cube
from icecube_cloud.ingest import ingest
from icecube_cloud.progress import Progress, no_progress
from icecube_cloud.synthetic import make_stack

DEMO_START = datetime(2021, 4, 20, 21, 51, 24, tzinfo=UTC)
"""A spring fortnight like the original icecube's forest stack."""


def run_demo(
    workdir: str | Path,
    *,
    images: int = 8,
    size: int = 1024,
    workers: int | None = None,
    progress: Progress = no_progress,
) -> str:
    """Run the whole pipeline on a synthetic stack and return a printable summary.

    Args:
        workdir: Folder for products, catalog, config and cube (replaced if it holds a previous demo).
        images: Number of GRD images, spread over 12 days.
        size: Edge of the square images in pixels.
        workers: Local dask worker processes.
        progress: Progress callback.
    """
    work = Path(workdir).resolve()
    for sub in ("products", "catalog", "cube.zarr"):
        shutil.rmtree(work / sub, ignore_errors=True)
    products = work / "products"
    products.mkdir(parents=True)
    make_stack(
        products,
        n=images,
        shape=(size, size),
        start=DEMO_START,
        days=12,
        flavour="legacy-grd",
        seed=42,
    )
    progress("synthesise", images, images)
    ingest([str(products)], str(work / "catalog"), progress=progress)
    config = {
        "start_date": DEMO_START.strftime("%Y%m%d"),
        "end_date": (DEMO_START + timedelta(days=12)).strftime("%Y%m%d"),
        "min_incidence_angle": 20,
        "max_incidence_angle": 40,
        "temporal_resolution": 0,
        "temporal_overlap": True,
    }
    config_path = work / "config.json"
    config_path.write_text(json.dumps(config, indent=2) + "\n")
    result = build_cube(
        str(work / "catalog"),
        str(config_path),
        str(work / "cube.zarr"),
        workers=workers,
        progress=progress,
    )
    summary = cube_info(open_cube(result.url), result.url)
    speed = result.nbytes / 2**20 / max(result.seconds, 1e-9)
    return (
        f"{summary}\n\nbuilt {result.chunks_written} chunks ({result.nbytes / 2**20:.1f} MiB of pixels) "
        f"in {result.seconds:.1f} s ({speed:.0f} MiB/s)\n"
        f"open it with:  python -c \"import xarray as xr; print(xr.open_zarr('{result.url}'))\""
    )
