"""A cube's arrays read straight from its Zarr store: no xarray, no dask, one handle per process.

Training reads many small windows from many processes. Going through xarray and dask per patch costs
a graph per item, and dask's thread pool does not survive ``fork`` (a ``DataLoader`` worker forked
after the parent computed anything with dask can hang). This module opens the Zarr group with zarr
itself, lazily in each process (a handle inherited through ``fork`` is dropped and reopened; zarr and
fsspec reset their event loops after a fork), and reads windows with one ``Array.__getitem__`` each.

Local cubes in the layout our builds write (regular chunks, ``/`` chunk keys, codecs ``bytes`` +
``blosc``) are read straight from their chunk files instead (:class:`ChunkFiles`): the same bytes
decoded by the same numcodecs Blosc that zarr calls, without zarr's event-loop and thread-pool round
trips per read (``benchmarks.bench_patches``, 256² patches of 1024² uint16 chunks through a 2-worker
``DataLoader``: aligned 1.1 ms of CPU per patch, 1.7 ms through zarr; unaligned 1.4 and 2.2 ms).
Anything else (sharding, other codecs, object stores) goes through zarr.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numcodecs
import numpy as np
import numpy.typing as npt
import zarr
from zarr.codecs import BloscCodec, BytesCodec, Endian
from zarr.storage import LocalStore

from icecube_cloud.errors import DataError, UsageError
from icecube_cloud.storage import StorageOptions, StorageTarget, normalise_url, public_url
from icecube_cloud.write.journal import STATUS_ATTR
from icecube_cloud.write.zarr_internals import chunk_key, codec_chain


@dataclass(frozen=True)
class CubeLayout:
    """What a sampler needs to know about a cube, read once (small coordinate arrays only)."""

    url: str
    """The cube's location (public: no credentials)."""
    variable: str
    """The pixel variable: ``amplitude`` (GRD) or ``slc`` (SLC)."""
    dims: tuple[str, str, str]
    """``(time, azimuth, range)`` or ``(time, y, x)``."""
    shape: tuple[int, int, int]
    """(time, rows, cols)."""
    chunks: tuple[int, int, int]
    """Chunk (or shard inner-chunk) shape of the pixel variable."""
    valid: npt.NDArray[np.bool_]
    """Per time: an image (True) or a gap slice (False)."""
    calibration_factor: npt.NDArray[np.float64]
    """Per time (NaN in gaps)."""
    incidence_angle: npt.NDArray[np.float64]
    """Per time, degrees (NaN in gaps)."""
    labels: str | None
    """Name of the per-pixel label variable, when the cube has one."""
    attrs: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)
    """The cube's root attributes."""

    @property
    def is_complex(self) -> bool:
        """Whether the pixels are SLC complex values."""
        return self.variable == "slc"


def _read_chunks(array: zarr.Array[Any]) -> tuple[int, int, int]:
    chunks = array.chunks
    return (int(chunks[0]), int(chunks[1]), int(chunks[2]))


def _open_group(target: StorageTarget) -> zarr.Group:
    try:
        return zarr.open_group(target.zarr_store(read_only=True), mode="r", zarr_format=3)
    except Exception as err:  # zarr raises FileNotFoundError, GroupNotFoundError, ...
        raise DataError(
            f"{public_url(target.url)}: not a cube ({type(err).__name__}: {err})"
        ) from err


