"""What both executors share: the result type, the executor Protocol, the source check and gathering.

An executor turns a :class:`~icecube_cloud.plan.CubePlan` into a cube at an output location on a dask
cluster: :func:`icecube_cloud.write.materialise.execute` copies pixels into a Zarr cube,
:func:`icecube_cloud.write.references.execute_references` writes a virtual (kerchunk) cube. Both
check every source first with :func:`read_source_info`, one task per product.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import distributed

from icecube_cloud.errors import ProductError, portable_errors
from icecube_cloud.model import SourceRef
from icecube_cloud.plan import CubePlan
from icecube_cloud.products import read_product
from icecube_cloud.progress import Progress, no_progress, resolve_progress


@dataclass(frozen=True)
class BuildResult:
    """What a build wrote."""

    url: str
    """Where the cube is."""
    plan: CubePlan
    """The executed plan."""
    chunks_written: int
    """Pixel chunks written."""
    nbytes: int
    """Uncompressed pixel bytes written."""
    seconds: float
    """Wall time of the build (planning excluded)."""
    item_id: str | None = None
    """Id of the cube's STAC item in the catalog (``None`` when not registered)."""


class Executor(Protocol):
    """Writes a plan as a cube at ``out`` on the cluster of ``client``."""

    def __call__(
        self,
        plan: CubePlan,
        out: str,
        *,
        client: distributed.Client,
        storage_options: Mapping[str, Any] | None = None,
        overwrite: bool = False,
        progress: Progress = no_progress,
    ) -> BuildResult:
        """Write ``plan`` at ``out``; ``overwrite`` replaces a cube of ours there."""
        ...


@portable_errors
def read_source_info(source: SourceRef, storage_options: Mapping[str, Any] | None = None) -> str:
    """Open a source, check it is the image its item describes, return its full metadata JSON.

    Runs on a worker, once per source, before anything is written (builds, updates, references).

    Raises:
        ProductError: The file cannot be read, its shape differs from its catalog entry, or (for a
            map grid) it has no geolocation.
    """
    meta = read_product(source.href, storage_options=storage_options, expected=source.format)
    if meta.shape != source.shape:
        raise ProductError(
            source.href,
            f"image is {meta.shape[0]}x{meta.shape[1]} but item {source.item_id!r} says "
            f"{source.shape[0]}x{source.shape[1]}",
        )
    located = (meta.transform is not None and meta.crs is not None) or meta.gcps or meta.rpc
    if source.grid is not None and not located:
        raise ProductError(
            source.href,
            "no geolocation (no CRS and transform, no GCPs, no RPC): cannot put it on a map grid",
        )
    return json.dumps(dict(meta.metadata), sort_keys=True, default=str)


def gather_futures(
    client: distributed.Client,
    futures: list[distributed.Future[Any]],
    stage: str,
    progress: Progress,
    *,
    count_bytes: bool = False,
) -> list[Any]:
    """Wait for ``futures`` in completion order, reporting progress; the first error stops all.

    With ``count_bytes`` (tasks that return the bytes they wrote), a progress reporter that wants
    bytes gets their running sum, fetched once per batch of finished tasks.
    """
    report = resolve_progress(progress)
    with_bytes = count_bytes and report.wants_bytes
    total, done, nbytes = len(futures), 0, 0
    report(stage, 0, total, nbytes=0 if with_bytes else None)
    try:
        for batch in distributed.as_completed(futures, raise_errors=True).batches():
            done += len(batch)
            if with_bytes:
                nbytes += sum(client.gather(batch))
            report(stage, done, total, nbytes=nbytes if with_bytes else None)
    except BaseException:
        client.cancel(futures)
        raise
    return list(client.gather(futures))  # one round trip for all results
