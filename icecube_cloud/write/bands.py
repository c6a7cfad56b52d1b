"""The tasks that write pixels, on the dask workers: one per band of one image, one per label slice.

A band is a run of chunks of one chunk row, or whole chunk rows (:func:`chunk_bands`); a task reads
its window from the source once, writes its whole chunks, or whole shards of a sharded cube (encoded
with the array's own codecs, :mod:`icecube_cloud.write.chunks`) and then records itself in the journal
(:mod:`icecube_cloud.write.journal`). Build and update run the same tasks. Tasks are deterministic:
the bytes written depend only on the arguments and the source file, so a retried task writes the
same bytes.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import distributed
import numpy as np
import zarr

from icecube_cloud.errors import ProductError, portable_errors
from icecube_cloud.model import SourceRef, Window
from icecube_cloud.plan import CubePlan
from icecube_cloud.read.cache import cached_array, cached_reader
from icecube_cloud.read.policy import Readers, wide_bands
from icecube_cloud.storage import StorageTarget, is_remote
from icecube_cloud.write.chunks import encoder_for, stored_shape, write_blocks
from icecube_cloud.write.journal import Journal, band_key, label_key
from icecube_cloud.write.zarr_internals import chunk_key

BAND_BYTES = 16 * 2**20
"""Most decoded pixel bytes one band task reads and writes (a whole chunk row when it fits)."""
WIDE_BAND_BYTES = 64 * 2**20
"""The cap for bands that also span several whole chunk rows, where a band costs no band-sized buffer
per byte or where each read has a fixed cost:

* sources in object storage: a band is one range request (contiguous TIFFs), and each request costs a
  round trip and moto's per-request overhead (large GRD stack over moto: 75.6 MiB/s with 16 MiB
  bands, ~90 with 64 MiB);
* local legacy GRDs, read through a memory map (:mod:`icecube_cloud.read.contiguous`): no band buffer
  at all, and 4x fewer tasks (large GRD stack, 2 workers, fresh cluster per build, 4 builds each:
  0.99 s median with 16 MiB bands, 0.93 with 32 MiB, 0.92 with 64 MiB).