def read_layout(url: str, storage_options: Mapping[str, Any] | None = None) -> CubeLayout:
    """Open a cube's group once and read its layout and per-time coordinates.

    Raises:
        DataError: Nothing complete at ``url``.
        UsageError: A virtual (kerchunk) cube, or a group that is not a cube of products.
    """
    if url.rstrip("/").endswith(".json"):
        raise UsageError(
            f"{public_url(url)}: training reads Zarr cubes; build the cube with --format zarr "
            "(a virtual cube re-reads and re-decodes its products for every patch)"
        )
    group = _open_group(StorageTarget.from_url(url, storage_options))
    attrs = dict(group.attrs)
    if attrs.get(STATUS_ATTR) != "complete":
        raise DataError(f"{public_url(url)}: the cube is incomplete (its build did not finish)")
    names = set(group.array_keys())
    variable = next((v for v in ("amplitude", "slc") if v in names), None)
    if variable is None:
        raise UsageError(f"{public_url(url)}: no `amplitude` or `slc` variable: not a cube")
    pixels = group[variable]
    assert isinstance(pixels, zarr.Array)
    dims = tuple(pixels.metadata.dimension_names or ())  # type: ignore[union-attr]
    if len(dims) != 3:
        raise UsageError(f"{public_url(url)}: `{variable}` has dims {dims}, expected three")
    t = pixels.shape[0]

    def per_time(name: str, dtype: Any, fill: Any) -> npt.NDArray[Any]:
        if name not in names:
            return np.full(t, fill, dtype=dtype)
        return np.asarray(group[name][...], dtype=dtype)  # type: ignore[index]

    return CubeLayout(
        url=public_url(normalise_url(url)),
        variable=variable,
        dims=(str(dims[0]), str(dims[1]), str(dims[2])),
        shape=(int(pixels.shape[0]), int(pixels.shape[1]), int(pixels.shape[2])),
        chunks=_read_chunks(pixels),
        valid=per_time("valid", bool, True),
        calibration_factor=per_time("calibration_factor", np.float64, np.nan),
        incidence_angle=per_time("incidence_angle", np.float64, np.nan),
        labels="labels" if "labels" in names else None,
        attrs=attrs,
    )


_BLOSC = numcodecs.Blosc()
"""Decodes any Blosc chunk (its header says how it was encoded)."""


