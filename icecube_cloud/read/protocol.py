"""The one interface every pixel reader implements.

Windows are expressed in the *physical* SAR grid (azimuth, range) of the cube; each reader maps them to
its file layout (e.g. the transposed, azimuth-reversed shadows-down COGs) so no caller ever has to.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt


@dataclass(frozen=True)
class Window:
    """A rectangle of the physical grid: ``[az0, az1) x [rg0, rg1)``."""

    az0: int
    """First azimuth line."""
    az1: int
    """One past the last azimuth line."""
    rg0: int
    """First range sample."""
    rg1: int
    """One past the last range sample."""

    @property
    def shape(self) -> tuple[int, int]:
        """(azimuth, range) size of the window."""
        return (self.az1 - self.az0, self.rg1 - self.rg0)

    @property
    def slices(self) -> tuple[slice, slice]:
        """The window as (azimuth, range) slices."""
        return (slice(self.az0, self.az1), slice(self.rg0, self.rg1))


class Reader(Protocol):
    """Reads windows of one product's pixels in physical (azimuth, range) order."""

    def read(self, window: Window) -> npt.NDArray[np.generic]:
        """The pixels of ``window`` with the cube variable's dtype, shape ``window.shape``."""
        ...

    def close(self) -> None:
        """Release files and connections."""
        ...
