"""Recognise ICEYE product files by their content and dispatch to the flavour's reader."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import posixpath
from collections.abc import Iterator, Mapping
from typing import Any, Literal

import h5py

from icecube_cloud import gdal_io
from icecube_cloud.errors import ProductError
from icecube_cloud.model import ProductFormat
from icecube_cloud.products import cog, integrity, legacy_grd, legacy_slc
from icecube_cloud.products._common import HDF5_BLOCK, exists, open_binary, open_raster
from icecube_cloud.products.model import ProductMetadata
from icecube_cloud.storage import filesystem, is_remote, local_path

log = logging.getLogger(__name__)

Kind = Literal["hdf5", "tiff", "json"]
_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
_TIFF_MAGICS = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
_TIFF_SUFFIXES = (".tif", ".tiff")
_HDF5_SUFFIXES = (".h5", ".hdf5", ".he5")
_DATA_SUFFIXES = (*_TIFF_SUFFIXES, *_HDF5_SUFFIXES)
PRODUCT_SUFFIXES = (*_DATA_SUFFIXES, ".json")
"""Extensions of ICEYE product files (data files and COG sidecar items)."""


def named_like_product(href: str) -> bool:
    """Whether a file's name is an ICEYE product's: ``ICEYE*`` with a TIFF, HDF5 or JSON extension."""
    name = posixpath.basename(href.replace(os.sep, "/")).lower()
    return name.startswith("iceye") and name.endswith(PRODUCT_SUFFIXES)


def _head(href: str, storage_options: Mapping[str, Any] | None) -> bytes:
    with open_binary(href, storage_options) as handle:
        return handle.read(64)


def _kind(head: bytes) -> Kind | None:
    if head.startswith(_HDF5_MAGIC):
        return "hdf5"
    if head[:4] in _TIFF_MAGICS:
        return "tiff"
    if head.lstrip().startswith(b"{"):
        return "json"
    return None


def _not_a_container(href: str, head: bytes) -> str:
    """Why a file whose first bytes are neither TIFF, HDF5 nor JSON is not a product."""
    if not head:
        return "empty file (0 bytes)"
    name = href.lower()
    shown = head[:16]
    if name.endswith(_TIFF_SUFFIXES):
        return f"not a TIFF file (it starts with {shown!r})"
    if name.endswith(_HDF5_SUFFIXES):
        return f"not an HDF5 file (it starts with {shown!r})"
    if name.endswith(".json"):
        return f"not a JSON document (it starts with {shown!r})"
    return "not an ICEYE product: neither TIFF, HDF5 nor a sidecar JSON"


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
def _hdf5_source(href: str, storage_options: Mapping[str, Any] | None) -> Iterator[tuple[Any, int]]:
    """What h5py opens (a local path or an fsspec file object), and the file's size."""
    if not is_remote(href):
        path = local_path(href)
        try:
            size = os.path.getsize(path)
        except OSError as exc:
            raise ProductError(href, f"cannot open: {exc}") from exc
        yield path, size
    else:
        # h5py seeks between scattered metadata blocks: keep the blocks it has read.
        with open_binary(
            href, storage_options, block_size=HDF5_BLOCK, cache_type="blockcache"
        ) as handle:
            yield handle, integrity.file_size(handle)


def check_tiff(href: str, storage_options: Mapping[str, Any] | None = None) -> None:
    """Raise unless the TIFF at ``href`` holds every byte its header points to (reads the header).

    Raises:
        ProductError: The file is truncated, or is not a TIFF (names the file).
    """
    with open_binary(
        href, storage_options, block_size=gdal_io.HEADER_BYTES, cache_type="blockcache"
    ) as handle:
        integrity.check_tiff(href, handle)


def _read_tiff(href: str, storage_options: Mapping[str, Any] | None) -> ProductMetadata:
    check_tiff(href, storage_options)  # before GDAL, which reads a cut file without a word
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


def _read_json(
    href: str, storage_options: Mapping[str, Any] | None, require_data: bool
) -> ProductMetadata:
    item = cog.load_item(_read_text(href, storage_options), href)
    if not cog.is_iceye_item(item):
        raise ProductError(href, "not an ICEYE sidecar item (no 'grd-cog'/'slc-cog' asset)")
    key, _ = cog.data_asset(item, href)
    data_href = _join(href, str(item["assets"][key].get("href", "")))
    if exists(data_href, storage_options):
        check_tiff(data_href, storage_options)
        with open_raster(data_href, storage_options) as ds:
            return cog.read_cog(data_href, item, ds, sidecar_href=href)
    if require_data:
        raise ProductError(
            href, f"sidecar whose data asset {key!r} is missing: no file {data_href}"
        )
    return cog.read_cog(data_href, item, None, sidecar_href=href)


