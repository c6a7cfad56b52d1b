"""Assertions shared by several test modules (importable because pytest puts tests/ on sys.path)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import rasterio
import rasterio.shutil

from icecube_cloud.synthetic import make_stack


def cube_files(root: Path) -> dict[str, bytes]:
    """Every file of a local cube by relative path; the root document without its creation time."""
    files = {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }
    doc = json.loads(files.pop("zarr.json"))
    doc["attributes"].pop("created")
    files["zarr.json"] = json.dumps(doc, sort_keys=True).encode()
    return files


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


def assert_clean_metadata(metadata: Any, *, lower_case: bool = True) -> None:
    """Full product metadata is strict JSON, no numpy-printed strings left; lower-case keys where
    the source's keys are case-insensitive (GDAL tags), the source's own names otherwise (HDF5)."""
    json.dumps(metadata, allow_nan=False)
    if lower_case:
        assert all(k == k.lower() for k in metadata)
    leftovers = [s for s in _strings(metadata) if s.lstrip().startswith(("[", "(", "{"))]
    assert leftovers == []


PER_TIME_COORDS = (
    "acquisition_start",
    "acquisition_end",
    "incidence_angle",
    "orbit_state",
    "observation_direction",
    "polarization",
    "platform",
    "product_id",
    "calibration_factor",
    "valid",
    "metadata",
)
"""SPEC §6: the per-time coordinates every cube carries (the contract, written out independently)."""


def assert_same_as_hdf5(metadata: Any, group: Any, skip: tuple[str, ...] = ("s_i", "s_q")) -> None:
    """``metadata`` holds every dataset of the h5py ``group`` under its exact name, shape and value
    (strings decoded, floats equal at the dataset's own precision), subgroups as dicts."""
    names = [n for n in group if not (group.name == "/" and n in skip)]
    assert sorted(metadata) == sorted(names), group.name
    for name in names:
        obj, value = group[name], metadata[name]
        if isinstance(obj, h5py.Group):
            assert_same_as_hdf5(value, obj, skip)
            continue
        raw = obj[()]
        assert np.shape(value) == obj.shape, f"{obj.name}: {np.shape(value)} != {obj.shape}"
        if obj.dtype.kind in "SO":
            decoded = np.vectorize(lambda b: b.decode() if isinstance(b, bytes) else b)(raw)
            assert np.array_equal(np.asarray(value, dtype=object), decoded), obj.name
        else:
            as_read = np.float64 if obj.dtype.kind == "f" else obj.dtype
            got = np.asarray(value, dtype=as_read).astype(obj.dtype)
            np.testing.assert_array_equal(got, raw, err_msg=str(obj.name))


def assert_gap_fill_values(group: Any, zarr_format: int) -> None:
    """Every per-time coordinate of a plain ``zarr`` group holds a declared fill value in gap slices.

    Times: the stored value equals the array's ``fill_value`` (and, Zarr v3, the CF ``_FillValue``
    attribute); floats: NaN, declared; strings: '' (the array's fill value in v3), documented in the
    coordinate's attrs. Valid slices hold no fill value.
    """
    valid = group["valid"][:]
    gaps = ~valid
    assert gaps.any() and valid.any()
    if zarr_format == 3:
        assert group["valid"].fill_value == np.False_
    for name in PER_TIME_COORDS:
        array, values = group[name], group[name][:]
        attrs = dict(array.attrs)
        if name in ("acquisition_start", "acquisition_end"):
            fill = np.iinfo(np.int64).min
            assert array.dtype == np.int64 and array.fill_value == fill, name
            assert (values[gaps] == fill).all() and (values[valid] != fill).all(), name
            if zarr_format == 3:
                assert attrs["_FillValue"] == fill, name
        elif name in ("incidence_angle", "calibration_factor"):
            assert np.isnan(array.fill_value), name
            assert np.isnan(values[gaps]).all() and not np.isnan(values[valid]).any(), name
            if zarr_format == 3:
                assert "_FillValue" in attrs, name
        elif name != "valid":
            assert all(v == "" for v in values[gaps]), name
            assert all(v != "" for v in values[valid]), name
            assert "'' (this array's fill value) in gap slices" in attrs["comment"], name
            if zarr_format == 3:
                assert array.fill_value == "", name


def cut(path: Path, drop: int) -> None:
    """Cut the last ``drop`` bytes off a file, as an interrupted download or copy does."""
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - drop])


