"""The ``icecube-cloud`` command line (SPEC §5).

Exit codes: 0 success, 2 bad usage or config, 1 data or runtime error. Errors print one clear message
naming the file, item or key; ``--verbose`` shows the traceback.
"""

from __future__ import annotations

import atexit
import gc
import json
import sys
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import click

from icecube_cloud.console import CliProgress, command, storage_options

F = TypeVar("F", bound=Callable[..., Any])


def _allow_href(f: F) -> F:
    return click.option(
        "--allow-href",
        multiple=True,
        metavar="PREFIX",
        help="Also read asset hrefs under PREFIX (repeatable). By default a build reads s3:// objects "
        "and, for a catalog on local disk, local files; never local files named by a remote catalog.",
    )(f)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="icecube-cloud")
def cli() -> None:
    """Build datacubes of ICEYE SAR time series from STAC catalogs."""


@cli.group()
def catalog() -> None:
    """Register products in a catalog."""


@catalog.command("ingest")
@click.argument("sources", nargs=-1, required=True)
@click.option(
    "--stac-url", required=True, help="Static catalog (folder, catalog.json, s3://) to write to."
)
@click.option(
    "--skip-bad",
    is_flag=True,
    help="Register what can be read and exit 0; unreadable product files are listed as warnings.",
)
@command
def ingest_cmd(
    sources: Sequence[str], stac_url: str, skip_bad: bool, progress: CliProgress
) -> None:
    """Register ICEYE products (files, folders, s3:// prefixes) as STAC items.

    Every file that may be a product is read; the readable ones are registered, and each one that
    cannot be read is named with its reason (exit 1, or 0 with --skip-bad).
    """
    from icecube_cloud.ingest import ingest

    result = ingest(
        list(sources),
        stac_url,
        storage_options=storage_options(),
        progress=progress,
        skip_bad=True,  # the failures are reported here, one line each
    )
    level = "warning" if skip_bad else "error"
    for failure in result.failed:
        click.echo(f"{level}: {failure.href}: {failure.reason}", err=True)
    n_added, n_updated = len(result.added), len(result.updated)
    failed = f", {len(result.failed)} failed" if result.failed else ""
    click.echo(
        f"{stac_url}: {n_added} added, {n_updated} updated ({n_added + n_updated} products)"
        + failed
    )
    if result.failed and not skip_bad:
        sys.exit(1)


@catalog.command("labels")
@click.argument("labels")
@click.option(
    "--stac-url", required=True, help="Static catalog or STAC API root with the products."
)
@click.option(
    "--product",
    "products",
    multiple=True,
    metavar="ID_OR_FILE",
    help="Label only these products (repeatable); GeoJSON: instead of footprint matching.",
)
@click.option(
    "--class-property", default=None, help="GeoJSON property of the class (default: class, label)."
)
@click.option(
    "--assets-url",
    default=None,
    help="Where the labels' GeoJSON assets go (default: the static catalog's folder; required "
    "for a STAC API).",
)
@command
def labels_cmd(
    labels: str,
    stac_url: str,
    products: tuple[str, ...],
    class_property: str | None,
    assets_url: str | None,
    progress: CliProgress,
) -> None:
    """Register labels (icecube labels JSON, or GeoJSON in lon/lat) as STAC label items."""
    from icecube_cloud.labels import ingest_labels

    result = ingest_labels(
        labels,
        stac_url,
        products=products,
        class_property=class_property,
        assets_url=assets_url,
        storage_options=storage_options(),
    )
    click.echo(
        f"{stac_url}: {len(result.added)} label items added, {len(result.updated)} updated "
        f"({len(result.items)} products labelled)"
    )


