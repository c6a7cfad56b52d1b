"""Recognise ICEYE product files by their content and dispatch to the flavour's reader."""

from __future__ import annotations

import contextlib
import json
import os
import posixpath
from collections.abc import Iterator, Mapping
from typing import Any, Literal

import h5py

from icecube_cloud.errors import ProductError
from icecube_cloud.products import cog, legacy_grd, legacy_slc
from icecube_cloud.products._common import (
    HDF5_BLOCK,
    exists,
    filesystem,
    is_local,
    local_path,
    open_binary,
    open_raster,
)
from icecube_cloud.products.model import ProductFormat, ProductMetadata

Kind = Literal["hdf5", "tiff", "json"]
_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
_TIFF_MAGICS = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")


def sniff(href: str, storage_options: Mapping[str, Any] | None = None) -> Kind | None:
    """The container kind of a file from its first bytes (``None``: not a product container)."""
    with open_binary(href, storage_options) as handle:
        head = handle.read(64)
    if head.startswith(_HDF5_MAGIC):
        return "hdf5"
    if head[:4] in _TIFF_MAGICS:
        return "tiff"
    if head.lstrip().startswith(b"{"):
        return "json"
    return None


def sidecar_of(tif_href: str) -> str:
    """The sidecar JSON href ICEYE writes next to a COG (same stem, ``.json``)."""
    return posixpath.splitext(tif_href)[0] + ".json"


def _join(base_href: str, relative: str) -> str:
    """Resolve an asset href against the item's own href."""
    if "://" in relative or relative.startswith("/"):
        return relative
    joined = posixpath.join(posixpath.dirname(base_href), relative)
    return joined if "://" in joined else posixpath.normpath(joined)


def _read_text(href: str, storage_options: Mapping[str, Any] | None) -> bytes:
    with open_binary(href, storage_options) as handle:
        return handle.read()


@contextlib.contextmanager
def _hdf5_source(href: str, storage_options: Mapping[str, Any] | None) -> Iterator[Any]:
    if is_local(href):
        yield local_path(href)
    else:
        # h5py seeks between scattered metadata blocks: keep the blocks it has read.
        with open_binary(
            href, storage_options, block_size=HDF5_BLOCK, cache_type="blockcache"
        ) as handle:
            yield handle


def _read_tiff(href: str, storage_options: Mapping[str, Any] | None) -> ProductMetadata:
    with open_raster(href, storage_options) as ds:
        sidecar = sidecar_of(href)
        if exists(sidecar, storage_options):
            item = cog.load_item(_read_text(sidecar, storage_options), sidecar)
            return cog.read_cog(href, item, ds, sidecar_href=sidecar)
        embedded = cog.embedded_item(ds, href)
        if embedded is not None:
            return cog.read_cog(href, embedded, ds)
        if legacy_grd.is_legacy_grd(ds):
            return legacy_grd.read_legacy_grd(href, ds)
    raise ProductError(href, "not an ICEYE product: no ICEYE tags, embedded item or sidecar")


def _read_json(href: str, storage_options: Mapping[str, Any] | None) -> ProductMetadata:
    item = cog.load_item(_read_text(href, storage_options), href)
    if not cog.is_iceye_item(item):
        raise ProductError(href, "not an ICEYE sidecar item (no 'grd-cog'/'slc-cog' asset)")
    key, _ = cog.data_asset(item, href)
    data_href = _join(href, str(item["assets"][key].get("href", "")))
    if exists(data_href, storage_options):
        with open_raster(data_href, storage_options) as ds:
            return cog.read_cog(data_href, item, ds, sidecar_href=href)
    return cog.read_cog(data_href, item, None, sidecar_href=href)


