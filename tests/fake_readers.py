"""A fake reader class for builds: known pixels, and a count of the sources each process opened.

Module-level, so that band tasks pickle it by reference: the workers of the session's LocalCluster
(``dask_scheduler``) import it by name, as they were spawned with this process's ``sys.path``
(pytest puts ``tests/`` on it). Read a worker's counts with ``client.run(opened)``.
"""

from __future__ import annotations

import os
import zlib
from collections import Counter
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt

from icecube_cloud.model import SourceRef, Window

_OPENED: Counter[str] = Counter()
_READS: Counter[str] = Counter()


def fake_pixels(href: str, window: Window) -> npt.NDArray[np.uint16]:
    """What :class:`CountingReader` returns for ``window`` of ``href``: a ramp seeded by the file name."""
    seed = zlib.crc32(os.path.basename(href).encode()) % 1000
    az, rg = np.mgrid[window.az0 : window.az1, window.rg0 : window.rg1]
    return ((az * 7 + rg * 3 + seed) % 65521).astype(np.uint16)


class CountingReader:
    """Reads :func:`fake_pixels` of any source; counts opens and reads per source in this process."""

    memory_mapped: ClassVar[bool] = False
    cache_local: ClassVar[bool] = True
    cache_remote: ClassVar[bool] = True

    def __init__(self, href: str) -> None:
        self.href = href

    @classmethod
    def open_source(
        cls, source: SourceRef, storage_options: Mapping[str, Any] | None
    ) -> CountingReader:
        _OPENED[source.href] += 1
        return cls(source.href)

    def read(self, window: Window) -> npt.NDArray[np.uint16]:
        _READS[self.href] += 1
        return fake_pixels(self.href, window)

    def close(self) -> None:
        pass


class MappedCountingReader(CountingReader):
    """:class:`CountingReader` that says its local reads are memory maps (wide bands)."""

    memory_mapped: ClassVar[bool] = True


def opened() -> dict[str, tuple[int, int]]:
    """``{href: (opens, reads)}`` of this process (run it on the workers with ``client.run``)."""
    return {href: (n, _READS[href]) for href, n in _OPENED.items()}
