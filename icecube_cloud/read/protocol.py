"""The one interface every pixel reader implements.

Windows are expressed in the *physical* SAR grid (azimuth, range) of the cube; each reader maps them to
its file layout (e.g. the transposed, azimuth-reversed shadows-down COGs) so no caller ever has to.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
import numpy.typing as npt

from icecube_cloud.model import Window

__all__ = ["Reader", "Window"]


class Reader(Protocol):
    """Reads windows of one product's pixels in physical (azimuth, range) order."""

    def read(self, window: Window) -> npt.NDArray[np.generic]:
        """The pixels of ``window`` with the cube variable's dtype, shape ``window.shape``."""
        ...

    def close(self) -> None:
        """Release files and connections."""
        ...