def read_product(
    href: str | os.PathLike[str],
    *,
    storage_options: Mapping[str, Any] | None = None,
    expected: ProductFormat | None = None,
) -> ProductMetadata:
    """Read the metadata of one ICEYE product of any flavour, detected from the file's content.

    Args:
        href: Local path or fsspec URL of a legacy GRD GeoTIFF, legacy SLC HDF5,
            COG, or COG sidecar.
        storage_options: fsspec options for remote URLs.
        expected: The format the catalog gives the file. A file expected to be a legacy GRD that
            carries the legacy tags is read as one directly: no content sniffing and no sidecar lookup
            (three requests fewer over S3). Anything else is detected from the content, as without it.

    Raises:
        ProductError: Unreadable, corrupt or truncated file, missing required metadata, or not an
            ICEYE product. The message names the file (and the key).
    """
    href = os.fspath(href)
    if expected is ProductFormat.LEGACY_GRD:
        with contextlib.suppress(ProductError), open_raster(href, storage_options) as ds:
            if legacy_grd.is_legacy_grd(ds) and cog.embedded_item(ds, href) is None:
                return legacy_grd.read_legacy_grd(href, ds)
    kind = sniff(href, storage_options)  # detection names what the file is, or why it is unreadable
    if kind == "hdf5":
        with _hdf5_source(href, storage_options) as source:
            return legacy_slc.read_legacy_slc(href, source)
    if kind == "tiff":
        return _read_tiff(href, storage_options)
    if kind == "json":
        return _read_json(href, storage_options)
    raise ProductError(href, "not an ICEYE product: neither TIFF, HDF5 nor a sidecar JSON")


def is_product(
    href: str, storage_options: Mapping[str, Any] | None = None, *, strict: bool = False
) -> bool:
    """Whether ``href`` looks like an ICEYE product file (cheap checks, no full read).

    Args:
        href: File to check.
        storage_options: fsspec options for remote files.
        strict: Raise :class:`ProductError` for a TIFF or HDF5 file that cannot be read (a corrupt
            product must not be skipped silently); otherwise such files count as non-products.
    """
    kind: str | None = None
    try:
        kind = sniff(href, storage_options)
        if kind == "hdf5":
            with _hdf5_source(href, storage_options) as source, h5py.File(source, "r") as h5:
                return "s_i" in h5 and "s_q" in h5
        if kind == "tiff":
            if exists(sidecar_of(href), storage_options):
                return True
            with open_raster(href, storage_options) as ds:
                return cog.EMBEDDED_TAG in ds.tags() or legacy_grd.is_legacy_grd(ds)
        if kind == "json":
            return cog.is_iceye_item(json.loads(_read_text(href, storage_options)))
    except (ProductError, OSError, ValueError) as err:
        if strict and kind in ("hdf5", "tiff"):
            if isinstance(err, ProductError):
                raise
            raise ProductError(href, f"looks like a {kind} file but cannot be read: {err}") from err
        return False
    return False


def _list_files(src: str, storage_options: Mapping[str, Any] | None) -> list[str]:
    if is_local(src):
        root = local_path(src)
        return [
            os.path.join(folder, name)
            for folder, _, names in os.walk(root)
            for name in names
            if not name.startswith(".")
        ]
    fs, path = filesystem(src, storage_options)
    protocol = src.split("://", 1)[0]
    return [f"{protocol}://{p}" for p in fs.find(path)]


def find_products(
    src: str | os.PathLike[str], *, storage_options: Mapping[str, Any] | None = None
) -> list[str]:
    """The product files at ``src``: the file itself, or every product under a folder/prefix.

    Folders are searched recursively; the result is sorted. A sidecar ``.json`` is skipped when its
    ``.tif`` is present (the TIFF is the product); readable files that are not ICEYE products are
    skipped, but a TIFF or HDF5 file that cannot be read is an error (never skipped silently).
    """
    src = os.fspath(src)
    if is_local(src):
        if os.path.isfile(local_path(src)):
            return [src]
        if not os.path.isdir(local_path(src)):
            raise ProductError(src, "no such file or folder")
    else:
        fs, path = filesystem(src, storage_options)
        fs.invalidate_cache(path)  # a long-lived process must see objects deleted since
        try:
            if fs.isfile(path):
                return [src]
            files = sorted(_list_files(src, storage_options))
        except OSError as err:  # missing bucket, forbidden, wrong credentials, unreachable
            raise ProductError(src, f"cannot list: {type(err).__name__}: {err}") from err
        if not files:
            raise ProductError(src, "no such object or prefix")
        return _products_among(files, storage_options)
    return _products_among(sorted(_list_files(src, storage_options)), storage_options)


def _products_among(files: list[str], storage_options: Mapping[str, Any] | None) -> list[str]:
    """The product files among ``files`` (sorted), skipping sidecars of present TIFFs."""
    present = set(files)
    found = []
    for href in files:
        if href.lower().endswith(".json") and posixpath.splitext(href)[0] + ".tif" in present:
            continue
        if is_product(href, storage_options, strict=True):
            found.append(href)
    return found
