"""Open a virtual (kerchunk-referenced) cube into the same layout as a materialised one.

The references keep the products' file order; this applies what the cube contract needs lazily:
shadows-down COGs are transposed and flipped back to (time, azimuth, range), legacy SLC ``s_i``/``s_q``
become ``slc`` complex64. Before anything is read, every referenced file's size (and ETag, when the
store reports one) is compared with what it was when referenced: a changed product is an error naming
the file, never garbage pixels.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import dask.array as da
import fsspec
import numpy as np
import numpy.typing as npt
import xarray as xr
import zarr.storage
from fsspec.implementations.reference import ReferenceFileSystem

from icecube_cloud.errors import DataError
from icecube_cloud.storage import StorageOptions, is_parquet_url, is_remote, local_path

VIRTUAL_ATTR = "icecube_cloud_virtual"
"""Root attribute describing the lazy transformations :func:`open_references` applies."""
SOURCES_ATTR = "icecube_cloud_sources"
"""Root attribute listing every referenced file with its size (and ETag) when referenced."""


def _load_refs(url: str, storage_options: Mapping[str, Any] | None) -> tuple[Any, dict[str, Any]]:
    """The references to hand to fsspec (a document, or a Parquet store's path) and the root attrs."""
    path = url if is_remote(url) else local_path(url)
    parquet = is_parquet_url(url)
    try:
        with fsspec.open(
            f"{path.rstrip('/')}/.zmetadata" if parquet else path,
            "rb",
            **dict(storage_options or {}),
        ) as f:
            doc: dict[str, Any] = json.load(f)
    except (OSError, ValueError) as err:
        raise DataError(f"{url}: not a reference cube ({type(err).__name__}: {err})") from err
    if parquet:  # fsspec's LazyReferenceMapper: {"metadata": {key: parsed JSON}, "record_size": n}
        root = doc.get("metadata", {}).get(".zattrs") if isinstance(doc, dict) else None
        if not isinstance(root, dict):
            raise DataError(
                f"{url}: not a complete kerchunk Parquet reference store (no root .zattrs)"
            )
        return path, root
    if not isinstance(doc.get("refs"), dict):
        raise DataError(f"{url}: not a kerchunk reference document (no 'refs')")
    return doc, json.loads(doc["refs"].get(".zattrs", "{}"))


def _remote_protocol(sources: list[dict[str, Any]]) -> str | None:
    protocols = {s["url"].split("://")[0] for s in sources if "://" in s["url"]}
    return protocols.pop() if len(protocols) == 1 else None


def check_sources(sources: list[dict[str, Any]], storage_options: Mapping[str, Any] | None) -> None:
    """Raise if a referenced file changed (size or ETag) since the references were made.

    Raises:
        DataError: Names the first file that is missing or changed.
    """
    for src in sources:
        url = src["url"]
        try:
            fs, path = fsspec.core.url_to_fs(url, **dict(storage_options or {}))
            fs.invalidate_cache(path)  # a cached listing would hide the change
            info = fs.info(path)
        except (OSError, ValueError) as err:
            raise DataError(f"{url}: referenced product is unreadable ({err})") from err
        if int(info["size"]) != int(src["size"]):
            raise DataError(
                f"{url}: referenced product changed since the cube was built "
                f"(size {info['size']} bytes, was {src['size']}); rebuild the cube"
            )
        etag = info.get("ETag") or info.get("etag")
        if src.get("etag") and etag and str(etag).strip('"') != src["etag"]:
            raise DataError(
                f"{url}: referenced product changed since the cube was built "
                f"(ETag {etag}, was {src['etag']}); rebuild the cube"
            )


def _iq(i: npt.NDArray[Any], q: npt.NDArray[Any]) -> npt.NDArray[np.complex64]:
    out = np.empty(i.shape, dtype=np.complex64)
    out.real = i
    out.imag = q
    return out


def apply_virtual(ds: xr.Dataset, spec: Mapping[str, Any]) -> xr.Dataset:
    """Turn a raw (file-order) reference dataset into the cube layout, lazily."""
    if spec.get("orientation") == "shadows-down":
        ds = ds.transpose("time", "azimuth", "range").isel(azimuth=slice(None, None, -1))
    if spec.get("combine") == "s_i + 1j*s_q":
        i, q = ds["s_i"], ds["s_q"]
        data = da.map_blocks(_iq, i.data, q.data, dtype=np.complex64)  # type: ignore[no-untyped-call]
        slc = xr.Variable(i.dims, data, dict(spec.get("attrs", {})))
        ds = ds.drop_vars(["s_i", "s_q"]).assign({str(spec["variable"]): slc})
    return ds


def open_references(
    url: str, *, storage_options: Mapping[str, Any] | None = None, verify: bool = True
) -> xr.Dataset:
    """Open a reference cube lazily in the cube layout (see module docstring).

    Args:
        url: Local path or fsspec URL of the reference JSON (``*.json``) or Parquet store
            (``*.parq``, kerchunk's format: one folder, references loaded per 100,000 chunks).
        storage_options: fsspec options for the reference file and the referenced products.
        verify: Check every referenced file's size (one metadata request per product).

    Raises:
        DataError: Not a reference cube, or a referenced product changed.
    """
    opts = dict(StorageOptions.of(storage_options))
    refs, root = _load_refs(url, opts)
    sources = list(root.get(SOURCES_ATTR, []))
    if verify:
        check_sources(sources, opts)
    protocol = _remote_protocol(sources)
    fs = ReferenceFileSystem(
        refs,
        target_options=opts if is_parquet_url(url) else None,  # reads the .parq files
        remote_protocol=protocol,
        remote_options={**opts, "asynchronous": True} if protocol else None,
        asynchronous=True,
    )
    store = zarr.storage.FsspecStore(fs, read_only=True, path="")
    try:
        ds = xr.open_zarr(store, consolidated=True, zarr_format=2)
    except Exception as err:  # zarr raises its own errors for broken metadata
        raise DataError(
            f"{url}: not a complete reference cube ({type(err).__name__}: {err})"
        ) from err
    return apply_virtual(ds, root.get(VIRTUAL_ATTR, {}))
