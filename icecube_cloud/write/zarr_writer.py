"""Write a planned cube as a Zarr v3 group, with the root metadata as the commit point.

Order of writes (SPEC §9): (1) every array's metadata and the small coordinate arrays, with the root
group document held back, so a plain ``xr.open_zarr`` finds no group while pixels are being written;
(2) the pixel chunks, one deterministic task per band (a chunk row, or part of one) on the dask workers
(gap slices write nothing);
(3) the root group document, marked complete, and the consolidated metadata, written last. A build that
dies before (3) leaves nothing a reader opens as a cube.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import posixpath
import warnings
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import dask.array as da
import numpy as np
import numpy.typing as npt
import pystac
import xarray as xr
import zarr
import zarr.codecs

from icecube_cloud.config import Compression
from icecube_cloud.errors import ProductError, portable_errors
from icecube_cloud.labels.cube import flag_attrs, label_mask
from icecube_cloud.plan import CubePlan, SourceRef
from icecube_cloud.products.model import ProductFormat
from icecube_cloud.read.cache import cached_array, cached_reader
from icecube_cloud.read.protocol import Window
from icecube_cloud.storage import StorageTarget, is_remote
from icecube_cloud.write.chunks import ChunkEncoder, write_blocks
from icecube_cloud.write.coords import GAP_STRING, STRING_COORDS, coord_encoding

log = logging.getLogger(__name__)

ROOT_DOC = "zarr.json"
STATUS_ATTR = "icecube_cloud_status"
"""Root attribute that reads ``complete`` once every chunk of the cube is written."""

_VARIABLE_ATTRS: dict[str, dict[str, str]] = {
    "amplitude": {
        "long_name": "SAR amplitude (digital number)",
        "units": "1",
        "comment": "ICEYE GRD amplitude as delivered, bit-exact; calibrated intensity is "
        "calibration_factor * amplitude**2",
    },
    "slc": {
        "long_name": "single-look complex SAR signal",
        "units": "1",
        "comment": "ICEYE SLC as delivered: s_i + 1j*s_q (legacy) or amplitude*exp(1j*phase) (COG)",
    },
}


def _dt64(values: Sequence[Any]) -> npt.NDArray[np.datetime64]:
    return np.array(
        [
            np.datetime64("NaT", "ns") if v is None else np.datetime64(v.replace(tzinfo=None), "ns")
            for v in values
        ],
        dtype="datetime64[ns]",
    )


def skeleton(
    plan: CubePlan,
    metadata_json: Sequence[str],
    label_vectors: Sequence[Sequence[tuple[str, str]]] | None = None,
) -> xr.Dataset:
    """The cube as an ``xr.Dataset`` whose pixel variables are lazy placeholders (never computed).

    Args:
        plan: The cube plan.
        metadata_json: One full-metadata JSON string per time slice ("" for gaps).
        label_vectors: With labels: per time slice, the (WKT in pixel coordinates, class) pairs.
    """
    n = len(plan.slices)
    coords = [s.coords for s in plan.slices]

    def per_time(attr: str, fill: Any) -> list[Any]:
        return [fill if c is None else getattr(c, attr) for c in coords]

    # One dask chunk: the placeholder is never computed, and its graph (one task per chunk otherwise)
    # cost ~0.1 s of planning per 500 chunks.
    pixels = da.zeros((n, *plan.shape), dtype=plan.dtype, chunks=-1)
    strings = {
        name: ("time", np.array(per_time(name, ""), dtype=object), {"comment": GAP_STRING})
        for name in STRING_COORDS
    }
    ds = xr.Dataset(
        {plan.variable: (("time", "azimuth", "range"), pixels, _VARIABLE_ATTRS[plan.variable])},
        coords={
            "time": ("time", _dt64([s.time for s in plan.slices])),
            "azimuth": ("azimuth", np.arange(plan.shape[0], dtype="int32")),
            "range": ("range", np.arange(plan.shape[1], dtype="int32")),
            "acquisition_start": ("time", _dt64(per_time("acquisition_start", None))),
            "acquisition_end": ("time", _dt64(per_time("acquisition_end", None))),
            "incidence_angle": (
                "time",
                np.array(per_time("incidence_angle", np.nan), dtype="float64"),
            ),
            "calibration_factor": (
                "time",
                np.array(per_time("calibration_factor", np.nan), dtype="float64"),
            ),
            "valid": ("time", np.array([s.valid for s in plan.slices], dtype=bool)),
            "metadata": ("time", np.array(list(metadata_json), dtype=object)),
            **strings,
        },
        attrs=dict(plan.attrs),
    )
    if plan.labels is not None:
        _add_labels(ds, plan, label_vectors or [[] for _ in plan.slices])
    ds["time"].attrs["comment"] = "acquisition end (UTC), or bin start with temporal_resolution > 0"
    ds["metadata"].attrs["comment"] = "full product metadata as JSON (lossless); " + GAP_STRING
    ds["incidence_angle"].attrs["units"] = "degree"
    ds["valid"].attrs["comment"] = (
        "false for gap slices: no image; their per-time coordinates hold fill values (NaT, NaN, '')"
    )
    return ds


def _add_labels(
    ds: xr.Dataset, plan: CubePlan, vectors: Sequence[Sequence[tuple[str, str]]]
) -> None:
    """The ``labels`` raster placeholder and the ``label_geometry``/``label_class`` vectors."""
    assert plan.labels is not None
    n = len(plan.slices)
    raster = da.zeros((n, *plan.shape), dtype="uint8", chunks=-1)
    attrs = {
        "long_name": "label class per pixel (0 = background)",
        **flag_attrs(plan.labels.classes),
        "comment": "times without labels hold only background",
    }
    ds["labels"] = (("time", "azimuth", "range"), raster, attrs)
    width = max((len(v) for v in vectors), default=0)
    geometry = np.full((n, width), "", dtype=object)
    classes = np.full((n, width), "", dtype=object)
    for t, pairs in enumerate(vectors):
        for k, (wkt, name) in enumerate(pairs):
            geometry[t, k], classes[t, k] = wkt, name
    ds["label_geometry"] = (
        ("time", "label"),
        geometry,
        {
            "comment": "vector labels as WKT in pixel coordinates (x = range, y = azimuth); '' = none"
        },
    )
    ds["label_class"] = (("time", "label"), classes, {"comment": "class of label_geometry"})


@portable_errors
def write_label_slice(
    target: StorageTarget,
    t: int,
    items: Sequence[Mapping[str, Any]],
    shape: tuple[int, int],
    classes: Mapping[str, int],
    storage_options: Mapping[str, Any] | None = None,
) -> int:
    """Rasterise one product's label items into ``labels[t]`` (runs on a worker; deterministic)."""
    mask = label_mask(
        [pystac.Item.from_dict(dict(d)) for d in items], shape, classes, storage_options
    )
    array = zarr.open_array(store=target.zarr_store(), path="labels", mode="r+", zarr_format=3)
    array[t] = mask
    fs, marker = target.fs, f"{target.path}/{PROGRESS_DIR}/done/labels.{t}"
    if not is_remote(target.url):
        fs.makedirs(posixpath.dirname(marker), exist_ok=True)
    fs.pipe_file(marker, b"")
    return int(mask.nbytes)


