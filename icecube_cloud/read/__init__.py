"""Pixel readers: one :class:`Reader` Protocol, one implementation per file format."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from icecube_cloud.errors import BuildError
from icecube_cloud.model import ProductFormat, Window
from icecube_cloud.products._common import is_local
from icecube_cloud.read.contiguous import ContiguousTiffReader
from icecube_cloud.read.hdf5_reader import Hdf5SlcReader
from icecube_cloud.read.protocol import Reader
from icecube_cloud.read.rasterio_reader import RasterioReader
from icecube_cloud.read.slc_cog_reader import SlcCogReader

if TYPE_CHECKING:
    from icecube_cloud.model import SourceRef

__all__ = [
    "ContiguousTiffReader",
    "Hdf5SlcReader",
    "RasterioReader",
    "Reader",
    "SlcCogReader",
    "Window",
    "open_reader",
]


def open_reader(source: SourceRef, *, storage_options: Mapping[str, Any] | None = None) -> Reader:
    """The reader for a planned source, chosen by its file format."""
    if source.format in (ProductFormat.LEGACY_GRD, ProductFormat.GRD_COG):
        # One range request (remote) or one mapping (local) per window where the layout allows.
        # Locally only legacy GRDs are probed: COGs are tiled, and their readers are not cached.
        if source.format is ProductFormat.LEGACY_GRD or not is_local(source.href):
            contiguous = ContiguousTiffReader.open(
                source.href, orientation=source.orientation, storage_options=storage_options
            )
            if contiguous is not None:
                return contiguous
        return RasterioReader(
            source.href, orientation=source.orientation, band=1, storage_options=storage_options
        )
    if source.format is ProductFormat.LEGACY_SLC:
        return Hdf5SlcReader(source.href, shape=source.shape, storage_options=storage_options)
    if source.format is ProductFormat.SLC_COG:
        return SlcCogReader(
            source.href, orientation=source.orientation, storage_options=storage_options
        )
    raise BuildError(f"{source.item_id}: no reader for {source.format.value} files")
