"""Measurement primitives: peak RSS per process, the I/O ceiling, the naive recipe, cube inspection.

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
import s3fs
import xarray as xr

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
