"""Export a cube as one netCDF4 file (the original icecube's format), streamed chunk by chunk.

The file is written by xarray's ``h5netcdf`` engine (netCDF4 = HDF5 with netCDF's conventions, through
the h5py the package already uses) and reads back with plain ``xr.open_dataset(OUT.nc)``:

- every variable, coordinate and attribute of the cube, values bit-exact; image variables (``amplitude``,
  ``slc``, ``labels``, ...) chunked one image by the cube's chunks (at most :data:`MAX_CHUNK_BYTES`)
  and compressed (zlib level :data:`COMPLEVEL`, byte shuffle); per-time coordinates keep their CF
  encoding (times with NaT in gap slices, NaN, ``''``);
- complex values (``slc`` complex64) as the compound type ``_PFNC_FLOAT_COMPLEX_TYPE`` ``{r, i}`` of
  float32 (the nc-complex convention): lossless, read back as complex64 by xarray's ``h5netcdf`` engine
  (and by ``netCDF4`` with ``auto_complex=True``); netCDF-C tools see a compound of two floats;
- attributes netCDF cannot hold (dicts such as the config, lists of strings, booleans) as JSON strings,
  their names listed in the attribute :data:`JSON_ATTRS` of the same variable or of the file;
  :func:`open_netcdf` decodes them;
- map cubes keep ``spatial_ref`` and every ``grid_mapping`` attribute (CF), so rioxarray reads the CRS.

The output is a local file and is never overwritten. It is written to a hidden temporary sibling and
appears under its name only when complete; a failure removes the temporary (only that) and leaves no
``OUT.nc``. Pixels stream through dask's threaded scheduler with HDF5's write lock: memory holds a few
chunks, whatever the number of time slices.
"""

from __future__ import annotations

import json
import logging
import os
import time
import uuid
from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import xarray as xr

from icecube_cloud.errors import DataError, IcecubeError, UsageError
from icecube_cloud.progress import Progress, Reporter, resolve_progress
from icecube_cloud.storage import is_remote, local_path, public_url

log = logging.getLogger(__name__)

COMPLEVEL = 4
"""zlib (deflate) level of the image variables.

Measured on a synthetic 4 x 2048² uint16 GRD cube (32 MiB): level 1 gave 20.8 MiB, 4 gave 20.2 MiB in
about the same time, 9 gave 19.7 MiB in 20 times that.
"""

MAX_CHUNK_BYTES = 4 * 2**20
"""Largest netCDF chunk (uncompressed): a cube chunk bigger than this is halved until it fits."""

JSON_ATTRS = "icecube_cloud_json_attrs"
"""Attribute listing (as a JSON list) the attributes of its variable or file stored as JSON strings."""

ENGINE: Literal["h5netcdf"] = "h5netcdf"
"""xarray engine that writes and reads the file."""

_STAGE = "export"
_THREADS = 4  # reading overlaps writing; writes are serialised by HDF5's lock anyway


@dataclass(frozen=True)
class ExportResult:
    """What :func:`export_cube` wrote."""

    path: str
    """The netCDF file."""
    variables: tuple[str, ...]
    """The image variables (time, rows, columns) streamed chunk by chunk."""
    chunks: int
    """netCDF chunks written for them."""
    nbytes: int
    """Uncompressed bytes of the image variables."""
    file_bytes: int
    """Size of the file."""
    seconds: float
    """Wall time of the export."""