def _encoding(plan: CubePlan) -> dict[str, dict[str, Any]]:
    c = plan.compression
    enc: dict[str, dict[str, Any]] = {
        plan.variable: {
            "chunks": (1, *plan.chunks),
            "compressors": [
                zarr.codecs.BloscCodec(cname=c.cname, clevel=c.clevel, shuffle=c.shuffle)
            ],
        }
    }
    if plan.labels is not None:
        enc["labels"] = {
            "chunks": (1, *plan.chunks),
            "compressors": [zarr.codecs.BloscCodec(cname="zstd", clevel=3, shuffle="shuffle")],
        }
    return {**enc, **coord_encoding(zarr_format=3)}


def stored_compression(root: Mapping[str, Any]) -> Compression | None:
    """The Blosc codec of a cube's pixel variable, from its root document's consolidated metadata."""
    arrays = root.get("consolidated_metadata", {}).get("metadata", {})
    for name in _VARIABLE_ATTRS:
        for codec in arrays.get(name, {}).get("codecs", []):
            if codec.get("name") == "blosc":
                conf = codec.get("configuration", {})
                return Compression(
                    cname=conf["cname"], clevel=int(conf["clevel"]), shuffle=conf["shuffle"]
                )
    return None


def skeleton_documents(ds: xr.Dataset, plan: CubePlan) -> dict[str, bytes]:
    """Every object of the cube but the pixel chunks, rendered in memory.

    That is: the array documents, the coordinate chunks, and the root document with the consolidated
    metadata of every array (one batch of writes instead of one request per object and a listing).
    """
    memory: dict[str, Any] = {}  # key -> zarr Buffer
    store = zarr.storage.MemoryStore(memory)
    with warnings.catch_warnings():
        # zarr warns that consolidated metadata is not (yet) part of the v3 spec; xarray relies on it.
        warnings.simplefilter("ignore", category=UserWarning)
        ds.to_zarr(
            store,
            mode="w",
            compute=False,
            consolidated=False,
            zarr_format=3,
            encoding=_encoding(plan),
        )
        zarr.consolidate_metadata(store)
    return {key: buf.to_bytes() for key, buf in memory.items()}


