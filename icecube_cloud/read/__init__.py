"""Pixel readers: one :class:`Reader` Protocol, one implementation per file format.

Which class reads a source, which readers a worker keeps open and how wide a stack's bands are is
decided in :mod:`icecube_cloud.read.policy` alone.
"""

from __future__ import annotations

from icecube_cloud.model import Window
from icecube_cloud.read.contiguous import ContiguousTiffReader
from icecube_cloud.read.hdf5_reader import Hdf5SlcReader
from icecube_cloud.read.policy import Readers, open_reader, reader_class
from icecube_cloud.read.protocol import Reader, ReaderClass, ReadTraits
from icecube_cloud.read.rasterio_reader import RasterioReader
from icecube_cloud.read.slc_cog_reader import SlcCogReader

__all__ = [
    "ContiguousTiffReader",
    "Hdf5SlcReader",
    "RasterioReader",
    "ReadTraits",
    "Reader",
    "ReaderClass",
    "Readers",
    "SlcCogReader",
    "Window",
    "open_reader",
    "reader_class",
]
