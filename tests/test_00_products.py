"""Layer 00: reading ICEYE products (the ICEYE samples are the independent truth)."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime
from pathlib import Path

import h5py
import numpy as np
import pytest
import rasterio
from helpers import (
    assert_clean_metadata,
    assert_same_as_hdf5,
    cut,
    header_first,
    write_good_and_broken,
)

from icecube_cloud.errors import ProductError
from icecube_cloud.products import ProductFormat, find_products, read_product
from icecube_cloud.products._parse import parse_numpy_array, parse_tag_value
from icecube_cloud.synthetic import SyntheticSpec, write_cog, write_legacy_grd, write_legacy_slc

# Inside the ``samples`` fixture's folder (ICEYE's samples, ``../shared/iceye-samples``).
GRD0 = "grd_stack/ICEYE_GRD_54549_20210427T215124_hollow_10x10pixels_fake_0.tif"
SLC0 = "slc_stack/ICEYE_SLC_54549_20210427T215124_hollow_20x20pixels_fake_0.h5"
OPEN_GRD = "opendata/ICEYE_6Q31WW_20251110T182058Z_7010715_X56_SLEDF_crop_GRD.json"
OPEN_SLC = "opendata/ICEYE_6Q31WW_20251110T182058Z_7010715_X56_SLEDF_crop_SLC.json"


# --- parsing of numpy-printed strings ------------------------------------------------------------


def test_parse_numpy_prints() -> None:
    assert parse_tag_value("[ 1.17480000e+04  1.00000000e+00  3.74264571e+01 -6.21675354e+00]") == (
        [11748.0, 1.0, 37.4264571, -6.21675354],
        False,
    )
    assert parse_numpy_array("[[-2259.75  0.]\n [ -1743.7  0.]]")[0] == [
        [-2259.75, 0.0],
        [-1743.7, 0.0],
    ]
    assert parse_numpy_array("['2021-04-27T21:51:27.093640' '2021-04-27T21:51:27.178412'\n '2']")[
        0
    ] == [
        "2021-04-27T21:51:27.093640",
        "2021-04-27T21:51:27.178412",
        "2",
    ]
    assert parse_tag_value("('ICEYE-XY',)") == (["ICEYE-XY"], False)
    assert parse_tag_value("{'library_version': '0.1.0', 'processing': {}}")[0] == {
        "library_version": "0.1.0",
        "processing": {},
    }
    assert parse_tag_value("[1. 2. 3. ... 8. 9. 10.]") == ([1.0, 2.0, 3.0, 8.0, 9.0, 10.0], True)
    assert parse_tag_value("[nan 1.]") == ([None, 1.0], False)
    assert parse_tag_value("9915") == (9915, False)
    assert parse_tag_value("2021-04-28T21:51:30.025535") == ("2021-04-28T21:51:30.025535", False)
    assert parse_tag_value("[unbalanced") == ("[unbalanced", False)
    assert parse_tag_value("__import__('os')") == ("__import__('os')", False)


# --- the ICEYE samples ---------------------------------------------------------------------------


def test_legacy_grd_sample(samples: Path) -> None:
    meta = read_product(samples / GRD0)
    assert meta.format is ProductFormat.LEGACY_GRD
    assert meta.product_id == Path(GRD0).stem
    assert meta.acquisition_end == datetime(2021, 4, 28, 21, 51, 30, 25535, tzinfo=UTC)
    assert meta.acquisition_start == datetime(2021, 4, 27, 21, 51, 24, 929476, tzinfo=UTC)
    assert meta.incidence_angle == 30.5
    assert meta.orbit_state == "ascending"
    assert meta.observation_direction == "right"
    assert meta.platform == "ICEYE-XY"
    assert meta.instrument_mode == "spotlight"
    assert meta.polarizations == ("VV",)
    assert meta.center_frequency_ghz == pytest.approx(9.65)
    assert meta.shape == meta.file_shape == (10, 10)
    assert meta.dtype == "uint16"
    assert len(meta.gcps) == 810
    assert meta.rpc is not None and len(meta.rpc["line_num_coeff"]) == 20
    assert meta.footprint[0] == meta.footprint[-1] == (-6.2818332, 37.41700285)
    assert meta.footprint[1] == (-6.21675354, 37.4264571)
    assert meta.absolute_orbit == 9915
    assert meta.pixel_spacing_range == 0.5 and meta.looks_azimuth == 3
    assert meta.calibration_factor == pytest.approx(3.939204325311276e-08)
    assert meta.processing_software == {"ICEYE processor": "ICEYE_P_1.31"}
    assert meta.metadata["satellite_name"] == ["ICEYE-XY"]
    assert len(meta.metadata["posx"]) == 81
    assert len(meta.metadata["dc_estimate_coeffs"]) == 10
    assert meta.metadata["coord_first_far"] == [11748.0, 1.0, 37.4264571, -6.21675354]
    assert_clean_metadata(meta.metadata)


def test_legacy_grd_sample_metadata_keeps_every_gcp(samples: Path) -> None:
    """A cube's metadata alone geolocates its pixels: all GCPs (row, col, lon, lat, height)."""
    meta = read_product(samples / GRD0)
    stored = json.loads(json.dumps(dict(meta.metadata)))["gcps"]
    with rasterio.open(samples / GRD0) as src:
        gcps, crs = src.gcps
        rpcs = src.rpcs.to_dict()
    assert len(gcps) == 810 and len(stored["points"]) == 810
    assert stored["crs"] == crs.to_string() == "EPSG:4326"
    assert stored["columns"] == ["row", "col", "lon", "lat", "height"]
    assert stored["points"] == [[g.row, g.col, g.x, g.y, g.z] for g in gcps]
    assert "ids" not in stored and "info" not in stored  # ids are "1".."810", infos empty
    assert stored["points"][-1] == [10778.000000000011, 11747.0, gcps[-1].x, gcps[-1].y, gcps[-1].z]
    assert meta.metadata["rpc"] == rpcs


