"""Contiguous TIFFs (``read/contiguous.py``): one range request per window in object storage, a
read-only memory mapping of the window's rows locally.

The reference is GDAL (``RasterioReader``, over ``/vsis3/`` for objects) on the same file: every
window, in both orientations and both byte orders, must come back identical; other layouts must fall
back to GDAL.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import fsspec
import numpy as np
import pytest
import rasterio
import tifffile

from icecube_cloud.errors import ProductError
from icecube_cloud.model import ProductFormat, SourceRef
from icecube_cloud.read import ContiguousTiffReader, RasterioReader, Window, open_reader

SHAPE = (300, 200)
WINDOWS = [Window(0, 300, 0, 200), Window(0, 64, 0, 64), Window(256, 300, 128, 200),
           Window(17, 99, 3, 150), Window(299, 300, 199, 200)]  # fmt: skip


@pytest.fixture(scope="module")
def pixels() -> np.ndarray:
    return np.random.default_rng(1).integers(0, 60000, size=SHAPE, dtype="uint16")


def _upload(moto: Any, local: Path, name: str) -> tuple[str, dict[str, Any]]:
    bucket = moto.make_bucket("reads")
    so = dict(moto.storage_options)
    fsspec.filesystem("s3", **so).put(str(local), f"{bucket.removeprefix('s3://')}/{name}")
    return f"{bucket}/{name}", so


def _gdal_tiff(path: Path, data: np.ndarray, *, tiled: bool = False) -> Path:
    tiles = {"blockxsize": 64, "blockysize": 64} if tiled else {}
    with rasterio.open(path, "w", driver="GTiff", width=data.shape[1], height=data.shape[0],
                       count=1, dtype=data.dtype, tiled=tiled, **tiles) as ds:  # fmt: skip
        ds.write(data, 1)
    return path


def _place(moto: Any, local: Path, name: str, where: str) -> tuple[str, dict[str, Any] | None]:
    return _upload(moto, local, name) if where == "s3" else (str(local), None)


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
@pytest.mark.parametrize("where", ["s3", "local"])
@pytest.mark.parametrize("orientation", ["native", "shadows-down"])
@pytest.mark.parametrize("writer", ["gdal", "tifffile-big-endian"])
def test_same_pixels_as_gdal(tmp_path, moto_s3, pixels, orientation, writer, where):
    local = tmp_path / "img.tif"
    if writer == "gdal":
        _gdal_tiff(local, pixels)
    else:
        tifffile.imwrite(local, pixels, byteorder=">", rowsperstrip=7)
    href, so = _place(moto_s3, local, f"{writer}.tif", where)
    ours = ContiguousTiffReader.open(href, orientation=orientation, storage_options=so)
    assert ours is not None
    gdal = RasterioReader(href, orientation=orientation, storage_options=so)
    physical = SHAPE[::-1] if orientation == "shadows-down" else SHAPE
    for w in WINDOWS:
        w = Window(w.az0 * physical[0] // 300, max(1, w.az1 * physical[0] // 300),
                   w.rg0 * physical[1] // 200, max(1, w.rg1 * physical[1] // 200))  # fmt: skip
        got = ours.read(w)
        assert got.dtype == np.dtype("uint16") and got.dtype.isnative
        assert got.shape == w.shape
        np.testing.assert_array_equal(got, gdal.read(w))
        if where == "local" and writer == "gdal":  # a view of the mapped file: never written into
            assert not got.flags.writeable
    gdal.close()
    with pytest.raises(ProductError, match=r"img|outside|\.tif"):
        ours.read(Window(0, physical[0] + 1, 0, 1))


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
@pytest.mark.parametrize("where", ["s3", "local"])
def test_tiled_or_compressed_files_are_read_by_gdal(tmp_path, moto_s3, pixels, where):
    tiled = _gdal_tiff(tmp_path / "tiled.tif", pixels, tiled=True)
    deflated = tmp_path / "deflate.tif"
    tifffile.imwrite(deflated, pixels, compression="zlib", rowsperstrip=16)
    for local in (tiled, deflated):
        href, so = _place(moto_s3, local, local.name, where)
        assert ContiguousTiffReader.open(href, storage_options=so) is None
        source = SourceRef(item_id="x", href=href, format=ProductFormat.LEGACY_GRD,
                           orientation="native", shape=SHAPE)  # fmt: skip
        reader = open_reader(source, storage_options=so)
        assert isinstance(reader, RasterioReader)
        np.testing.assert_array_equal(reader.read(Window(0, 300, 0, 200)), pixels)
        reader.close()


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
def test_open_reader_picks_it_for_contiguous_grd(tmp_path, moto_s3, pixels):
    href, so = _upload(moto_s3, _gdal_tiff(tmp_path / "g.tif", pixels), "g.tif")
    source = SourceRef(item_id="x", href=href, format=ProductFormat.LEGACY_GRD,
                       orientation="native", shape=SHAPE)  # fmt: skip
    assert isinstance(open_reader(source, storage_options=so), ContiguousTiffReader)
    local = SourceRef(item_id="x", href=str(tmp_path / "g.tif"), format=ProductFormat.LEGACY_GRD,
                      orientation="native", shape=SHAPE)  # fmt: skip
    assert isinstance(open_reader(local), ContiguousTiffReader)


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
def test_local_file_truncated_after_open_is_named(tmp_path, pixels):
    path = _gdal_tiff(tmp_path / "cut.tif", pixels)
    reader = ContiguousTiffReader.open(str(path))
    assert reader is not None
    np.testing.assert_array_equal(reader.read(Window(290, 300, 0, 200)), pixels[290:])
    with open(path, "r+b") as fh:  # the last 10 rows are gone
        fh.truncate(reader.layout.offset + 290 * reader.layout.row_bytes)
    np.testing.assert_array_equal(reader.read(Window(0, 290, 0, 200)), pixels[:290])
    with pytest.raises(ProductError, match=r"cut\.tif.*truncated.*Window\(az0=280"):
        reader.read(Window(280, 300, 0, 200))


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
def test_local_readers_are_kept_only_when_they_hold_no_decoded_pixels(tmp_path, pixels):
    """A local mapped TIFF is reused across tasks; a local GDAL dataset is closed after each use."""
    from icecube_cloud.read.cache import cached_reader, clear_readers

    contiguous = _gdal_tiff(tmp_path / "strips.tif", pixels)
    tiled = _gdal_tiff(tmp_path / "tiled.tif", pixels, tiled=True)
    kept = {}
    for path in (contiguous, tiled):
        source = SourceRef(item_id="x", href=str(path), format=ProductFormat.LEGACY_GRD,
                           orientation="native", shape=SHAPE)  # fmt: skip
        with cached_reader(source) as first:
            np.testing.assert_array_equal(first.read(Window(0, 300, 0, 200)), pixels)
        with cached_reader(source) as again:
            kept[path.name] = again is first
    clear_readers()
    assert kept == {"strips.tif": True, "tiled.tif": False}
