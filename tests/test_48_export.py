"""`export`: a cube as one netCDF4 file that plain xarray (and GDAL's netCDF driver) reads back exactly.

Uses the session cubes of conftest (GRD with gaps and labels, legacy SLC, map geometry) read-only;
anything that must be changed is a copy in ``tmp_path``.
"""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
import rasterio
import rioxarray  # also the .rio accessor
import s3fs
import xarray as xr

from icecube_cloud import export_cube, open_netcdf
from icecube_cloud.cube import open_cube
from icecube_cloud.errors import DataError, UsageError
from icecube_cloud.export import JSON_ATTRS
from icecube_cloud.testing.moto import MotoServer

CUBES = ["grd_cube", "slc_cube", "map_cube"]


def _same_values(a: np.ndarray, b: np.ndarray) -> bool:
    """Bit-exact for numbers and times (NaN, NaT and signed zeros included), equal text for strings."""
    if a.dtype.kind in "TUSO":
        return b.dtype.kind in "TUSO" and a.tolist() == b.tolist()
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def _same_attr(a: Any, b: Any) -> bool:
    if isinstance(a, list | tuple | np.ndarray) and all(isinstance(v, int | float) for v in a):
        # netCDF numbers: a one-element list reads back as a scalar (netCDF cannot tell them apart)
        return np.array_equal(np.atleast_1d(a), np.atleast_1d(b))
    return bool(a == b)


@pytest.mark.parametrize("name", CUBES)
def test_round_trip_is_exact(name: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    url = request.getfixturevalue(name)
    steps: list[tuple[str, int, int]] = []
    result = export_cube(url, tmp_path / "cube.nc", progress=lambda *a: steps.append(a))
    cube = open_cube(url).load()

    nc = xr.open_dataset(tmp_path / "cube.nc")  # plain xarray: no icecube_cloud reader involved
    assert dict(nc.sizes) == dict(cube.sizes)
    assert set(nc.variables) == set(cube.variables)
    assert set(nc.coords) == set(cube.coords)
    for var in cube.variables:
        assert nc[var].dims == cube[var].dims, var
        assert _same_values(cube[var].values, nc[var].values), var
    image = "slc" if "slc" in cube else "amplitude"
    assert nc[image].dtype == cube[image].dtype  # complex64 stays complex64
    if name == "grd_cube":  # gap slices: NaT and '' survive
        assert np.isnat(nc["acquisition_end"].values).sum() == 2
        assert (nc["product_id"].values == "").sum() == 2

    # attributes: equal, dict/list-valued ones as JSON strings that open_netcdf decodes
    assert json.loads(nc.attrs[JSON_ATTRS]) == [
        k for k, v in cube.attrs.items() if isinstance(v, dict | list)
    ]
    assert json.loads(nc.attrs["icecube_cloud_config"]) == cube.attrs["icecube_cloud_config"]
    decoded = open_netcdf(tmp_path / "cube.nc")
    assert decoded.attrs == cube.attrs
    for var in cube.variables:
        assert decoded[var].attrs.keys() == cube[var].attrs.keys(), var
        for key, value in cube[var].attrs.items():
            assert _same_attr(value, decoded[var].attrs[key]), (var, key)
        assert _same_values(cube[var].values, decoded[var].values), var

    # chunked one image by the cube's chunks, deflate level 4 with shuffle
    cube_chunks = open_cube(url)[image].encoding["chunks"]
    with h5py.File(tmp_path / "cube.nc", "r") as f:
        for var in result.variables:
            ds = f[var]
            assert ds.chunks == (1, *cube_chunks[1:]), var
            assert (ds.compression, ds.compression_opts, ds.shuffle) == ("gzip", 4, True), var
    assert set(result.variables) == {image, "labels"}
    assert steps[0] == ("export", 0, result.chunks) and steps[-1][1:] == (result.chunks,) * 2
    assert result.chunks == sum(
        int(np.prod(open_cube(url)[v].data.numblocks)) for v in result.variables
    )
    assert [p.name for p in tmp_path.iterdir()] == ["cube.nc"]  # no temporary left


def test_map_cube_keeps_its_cf_grid_mapping(map_cube: str, tmp_path: Path) -> None:
    export_cube(map_cube, tmp_path / "map.nc")
    cube = open_cube(map_cube)
    nc = xr.open_dataset(tmp_path / "map.nc")
    assert nc["amplitude"].attrs["grid_mapping"] == "spatial_ref"
    assert nc["amplitude"].rio.crs == cube["amplitude"].rio.crs
    assert nc["amplitude"].rio.crs.to_epsg() == 32629
    assert nc["amplitude"].rio.transform() == cube["amplitude"].rio.transform()
    # GDAL's netCDF driver (netCDF-C, not h5py) reads the georeferencing too
    gdal = rioxarray.open_rasterio(tmp_path / "map.nc", variable="amplitude", decode_times=False)
    amplitude = gdal["amplitude"]
    assert amplitude.rio.crs == cube["amplitude"].rio.crs
    assert amplitude.rio.transform() == cube["amplitude"].rio.transform()
    assert np.array_equal(amplitude.values, cube["amplitude"].values)


def test_slc_is_a_netcdf_compound_that_gdal_reads_as_complex(slc_cube: str, tmp_path: Path) -> None:
    export_cube(slc_cube, tmp_path / "slc.nc")
    with h5py.File(tmp_path / "slc.nc", "r") as f:  # the documented layout: nc-complex {r, i}
        assert f["slc"].id.get_type().get_class() == h5py.h5t.COMPOUND
        assert f["_PFNC_FLOAT_COMPLEX_TYPE"].dtype == np.complex64
    slc = open_cube(slc_cube)["slc"].values
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)  # SAR geometry
        # GDAL turns netCDF images bottom-up by default (rows flipped); keep the file's order
        with (
            rasterio.Env(GDAL_NETCDF_BOTTOMUP="NO"),
            rasterio.open(f"netcdf:{tmp_path / 'slc.nc'}:slc") as src,
        ):
            assert src.dtypes[0] == "complex64"
            assert src.read().tobytes() == slc.tobytes()


