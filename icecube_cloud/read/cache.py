"""Per-worker caches: open readers and opened Zarr arrays, reused across the tasks of one process.

Opening a source costs a GDAL/HDF5 open (0.9 ms locally, ~0.8 s over S3: a HEAD and header GETs) and
opening the cube's array one metadata read (~0.3 s over S3); a build runs many tasks per source in the
same worker process, so both are kept:

* **Readers** live in a small LRU *per thread* (a reader is opened, read and closed by one thread, as
  GDAL wants), keyed by href, format, orientation, shape, storage options and reader class. Each use
  first stamps the file (local: ``stat`` inode, size, mtime; S3: a fresh HEAD's ETag, size and date)
  and reopens it when the stamp changed, so a cached reader never serves a file replaced since it was
  opened. Which readers are kept is the reader classes' own answer
  (:func:`icecube_cloud.read.policy.may_cache`): every TIFF reader on S3 (GDAL, or one-request reads
  of contiguous TIFFs; an open there is a HEAD and header GETs), and local readers that hold no
  decoded pixels: memory-mapped contiguous TIFFs and HDF5 files. Not kept: local GDAL rasters (an
  open dataset pins its decoded blocks in GDAL's cache, see below), remote HDF5 files (their fsspec
  block cache would stay alive with them) and other remote stores (not stamped).
* **Arrays** live in a small process-wide LRU keyed by target URL, variable, storage options and a
  caller's token naming the array's metadata (the plan fingerprint): a cube rewritten with other
  metadata at the same URL gets another key. A ``zarr.Array`` writes disjoint chunks from several
  threads safely.

GDAL keeps decoded blocks of open datasets in its process-wide block cache (5 % of RAM by default),
which closing a dataset empties; in a process that keeps S3 datasets open, that cache is bounded to
:data:`GDAL_BLOCK_CACHE` (large enough for a block row of a wide tiled band, which GDAL's window reads
revisit line by line), so worker memory stays bounded.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections import OrderedDict
from collections.abc import Hashable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

import zarr
from dask.base import tokenize
from rasterio.env import get_gdal_config, set_gdal_config

from icecube_cloud.read.policy import Readers, may_cache, reader_class
from icecube_cloud.read.protocol import Reader
from icecube_cloud.storage import filesystem, is_remote, local_path

if TYPE_CHECKING:
    from icecube_cloud.model import SourceRef
    from icecube_cloud.storage import StorageTarget

MAX_READERS = 8
"""Open readers kept per worker thread."""
MAX_ARRAYS = 4
"""Opened Zarr arrays kept per worker process."""
GDAL_BLOCK_CACHE = 64 * 2**20
"""Upper bound set on GDAL's block cache in processes that keep datasets open (bytes)."""

_local = threading.local()
_arrays: OrderedDict[Hashable, zarr.Array[Any]] = OrderedDict()
_arrays_lock = threading.Lock()
_gdal_once = threading.Lock()
_gdal_bounded = False


def _readers() -> OrderedDict[Hashable, tuple[Hashable, Reader]]:
    cache: OrderedDict[Hashable, tuple[Hashable, Reader]] | None = getattr(_local, "readers", None)
    if cache is None:
        cache = _local.readers = OrderedDict()
    return cache


def _bound_gdal_cache() -> None:
    global _gdal_bounded
    if _gdal_bounded:
        return
    with _gdal_once:
        if not _gdal_bounded:
            current = get_gdal_config("GDAL_CACHEMAX")
            if not isinstance(current, int) or current > GDAL_BLOCK_CACHE:
                set_gdal_config("GDAL_CACHEMAX", GDAL_BLOCK_CACHE)
            _gdal_bounded = True


def file_stamp(
    source: SourceRef,
    storage_options: Mapping[str, Any] | None,
    readers: Readers | None = None,
) -> Hashable | None:
    """What identifies the current content of ``source``'s file; ``None`` when it is not stamped.

    Only files whose reader may be kept are stamped (:func:`~icecube_cloud.read.policy.may_cache` of
    the class that reads them).
    """
    href = source.href
    if not may_cache(reader_class(source, readers), href):
        return None
    if not is_remote(href):
        st = os.stat(local_path(href))
        return ("local", st.st_ino, st.st_size, st.st_mtime_ns)
    fs, path = filesystem(href, storage_options)
    info = fs.info(path, refresh=True)  # a fresh HEAD, never s3fs's listing cache
    return ("s3", info.get("ETag"), info.get("size"), str(info.get("LastModified")))


def _close_quietly(reader: Reader) -> None:
    with contextlib.suppress(Exception):
        reader.close()


@contextlib.contextmanager
def cached_reader(
    source: SourceRef,
    storage_options: Mapping[str, Any] | None = None,
    readers: Readers | None = None,
) -> Iterator[Reader]:
    """A reader of ``source``: this thread's cached one if its file is unchanged, else a new one.

    The reader's class is :func:`~icecube_cloud.read.policy.reader_class` (``readers`` replace the
    built-in classes of their formats). A reader whose use raised is closed and dropped (it may hold
    a broken handle); one whose class says it may not stay open is closed after use.
    """
    cls = reader_class(source, readers)
    try:
        stamp = file_stamp(source, storage_options, readers)
    except FileNotFoundError:
        stamp = None  # let the reader report the missing file as usual
    if stamp is None:
        reader = cls.open_source(source, storage_options)
        try:
            yield reader
        finally:
            reader.close()
        return
    _bound_gdal_cache()
    cache = _readers()
    key = (
        source.href,
        source.format,
        source.orientation,
        source.shape,
        tokenize(dict(storage_options or {})),
        cls,
    )
    entry = cache.pop(key, None)
    if entry is not None and entry[0] != stamp:
        _close_quietly(entry[1])  # the file changed since it was opened
        entry = None
    reader = entry[1] if entry is not None else cls.open_source(source, storage_options)
    try:
        yield reader
    except BaseException:
        _close_quietly(reader)
        raise
    if not may_cache(reader, source.href):  # e.g. a TIFF of another layout, read by GDAL
        reader.close()
        return
    cache[key] = (stamp, reader)
    while len(cache) > MAX_READERS:
        _close_quietly(cache.popitem(last=False)[1][1])


def clear_readers() -> None:
    """Close this thread's cached readers."""
    cache = _readers()
    while cache:
        _close_quietly(cache.popitem()[1][1])


def cached_array(target: StorageTarget, variable: str, token: str | None) -> zarr.Array[Any]:
    """The Zarr array ``variable`` of the cube at ``target``, opened for writing.

    Args:
        target: The cube.
        variable: Array path inside the cube.
        token: Names the array's metadata (e.g. the plan fingerprint); ``None`` opens it afresh.
    """

    def open_array() -> zarr.Array[Any]:
        return zarr.open_array(store=target.zarr_store(), path=variable, mode="r+", zarr_format=3)

    if token is None:
        return open_array()
    key = (target.url, variable, tokenize(dict(target.storage_options)), token)
    with _arrays_lock:
        array = _arrays.get(key)
        if array is not None:
            _arrays.move_to_end(key)
            return array
    array = open_array()
    with _arrays_lock:
        _arrays[key] = array
        while len(_arrays) > MAX_ARRAYS:
            _arrays.popitem(last=False)
    return array