@cli.command("search")
@click.option("--stac-url", required=True, help="Static catalog or STAC API root.")
@click.option("--config", "config_path", required=True, help="Cube config JSON.")
@click.option("--json", "as_json", is_flag=True, help="Print the plan as JSON.")
@_allow_href
@command
def search_cmd(
    stac_url: str,
    config_path: str,
    as_json: bool,
    allow_href: tuple[str, ...],
    progress: CliProgress,
) -> None:
    """List the products a build would use, and the time axis."""
    from icecube_cloud.build import plan_cube

    plan = plan_cube(
        stac_url, config_path, storage_options=storage_options(), allowed_hrefs=allow_href
    )
    if as_json:
        click.echo(json.dumps(plan.to_dict(), indent=2))
    else:
        click.echo(str(plan))


@cli.command("build")
@click.option("--stac-url", required=True, help="Static catalog or STAC API root.")
@click.option("--config", "config_path", required=True, help="Cube config JSON.")
@click.option("--out", required=True, help="Output Zarr location (path or s3:// URL).")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["zarr", "kerchunk"]),
    default="zarr",
    show_default=True,
    help="zarr: copy pixels into a Zarr cube; kerchunk: references, no copy: one JSON "
    "(--out *.json) or kerchunk's Parquet store (--out *.parq, for thousands of products).",
)
@click.option("--scheduler", default=None, help="Existing dask scheduler (tcp://host:port).")
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=None,
    help=(
        "Local dask workers: threads in this process for builds of up to 1 GiB of pixels, worker "
        "processes above  [default: one per CPU core; unused with --scheduler]"
    ),
)
@click.option("--overwrite", is_flag=True, help="Replace an existing cube at --out.")
@click.option(
    "--no-register", is_flag=True, help="Do not register the cube as a STAC item in the catalog."
)
@_allow_href
@command
def build_cmd(
    stac_url: str,
    config_path: str,
    out: str,
    fmt: str,
    scheduler: str | None,
    workers: int | None,
    overwrite: bool,
    no_register: bool,
    allow_href: tuple[str, ...],
    progress: CliProgress,
) -> None:
    """Build a Zarr cube from the products a config selects."""
    from icecube_cloud.build import build_cube

    result = build_cube(
        stac_url,
        config_path,
        out,
        storage_options=storage_options(),
        scheduler=scheduler,
        workers=workers,
        overwrite=overwrite,
        register=not no_register,
        allowed_hrefs=allow_href,
        progress=progress,
        format="kerchunk" if fmt == "kerchunk" else "zarr",
    )
    plan = result.plan
    click.echo(
        f"{out}: {len(plan.slices)} time slices ({plan.n_gaps} gaps), {plan.variable} "
        f"{plan.shape[0]}x{plan.shape[1]} {plan.dtype}, {result.chunks_written} chunks, "
        f"{result.nbytes / 2**20:.1f} MiB in {result.seconds:.1f} s"
    )
    if result.item_id:
        click.echo(f"registered as STAC item {result.item_id} (collection icecube-cubes)")


@cli.command("update")
@click.argument("cube")
@click.option("--stac-url", default=None, help="Catalog to search (default: the cube's own).")
@click.option("--scheduler", default=None, help="Existing dask scheduler (tcp://host:port).")
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=None,
    help=(
        "Local dask workers: threads in this process for builds of up to 1 GiB of pixels, worker "
        "processes above  [default: one per CPU core; unused with --scheduler]"
    ),
)
@_allow_href
@command
def update_cmd(
    cube: str,
    stac_url: str | None,
    scheduler: str | None,
    workers: int | None,
    allow_href: tuple[str, ...],
    progress: CliProgress,
) -> None:
    """Add the acquisitions the catalog has and the cube lacks (under the cube's own config)."""
    from icecube_cloud.update import update_cube

    result = update_cube(
        cube,
        stac_url,
        storage_options=storage_options(),
        scheduler=scheduler,
        workers=workers,
        allowed_hrefs=allow_href,
        progress=progress,
    )
    if not result.rewritten:
        click.echo(f"{cube}: up to date ({len(result.plan.slices)} time slices)")
        return
    click.echo(
        f"{cube}: {len(result.added)} new acquisitions, {len(result.rewritten)} time slices "
        f"written ({result.chunks_written} chunks); now {len(result.plan.slices)} time slices"
    )