def export_cube(
    cube: str,
    out: str | os.PathLike[str],
    *,
    storage_options: Mapping[str, Any] | None = None,
    progress: bool | Progress = False,
    complevel: int = COMPLEVEL,
) -> ExportResult:
    """Write a complete cube as one chunked, compressed netCDF4 file (see the module's notes).

    Args:
        cube: The cube (local path, ``s3://`` URL, or a virtual cube's ``.json``).
        out: The netCDF file to create: a local path that does not exist yet.
        storage_options: fsspec options to read ``cube`` (credentials, endpoint).
        progress: ``True`` for a ``tqdm`` bar, or a callback called with (``"export"``, chunks
            written, chunks in all).
        complevel: zlib level (1-9) of the image variables.

    Raises:
        UsageError: ``out`` exists, is not a local path, or its folder does not exist; bad ``complevel``.
        DataError: ``cube`` is not a complete icecube-cloud cube, or reading or writing failed.
    """
    from icecube_cloud.cube import open_cube

    start = time.monotonic()
    target = _check_out(out)
    if not 1 <= complevel <= 9:
        raise UsageError(f"complevel {complevel}: a zlib level is 1 to 9")
    ds, encoding, images = netcdf_layout(
        open_cube(cube, storage_options=storage_options), complevel
    )
    total = sum(int(np.prod(ds[name].data.numblocks)) for name in images)
    nbytes = sum(int(ds[name].nbytes) for name in images)
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:12]}.partial")
    log.info("exporting %s to %s (%d chunks) via %s", public_url(cube), target, total, tmp.name)
    try:
        _write(ds, encoding, tmp, total, resolve_progress(progress), nbytes)
        _publish(tmp, target)
    except BaseException as err:
        tmp.unlink(missing_ok=True)  # ours: a name no one else uses
        if isinstance(err, IcecubeError) or not isinstance(err, Exception):
            raise
        raise DataError(
            f"export of {public_url(cube)} to {target} failed ({type(err).__name__}: {err}); "
            f"no {target.name} was written"
        ) from err
    return ExportResult(
        path=str(target),
        variables=tuple(images),
        chunks=total,
        nbytes=nbytes,
        file_bytes=target.stat().st_size,
        seconds=time.monotonic() - start,
    )


def open_netcdf(path: str | os.PathLike[str], **kwargs: Any) -> xr.Dataset:
    """Open an exported file as the cube it came from: ``xr.open_dataset`` plus JSON attributes decoded.

    Complex variables come back as complex64 and times, strings and flags as xarray decodes them; the
    attributes listed in :data:`JSON_ATTRS` become dicts and lists again (and that list is dropped).

    Args:
        path: The netCDF file.
        **kwargs: Passed to ``xr.open_dataset`` (e.g. ``chunks={}`` for a lazy dask dataset).
    """
    ds = xr.open_dataset(path, engine=ENGINE, **kwargs)
    ds.attrs = _decode_attrs(ds.attrs)
    for var in ds.variables.values():
        var.attrs = _decode_attrs(var.attrs)
    return ds


def netcdf_layout(
    cube: xr.Dataset, complevel: int = COMPLEVEL
) -> tuple[xr.Dataset, dict[Hashable, dict[str, Any]], list[str]]:
    """The cube as xarray will write it: attributes netCDF can hold, encodings, dask chunks.

    Returns:
        The dataset (small variables loaded, image variables as dask arrays chunked as the file),
        the ``encoding`` for ``to_netcdf``, and the names of the image variables.
    """
    ds = cube.copy()
    ds.attrs = _encode_attrs(cube.attrs)
    encoding: dict[Hashable, dict[str, Any]] = {}
    images = [str(n) for n, v in ds.data_vars.items() if v.ndim == 3 and v.dims[0] == "time"]
    for name, var in ds.variables.items():
        enc = {k: var.encoding[k] for k in ("units", "calendar", "dtype") if k in var.encoding}
        # Keep the cube's own masking (NaT/NaN fills of per-time coords); add none of our own, so
        # that integer images stay integers.
        enc["_FillValue"] = var.encoding.get("_FillValue")
        if var.dtype.kind in "TUSO":
            enc.pop("dtype", None)  # variable-length strings
        var.attrs = _encode_attrs(var.attrs)
        var.encoding = {}
        encoding[name] = enc
    for name in images:
        image = ds[name]
        chunks = _nc_chunks(image)
        encoding[name].update(zlib=True, complevel=complevel, shuffle=True, chunksizes=chunks)
        ds[name] = image.chunk(dict(zip(image.dims, chunks, strict=True)))
    for name, var in ds.variables.items():
        if name not in images:
            var.load()  # per-time coordinates, label vectors: small, written at once
    return ds, encoding, images