def test_legacy_grd_samples_differ_where_documented(samples: Path) -> None:
    metas = [read_product(p) for p in sorted((samples / "grd_stack").glob("*.tif"))]
    assert [m.incidence_angle for m in metas] == [30.5, 29.5, 28.5]
    assert [m.orbit_state for m in metas] == ["ascending", "descending", "ascending"]


def test_legacy_slc_sample(samples: Path) -> None:
    meta = read_product(samples / SLC0)
    assert meta.format is ProductFormat.LEGACY_SLC
    assert meta.product_id == Path(SLC0).stem
    assert meta.shape == (20, 20)
    assert meta.dtype == "float32"
    assert meta.platform == "ICEYE-X9"
    assert meta.acquisition_end == datetime(2021, 4, 28, 21, 51, 30, 25535, tzinfo=UTC)
    assert meta.incidence_angle == 30.5
    assert meta.pixel_spacing_range == pytest.approx(0.4185311389253755)
    assert meta.pixel_spacing_azimuth == pytest.approx(0.19142525627706425)
    assert meta.rpc is not None and meta.rpc["line_off"] == pytest.approx(15601.601)
    assert meta.metadata["state_vector_time_utc"][0] == ["2021-04-27T21:51:24.000000"]
    assert "s_i" not in meta.metadata and "posx" not in meta.metadata
    assert len(meta.metadata["posX"]) == 81
    assert meta.metadata["RPC"]["LINE_OFF"] == 15601.601  # float32, its shortest decimal
    assert_clean_metadata(meta.metadata, lower_case=False)


def test_legacy_slc_sample_metadata_keeps_names_and_shapes(samples: Path) -> None:
    """Every dataset of ICEYE's SLC under its own name, with its shape and value (h5py's view)."""
    meta = read_product(samples / SLC0)
    stored = json.loads(json.dumps(dict(meta.metadata)))
    with h5py.File(samples / SLC0) as h5:
        assert h5["antenna_pattern_compensation"].shape == (7424, 1)
        assert h5["state_vector_time_utc"].shape == (81, 1)
        assert {"posX", "velY", "angZ", "RPC"} <= set(h5)
        assert_same_as_hdf5(stored, h5)


