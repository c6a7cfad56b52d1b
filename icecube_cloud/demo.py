"""``icecube-cloud demo``: synthesise a GRD stack, catalog it, build a cube, and summarise it.

Everything happens under one work folder with no servers: products in ``products/``, a static STAC
catalog in ``catalog/``, the cube in ``cube.zarr``. Rerunning replaces the previous demo. The work
folder must be new, empty, or an earlier demo's (marked by :data:`DEMO_MARKER`): the demo never writes
into, or removes anything from, a folder of the user's.
"""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

from icecube_cloud.build import build_cube
from icecube_cloud.cube import cube_info, open_cube
from icecube_cloud.errors import UsageError
from icecube_cloud.ingest import ingest
from icecube_cloud.progress import Progress, resolve_progress
from icecube_cloud.synthetic import make_stack

DEMO_MARKER = ".icecube-cloud-demo"
"""File that marks a folder as the demo's own work folder."""
_SYNTHETIC = "_SYNTH_"
"""Part of every synthetic product's file name (``icecube_cloud.synthetic.make_stack``)."""
_DEMO_ENTRIES = frozenset({DEMO_MARKER, "products", "catalog", "config.json", "cube.zarr"})
"""Everything a demo writes into its work folder."""

DEMO_START = datetime(2021, 4, 20, 21, 51, 24, tzinfo=UTC)
"""A spring fortnight like the original icecube's forest stack."""


def run_demo(
    workdir: str | Path,
    *,
    images: int = 8,
    size: int = 1024,
    workers: int | None = None,
    progress: bool | Progress = False,
) -> str:
    """Run the whole pipeline on a synthetic stack and return a printable summary.

    Args:
        workdir: Folder for products, catalog, config and cube (replaced if it holds a previous demo).
        images: Number of GRD images, spread over 12 days.
        size: Edge of the square images in pixels.
        workers: Local dask worker processes.
        progress: ``True`` for ``tqdm`` bars, or a callback ``progress(stage, done, total)``.
    """
    report = resolve_progress(progress)
    work = claim_workdir(workdir)
    for sub in ("catalog", "cube.zarr"):
        shutil.rmtree(work / sub, ignore_errors=True)
    products = _synthesise(work, images, size, report)
    ingest([str(products)], str(work / "catalog"), progress=report)
    config = _demo_config()
    config_path = work / "config.json"
    config_path.write_text(json.dumps(config, indent=2) + "\n")
    result = build_cube(
        str(work / "catalog"),
        str(config_path),
        str(work / "cube.zarr"),
        workers=workers,
        progress=report,
    )
    summary = cube_info(open_cube(result.url), result.url)
    speed = result.nbytes / 2**20 / max(result.seconds, 1e-9)
    return (
        f"{summary}\n\nbuilt {result.chunks_written} chunks ({result.nbytes / 2**20:.1f} MiB of pixels) "
        f"in {result.seconds:.1f} s ({speed:.0f} MiB/s)\n"
        f"open it with:  python -c \"import xarray as xr; print(xr.open_zarr('{result.url}'))\""
    )


