"""Reader policy in one place: which class reads a source, which readers stay open, how wide bands are.

:func:`reader_class` is the one decision, by the source's format and where it lives:

=================  ================================  ==========================================
format             local file                        object storage
=================  ================================  ==========================================
legacy GRD TIFF    :class:`ContiguousTiffReader`     :class:`ContiguousTiffReader`
GRD COG            :class:`RasterioReader`           :class:`ContiguousTiffReader`
legacy SLC HDF5    :class:`Hdf5SlcReader`            :class:`Hdf5SlcReader`
SLC COG            :class:`SlcCogReader`             :class:`SlcCogReader`
=================  ================================  ==========================================

:class:`ContiguousTiffReader` reads a contiguous TIFF with one mapping (local) or one range request
(remote) per window, and hands any other layout to :class:`RasterioReader` once its header is read.
Local COGs are not probed (they are tiled, and GDAL reads them). Everything else follows from the
chosen class's traits (:class:`~icecube_cloud.read.protocol.ReadTraits`): the band planner
(:func:`wide_bands`, before any file is opened, so it goes by the class chosen here), and the worker
cache (:func:`may_cache`: whether a file is stamped before the open, by the chosen class; whether the
reader is kept after use, by the reader actually opened).

Callers may replace the class of any format (``readers``, e.g. ``build_cube(..., readers={...})``), as
stackstac's ``reader=`` does: the mapping travels with the band tasks, so its classes must be
importable on the workers (module-level classes of an installed or ``sys.path`` module).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from icecube_cloud.errors import BuildError
from icecube_cloud.model import ProductFormat, SourceRef
from icecube_cloud.read.contiguous import ContiguousTiffReader
from icecube_cloud.read.hdf5_reader import Hdf5SlcReader
from icecube_cloud.read.protocol import Reader, ReaderClass, ReadTraits
from icecube_cloud.read.rasterio_reader import RasterioReader
from icecube_cloud.read.slc_cog_reader import SlcCogReader
from icecube_cloud.read.warp import WarpedReader
from icecube_cloud.storage import is_remote

Readers = Mapping[ProductFormat, ReaderClass]
"""Reader classes by product format, replacing the built-in ones for those formats."""


def reader_class(source: SourceRef, readers: Readers | None = None) -> ReaderClass:
    """The class that reads ``source``: ``readers``' class for its format, else the built-in one.

    Raises:
        BuildError: No reader reads the source's format.
    """
    if readers is not None and source.format in readers:
        return readers[source.format]
    if source.grid is not None:  # a map-geometry cube: windows are on the grid
        return WarpedReader
    fmt, remote = source.format, is_remote(source.href)
    if fmt is ProductFormat.LEGACY_GRD or (fmt is ProductFormat.GRD_COG and remote):
        return ContiguousTiffReader
    if fmt is ProductFormat.GRD_COG:
        return RasterioReader
    if fmt is ProductFormat.LEGACY_SLC:
        return Hdf5SlcReader
    if fmt is ProductFormat.SLC_COG:
        return SlcCogReader
    raise BuildError(f"{source.item_id}: no reader for {fmt.value} files")


def open_reader(
    source: SourceRef,
    *,
    storage_options: Mapping[str, Any] | None = None,
    readers: Readers | None = None,
) -> Reader:
    """A reader of ``source``, opened by its :func:`reader_class`.

    Raises:
        ProductError: The file cannot be opened.
        BuildError: No reader reads the source's format.
    """
    return reader_class(source, readers).open_source(source, storage_options)


def may_cache(traits: ReadTraits, href: str) -> bool:
    """Whether a reader with ``traits`` of the file at ``href`` may stay open between tasks.

    Only local files and ``s3://`` objects: their content is stamped on every use (inode, size and
    mtime; a fresh HEAD's ETag), so a kept reader never serves a replaced file. Other stores are
    reopened for every task.
    """
    if is_remote(href):
        return href.startswith("s3://") and traits.cache_remote
    return traits.cache_local


def wide_bands(sources: Iterable[SourceRef], readers: Readers | None = None) -> bool:
    """Whether the bands of a stack of ``sources`` span whole chunk rows (the wide band cap).

    True when a source is in object storage (each read costs a round trip, whatever reads it) or
    when every source's class reads through a memory map (no band buffer; an empty stack counts as
    such). See :data:`icecube_cloud.write.bands.WIDE_BAND_BYTES` for the measurements.
    """
    sources = list(sources)
    return any(is_remote(s.href) for s in sources) or all(
        reader_class(s, readers).memory_mapped for s in sources
    )