def test_opendata_grd_sidecar(samples: Path) -> None:
    meta = read_product(samples / OPEN_GRD)
    assert meta.format is ProductFormat.GRD_COG
    assert meta.product_id == "ICEYE_7010715_GRD-COG_231f0ca0-9023-5e80-8538-d082f4c965bf_1"
    assert meta.center_frequency_ghz == 9.6
    assert meta.orientation == "shadows-down"
    # Its geometry, bbox and proj:centroid fit the GDAL-order transform only for a file of
    # 512 rows (range) x 1024 cols (azimuth): proj:shape [1024, 512] is [width, height].
    assert meta.file_shape == (512, 1024)
    assert meta.shape == (1024, 512)
    assert meta.transform == (
        4.40528923499528e-07,
        2.232522146066174e-06,
        -77.05850558885685,
        2.2159915726412293e-06,
        -4.371436507970117e-07,
        -9.542799592482679,
    )
    assert meta.datetime == datetime(2025, 11, 10, 18, 21, 11, 676000, tzinfo=UTC)
    assert meta.orbit_state == "descending" and meta.observation_direction == "left"
    assert meta.processing_software == {"forge": "v1.0.1", "processor": "ICEYE_I_1.1.4"}
    assert meta.href.endswith("_GRD.tif")
    assert meta.metadata["sar:center_frequency"] == 9600000000  # lossless
    json.dumps(meta.metadata, allow_nan=False)
    sidecar = json.loads((samples / OPEN_GRD).read_text())["properties"]
    for key in ("proj:transform", "proj:code", "proj:shape", "iceye:rpc"):  # its geolocation
        assert meta.metadata[key] == sidecar[key], key


def test_opendata_slc_sidecar(samples: Path) -> None:
    meta = read_product(samples / OPEN_SLC)
    assert meta.format is ProductFormat.SLC_COG
    assert meta.shape == (512, 512)
    assert meta.dtype == "float32"
    assert meta.pixel_spacing_azimuth == pytest.approx(0.043616)


def test_find_products_in_samples(samples: Path) -> None:
    found = find_products(samples)
    names = [Path(p).name for p in found]
    assert len(names) == 8
    assert not any(n.endswith(".png") or n.startswith("config") for n in names)
    assert found == sorted(found)
    assert find_products(samples / GRD0) == [str(samples / GRD0)]


# --- error cases -------------------------------------------------------------------------------


@pytest.fixture
def small() -> SyntheticSpec:
    return SyntheticSpec(product_id="ICEYE_TEST_small", shape=(64, 48), seed=3)


def test_truncated_tiff(tmp_path: Path, small: SyntheticSpec) -> None:
    path = write_legacy_grd(tmp_path / "trunc.tif", small)
    path.write_bytes(path.read_bytes()[:300])
    with pytest.raises(ProductError, match=r"trunc\.tif: truncated: the file has 300 bytes"):
        read_product(path)


# --- files cut short: caught from the header, before any pixel read --------------------------------


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
def test_legacy_grd_cut_in_its_pixels(tmp_path: Path, small: SyntheticSpec) -> None:
    path = header_first(write_legacy_grd(tmp_path / "ICEYE_px.tif", small))
    whole = read_product(path)
    cut(path, 1000)
    with rasterio.open(
        path
    ) as ds:  # GDAL opens it and sees every tag: only a pixel read would fail
        assert ds.tags()["PRODUCT_TYPE"] and ds.gcps[0]
    with pytest.raises(ProductError, match=r"ICEYE_px\.tif: truncated: .*pixel data \(strips\)"):
        read_product(path)
    with pytest.raises(ProductError, match="truncated"):  # the build's shortcut checks too
        read_product(path, expected=ProductFormat.LEGACY_GRD)
    assert whole.shape == small.shape