def run_cloud_demo(
    workdir: str | Path,
    *,
    images: int = 8,
    size: int = 512,
    workers: int | None = None,
    progress: bool | Progress = False,
) -> str:
    """The cloud path on local services: S3 (moto), a STAC API (pgstac), a dask cluster.

    Starts moto and the STAC API on loopback, uploads a synthetic GRD stack to a bucket, registers it in
    the API, builds the cube into the bucket, opens it over S3, prints a summary and stops the services.

    Args:
        workdir: Folder for the synthetic products and the services' state.
        images: Number of GRD images, spread over 12 days.
        size: Edge of the square images in pixels.
        workers: Local dask worker processes.
        progress: ``True`` for ``tqdm`` bars, or a callback ``progress(stage, done, total)``.
    """
    import tempfile
    import time

    import fsspec

    from icecube_cloud.testing.moto import MotoServer
    from icecube_cloud.testing.stac_api import StacApiServer

    report = resolve_progress(progress)
    products = _synthesise(claim_workdir(workdir), images, size, report)
    api_dir = tempfile.mkdtemp(prefix="icecube-demo-stac-api-")
    with MotoServer() as s3, StacApiServer(api_dir) as api:
        options = s3.storage_options
        bucket = s3.make_bucket("icecube-demo")
        fsspec.filesystem("s3", **dict(options)).put(
            f"{products}/", f"{bucket}/products/", recursive=True
        )
        ingest([f"{bucket}/products/"], api.url, storage_options=options, progress=report)
        cube_url = f"{bucket}/cubes/demo.zarr"
        result = build_cube(
            api.url,
            _demo_config(),
            cube_url,
            storage_options=options,
            workers=workers,
            progress=report,
        )
        start = time.perf_counter()
        ds = open_cube(cube_url, storage_options=options)
        opened = time.perf_counter() - start
        summary = cube_info(ds, cube_url)
        return (
            f"{summary}\n\nS3 endpoint {s3.endpoint_url} (moto), STAC API {api.url} (pgstac)\n"
            f"built {result.chunks_written} chunks ({result.nbytes / 2**20:.1f} MiB of pixels) into the "
            f"bucket in {result.seconds:.1f} s; registered as item {result.item_id}; "
            f"opened over S3 in {opened * 1000:.0f} ms\n"
            "(the services stop now; `make catalog-up` keeps a STAC API running)"
        )


def _not_the_demos(work: Path) -> list[str]:
    """What in ``work`` an earlier demo did not write (empty: the folder is the demo's own).

    Top-level entries must be the demo's; its ``products/`` (which a rerun replaces) may hold only
    the generator's synthetic products, marker or not (older demos wrote none), so that a user's
    own ``products/`` folder is never taken for the demo's.
    """
    foreign = sorted(p.name for p in work.iterdir() if p.name not in _DEMO_ENTRIES)
    products = work / "products"
    if products.is_dir():
        foreign += sorted(
            f"products/{p.relative_to(products)}"
            for p in products.rglob("*")
            if p.is_file() and _SYNTHETIC not in p.name
        )
    elif products.exists():
        foreign.append("products")
    return foreign


def claim_workdir(workdir: str | Path) -> Path:
    """The demo's work folder, created and marked as ours; refuse a folder with anything else in it.

    Raises:
        UsageError: ``workdir`` is a file, or a folder holding what an earlier demo did not write.
    """
    work = Path(workdir).resolve()
    if work.exists() and not work.is_dir():
        raise UsageError(f"{work}: --workdir is a file; choose a new or empty folder")
    if work.is_dir():
        foreign = _not_the_demos(work)
        if foreign:
            shown = ", ".join(foreign[:5]) + (
                f" and {len(foreign) - 5} more" if len(foreign) > 5 else ""
            )
            raise UsageError(
                f"{work} holds files that the demo did not write ({shown}); the demo writes "
                "products/, catalog/, config.json and cube.zarr into its --workdir and replaces "
                "them on a rerun: choose a new or empty folder. Nothing was changed"
            )
    work.mkdir(parents=True, exist_ok=True)
    (work / DEMO_MARKER).write_text(
        "icecube-cloud demo work folder; rerunning the demo replaces it\n"
    )
    return work


def _synthesise(work: Path, images: int, size: int, progress: Progress) -> Path:
    """A fresh synthetic GRD stack of ``images`` square images in ``work/products``."""
    products = work / "products"
    shutil.rmtree(products, ignore_errors=True)
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
    return products


def _demo_config() -> dict[str, object]:
    """The demo's cube config: the whole fortnight, incidence 20–40°, one slice per image."""
    return {
        "start_date": DEMO_START.strftime("%Y%m%d"),
        "end_date": (DEMO_START + timedelta(days=12)).strftime("%Y%m%d"),
        "min_incidence_angle": 20,
        "max_incidence_angle": 40,
        "temporal_resolution": 0,
        "temporal_overlap": True,
    }