def test_refuses_an_existing_out_and_touches_nothing(slc_cube: str, tmp_path: Path) -> None:
    out = tmp_path / "taken.nc"
    out.write_bytes(b"a user's file")
    with pytest.raises(UsageError, match=r"taken\.nc: exists; export never overwrites") as err:
        export_cube(slc_cube, out)
    assert err.value.exit_code == 2
    assert out.read_bytes() == b"a user's file"
    assert [p.name for p in tmp_path.iterdir()] == ["taken.nc"]
    (tmp_path / "dir.nc").mkdir()
    with pytest.raises(UsageError, match="exists"):
        export_cube(slc_cube, tmp_path / "dir.nc")


def test_refuses_remote_out_and_a_missing_folder(slc_cube: str, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="local file"):
        export_cube(slc_cube, "s3://bucket/cube.nc")
    with pytest.raises(UsageError, match="does not exist"):
        export_cube(slc_cube, tmp_path / "no" / "cube.nc")
    assert list(tmp_path.iterdir()) == []


def test_refuses_unfinished_and_foreign_cubes(slc_cube: str, tmp_path: Path) -> None:
    unfinished = tmp_path / "unfinished.zarr"
    shutil.copytree(slc_cube, unfinished)
    (unfinished / "zarr.json").unlink()  # a build that died holds its root document back
    foreign = tmp_path / "folder"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("not a cube")
    for cube in (unfinished, foreign):
        with pytest.raises(DataError, match=f"{cube}: not a complete cube") as err:
            export_cube(str(cube), tmp_path / "out.nc")
        assert err.value.exit_code == 1
    assert not (tmp_path / "out.nc").exists()


def test_a_failure_mid_write_leaves_no_file(grd_cube: str, tmp_path: Path) -> None:
    broken = tmp_path / "broken.zarr"
    shutil.copytree(grd_cube, broken)
    (broken / "amplitude" / "c" / "5" / "2" / "2").write_bytes(b"\x00garbage" * 8)
    out = tmp_path / "out" / "cube.nc"
    out.parent.mkdir()
    with pytest.raises(DataError, match=f"to {out} failed .*no cube.nc was written"):
        export_cube(str(broken), out)
    assert list(out.parent.iterdir()) == []  # neither OUT nor its temporary

    def interrupt(stage: str, done: int, total: int) -> None:
        if done == 3:
            assert list(out.parent.iterdir())  # the temporary is being written
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        export_cube(grd_cube, out, progress=interrupt)
    assert list(out.parent.iterdir()) == []


def test_cube_in_s3(slc_cube: str, moto_s3: MotoServer, tmp_path: Path) -> None:
    bucket = moto_s3.make_bucket("icecube-export-tests")
    fs = s3fs.S3FileSystem(**moto_s3.storage_options, skip_instance_cache=True)
    fs.put(f"{slc_cube}/", f"{bucket}/cube.zarr/", recursive=True)
    url = f"s3://{bucket}/cube.zarr"
    export_cube(url, tmp_path / "s3.nc", storage_options=moto_s3.storage_options)
    exported = open_netcdf(tmp_path / "s3.nc")
    cube = open_cube(slc_cube)
    assert exported["slc"].values.tobytes() == cube["slc"].values.tobytes()
    assert exported.attrs == cube.attrs