def read_product(
    href: str | os.PathLike[str],
    *,
    storage_options: Mapping[str, Any] | None = None,
    expected: ProductFormat | None = None,
    require_data: bool = False,
) -> ProductMetadata:
    """Read the metadata of one ICEYE product of any flavour, detected from the file's content.

    TIFF and HDF5 files are checked to hold every byte their headers point to (no pixel is read), so
    a file cut short fails here, as "truncated", and not in a later pixel read.

    Args:
        href: Local path or fsspec URL of a legacy GRD GeoTIFF, legacy SLC HDF5,
            COG, or COG sidecar.
        storage_options: fsspec options for remote URLs.
        expected: The format the catalog gives the file. A file expected to be a legacy GRD that
            carries the legacy tags is read as one directly: no content sniffing and no sidecar lookup
            (three requests fewer over S3). Anything else is detected from the content, as without it.
        require_data: A sidecar item whose COG is missing is an error (ingest); otherwise its
            metadata is read from the sidecar alone.

    Raises:
        ProductError: Unreadable, corrupt or truncated file, missing required metadata, or not an
            ICEYE product. The message names the file (and the key).
    """
    href = os.fspath(href)
    if expected is ProductFormat.LEGACY_GRD:
        with contextlib.suppress(ProductError), open_raster(href, storage_options) as ds:
            if legacy_grd.is_legacy_grd(ds) and cog.embedded_item(ds, href) is None:
                check_tiff(href, storage_options)  # a failure is reported by the full read below
                return legacy_grd.read_legacy_grd(href, ds)
    head = _head(href, storage_options)  # detection names what the file is, or why it is unreadable
    kind = _kind(head)
    if kind == "hdf5":
        with _hdf5_source(href, storage_options) as (source, size):
            return legacy_slc.read_legacy_slc(href, source, size=size)
    if kind == "tiff":
        return _read_tiff(href, storage_options)
    if kind == "json":
        return _read_json(href, storage_options, require_data)
    raise ProductError(href, _not_a_container(href, head))


def _ignore_reason(href: str, storage_options: Mapping[str, Any] | None) -> str | None:
    """Why discovery may pass over ``href`` (``None``: it may be an ICEYE product; read it).

    Cheap checks, no pixel read. A file named like a product, and a TIFF or HDF5 file that cannot be
    read or is truncated (it may be a damaged product), are never passed over: reading them names
    what is wrong.
    """
    if named_like_product(href) and not href.lower().endswith(".json"):
        return None
    if named_like_product(href):
        return _stac_document_reason(href, storage_options)
    try:
        kind = _kind(_head(href, storage_options))
    except ProductError:
        # Unreadable: a damaged product if its extension says so, otherwise nothing we know.
        return None if href.lower().endswith(_DATA_SUFFIXES) else "cannot be read"
    if kind is None:
        return "neither TIFF, HDF5 nor JSON"
    if kind == "json":
        try:
            item = json.loads(_read_text(href, storage_options))
        except (ProductError, ValueError, UnicodeDecodeError):
            return "not valid JSON"
        return None if cog.is_iceye_item(item) else "a JSON document that is not an ICEYE sidecar"
    try:
        if kind == "hdf5":
            with _hdf5_source(href, storage_options) as (source, _), h5py.File(source, "r") as h5:
                found = any(name in h5 for name in legacy_slc.MARKER_DATASETS)
            return None if found else "an HDF5 file without ICEYE datasets"
        if exists(sidecar_of(href), storage_options):
            return None
        check_tiff(href, storage_options)
        with open_raster(href, storage_options) as ds:
            found = cog.EMBEDDED_TAG in ds.tags() or legacy_grd.is_legacy_grd(ds)
        return None if found else "a TIFF without ICEYE tags, embedded item or sidecar"
    except (ProductError, OSError, ValueError, RuntimeError):
        return None  # a damaged TIFF/HDF5 may be a product: reading it says what is wrong


def _stac_document_reason(href: str, storage_options: Mapping[str, Any] | None) -> str | None:
    """Why a JSON file named like a product may be passed over: it is another STAC document.

    A static catalog's items are named after their products (``ICEYE_….json``), and a catalog may
    sit inside the folder being ingested; such items are not sidecars. Anything else named like a
    product (unreadable, not JSON, a damaged sidecar) is read, so that the reason is reported.
    """
    try:
        doc = json.loads(_read_text(href, storage_options))
    except (ProductError, ValueError, UnicodeDecodeError):
        return None
    if not isinstance(doc, dict) or cog.is_iceye_item(doc) or "stac_version" not in doc:
        return None
    return (
        f"a STAC {doc.get('type', 'document')} that is not an ICEYE sidecar (e.g. a catalog's item)"
    )


def _list_files(src: str, storage_options: Mapping[str, Any] | None) -> list[str]:
    if not is_remote(src):
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
    """The possible product files at ``src``: the file itself, or those under a folder/prefix.

    Folders are searched recursively (hidden files excepted); the result is sorted. Listed (cheap
    checks, no pixel read): a file named like a product (``ICEYE*.tif|tiff|h5|hdf5|he5|json``, unless
    a JSON one is another STAC document), a TIFF with ICEYE tags, an embedded item or a sidecar, an
    HDF5 file with ICEYE datasets, an ICEYE sidecar item, and any TIFF or HDF5 file that cannot be
    read or is truncated (it may be a damaged product: reading it says what is wrong). Anything else
    (other JSON, other TIFF/HDF5 files, text, images) is passed over (logged at INFO). A sidecar
    ``.json`` is not listed when its ``.tif`` is present: it is read with the TIFF.

    Raises:
        ProductError: ``src`` does not exist or cannot be listed.
    """
    src = os.fspath(src)
    if not is_remote(src):
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
    """The possible product files among ``files`` (sorted), skipping sidecars of present TIFFs."""
    present = set(files)
    found = []
    for href in files:
        stem, ext = posixpath.splitext(href)
        if ext.lower() == ".json" and any(stem + s in present for s in _TIFF_SUFFIXES):
            continue
        why = _ignore_reason(href, storage_options)
        if why is None:
            found.append(href)
        else:
            log.info("%s: passed over, %s", href, why)
    return found