@dataclass(frozen=True)
class ChunkFiles:
    """Windows of a local Zarr v3 array decoded straight from its chunk files (see the module doc).

    The inverse of :class:`icecube_cloud.write.chunks.ChunkEncoder`, for the same codec chain.
    """

    array: zarr.Array[Any]
    """The array (its chunk keys)."""
    folder: Path
    """The array's folder."""
    chunks: tuple[int, ...]
    """Shape of a (full) chunk: every stored chunk has it, edge chunks included (Zarr v3)."""
    dtype: np.dtype[Any]
    """Little-endian sample type of the array."""

    @classmethod
    def of(cls, array: zarr.Array[Any]) -> ChunkFiles | None:
        """The direct reader of ``array``, or ``None`` unless it is local with ``bytes`` → ``blosc``."""
        codecs = codec_chain(array)  # the outer chain: a sharded array is not read here
        if not isinstance(array.store, LocalStore) or len(codecs) != 2:
            return None
        raw, blosc = codecs
        if not isinstance(raw, BytesCodec) or not isinstance(blosc, BloscCodec):
            return None
        if raw.endian not in (None, Endian.little):
            return None
        folder = Path(array.store.root) / array.path
        dtype = np.dtype(array.dtype).newbyteorder("<")
        return cls(array, folder, tuple(int(c) for c in array.chunks), dtype)

    def read(self, window: tuple[slice, ...]) -> npt.NDArray[Any]:
        """The pixels of ``window`` (one step-1 slice per dimension; open ends allowed).

        A window over several chunks decodes them concurrently (as zarr does), in a small thread
        pool of this process.
        """
        bounds = [w.indices(n)[:2] for w, n in zip(window, self.array.shape, strict=True)]
        starts = tuple(a for a, _ in bounds)
        stops = tuple(b for _, b in bounds)
        out = np.empty([b - a for a, b in zip(starts, stops, strict=True)], dtype=self.dtype)
        spans = [
            range(a // c, (b - 1) // c + 1)
            for a, b, c in zip(starts, stops, self.chunks, strict=True)
        ]
        indices = list(itertools.product(*spans))
        if len(indices) == 1:
            self._copy_chunk(indices[0], starts, stops, out)
        else:
            for _ in _pool().map(lambda i: self._copy_chunk(i, starts, stops, out), indices):
                pass
        return out

    def _copy_chunk(
        self,
        index: tuple[int, ...],
        starts: tuple[int, ...],
        stops: tuple[int, ...],
        out: npt.NDArray[Any],
    ) -> None:
        """Decode chunk ``index`` and copy its part of the window into ``out``."""
        lo = [max(a, i * c) for a, i, c in zip(starts, index, self.chunks, strict=True)]
        hi = [min(b, (i + 1) * c) for b, i, c in zip(stops, index, self.chunks, strict=True)]
        dst = tuple(slice(x - a, y - a) for x, y, a in zip(lo, hi, starts, strict=True))
        try:
            raw = (self.folder / chunk_key(self.array, index)).read_bytes()
        except FileNotFoundError:  # a chunk never written holds the fill value
            out[dst] = self.array.fill_value
            return
        chunk = np.frombuffer(_BLOSC.decode(raw), dtype=self.dtype).reshape(self.chunks)
        src = tuple(
            slice(x - i * c, y - i * c)
            for x, y, i, c in zip(lo, hi, index, self.chunks, strict=True)
        )
        out[dst] = chunk[src]


_POOL: tuple[int, ThreadPoolExecutor] | None = None
DECODE_THREADS = 4
"""Threads decoding the chunks of one window (an unaligned patch spans up to four)."""


def _pool() -> ThreadPoolExecutor:
    """This process's decode pool (a pool inherited through ``fork`` has no threads: a new one)."""
    global _POOL
    if _POOL is None or _POOL[0] != os.getpid():
        _POOL = (
            os.getpid(),
            ThreadPoolExecutor(DECODE_THREADS, thread_name_prefix="icecube-chunks"),
        )
    return _POOL[1]


class CubeReader:
    """Windows of a cube's pixel and label arrays, opened lazily once per process.

    Picklable: only the URL and storage options travel (e.g. to ``spawn``ed workers); each process
    opens the store itself.
    """

    def __init__(
        self, url: str, variable: str, labels: str | None, storage_options: Mapping[str, Any]
    ) -> None:
        self.url = url
        self.variable = variable
        self.labels = labels
        self.storage_options = StorageOptions.of(storage_options)
        self._pid: int | None = None
        self._arrays: dict[str, zarr.Array[Any]] = {}
        self._files: dict[str, ChunkFiles | None] = {}

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_pid"], state["_arrays"], state["_files"] = None, {}, {}
        return state

    def _open(self) -> None:
        if self._pid != os.getpid():  # first use in this process (or inherited through fork)
            group = _open_group(StorageTarget.from_url(self.url, self.storage_options))
            self._arrays = {n: group[n] for n in {self.variable, self.labels} if n}  # type: ignore[misc]
            self._files = {n: ChunkFiles.of(a) for n, a in self._arrays.items()}
            self._pid = os.getpid()

    def _read(self, name: str, window: tuple[slice, ...]) -> npt.NDArray[Any]:
        self._open()
        files = self._files[name]
        if files is not None:
            return files.read(window)
        return np.asarray(self._arrays[name][window])

    def pixels(self, times: slice, rows: slice, cols: slice) -> npt.NDArray[Any]:
        """``(time, rows, cols)`` of the pixel variable (slices with a start and a stop)."""
        return self._read(self.variable, (times, rows, cols))

    def label(self, t: int, rows: slice, cols: slice) -> npt.NDArray[Any]:
        """``(rows, cols)`` of the label variable at time index ``t``."""
        if self.labels is None:
            raise UsageError(f"{self.url}: the cube has no `labels` variable")
        labels: npt.NDArray[Any] = self._read(self.labels, (slice(t, t + 1), rows, cols))[0]
        return labels