def test_legacy_grd_cut_in_its_tags(tmp_path: Path, small: SyntheticSpec) -> None:
    # GDAL's layout: pixels, then the directory, then the tag values; GDAL opens such a file and
    # silently drops the tags it cannot reach (the ICEYE tags are gone: once skipped as "no product").
    path = write_legacy_grd(tmp_path / "tags.tif", small)
    cut(path, path.stat().st_size // 3)
    with rasterio.open(path) as ds:
        assert "PRODUCT_TYPE" not in ds.tags()
    with pytest.raises(ProductError, match=r"tags\.tif: truncated: .*TIFF tag"):
        read_product(path)
    assert find_products(tmp_path) == [str(path)]  # listed although nothing marks it as ICEYE


def test_cog_cut_in_its_tiles(tmp_path: Path, small: SyntheticSpec) -> None:
    tif, sidecar = write_cog(tmp_path, small, "GRD")
    cut(tif, 500)
    for href in (tif, sidecar):
        with pytest.raises(ProductError, match=rf"{tif.name}: truncated: .*pixel data \(tiles\)"):
            read_product(href)


def test_hdf5_cut_short(tmp_path: Path, small: SyntheticSpec) -> None:
    path = write_legacy_slc(tmp_path / "cut.h5", small)
    size = path.stat().st_size
    cut(path, 100)
    with pytest.raises(ProductError, match=rf"cut\.h5: truncated: .* ends at byte {size}"):
        read_product(path)


def test_hdf5_whose_chunks_lie_beyond_its_end(tmp_path: Path, small: SyntheticSpec) -> None:
    """Chunked pixels written last, the file cut and its superblock's end address patched to fit (what
    a repair tool does): HDF5 opens it without complaint; the chunk addresses give the cut away."""
    src = write_legacy_slc(tmp_path / "src.h5", small)
    path = tmp_path / "late.h5"
    with h5py.File(src) as a, h5py.File(path, "w") as b:
        for name in ("s_i", "s_q"):
            b.create_dataset(name, shape=a[name].shape, dtype=a[name].dtype, chunks=(16, 48))
        for name in a:
            if name not in ("s_i", "s_q"):
                a.copy(a[name], b, name)
        for name in ("s_i", "s_q"):
            b[name][...] = a[name][...]
    assert read_product(path).shape == small.shape
    data = bytearray(path.read_bytes())
    assert data[8] == 0  # superblock version 0: the end-of-file address is at bytes 40-48
    keep = len(data) - 1000
    data[40:48] = keep.to_bytes(8, "little")
    path.write_bytes(bytes(data[:keep]))
    with h5py.File(path) as h5:
        assert h5["s_q"].shape == small.shape
    with pytest.raises(ProductError, match=r"late\.h5: truncated: .*dataset 's_q'"):
        read_product(path)


def test_not_a_tiff_and_empty_files_say_so(tmp_path: Path) -> None:
    text = tmp_path / "ICEYE_GRD_X.tif"
    text.write_text("not a tiff\n")
    empty = tmp_path / "ICEYE_SLC_X.h5"
    empty.write_bytes(b"")
    with pytest.raises(ProductError, match=r"ICEYE_GRD_X\.tif: not a TIFF file"):
        read_product(text)
    with pytest.raises(ProductError, match=r"ICEYE_SLC_X\.h5: empty file"):
        read_product(empty)
    assert find_products(tmp_path) == sorted([str(empty), str(text)])  # named like products


def test_sidecar_without_its_cog(tmp_path: Path, small: SyntheticSpec) -> None:
    tif, sidecar = write_cog(tmp_path, small, "GRD")
    tif.unlink()
    assert read_product(sidecar).shape == small.shape  # the metadata alone is readable
    with pytest.raises(ProductError, match=rf"{sidecar.name}: .*'grd-cog' is missing.*{tif.name}"):
        read_product(sidecar, require_data=True)


def test_find_products_lists_damaged_files_and_passes_over_others(tmp_path: Path) -> None:
    good, bad = write_good_and_broken(tmp_path)
    found = find_products(tmp_path)
    names = {Path(p).relative_to(tmp_path).as_posix() for p in found}
    assert set(bad) <= names
    assert not {"README.txt", "catalog.json"} & names
    assert len(found) == len(good) + len(bad)
    assert found == sorted(found) == find_products(tmp_path)


def test_corrupt_hdf5(tmp_path: Path, small: SyntheticSpec) -> None:
    path = write_legacy_slc(tmp_path / "bad.h5", small)
    data = bytearray(path.read_bytes())
    data[100:4000] = b"\0" * 3900
    path.write_bytes(bytes(data[: len(data) // 2]))
    with pytest.raises(ProductError, match=r"bad\.h5"):
        read_product(path)


def test_grd_missing_required_tag(tmp_path: Path, small: SyntheticSpec) -> None:
    path = write_legacy_grd(tmp_path / "notag.tif", small)
    with rasterio.open(path, "r+") as ds:
        ds.update_tags(INCIDENCE_CENTER="")
    with pytest.raises(ProductError, match=r"notag\.tif.*incidence_center"):
        read_product(path)


def test_slc_missing_required_dataset(tmp_path: Path, small: SyntheticSpec) -> None:
    path = write_legacy_slc(tmp_path / "nodir.h5", small)
    with h5py.File(path, "r+") as h5:
        del h5["orbit_direction"]
    with pytest.raises(ProductError, match=r"nodir\.h5.*orbit_direction"):
        read_product(path)


def test_cog_transform_mismatch(tmp_path: Path, small: SyntheticSpec) -> None:
    tif, sidecar = write_cog(tmp_path, small, "GRD")
    item = json.loads(sidecar.read_text())
    c, a, b, f, d, e = item["properties"]["proj:transform"]
    item["properties"]["proj:transform"] = [a, b, c, d, e, f]  # affine order: the classic mistake
    sidecar.write_text(json.dumps(item))
    for href in (tif, sidecar):
        with pytest.raises(ProductError, match=rf"{sidecar.name}.*proj:transform"):
            read_product(href)


def test_cog_uses_embedded_item_without_sidecar(tmp_path: Path, small: SyntheticSpec) -> None:
    tif, sidecar = write_cog(tmp_path, small, "GRD")
    sidecar.unlink()
    meta = read_product(tif)
    assert meta.product_id == small.product_id and meta.shape == small.shape


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
def test_not_an_iceye_product(tmp_path: Path) -> None:
    plain = tmp_path / "plain.tif"
    with rasterio.open(plain, "w", driver="GTiff", height=4, width=4, count=1, dtype="uint8") as ds:
        ds.write(np.zeros((1, 4, 4), "uint8"))
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    for path in (plain, text):
        with pytest.raises(ProductError, match=path.name):
            read_product(path)
    assert find_products(tmp_path) == []


def test_find_products_skips_sidecar_when_tif_present(tmp_path: Path, small: SyntheticSpec) -> None:
    tif, sidecar = write_cog(tmp_path / "a" / "b", small, "SLC")
    write_legacy_grd(tmp_path / "g.tif", small)
    (tmp_path / "labels.json").write_text("{}")
    assert find_products(tmp_path) == sorted([str(tmp_path / "g.tif"), str(tif)])
    only_json = tmp_path / "only"
    only_json.mkdir()
    shutil.copy(sidecar, only_json / sidecar.name)
    assert find_products(only_json) == [str(only_json / sidecar.name)]


def test_expected_format_is_a_shortcut_not_a_different_answer(samples: Path) -> None:
    # The build's source check passes the catalog's format: a legacy GRD is read without sniffing
    # or sidecar lookups, and the metadata is the same; a file of another format is still detected.
    assert read_product(samples / GRD0, expected=ProductFormat.LEGACY_GRD) == read_product(
        samples / GRD0
    )
    assert read_product(samples / SLC0, expected=ProductFormat.LEGACY_GRD) == read_product(
        samples / SLC0
    )
    assert (
        read_product(samples / OPEN_GRD, expected=ProductFormat.LEGACY_GRD).format
        is ProductFormat.GRD_COG
    )