@cli.command("info")
@click.argument("cube")
@command
def info_cmd(cube: str, progress: CliProgress) -> None:
    """Describe a cube: dims, variables, time axis, provenance, completeness."""
    from icecube_cloud.cube import cube_info, open_cube

    click.echo(cube_info(open_cube(cube, storage_options=storage_options()), cube))


@cli.command("quicklook")
@click.argument("cube")
@click.option("-o", "--out", required=True, help="Output PNG file.")
@click.option(
    "--max-times", type=click.IntRange(min=1), default=12, show_default=True, help="Panels at most."
)
@command
def quicklook_cmd(cube: str, out: str, max_times: int, progress: CliProgress) -> None:
    """Draw the time series of a cube (amplitude or |slc| in dB, label outlines) as a PNG."""
    from icecube_cloud.cube import open_cube
    from icecube_cloud.quicklook import quicklook

    ds = open_cube(cube, storage_options=storage_options())
    n = quicklook(ds, out, max_times=max_times)
    click.echo(f"{out}: {n} panels")


@cli.command("export")
@click.argument("cube")
@click.argument("out")
@click.option(
    "--complevel",
    type=click.IntRange(1, 9),
    default=4,
    show_default=True,
    help="zlib level of the image variables.",
)
@command
def export_cmd(cube: str, out: str, complevel: int, progress: CliProgress) -> None:
    """Write CUBE as one chunked, compressed netCDF4 file OUT (a new local file; never overwritten).

    Plain xr.open_dataset(OUT) reads the same variables, coordinates and attributes; SLC values
    stay complex64; dict-valued attributes are JSON strings (icecube_cloud.open_netcdf decodes them).
    """
    from icecube_cloud.export import export_cube

    result = export_cube(
        cube, out, storage_options=storage_options(), progress=progress, complevel=complevel
    )
    click.echo(
        f"{result.path}: {', '.join(result.variables)}, {result.nbytes / 2**20:.1f} MiB in "
        f"{result.file_bytes / 2**20:.1f} MiB ({result.chunks} chunks) in {result.seconds:.1f} s"
    )


@cli.command("demo")
@click.option(
    "--workdir", default="demo", show_default=True, help="Folder for products, catalog and cube."
)
@click.option("--images", type=click.IntRange(min=6), default=8, show_default=True)
@click.option(
    "--size",
    type=click.IntRange(min=16),
    default=1024,
    show_default=True,
    help="Image edge (pixels).",
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=None,
    help=(
        "Local dask workers: threads in this process for builds of up to 1 GiB of pixels, worker "
        "processes above  [default: one per CPU core]"
    ),
)
@click.option(
    "--cloud",
    is_flag=True,
    help="Use local S3 (moto) and a STAC API (pgstac) instead of folders (needs the test extras).",
)
@command
def demo_cmd(
    workdir: str, images: int, size: int, workers: int | None, cloud: bool, progress: CliProgress
) -> None:
    """Synthesise an ICEYE GRD stack, catalog it, build a cube and summarise it."""
    from icecube_cloud.demo import run_cloud_demo, run_demo

    demo = run_cloud_demo if cloud else run_demo
    click.echo(demo(workdir, images=images, size=size, workers=workers, progress=progress))


def main(argv: Sequence[str] | None = None) -> None:
    """Console-script entry point."""
    # At exit, leave every object out of the interpreter's last garbage collection: it would walk
    # all that the imports created, ~0.25 s after a build (benchmarks/bench_fixed.py), in a
    # process that is ending. Registered with atexit, so a long-lived caller is not affected.
    atexit.unregister(gc.freeze)  # once, however often main runs in one process
    atexit.register(gc.freeze)
    cli.main(args=list(argv) if argv is not None else None, prog_name="icecube-cloud")
