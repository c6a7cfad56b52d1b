"""Measurement primitives: peak RSS per process, the I/O ceiling, the map-grid ceiling (read +
``rasterio.warp.reproject`` + write) and pixel agreement, the naive recipe, cube inspection.

Peak RSS is the kernel's high-water mark (``VmHWM``) of each process, reset before every case by
writing ``5`` to ``/proc/<pid>/clear_refs`` (Linux); where that is refused, the lifetime peak
(``ru_maxrss``) is reported instead and marked as such.
"""

from __future__ import annotations

import os
import resource
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, cast

import distributed
import numpy as np
import rasterio
import rasterio.crs
import rasterio.warp
import s3fs
import xarray as xr
import zarr
from affine import Affine
from rasterio.enums import Resampling

from icecube_cloud.model import MapGrid
from icecube_cloud.storage import StorageOptions, StorageTarget

MiB = 2**20


# --- peak RSS ---------------------------------------------------------------------------------


def reset_peak_rss() -> bool:
    """Reset this process's RSS high-water mark; ``False`` when the kernel refuses."""
    try:
        with open(f"/proc/{os.getpid()}/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    return True


def peak_rss() -> int:
    """This process's RSS high-water mark in bytes (since the last reset)."""
    try:
        with open(f"/proc/{os.getpid()}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


@dataclass
class PeakRss:
    """Peak RSS of the client and of each worker during one case (bytes)."""

    client: int = 0
    workers: dict[str, int] = field(default_factory=dict)
    exact: bool = True
    """Whether the peaks were reset at the start of the case (else lifetime peaks)."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "client_mib": round(self.client / MiB, 1),
            "workers_mib": [round(v / MiB, 1) for _, v in sorted(self.workers.items())],
            "exact": self.exact,
        }


@contextmanager
def track_rss(client: distributed.Client) -> Iterator[PeakRss]:
    """Reset every process's peak before the block and collect the peaks after it."""
    peaks = PeakRss()
    ok = reset_peak_rss() and all(client.run(reset_peak_rss).values())
    yield peaks
    peaks.client = peak_rss()
    peaks.workers = {str(k): int(v) for k, v in client.run(peak_rss).items()}
    peaks.exact = ok


# --- the I/O ceiling --------------------------------------------------------------------------


def read_and_write(
    href: str, out: str, nbytes: int, storage_options: StorageOptions | None
) -> tuple[float, float, int]:
    """Read one source file fully and write at least ``nbytes`` (its image's pixel bytes) as one object.

    Runs on a worker. The read is the raw I/O: the whole file in one request (one ``read`` locally,
    one GET on S3) through the same fsspec filesystem the build uses, with no decoding; the write goes
    through the same filesystem as the cube's store. The bytes read are written as they are: the
    file's header makes that a little more than ``nbytes`` (<0.1 % for the GRD stacks), which only
    slows the ceiling down; cutting them off would copy the file (80 ms per 128 MiB, measured). A file
    smaller than ``nbytes`` (compressed) is padded with zeros.

    Returns:
        (read seconds, write seconds, bytes written).
    """
    t0 = time.perf_counter()
    src = StorageTarget.from_url(href, storage_options)
    raw = src.fs.cat_file(src.path)
    t1 = time.perf_counter()
    body = raw if len(raw) >= nbytes else raw + bytes(nbytes - len(raw))
    target = StorageTarget.from_url(out, storage_options)
    fs = target.fs
    fs.makedirs(fs._parent(target.path), exist_ok=True)  # no-op on object stores
    fs.pipe_file(target.path, body)
    t2 = time.perf_counter()
    return t1 - t0, t2 - t1, len(body)


@dataclass(frozen=True)
class Timed:
    """Wall time of a case and its byte count."""

    seconds: float
    nbytes: int
    detail: Mapping[str, Any] = field(default_factory=dict)

    @property
    def mib_per_s(self) -> float:
        return self.nbytes / MiB / self.seconds


def ceiling(
    client: distributed.Client,
    files: Sequence[str],
    out: str,
    nbytes: int,
    storage_options: StorageOptions | None,
) -> Timed:
    """The I/O ceiling: one task per source on the same cluster, read fully + write ``nbytes`` each.

    Throughput counts pixel bytes (``nbytes`` per file); the bytes actually written are in the detail.
    """
    t0 = time.perf_counter()
    futures = client.map(
        read_and_write,
        list(files),
        [f"{out}/{i}.bin" for i in range(len(files))],
        nbytes=nbytes,
        storage_options=storage_options,
        pure=False,
    )
    results = client.gather(futures)  # type: ignore[no-untyped-call]
    seconds = time.perf_counter() - t0
    return Timed(
        seconds,
        nbytes * len(files),  # MiB/s of pixels, as for ours and naive
        {
            "task_read_s": round(sum(r[0] for r in results), 3),
            "task_write_s": round(sum(r[1] for r in results), 3),
            "bytes_written": sum(r[2] for r in results),
        },
    )


# --- the map-grid ceiling: read + rasterio.warp.reproject + write --------------------------------


def reproject_into(
    href: str, out: str, t: int, grid: MapGrid, resampling: str
) -> tuple[float, float, float]:
    """Read band 1 of ``href``, warp it onto the whole ``grid`` with GDAL's defaults, store slice ``t``.

    Runs on a worker: one task per image. ``rasterio.warp.reproject`` as users call it (GDAL's default
    approximate transformer, 0.125 source pixels; one thread), 0 outside the image; the slice goes into
    the existing Zarr array ``out`` through zarr itself.

    Returns:
        (read, warp, write) seconds.
    """
    t0 = time.perf_counter()
    with rasterio.open(href) as ds:
        src = ds.read(1)
        src_transform, src_crs, nodata = ds.transform, ds.crs, ds.nodata
    t1 = time.perf_counter()
    dst = np.zeros(grid.shape, dtype=src.dtype)
    rasterio.warp.reproject(
        source=src,
        destination=dst,
        src_transform=src_transform,
        src_crs=src_crs,
        src_nodata=nodata,
        dst_transform=Affine(*grid.transform),
        dst_crs=rasterio.crs.CRS.from_wkt(grid.crs_wkt),
        dst_nodata=0,
        resampling=Resampling[resampling],
    )
    t2 = time.perf_counter()
    zarr.open_array(out, mode="r+")[t] = dst
    return t1 - t0, t2 - t1, time.perf_counter() - t2


def warp_ceiling(
    client: distributed.Client,
    files: Sequence[str],
    out: str,
    grid: MapGrid,
    resampling: str,
    chunk: int,
    compressors: Sequence[Any],
) -> Timed:
    """The map-grid ceiling: a bare pool of one task per image (:func:`reproject_into`) on ``client``.

    ``out`` becomes a Zarr v3 array ``(time, y, x)`` uint16 of ``grid``, fill 0, chunks one image ×
    ``chunk``², with ``compressors``; throughput counts its pixel bytes.
    """
    t0 = time.perf_counter()
    shape = (len(files), *grid.shape)
    zarr.create_array(
        out, shape=shape, chunks=(1, chunk, chunk), dtype="uint16", fill_value=0,
        compressors=list(compressors), zarr_format=3, overwrite=True,
    )  # fmt: skip
    futures = client.map(
        reproject_into, list(files), [out] * len(files), range(len(files)),
        grid=grid, resampling=resampling, pure=False,
    )  # fmt: skip
    results = client.gather(futures)  # type: ignore[no-untyped-call]
    seconds = time.perf_counter() - t0
    return Timed(
        seconds,
        int(np.prod(shape)) * 2,
        {f"task_{k}_s": round(sum(r[i] for r in results), 3)
         for i, k in enumerate(("read", "warp", "write"))},
    )  # fmt: skip


def agreement(reference: str, other: str) -> dict[str, Any]:
    """How ``other`` (a Zarr array of a map cube) agrees with ``reference``, slice by slice.

    Counted on the *data* pixels: where either holds a non-fill (non-zero) value, so that a peer that
    loads nothing (all fill) agrees on 0 of them, not on the fill area.

    Returns:
        ``agree`` (fraction equal), ``agree_1dn`` (fraction within 1 DN), ``mean_abs_dn`` (mean
        absolute difference), ``data_px`` (pixels counted), ``reference_px`` and ``other_px``
        (non-zero pixels of each).

    Raises:
        ValueError: The two arrays differ in shape.
    """
    ref, oth = zarr.open_array(reference, mode="r"), zarr.open_array(other, mode="r")
    if ref.shape != oth.shape:
        raise ValueError(f"{other} has shape {oth.shape}, {reference} {ref.shape}")
    counts = dict.fromkeys(("equal", "near", "data", "ref", "other", "abs_dn"), 0)
    for t in range(ref.shape[0]):
        a = np.asarray(ref[t]).astype(np.int32)
        b = np.asarray(oth[t]).astype(np.int32)
        data = (a != 0) | (b != 0)
        counts["data"] += int(data.sum())
        counts["equal"] += int(((a == b) & data).sum())
        diff = np.abs(a - b)
        counts["near"] += int(((diff <= 1) & data).sum())
        counts["abs_dn"] += int(diff[data].sum())
        counts["ref"] += int((a != 0).sum())
        counts["other"] += int((b != 0).sum())
    n = max(counts["data"], 1)
    return {
        "agree": round(counts["equal"] / n, 5),
        "agree_1dn": round(counts["near"] / n, 5),
        "mean_abs_dn": round(counts["abs_dn"] / n, 3),
        "data_px": counts["data"],
        "reference_px": counts["ref"],
        "other_px": counts["other"],
    }


# --- the naive recipe -------------------------------------------------------------------------


def naive(
    files: Sequence[str],
    out: str,
    storage_options: StorageOptions | None,
    client: distributed.Client,
    chunk: int = 1024,
) -> Timed:
    """``rioxarray.open_rasterio`` per file → ``xr.concat`` → ``to_zarr`` (on the active client).

    S3 sources are reached as a user would: GDAL's ``AWS_*`` settings in the environment of the client
    and of the workers (see :func:`gdal_env_for_workers`).
    """
    import rioxarray

    t0 = time.perf_counter()
    arrays = [
        cast(
            xr.DataArray,
            rioxarray.open_rasterio(f, chunks={"band": 1, "y": chunk, "x": chunk}, lock=False),
        )
        for f in files
    ]
    # coregistered stacks: x/y labels differ only by each file's GCP-derived transform
    cube = xr.concat(
        arrays, dim="time", join="override", coords="minimal", compat="override"
    ).to_dataset(name="pixels")
    kwargs: dict[str, Any] = {}
    if "://" in out:
        kwargs["storage_options"] = dict(storage_options or {})
    delayed = cube.to_zarr(out, mode="w", zarr_format=3, consolidated=True, compute=False, **kwargs)
    client.compute(delayed).result()  # type: ignore[no-untyped-call]
    seconds = time.perf_counter() - t0
    return Timed(seconds, int(cube["pixels"].nbytes))


def _set_env(values: Mapping[str, str | None]) -> None:
    for key, value in values.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@contextmanager
def gdal_env_for_workers(
    client: distributed.Client, storage_options: StorageOptions | None
) -> Iterator[None]:
    """GDAL's S3 settings in the environment of the client and the workers for the block."""
    config = StorageOptions.of(storage_options).gdal_config() if storage_options else {}
    before = {k: os.environ.get(k) for k in config}
    _set_env(config)
    client.run(_set_env, config)
    try:
        yield
    finally:
        _set_env(before)
        client.run(_set_env, before)


# --- cube inspection --------------------------------------------------------------------------


def stored_bytes(url: str, storage_options: StorageOptions | None, sub: str = "") -> int:
    """Bytes of every object under ``url/sub``."""
    target = StorageTarget.from_url(url, storage_options)
    path = f"{target.path}/{sub}".rstrip("/")
    fs = target.fs
    if not fs.exists(path):
        return 0
    return int(sum(info["size"] for info in fs.find(path, detail=True).values()))


def gap_bytes(url: str, variable: str, storage_options: StorageOptions | None) -> tuple[int, int]:
    """(number of gap slices, bytes stored under their chunk keys ``<variable>/c/<t>/``)."""
    kwargs: dict[str, Any] = {}
    if "://" in url:
        kwargs["storage_options"] = dict(storage_options or {})
    with xr.open_zarr(url, **kwargs) as ds:
        gaps = [int(t) for t in (~ds["valid"].values).nonzero()[0]]
    return len(gaps), sum(stored_bytes(url, storage_options, f"{variable}/c/{t}") for t in gaps)


def first_access(
    url: str, variable: str, storage_options: StorageOptions | None, chunk: int
) -> tuple[float, float]:
    """Seconds to the first ``xr.open_zarr`` and then to the first chunk's pixels (fresh clients)."""
    s3fs.S3FileSystem.clear_instance_cache()
    kwargs: dict[str, Any] = {}
    if "://" in url:
        kwargs["storage_options"] = dict(storage_options or {})
    t0 = time.perf_counter()
    ds = xr.open_zarr(url, **kwargs)
    t1 = time.perf_counter()
    ds[variable].isel(time=0, azimuth=slice(0, chunk), range=slice(0, chunk)).load()
    t2 = time.perf_counter()
    ds.close()
    return t1 - t0, t2 - t1


def remove(url: str, storage_options: StorageOptions | None) -> None:
    """Delete a benchmark output."""
    StorageTarget.from_url(url, storage_options).remove()
