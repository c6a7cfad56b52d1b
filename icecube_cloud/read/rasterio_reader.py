"""Window reads of GeoTIFF products (legacy GRD and current COGs) with rasterio.

Only the requested window is read (GDAL block reads; range requests for remote files through an fsspec
opener), and shadows-down layouts are turned back into physical (azimuth, range) order here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt
import rasterio
import rasterio.windows

from icecube_cloud.errors import ProductError
from icecube_cloud.products.model import Orientation
from icecube_cloud.read.protocol import Window
from icecube_cloud.storage import StorageTarget, is_remote


class RasterioReader:
    """Reads one band of a GeoTIFF in physical (azimuth, range) order.

    Args:
        href: Local path or fsspec URL of the TIFF.
        orientation: File layout (``native`` or ``shadows-down``).
        band: 1-based band index.
        storage_options: fsspec options for remote files.
    """

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
        opener: Any = None
        if is_remote(href):
            opener = StorageTarget.from_url(href, storage_options).fs
        try:
            self._ds = rasterio.open(href, opener=opener) if opener else rasterio.open(href)
        except (rasterio.RasterioIOError, OSError) as err:
            raise ProductError(href, f"cannot open the TIFF: {err}") from err

    def read(self, window: Window) -> npt.NDArray[np.generic]:
        """Pixels of ``window`` (physical grid) with the file's dtype."""
        if self.orientation == "shadows-down":
            # File rows are range; file columns are azimuth, last line first.
            ncols = self._ds.width
            file_win = rasterio.windows.Window.from_slices(
                (window.rg0, window.rg1), (ncols - window.az1, ncols - window.az0)
            )
        else:
            file_win = rasterio.windows.Window.from_slices(
                (window.az0, window.az1), (window.rg0, window.rg1)
            )
        try:
            data: npt.NDArray[np.generic] = self._ds.read(self.band, window=file_win)
        except (rasterio.RasterioIOError, OSError) as err:
            raise ProductError(self.href, f"cannot read window {window}: {err}") from err
        if self.orientation == "shadows-down":
            data = np.ascontiguousarray(data.T[::-1, :])
        if data.shape != window.shape:
            raise ProductError(
                self.href,
                f"window {window} is outside the image ({self._ds.height}x{self._ds.width})",
            )
        return data

    def close(self) -> None:
        """Close the dataset."""
        self._ds.close()