def put_documents(target: StorageTarget, docs: Mapping[str, bytes]) -> None:
    """Write ``docs`` (keys relative to the cube) to ``target`` concurrently where the store allows."""
    fs = target.fs
    paths = {f"{target.path}/{key}": value for key, value in docs.items()}
    if not is_remote(target.url):
        for parent in sorted({posixpath.dirname(p) for p in paths}):
            fs.makedirs(parent, exist_ok=True)
    fs.pipe(paths)  # s3fs: one batch of concurrent PUTs


def write_skeleton(ds: xr.Dataset, plan: CubePlan, target: StorageTarget) -> bytes:
    """Write array documents and coordinates; return the root document, held back until :func:`commit`.

    Readers see no cube meanwhile: without the root ``zarr.json`` there is no group to open.
    """
    docs = skeleton_documents(ds, plan)
    root = docs.pop(ROOT_DOC)
    put_documents(target, docs)
    return root


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

The other local sources (COGs and HDF5 decoded into a band buffer) keep :data:`BAND_BYTES`."""


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


def plan_bands(plan: CubePlan) -> list[tuple[Window, ...]]:
    """The chunk windows of one image of ``plan`` grouped into bands (see :func:`chunk_bands`).

    Stacks with sources in object storage, and stacks of local legacy GRDs only, get
    :data:`WIDE_BAND_BYTES` bands spanning chunk rows; other local ones :data:`BAND_BYTES` bands of one
    chunk row.
    """
    chunk_nbytes = math.prod(plan.chunks) * np.dtype(plan.dtype).itemsize
    sources = [s.source for s in plan.slices if s.source is not None]
    remote = any(is_remote(s.href) for s in sources)
    mapped = all(s.format is ProductFormat.LEGACY_GRD and not is_remote(s.href) for s in sources)
    if remote or mapped:
        return chunk_bands(plan.windows(), chunk_nbytes, WIDE_BAND_BYTES, merge_rows=True)
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

    Returns:
        Number of uncompressed bytes written.
    """
    band = Window(
        min(w.az0 for w in windows),
        max(w.az1 for w in windows),
        min(w.rg0 for w in windows),
        max(w.rg1 for w in windows),
    )
    with cached_reader(source, storage_options) as reader:
        data = reader.read(band)
    array = cached_array(target, variable, array_token)
    if data.dtype != array.dtype:
        raise ProductError(
            source.href, f"sample type {data.dtype} differs from the cube's {array.dtype}"
        )
    ch = array.chunks[1:]
    blocks = [
        (
            (t, w.az0 // ch[0], w.rg0 // ch[1]),
            data[w.az0 - band.az0 : w.az1 - band.az0, w.rg0 - band.rg0 : w.rg1 - band.rg0],
        )
        for w in windows
    ]
    write_blocks(array, ChunkEncoder.for_array(array), blocks)
    # The progress record: written only after the chunks themselves, so "recorded" implies "written"
    # (one marker per band: one small PUT per task, not one per chunk).
    fs = target.fs
    if not is_remote(target.url):
        fs.makedirs(f"{target.path}/{PROGRESS_DIR}/done", exist_ok=True)
    fs.pipe_file(f"{target.path}/{done_key(t, windows)}", b"")
    return int(data.nbytes)


@portable_errors
def write_chunk(
    target: StorageTarget,
    variable: str,
    t: int,
    window: Window,
    source: SourceRef,
    storage_options: Mapping[str, Any] | None = None,
) -> int:
    """Read one window of one source and write it as one chunk (runs on a worker).

    Deterministic: the bytes written depend only on the arguments and the source file.

    Returns:
        Number of uncompressed bytes written.
    """
    return write_band(target, variable, t, (window,), source, storage_options)


PROGRESS_DIR = "_icecube"
"""Build bookkeeping inside the cube (ignored by Zarr readers): pending root document, progress, lease."""
PENDING_KEY = f"{PROGRESS_DIR}/pending.json"


def done_key(t: int, windows: Sequence[Window]) -> str:
    """Key of the marker recording that the chunks of ``windows`` at time ``t`` are written.

    One marker per task (a band, or one chunk for updates), named by the rectangle it covers.
    """
    first, last = windows[0], windows[-1]
    return f"{PROGRESS_DIR}/done/{t}.{first.az0}.{first.rg0}.{last.az1}.{last.rg1}"


def done_chunks(target: StorageTarget) -> set[str]:
    """Keys of the chunks recorded as written (one listing)."""
    fs, prefix = target.fs, f"{target.path}/{PROGRESS_DIR}/done"
    try:
        names = fs.ls(prefix, detail=False, refresh=True) if fs.exists(prefix) else []
    except FileNotFoundError:
        return set()
    return {f"{PROGRESS_DIR}/done/{str(n).rstrip('/').rsplit('/', 1)[-1]}" for n in names}


def save_pending(target: StorageTarget, root_doc: bytes, fingerprint: str, created: str) -> None:
    """Record an unfinished build: its held-back root document and the plan it executes."""
    body = {"fingerprint": fingerprint, "created": created, "root": json.loads(root_doc)}
    target.fs.makedirs(f"{target.path}/{PROGRESS_DIR}/done", exist_ok=True)  # local folders
    target.fs.pipe_file(f"{target.path}/{PENDING_KEY}", json.dumps(body).encode())


def load_pending(target: StorageTarget) -> dict[str, Any] | None:
    """The record of an unfinished build at ``target``, if any."""
    try:
        data: dict[str, Any] = json.loads(target.fs.cat_file(f"{target.path}/{PENDING_KEY}"))
    except FileNotFoundError:
        return None
    return data


PARTIAL_SUFFIX = ".partial"
"""zarr's ``LocalStore`` writes each object to ``<key>.<random>.partial`` and then renames it."""


def remove_partial_writes(target: StorageTarget) -> int:
    """Delete the temporary files of interrupted local writes; returns how many there were.

    A worker killed (SIGKILL, out of memory) between a chunk's write and its rename leaves the
    temporary file behind; the retried task writes the chunk again, so the file is only litter, but
    a resumed or recovered build must end with exactly the objects of an uninterrupted one. Object
    stores have no such files (a PUT is atomic). One directory walk (``os.scandir``), local cubes only.
    """
    if is_remote(target.url):
        return 0
    removed = 0
    for folder, _, names in os.walk(target.path):
        for name in names:
            if name.endswith(PARTIAL_SUFFIX):
                with contextlib.suppress(FileNotFoundError):
                    os.remove(os.path.join(folder, name))
                    removed += 1
    if removed:
        log.info("removed %d temporary files of interrupted writes from %s", removed, target.url)
    return removed


def commit(target: StorageTarget, root_doc: bytes, attrs: Mapping[str, Any]) -> None:
    """Publish the cube: write the held-back root document marked complete, drop the bookkeeping.

    The root document already holds the consolidated metadata (:func:`skeleton_documents`). Litter
    of interrupted local writes is removed first (:func:`remove_partial_writes`).
    """
    remove_partial_writes(target)
    doc = json.loads(root_doc)
    doc.setdefault("attributes", {}).update(dict(attrs))
    doc["attributes"][STATUS_ATTR] = "complete"
    target.fs.pipe_file(f"{target.path}/{ROOT_DOC}", json.dumps(doc, indent=2).encode())
    fs = target.fs
    for key in (f"{PROGRESS_DIR}/done", PENDING_KEY):
        if fs.exists(f"{target.path}/{key}"):
            fs.rm(f"{target.path}/{key}", recursive=True)