The other local sources (COGs and HDF5 decoded into a band buffer) keep :data:`BAND_BYTES`. Which
stacks get wide bands is :func:`icecube_cloud.read.policy.wide_bands`' answer (the reader classes'
``memory_mapped`` trait)."""
MAP_BAND_BYTES = 32 * 2**20
"""The cap for the bands of a map-geometry cube of local sources; such bands also span whole chunk
rows. The file window a band of the grid needs is the bounding box of the band's footprint in the
file, which the grid is rotated against, so neighbouring bands' windows overlap and their tiles are
decoded twice: one chunk row per band (4349 x 4407 grid, 1024² chunks, 8 sheared 4096² COGs) decoded
2x each file, 3 chunk rows 1.3x (0.043 vs 0.027 s a file, of ~0.16 s a file for read and warp). The
cap stays below the workers' malloc mmap threshold (:data:`icecube_cloud.cluster.WORKER_MALLOC_ENV`):
a whole 38 MiB slice as one band was slower again (its buffers are fresh mappings every task)."""


def chunk_bands(
    windows: Iterable[Window],
    chunk_nbytes: int,
    max_bytes: int = BAND_BYTES,
    *,
    merge_rows: bool = False,
) -> list[tuple[Window, ...]]:
    """Group row-major chunk windows into bands of at most ``max_bytes`` (at least one chunk each).

    A band is a run of chunks of one chunk row; with ``merge_rows``, consecutive chunk rows that each
    fit in one band are also merged while the band stays within ``max_bytes``. Every band covers a
    rectangle of the image, so a task reads it with one window read.

    Args:
        windows: The chunk windows of one image, row-major (:meth:`CubePlan.windows`).
        chunk_nbytes: Decoded bytes of one full chunk.
        max_bytes: Cap on a band's decoded bytes.
        merge_rows: Let a band span several whole chunk rows.
    """
    per_band = max(1, max_bytes // max(1, chunk_nbytes))
    rows: list[list[Window]] = []
    for w in windows:
        if not rows or w.az0 != rows[-1][0].az0:
            rows.append([])
        rows[-1].append(w)
    bands: list[tuple[Window, ...]] = []
    merged: list[Window] = []  # whole chunk rows waiting to be one band
    for row in rows:
        if merged and (not merge_rows or len(merged) + len(row) > per_band):
            bands.append(tuple(merged))
            merged = []
        if merge_rows and len(row) <= per_band:
            merged += row
        else:
            bands += [tuple(row[k : k + per_band]) for k in range(0, len(row), per_band)]
    if merged:
        bands.append(tuple(merged))
    return bands


def plan_bands(plan: CubePlan, readers: Readers | None = None) -> list[tuple[Window, ...]]:
    """The chunk windows of one image of ``plan`` grouped into bands (see :func:`chunk_bands`).

    Stacks with sources in object storage, and stacks whose sources are all read through a memory map
    (local legacy GRDs, :func:`icecube_cloud.read.policy.wide_bands`), get :data:`WIDE_BAND_BYTES`
    bands spanning chunk rows; other local map-geometry cubes :data:`MAP_BAND_BYTES` bands spanning
    chunk rows; other local ones :data:`BAND_BYTES` bands of one chunk row.

    Args:
        plan: The cube's plan.
        readers: Reader classes replacing the built-in ones (see :mod:`icecube_cloud.read.policy`).
    """
    chunk_nbytes = math.prod(plan.chunks) * np.dtype(plan.dtype).itemsize
    sources = [s.source for s in plan.slices if s.source is not None]
    if wide_bands(sources, readers):
        return chunk_bands(plan.windows(), chunk_nbytes, WIDE_BAND_BYTES, merge_rows=True)
    if plan.grid is not None:
        return chunk_bands(plan.windows(), chunk_nbytes, MAP_BAND_BYTES, merge_rows=True)
    return chunk_bands(plan.windows(), chunk_nbytes, BAND_BYTES)


@portable_errors
def write_band(
    target: StorageTarget,
    variable: str,
    t: int,
    windows: Sequence[Window],
    source: SourceRef,
    storage_options: Mapping[str, Any] | None = None,
    array_token: str | None = None,
    readers: Readers | None = None,
) -> int:
    """Read the band covering ``windows`` once and write it as their chunks (runs on a worker).

    ``windows`` are the chunk windows of one band: a run of one chunk row, or whole chunk rows (see
    :func:`chunk_bands`); together they cover a rectangle. Their chunks are encoded and stored directly
    (:mod:`icecube_cloud.write.chunks`, the same bytes zarr writes); then the band's progress marker is
    written. The source reader and the array are reused across tasks of the worker
    (:mod:`icecube_cloud.read.cache`). Deterministic: the bytes written depend only on the arguments
    and the source file.

    Args:
        target: The cube.
        variable: The pixel array.
        t: Time index.
        windows: The chunk windows of one band, row-major.
        source: The image of time ``t``.
        storage_options: fsspec options of the source (the target carries its own).
        array_token: Names the array's metadata (the plan fingerprint) so that the opened array may be
            reused by later tasks; ``None`` opens it afresh.
        readers: Reader classes replacing the built-in ones (see :mod:`icecube_cloud.read.policy`).

    Returns:
        Number of uncompressed bytes written.
    """
    band = Window(
        min(w.az0 for w in windows),
        max(w.az1 for w in windows),
        min(w.rg0 for w in windows),
        max(w.rg1 for w in windows),
    )
    with cached_reader(source, storage_options, readers) as reader:
        data = reader.read(band)
    array = cached_array(target, variable, array_token)
    if data.dtype != array.dtype:
        raise ProductError(
            source.href, f"sample type {data.dtype} differs from the cube's {array.dtype}"
        )
    ch = stored_shape(array)[1:]  # chunks, or the shards of a sharded cube
    blocks = [
        (
            (t, w.az0 // ch[0], w.rg0 // ch[1]),
            data[w.az0 - band.az0 : w.az1 - band.az0, w.rg0 - band.rg0 : w.rg1 - band.rg0],
        )
        for w in windows
    ]
    write_blocks(array, encoder_for(array), blocks)
    # The progress record: written only after the chunks themselves, so "recorded" implies "written"
    # (one marker per band: one small PUT per task, not one per chunk).
    Journal(target).mark(band_key(t, windows))
    return int(data.nbytes)


def submit_pixel_tasks(
    client: distributed.Client,
    plan: CubePlan,
    target: StorageTarget,
    times: Iterable[int],
    done: set[str],
    storage_options: Mapping[str, Any],
    array_token: str,
    readers: Readers | None = None,
) -> tuple[list[distributed.Future[int]], int]:
    """Submit the band tasks of the images at ``times`` and their label slices (build and update).

    Tasks the journal records as done (``done``) are skipped. ``readers`` replace the built-in reader
    classes of their formats (they travel with the tasks). Returns the futures (each gives the
    uncompressed bytes it wrote) and the number of chunks they write (a label slice counts as one).
    """
    bands = plan_bands(plan, readers)
    times = [t for t in times if plan.slices[t].source is not None]
    todo = [(t, band) for t in times for band in bands if band_key(t, band) not in done]
    n = len(todo)
    futures: list[distributed.Future[int]] = client.map(  # one message for every band
        write_band,
        [target] * n,
        [plan.variable] * n,
        [t for t, _ in todo],
        [band for _, band in todo],
        [plan.slices[t].source for t, _ in todo],
        storage_options=storage_options,
        array_token=array_token,
        readers=readers,
        pure=False,
    )
    chunks = sum(len(band) for _, band in todo)
    if plan.labels is None:
        return futures, chunks
    from icecube_cloud.write.label_slices import write_label_slice  # cubes with labels only

    label_items, classes = plan.labels.items, dict(plan.labels.classes)
    for t in times:
        source = plan.slices[t].source
        if source is not None and source.item_id in label_items and label_key(t) not in done:
            futures.append(
                client.submit(
                    write_label_slice,
                    target,
                    t,
                    label_items[source.item_id],
                    plan.shape,
                    classes,
                    storage_options,
                    source,
                    pure=False,
                )
            )
            chunks += 1
    return futures, chunks


def remove_time_slices(target: StorageTarget, names: Sequence[str], times: Sequence[int]) -> None:
    """Delete every stored chunk of ``times`` in the arrays ``names`` (slices that became gaps).

    Chunk keys come from each array's own chunk-key encoding; one batch of deletes per array.
    """
    if not times:
        return
    fs = target.fs
    for name in names:
        array = zarr.open_array(store=target.zarr_store(), path=name, mode="r", zarr_format=3)
        grid = [math.ceil(n / c) for n, c in zip(array.shape, stored_shape(array), strict=True)][1:]
        keys = [
            f"{target.path}/{name}/{chunk_key(array, (t, i, j))}"
            for t in times
            for i in range(grid[0])
            for j in range(grid[1])
        ]
        if not is_remote(target.url):
            keys = [k for k in keys if fs.exists(k)]
        if keys:
            fs.rm(keys)