def _nc_chunks(var: xr.DataArray) -> tuple[int, ...]:
    """One image by the cube's chunk (or the whole image), halved until at most MAX_CHUNK_BYTES."""
    cube_chunks = var.encoding.get("chunks") or var.shape
    if var.chunks is not None:
        cube_chunks = tuple(c[0] for c in var.chunks)
    rows, cols = (
        max(1, min(int(c), n)) for c, n in zip(cube_chunks[1:], var.shape[1:], strict=True)
    )
    while rows * cols * var.dtype.itemsize > MAX_CHUNK_BYTES:
        if rows >= cols:
            rows = -(-rows // 2)
        else:
            cols = -(-cols // 2)
    return (1, rows, cols)


def _write(
    ds: xr.Dataset,
    encoding: dict[Hashable, dict[str, Any]],
    tmp: Path,
    total: int,
    progress: Reporter,
    nbytes: int,
) -> None:
    """Write ``ds`` to ``tmp`` through dask's threaded scheduler, reporting stored chunks.

    The bytes reported are ``nbytes`` (the image variables') pro rata of the chunks stored.
    """
    import dask
    from dask.callbacks import Callback

    done = 0

    class _Count(Callback):  # posttask runs in the scheduler's thread (this one)
        def _posttask(self, key: Any, *args: Any) -> None:
            nonlocal done
            if isinstance(key, tuple) and str(key[0]).startswith("store-map"):
                done += 1
                progress(_STAGE, done, total, nbytes=nbytes * done // max(total, 1))

    progress(_STAGE, 0, total, nbytes=0)
    # The threaded scheduler even under a distributed client: the file is on this machine, and xarray
    # then picks a local HDF5 lock.
    with dask.config.set(scheduler="threads", num_workers=_THREADS):
        delayed = ds.to_netcdf(tmp, engine=ENGINE, encoding=encoding, compute=False)
        with _Count():  # type: ignore[no-untyped-call]
            delayed.compute()  # type: ignore[no-untyped-call]
    if done < total:  # an image variable without dask chunks (cannot happen with open_cube)
        progress(_STAGE, total, total, nbytes=nbytes)


def _publish(tmp: Path, target: Path) -> None:
    """Give ``tmp`` the name ``target`` unless that exists by now (a hard link never overwrites)."""
    try:
        os.link(tmp, target)
    except FileExistsError:
        raise _exists(target) from None
    except OSError:  # a filesystem without hard links
        if target.exists():
            raise _exists(target) from None
        os.replace(tmp, target)
        return
    tmp.unlink()


def _check_out(out: str | os.PathLike[str]) -> Path:
    text = os.fspath(out)
    if is_remote(text):
        raise UsageError(f"{public_url(text)}: export writes a local file; give a local path")
    target = Path(local_path(text))
    if target.exists() or target.is_symlink():
        raise _exists(target)
    if not target.parent.is_dir():
        raise UsageError(f"{target}: its folder {target.parent} does not exist")
    return target


def _exists(target: Path) -> UsageError:
    return UsageError(
        f"{target}: exists; export never overwrites (remove it or choose another name)"
    )


def _netcdf_value(value: Any) -> bool:
    """Whether netCDF holds ``value`` as an attribute as it is: text, a number, or numbers."""
    if isinstance(value, bool | np.bool_):
        return False
    if isinstance(value, str | int | float | np.number):
        return True
    if isinstance(value, list | tuple | np.ndarray) and len(value) > 0:
        return all(
            isinstance(v, int | float | np.number) and not isinstance(v, bool | np.bool_)
            for v in value
        )
    return False


def _encode_attrs(attrs: Mapping[Any, Any]) -> dict[Any, Any]:
    out: dict[Any, Any] = {}
    encoded: list[str] = []
    for key, value in attrs.items():
        if _netcdf_value(value):
            out[key] = value
        else:
            out[key] = json.dumps(value, default=_json_default)
            encoded.append(str(key))
    if encoded:
        out[JSON_ATTRS] = json.dumps(encoded)
    return out


def _json_default(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"attribute value {value!r} has no JSON form")


def _decode_attrs(attrs: Mapping[Any, Any]) -> dict[Any, Any]:
    names = attrs.get(JSON_ATTRS)
    if not isinstance(names, str):
        return dict(attrs)
    listed = set(json.loads(names))
    return {
        key: json.loads(value) if key in listed and isinstance(value, str) else value
        for key, value in attrs.items()
        if key != JSON_ATTRS
    }