def header_first(tif: Path) -> Path:
    """Rewrite a GeoTIFF with GDAL's CreateCopy: directory and tags before the pixels (many writers
    do this), so that a cut file keeps an intact header. Pixels, tags, GCPs and RPC are kept."""
    copy = tif.with_suffix(".copy.tif")
    rasterio.shutil.copy(tif, copy, driver="GTiff")
    copy.replace(tif)
    return tif


def write_good_and_broken(folder: Path) -> tuple[list[str], dict[str, str]]:
    """A folder of good products of every flavour plus one broken file of each kind a user meets.

    Returns:
        The product ids of the good products, and each broken file (path relative to ``folder``)
        with a regex its reason must match. ``README.txt`` and a plain ``catalog.json`` are there too:
        clearly not products.
    """
    start = datetime(2021, 4, 20, 10, 0, tzinfo=UTC)
    kw: dict[str, Any] = {"shape": (40, 30), "start": start, "days": 12}
    grd = make_stack(folder, n=3, flavour="legacy-grd", seed=1, **kw)
    cog = make_stack(folder / "cog", n=4, flavour="grd-cog", seed=2, **kw)
    slc = make_stack(folder / "slc", n=3, flavour="legacy-slc", seed=3, **kw)
    bad: dict[str, str] = {}

    header_cut = folder / "ICEYE_GRD_CUT_IN_HEADER.tif"
    header_cut.write_bytes((folder / f"{grd[2].product_id}.tif").read_bytes()[:300])
    bad[header_cut.name] = r"truncated: the file has 300 bytes"
    tags_cut = folder / "scene_cut_in_its_tags.tif"  # GDAL opens it, without its ICEYE tags
    data = (folder / f"{grd[2].product_id}.tif").read_bytes()
    tags_cut.write_bytes(data[: len(data) // 3])
    bad[tags_cut.name] = r"truncated: .*TIFF tag"
    no_angle = folder / "ICEYE_GRD_NO_ANGLE.tif"
    no_angle.write_bytes(data)
    with rasterio.open(no_angle, "r+") as ds:
        ds.update_tags(INCIDENCE_CENTER="")
    bad[no_angle.name] = r"missing required metadata field 'incidence_center'"
    text = folder / "ICEYE_GRD_NOT_A_TIFF.tif"
    text.write_text("this is a text file\n")
    bad[text.name] = r"not a TIFF file"

    missing_cog = folder / "cog" / f"{cog[1].product_id}_GRD.tif"
    missing_cog.unlink()
    bad[f"cog/{cog[1].product_id}_GRD.json"] = (
        rf"data asset 'grd-cog' is missing.*{missing_cog.name}"
    )
    (folder / "cog" / f"{cog[2].product_id}_GRD.json").write_text('{"id": "cut short", "pro')
    bad[f"cog/{cog[2].product_id}_GRD.tif"] = rf"{cog[2].product_id}_GRD\.json: .*not valid JSON"
    cut(folder / "cog" / f"{cog[3].product_id}_GRD.tif", 2000)
    bad[f"cog/{cog[3].product_id}_GRD.tif"] = r"truncated: the file has \d+ bytes"

    cut(folder / "slc" / f"{slc[1].product_id}.h5", 5000)
    bad[f"slc/{slc[1].product_id}.h5"] = r"truncated: "
    with h5py.File(folder / "slc" / f"{slc[2].product_id}.h5", "r+") as h5:
        del h5["s_q"]
    bad[f"slc/{slc[2].product_id}.h5"] = r"missing pixel dataset.*s_q"

    (folder / "README.txt").write_text("ICEYE products of the test site\n")
    (folder / "catalog.json").write_text(json.dumps({"type": "Catalog", "id": "other"}))
    good = [*(s.product_id for s in grd), cog[0].product_id, slc[0].product_id]
    return good, bad
