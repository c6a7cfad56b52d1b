"""The interfaces every pixel reader implements: the reader, and the class that opens it.

Windows are expressed in the *physical* SAR grid (azimuth, range) of the cube; each reader maps them to
its file layout (e.g. the transposed, azimuth-reversed shadows-down COGs) so no caller ever has to.

A reader class also says how its readers behave (:class:`ReadTraits`, class attributes): whether one
may stay open in a worker's cache, and whether its local reads are memory maps. The planner (band
widths) and the worker cache read these traits through :mod:`icecube_cloud.read.policy`, which alone
decides which class reads a source; tests and later features inject other classes there.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import numpy.typing as npt

from icecube_cloud.model import Window

if TYPE_CHECKING:
    from icecube_cloud.model import SourceRef

__all__ = ["ReadTraits", "Reader", "ReaderClass", "Window"]


class ReadTraits(Protocol):
    """How the readers of one class behave (class attributes of every reader class)."""

    @property
    def memory_mapped(self) -> bool:
        """Local reads return views of a memory map: no band-sized buffer is decoded.

        Bands of a stack whose sources are all read this way span whole chunk rows (fewer tasks at
        no memory cost; :func:`icecube_cloud.read.policy.wide_bands`).
        """
        ...

    @property
    def cache_local(self) -> bool:
        """A reader of a local file may stay open between a worker's tasks (it pins no decoded pixels)."""
        ...

    @property
    def cache_remote(self) -> bool:
        """A reader of an object in S3 may stay open between a worker's tasks.

        Its open costs a HEAD and header GETs; what it keeps while open must be bounded.
        """
        ...


class Reader(ReadTraits, Protocol):
    """Reads windows of one product's pixels in physical (azimuth, range) order."""

    def read(self, window: Window) -> npt.NDArray[np.generic]:
        """The pixels of ``window`` with the cube variable's dtype, shape ``window.shape``."""
        ...

    def close(self) -> None:
        """Release files and connections."""
        ...


class ReaderClass(ReadTraits, Protocol):
    """What opens the readers of one product format: a reader class itself.

    Its class attributes are the traits, its ``open_source`` classmethod opens a reader. Band tasks
    carry it to the workers, pickled by reference: a module-level class the workers can import.
    """

    def open_source(self, source: SourceRef, storage_options: Mapping[str, Any] | None) -> Reader:
        """A reader of ``source``'s pixels.

        Raises:
            ProductError: The file cannot be opened (the message names it).
        """
        ...
