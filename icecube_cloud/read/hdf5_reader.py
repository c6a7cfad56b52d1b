"""Window reads of legacy ICEYE SLC HDF5 files: ``s_i + 1j*s_q`` as complex64, bit-exact.

Only the window's hyperslab of ``s_i`` and ``s_q`` is read (never a whole dataset). Remote files are
read through an fsspec file object whose block cache is sized for the window, so a chunk task fetches
a few range requests rather than the file. Legacy SLC files are in native orientation
(rows = azimuth, columns = range).
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import IO, TYPE_CHECKING, Any, ClassVar

import h5py
import numpy as np
import numpy.typing as npt

from icecube_cloud.errors import ProductError
from icecube_cloud.model import Window
from icecube_cloud.products.legacy_slc import PIXEL_DATASETS
from icecube_cloud.storage import filesystem, is_remote, local_path

if TYPE_CHECKING:
    from icecube_cloud.model import SourceRef

EXACT_IQ_DTYPES = frozenset(
    np.dtype(t) for t in ("int8", "uint8", "int16", "uint16", "float16", "float32")
)
"""I/Q sample types that float32 (the parts of complex64) represents exactly."""

MIN_BLOCK = 2**16
"""Smallest fsspec block: h5py's metadata reads (superblock, object headers) are small and scattered."""
MAX_BLOCK = 8 * 2**20
"""Largest fsspec block: a window's byte span beyond this is fetched in several requests."""
MAX_BLOCKS = 16
"""Blocks kept per file: bounds a task's memory to ``MAX_BLOCKS * MAX_BLOCK``."""
_SPAN_ITEMSIZE = 4
"""Bytes per sample assumed when sizing blocks (float32 I/Q; int16 files get 2x headroom)."""


def block_size_for(window: Window, shape: tuple[int, int]) -> int:
    """Fsspec block size that covers one dataset's byte span of ``window`` (row-major layout).

    Args:
        window: The window to read.
        shape: (azimuth, range) shape of the image (from the catalog).
    """
    rows, cols = window.shape
    span = ((rows - 1) * shape[1] + cols) * _SPAN_ITEMSIZE
    return int(min(max(span, MIN_BLOCK), MAX_BLOCK))


class Hdf5SlcReader:
    """Reads windows of a legacy SLC HDF5 file as complex64 ``s_i + 1j*s_q``.

    The file is opened at the first read, so that a remote file's block cache fits that window.

    Args:
        href: Local path or fsspec URL of the ``.h5`` file.
        shape: (azimuth, range) shape from the catalog (sizes the remote block cache).
        storage_options: fsspec options for remote files.
    """

    memory_mapped: ClassVar[bool] = False
    """Reads copy the window's hyperslabs into a new complex array."""
    cache_local: ClassVar[bool] = True
    """Kept for local files: an open HDF5 file holds no decoded pixels."""
    cache_remote: ClassVar[bool] = False
    """Never kept for remote files: the fsspec block cache (up to ``MAX_BLOCKS * MAX_BLOCK``) would
    stay alive with it."""

    def __init__(
        self,
        href: str,
        *,
        shape: tuple[int, int],
        storage_options: Mapping[str, Any] | None = None,
    ) -> None:
        self.href = href
        self.shape = shape
        self.storage_options = storage_options
        self._stack = contextlib.ExitStack()
        self._h5: h5py.File | None = None
        self._remote: Any = None

    @classmethod
    def open_source(
        cls, source: SourceRef, storage_options: Mapping[str, Any] | None
    ) -> Hdf5SlcReader:
        """A reader of ``source`` (opened at its first read)."""
        return cls(source.href, shape=source.shape, storage_options=storage_options)

    def _open(self, window: Window) -> h5py.File:
        if self._h5 is not None:
            return self._h5
        try:
            source: str | IO[bytes]
            if not is_remote(self.href):
                source = local_path(self.href)
            else:
                fs, path = filesystem(self.href, self.storage_options)
                source = self._remote = self._stack.enter_context(
                    fs.open(
                        path,
                        "rb",
                        block_size=block_size_for(window, self.shape),
                        cache_type="blockcache",
                        cache_options={"maxblocks": MAX_BLOCKS},
                    )
                )
            self._h5 = self._stack.enter_context(h5py.File(source, "r"))
        except (OSError, ValueError, RuntimeError) as err:
            self._stack.close()
            raise ProductError(self.href, f"cannot open the HDF5 file: {err}") from err
        return self._h5

    def _dataset(self, h5: h5py.File, name: str) -> h5py.Dataset:
        obj = h5.get(name)
        if not isinstance(obj, h5py.Dataset):
            raise ProductError(self.href, f"missing dataset {name!r}")
        if obj.ndim != 2:
            raise ProductError(self.href, f"dataset {name!r} is {obj.ndim}-D, expected 2-D")
        if np.dtype(obj.dtype) not in EXACT_IQ_DTYPES:
            raise ProductError(
                self.href,
                f"dataset {name!r} has sample type {obj.dtype}, which complex64 cannot hold "
                f"exactly (expected int16 or float32)",
            )
        return obj

    def read(self, window: Window) -> npt.NDArray[np.complex64]:
        """The complex64 pixels of ``window``, exactly ``s_i + 1j*s_q``."""
        h5 = self._open(window)
        s_i, s_q = (self._dataset(h5, name) for name in PIXEL_DATASETS)
        if s_i.shape != s_q.shape:
            raise ProductError(self.href, f"'s_i' {s_i.shape} and 's_q' {s_q.shape} differ")
        n_az, n_rg = s_i.shape
        if not (0 <= window.az0 < window.az1 <= n_az and 0 <= window.rg0 < window.rg1 <= n_rg):
            raise ProductError(self.href, f"window {window} is outside the image ({n_az}x{n_rg})")
        out = np.empty(window.shape, dtype=np.complex64)
        try:
            # Hyperslab reads; assigning int16/float32 to the float32 parts is exact.
            out.real = s_i[window.slices]
            out.imag = s_q[window.slices]
        except (OSError, ValueError, RuntimeError) as err:
            raise ProductError(self.href, f"cannot read window {window}: {err}") from err
        return out

    @property
    def bytes_fetched(self) -> int:
        """Bytes fetched from a remote file so far (0 for local files)."""
        cache = getattr(self._remote, "cache", None)
        return int(getattr(cache, "total_requested_bytes", 0))

    def close(self) -> None:
        """Close the HDF5 file and its remote file object."""
        self._h5 = None
        self._stack.close()
