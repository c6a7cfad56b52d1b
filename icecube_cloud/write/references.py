"""Write a planned cube as one kerchunk reference file (a virtual cube that copies no pixel).

The reference file is a Zarr v2 store in kerchunk's JSON format (version 1): coordinates, per-time
coords, ``metadata`` and root attributes are inlined exactly as a materialised cube holds them (made by
the same :func:`~icecube_cloud.write.skeleton.skeleton`); pixel chunks are byte ranges into the
original products, combined along ``time`` (gap slices reference nothing and read as fill value).

Where the files' layout differs from the cube contract, the references keep file order and the root
attribute ``icecube_cloud_virtual`` tells :func:`icecube_cloud.cube.open_cube` what to apply lazily:
shadows-down COGs are stored as (time, range, azimuth) with a descending ``azimuth`` coordinate, legacy
SLC as ``s_i``/``s_q`` that are combined into ``slc`` on open. One JSON document written with one PUT
is the commit point.

``--out *.parq`` writes the same references as kerchunk's Parquet store instead (a folder written by
``kerchunk.df.refs_to_dataframe``; its ``.zmetadata``, written last, is the commit point): it opens
faster than the JSON above about :data:`PARQUET_ADVISED` chunk references (README, Virtual cubes).
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import os
import time
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import distributed
import kerchunk.df
import numpy as np
import zarr
import zarr.storage

from icecube_cloud.errors import ProductError, UsageError, portable_errors
from icecube_cloud.model import SourceRef
from icecube_cloud.plan import CubePlan
from icecube_cloud.progress import Progress, no_progress
from icecube_cloud.read.byte_ranges import ZARR_HINT, ArrayRefs, SourceRefs, source_references
from icecube_cloud.storage import StorageOptions, StorageTarget, is_parquet_url, is_remote
from icecube_cloud.virtual import SOURCES_ATTR, VIRTUAL_ATTR
from icecube_cloud.write.coords import coord_encoding
from icecube_cloud.write.executor import BuildResult, gather_futures, read_source_info
from icecube_cloud.write.journal import STATUS_ATTR
from icecube_cloud.write.output import (
    OutputKind,
    inspect_parquet_output,
    inspect_reference_output,
    refuse_foreign,
)
from icecube_cloud.write.schema import to_dataset
from icecube_cloud.write.skeleton import skeleton

log = logging.getLogger(__name__)

_META_SUFFIXES = (".zarray", ".zattrs", ".zgroup")
PARQUET_RECORD_SIZE = 100_000
"""References per Parquet file of a variable (kerchunk's default): a reader loads one such file
per 100,000 chunks it touches."""
PARQUET_ADVISED = 64_000
"""Chunk references above which a JSON cube opens slower than the Parquet store of the same
references (measured: README, Virtual cubes); a JSON build this large logs a hint."""


def _inline(value: bytes) -> str:
    """A kerchunk inline value: text as is, binary as ``base64:``."""
    try:
        return value.decode("ascii")
    except UnicodeDecodeError:
        return "base64:" + base64.b64encode(value).decode("ascii")


def _coords_store(
    plan: CubePlan, metadata_json: list[str], azimuth_desc: bool
) -> tuple[dict[str, str], dict[str, Any]]:
    """Everything but the pixels as Zarr v2 keys -> inline values, and the pixel variable's attrs."""
    schema = skeleton(plan, metadata_json)
    attrs = dict(schema.arrays[plan.variable].attrs)
    ds, _ = to_dataset(schema.without(plan.variable))
    if azimuth_desc:  # shadows-down files: file columns run backwards in azimuth
        ds = ds.assign_coords(azimuth=ds["azimuth"].values[::-1].copy())
    data: dict[str, Any] = {}
    ds.to_zarr(
        zarr.storage.MemoryStore(data),
        zarr_format=2,
        consolidated=False,
        encoding=coord_encoding(zarr_format=2),
        mode="w",
    )
    return {k: _inline(v.to_bytes()) for k, v in data.items()}, attrs


def _pixel_array(
    name: str, n_time: int, first: ArrayRefs, dims: list[str], attrs: Mapping[str, Any]
) -> dict[str, str]:
    zarray = {
        "shape": [n_time, *first.shape],
        "chunks": [1, *first.chunks],
        "dtype": first.dtype,
        "compressor": first.compressor,
        "filters": list(first.filters) or None,
        "fill_value": None,
        "order": "C",
        "zarr_format": 2,
        "dimension_separator": ".",
    }
    zattrs = {"_ARRAY_DIMENSIONS": dims, **attrs}
    return {f"{name}/.zarray": json.dumps(zarray), f"{name}/.zattrs": json.dumps(zattrs)}


def combine(
    plan: CubePlan, metadata_json: list[str], sources: list[SourceRefs], created: datetime
) -> dict[str, Any]:
    """Combine per-product references along ``time`` into one kerchunk reference document.

    Args:
        plan: The cube plan.
        metadata_json: Full metadata JSON per time slice ("" for gaps).
        sources: References of each valid slice's product, in time order.
        created: Creation time recorded in the root attributes.

    Raises:
        ProductError: A product's layout differs from the first one's, or from the plan.
    """
    valid = [s.source for s in plan.slices if s.source is not None]
    orientations = {s.orientation for s in valid}
    if len(orientations) != 1:
        raise ProductError(
            valid[0].href, f"the stack mixes file orientations {sorted(orientations)}; " + ZARR_HINT
        )
    orientation = orientations.pop()
    shadows_down = orientation == "shadows-down"
    names = list(sources[0].arrays)
    first = sources[0].arrays[names[0]]
    for src in sources:
        for name in names:
            arr = src.arrays[name]
            if arr.layout != first.layout:
                raise ProductError(
                    src.url,
                    f"{name} layout {arr.layout} differs from {sources[0].url}'s {first.layout}; "
                    "references of one variable must share shape, tiling and codec; " + ZARR_HINT,
                )
    expected = (plan.shape[1], plan.shape[0]) if shadows_down else plan.shape
    if first.shape != expected:
        raise ProductError(sources[0].url, f"file shape {first.shape}, expected {expected}")
    if plan.variable == "amplitude" and np.dtype(first.dtype) != np.dtype(plan.dtype):
        raise ProductError(
            sources[0].url, f"sample type {first.dtype} differs from the plan's {plan.dtype}"
        )
    store, var_attrs = _coords_store(plan, metadata_json, shadows_down)
    refs: dict[str, Any] = dict(store)
    dims = ["time", "range", "azimuth"] if shadows_down else ["time", "azimuth", "range"]
    combine_rule = "s_i + 1j*s_q" if names == ["s_i", "s_q"] else None
    for name in names:
        refs.update(
            _pixel_array(name, len(plan.slices), first, dims, {} if combine_rule else var_attrs)
        )
    slots = iter(sources)
    for t, s in enumerate(plan.slices):
        if s.source is None:
            continue
        src = next(slots)
        for name in names:
            for key, (url, off, n) in src.arrays[name].refs.items():
                refs[f"{name}/{t}.{key}"] = [url, off, n]
    root = json.loads(refs[".zattrs"])
    root.update(
        {
            "created": created.isoformat(),
            STATUS_ATTR: "complete",
            VIRTUAL_ATTR: {
                "format": "kerchunk",
                "variable": plan.variable,
                "orientation": orientation,
                "combine": combine_rule,
                "attrs": var_attrs,
            },
            SOURCES_ATTR: [{"url": s.url, "size": s.size, "etag": s.etag} for s in sources],
        }
    )
    refs[".zattrs"] = json.dumps(root)
    refs[".zmetadata"] = json.dumps(
        {
            "zarr_consolidated_format": 1,
            "metadata": {k: json.loads(v) for k, v in refs.items() if k.endswith(_META_SUFFIXES)},
        }
    )
    return {"version": 1, "refs": refs}


def _write_json(target: StorageTarget, body: bytes) -> None:
    if is_remote(target.url):
        target.fs.pipe_file(target.path, body)  # one PUT: the commit point
        return
    # the same locally: readers see the old file or the new one, never half of one
    os.makedirs(os.path.dirname(target.path), exist_ok=True)
    partial = f"{target.path}.{uuid.uuid4().hex[:8]}.partial"
    try:
        with open(partial, "wb") as handle:
            handle.write(body)
        os.replace(partial, target.path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.remove(partial)


def write_parquet(
    target: StorageTarget, doc: Mapping[str, Any], storage_options: Mapping[str, Any] | None
) -> None:
    """Write ``doc`` as kerchunk's Parquet reference store (a folder) at ``target``.

    ``kerchunk.df.refs_to_dataframe`` (fsspec's ``LazyReferenceMapper``) writes one
    ``<variable>/refs.<n>.parq`` per :data:`PARQUET_RECORD_SIZE` references and the metadata of every
    array in ``.zmetadata``, last: that file is the commit point (until it is written the store has no
    arrays and does not open). It replaces a previous store of ours wholesale.
    """
    refs = {k: v for k, v in doc["refs"].items() if k != ".zmetadata"}  # it writes its own
    kerchunk.df.refs_to_dataframe(
        {"version": 1, "refs": refs},
        target.url,
        storage_options=dict(storage_options or {}),
        record_size=PARQUET_RECORD_SIZE,
    )


@portable_errors
def reference_product(
    source: SourceRef, storage_options: Mapping[str, Any] | None = None
) -> tuple[str, SourceRefs]:
    """The one task per product (on a worker): its full metadata JSON and its references."""
    return read_source_info(source, storage_options), source_references(source, storage_options)


def execute_references(
    plan: CubePlan,
    out: str,
    *,
    client: distributed.Client,
    storage_options: Mapping[str, Any] | None = None,
    overwrite: bool = False,
    progress: Progress = no_progress,
) -> BuildResult:
    """Reference ``plan``'s products on the cluster and write one reference JSON at ``out``.

    ``BuildResult.chunks_written`` counts chunk references; ``nbytes`` the pixel bytes referenced.

    Raises:
        UsageError: ``out`` is not ours (a folder, a file icecube-cloud did not write), or is a
            virtual cube and ``overwrite`` is false.
        ProductError: A source cannot be referenced exactly (the message points to ``--format zarr``).
    """
    parquet = is_parquet_url(out)
    if not (parquet or out.endswith(".json")):
        raise UsageError(
            f"{out}: a kerchunk cube is one JSON reference file (--out *.json) or a Parquet "
            "reference store (--out *.parq)"
        )
    target = StorageTarget.from_url(out, storage_options)
    found = inspect_parquet_output(target) if parquet else inspect_reference_output(target)
    refuse_foreign(found, target.url)  # a user's file is never replaced, --overwrite or not
    if found.kind is OutputKind.CUBE and not overwrite:
        raise UsageError(f"{out} already exists; pass --overwrite to replace it")
    start = time.perf_counter()
    so = StorageOptions.of(storage_options)
    sources = [s.source for s in plan.slices if s.source is not None]
    results: list[tuple[str, SourceRefs]] = gather_futures(
        client, client.map(reference_product, sources, storage_options=so, pure=False),
        "reference", progress,
    )  # fmt: skip
    refs = [r for _, r in results]
    meta = iter(m for m, _ in results)
    metadata_json = [next(meta) if s.valid else "" for s in plan.slices]
    doc = combine(plan, metadata_json, refs, datetime.now(UTC))
    n_refs = sum(len(a.refs) for r in refs for a in r.arrays.values())
    if not parquet and n_refs > PARQUET_ADVISED:
        log.warning(
            "%s: %d chunk references; a Parquet reference store (--out *.parq) opens faster above "
            "about %d", out, n_refs, PARQUET_ADVISED,
        )  # fmt: skip
    if parquet:
        write_parquet(target, doc, so)
    else:
        _write_json(target, json.dumps(doc, separators=(",", ":")).encode())
    return BuildResult(
        url=target.url,
        plan=plan,
        chunks_written=n_refs,
        nbytes=plan.nbytes,
        seconds=time.perf_counter() - start,
    )
