"""Window reads of GeoTIFF products (legacy GRD and current COGs) with rasterio.

Only the requested window is read (GDAL block reads; HTTP range requests for remote files, see
:mod:`icecube_cloud.gdal_io`), and shadows-down layouts are turned back into physical (azimuth, range)
order here.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

import numpy as np
import numpy.typing as npt
import rasterio
import rasterio.windows
from rasterio.errors import NotGeoreferencedWarning

from icecube_cloud.errors import ProductError
from icecube_cloud.gdal_io import gdal_s3_env, open_raster
from icecube_cloud.model import Orientation, Window

if TYPE_CHECKING:
    from icecube_cloud.model import SourceRef

T = TypeVar("T", bound=np.generic)


class RasterioReader:
    """Reads one band of a GeoTIFF in physical (azimuth, range) order.

    Open, read and close from one thread. An ``s3://`` file's GDAL environment (credentials, endpoint,
    retries) is entered around the open and around each read rather than held for the reader's life, so
    that several readers kept open by one thread (see :mod:`icecube_cloud.read.cache`) never interleave
    their environments.

    Args:
        href: Local path or fsspec URL of the TIFF.
        orientation: File layout (``native`` or ``shadows-down``).
        band: 1-based band index.
        storage_options: fsspec options for remote files.
    """

    memory_mapped: ClassVar[bool] = False
    """Reads decode the window into a new array."""
    cache_local: ClassVar[bool] = False
    """Never kept for local files: an open dataset pins its decoded blocks in GDAL's block cache, and
    a local open costs ~1 ms (see :mod:`icecube_cloud.read.cache`)."""
    cache_remote: ClassVar[bool] = True
    """Kept for S3 objects: an open is a HEAD and header GETs (~0.8 s); GDAL's block cache is bounded
    in processes that keep datasets open."""

    def __init__(
        self,
        href: str,
        *,
        orientation: Orientation = "native",
        band: int = 1,
        storage_options: Mapping[str, Any] | None = None,
    ) -> None:
        self.href = href
        self.orientation = orientation
        self.band = band
        self._stack = contextlib.ExitStack()
        self._env: Callable[[], contextlib.AbstractContextManager[Any]] = contextlib.nullcontext
        try:
            if href.startswith("s3://"):
                self._env = lambda: gdal_s3_env(storage_options)
                with self._env(), warnings.catch_warnings():
                    warnings.simplefilter("ignore", NotGeoreferencedWarning)
                    self._ds = self._stack.enter_context(rasterio.open("/vsis3/" + href[5:]))
            else:
                self._ds = self._stack.enter_context(open_raster(href, storage_options))
        except (rasterio.RasterioIOError, OSError, ValueError) as err:
            self._stack.close()
            raise ProductError(href, f"cannot open the TIFF: {err}") from err

    @classmethod
    def open_source(
        cls, source: SourceRef, storage_options: Mapping[str, Any] | None
    ) -> RasterioReader:
        """A reader of band 1 of ``source``."""
        return cls(
            source.href, orientation=source.orientation, band=1, storage_options=storage_options
        )

    @property
    def dataset(self) -> Any:
        """The open rasterio dataset (its georeferencing, size and dtypes; for readers built on this).

        Use it inside :meth:`env`: an ``s3://`` file needs its GDAL environment for every access.
        """
        return self._ds

    def env(self) -> contextlib.AbstractContextManager[Any]:
        """The GDAL environment this file is read in (a no-op for local files)."""
        return self._env()

    def read(self, window: Window) -> npt.NDArray[np.generic]:
        """Pixels of ``window`` (physical grid) with the file's dtype."""
        data: npt.NDArray[np.generic] = self.read_bands(window, (self.band,))[0]
        return data

    def read_bands(self, window: Window, indexes: Sequence[int]) -> npt.NDArray[np.generic]:
        """Bands ``indexes`` (1-based) of ``window`` in one read: shape ``(len(indexes), az, rg)``."""
        data = self.read_file_bands(window, indexes)
        if self.orientation == "shadows-down":
            data = np.ascontiguousarray(physical_view(data, self.orientation))
        return data

    def read_file_bands(self, window: Window, indexes: Sequence[int]) -> npt.NDArray[np.generic]:
        """Bands ``indexes`` of ``window`` in one read, in the file's layout (no copy made).

        Shape ``(len(indexes), rows, cols)`` of the file; :func:`physical_view` of it is the window in
        physical order. For readers that compute new pixels from the bands anyway (such as
        :class:`~icecube_cloud.read.slc_cog_reader.SlcCogReader`), which can then reorder tile by tile
        rather than copy the whole band once more.
        """
        if self.orientation == "shadows-down":
            # File rows are range; file columns are azimuth, last line first.
            ncols = self._ds.width
            file_win = rasterio.windows.Window.from_slices(
                (window.rg0, window.rg1), (ncols - window.az1, ncols - window.az0)
            )
            file_shape = (window.rg1 - window.rg0, window.az1 - window.az0)
        else:
            file_win = rasterio.windows.Window.from_slices(
                (window.az0, window.az1), (window.rg0, window.rg1)
            )
            file_shape = window.shape
        try:
            with self._env():
                data: npt.NDArray[np.generic] = self._ds.read(list(indexes), window=file_win)
        except (rasterio.RasterioIOError, OSError, IndexError) as err:
            raise ProductError(self.href, f"cannot read window {window}: {err}") from err
        if data.shape[1:] != file_shape:
            raise ProductError(
                self.href,
                f"window {window} is outside the image ({self._ds.height}x{self._ds.width})",
            )
        return data

    def close(self) -> None:
        """Close the dataset (and its GDAL environment)."""
        self._stack.close()


def physical_view(data: npt.NDArray[T], orientation: Orientation) -> npt.NDArray[T]:
    """A view in physical (azimuth, range) order of ``data`` laid out as a file of ``orientation``.

    The last two axes are the file's rows and columns; :func:`file_view` is the inverse.
    """
    if orientation == "shadows-down":  # file rows are range, file columns azimuth, last line first
        return data.swapaxes(-1, -2)[..., ::-1, :]
    return data


def file_view(data: npt.NDArray[T], orientation: Orientation) -> npt.NDArray[T]:
    """A view in a file's layout of ``data`` in physical order (the inverse of :func:`physical_view`)."""
    if orientation == "shadows-down":
        return data[..., ::-1, :].swapaxes(-1, -2)
    return data
