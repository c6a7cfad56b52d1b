"""Layer 01: the synthetic product generator round-trips through the product readers."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

import h5py
import numpy as np
import pytest
import rasterio
from affine import Affine
from helpers import assert_clean_metadata, assert_same_as_hdf5
from rasterio.transform import RPCTransformer

from icecube_cloud.products import ProductFormat, ProductMetadata, find_products, read_product
from icecube_cloud.synthetic import (
    Flavour,
    SyntheticSpec,
    expected_pixels,
    make_stack,
    to_shadows_down,
    write_cog,
    write_legacy_grd,
    write_legacy_slc,
)


@pytest.fixture
def spec() -> SyntheticSpec:
    start = datetime(2023, 6, 1, 10, 0, 0, 123456, tzinfo=UTC)
    return SyntheticSpec(
        product_id="ICEYE_SYNTH_TEST",
        seed=11,
        shape=(96, 64),
        acquisition_start=start,
        acquisition_end=start + timedelta(seconds=7.5),
        incidence_angle=33.25,
        orbit_state="descending",
        observation_direction="left",
        platform="ICEYE-X27",
        polarization="HH",
        center_lon=24.94,
        center_lat=60.17,
        pixel_spacing_range=0.75,
        pixel_spacing_azimuth=0.5,
    )


def assert_matches_spec(meta: ProductMetadata, spec: SyntheticSpec) -> None:
    assert meta.product_id == spec.product_id
    assert meta.shape == spec.shape
    assert meta.acquisition_start == spec.acquisition_start
    assert meta.acquisition_end == spec.acquisition_end
    assert meta.incidence_angle == spec.incidence_angle
    assert meta.incidence_near == pytest.approx(spec.incidence_near)
    assert meta.incidence_far == pytest.approx(spec.incidence_far)
    assert meta.orbit_state == spec.orbit_state
    assert meta.observation_direction == spec.observation_direction
    assert meta.platform == spec.platform
    assert meta.polarizations == (spec.polarization,)
    assert meta.instrument_mode == spec.instrument_mode
    assert meta.center_frequency_ghz == pytest.approx(spec.center_frequency_ghz)
    assert meta.pixel_spacing_range == spec.pixel_spacing_range
    assert meta.pixel_spacing_azimuth == spec.pixel_spacing_azimuth
    assert meta.calibration_factor == spec.calibration_factor
    assert meta.absolute_orbit == spec.absolute_orbit
    assert len(meta.footprint) == 5 and meta.footprint[0] == meta.footprint[-1]
    lons = [p[0] for p in meta.footprint]
    lats = [p[1] for p in meta.footprint]
    assert min(lons) < spec.center_lon < max(lons) and min(lats) < spec.center_lat < max(lats)


def test_legacy_grd_round_trip(tmp_path: Path, spec: SyntheticSpec) -> None:
    path = write_legacy_grd(tmp_path / f"{spec.product_id}.tif", spec)
    meta = read_product(path)
    assert meta.format is ProductFormat.LEGACY_GRD and meta.dtype == "uint16"
    assert_matches_spec(meta, spec)
    assert_clean_metadata(meta.metadata)
    with rasterio.open(path) as ds:
        assert ds.crs is None
        assert len(ds.tags()) >= 85
        np.testing.assert_array_equal(ds.read(1), expected_pixels(spec, "GRD"))
    # GCPs span this raster and agree with the COORD_* corners.
    rows = {g.row for g in meta.gcps}
    cols = {g.col for g in meta.gcps}
    assert len(meta.gcps) >= 81
    assert (min(rows), max(rows), min(cols), max(cols)) == (0, 95, 0, 63)
    by_pos = {(g.row, g.col): (g.lon, g.lat) for g in meta.gcps}
    for key, (row, col) in {"first_near": (0, 0), "first_far": (0, 63), "last_far": (95, 63),
                            "last_near": (95, 0)}.items():  # fmt: skip
        sample, line, lat, lon = meta.metadata[f"coord_{key}"]
        assert (line - 1, sample - 1) == (row, col)
        assert by_pos[(row, col)] == pytest.approx((lon, lat), abs=1e-7)
    assert meta.rpc is not None and meta.rpc["line_off"] == pytest.approx(47.5)  # GDAL: centres


def test_legacy_grd_located_by_rpc_alone(tmp_path: Path, spec: SyntheticSpec) -> None:
    """``gcps=False`` writes a product with an RPC and no GCPs; its RPC is an exact model of the same
    geometry (GDAL's RPC transformer puts the image corners on the COORD_* corners)."""
    path = write_legacy_grd(tmp_path / f"{spec.product_id}.tif", spec, gcps=False)
    meta = read_product(path)
    assert meta.gcps == () and "gcps" not in meta.metadata and meta.rpc is not None
    assert_matches_spec(meta, spec)
    with rasterio.open(path) as ds, RPCTransformer(ds.rpcs) as tr:
        assert ds.gcps[0] == [] and ds.crs is None
        for key in ("first_near", "first_far", "last_far", "last_near"):
            sample, line, lat, lon = meta.metadata[f"coord_{key}"]
            got = tr.xy(line - 1, sample - 1, zs=ds.rpcs.height_off, offset="ul")
            assert got == pytest.approx((lon, lat), abs=1e-7)  # tags: 8 decimals
    bare = write_legacy_grd(tmp_path / "bare.tif", spec, gcps=False, rpc=False)
    with rasterio.open(bare) as ds:
        assert ds.rpcs is None and ds.gcps[0] == []


@pytest.mark.parametrize("iq_dtype", ["int16", "float32"])
def test_legacy_slc_round_trip(
    tmp_path: Path, spec: SyntheticSpec, iq_dtype: Literal["int16", "float32"]
) -> None:
    path = write_legacy_slc(tmp_path / f"{spec.product_id}.h5", spec, iq_dtype)
    meta = read_product(path)
    assert meta.format is ProductFormat.LEGACY_SLC and meta.dtype == iq_dtype
    assert_matches_spec(meta, spec)
    assert_clean_metadata(meta.metadata, lower_case=False)
    assert meta.metadata["dc_estimate_time_utc"][0][0].startswith("2023-06-01T10:00:03")
    expected = expected_pixels(spec, "SLC", iq_dtype=iq_dtype)
    assert expected.shape == (2, *spec.shape) and expected.dtype == np.dtype(iq_dtype)
    with h5py.File(path) as h5:
        np.testing.assert_array_equal(h5["s_i"][()], expected[0])
        np.testing.assert_array_equal(h5["s_q"][()], expected[1])
        assert h5["state_vector_time_utc"].shape == (81, 1)
        assert {"posX", "velZ", "angY", "RPC"} <= set(h5)  # ICEYE's mixed-case names
        assert h5["antenna_pattern_compensation"].shape == (spec.shape[1], 1)
        assert_same_as_hdf5(json.loads(json.dumps(dict(meta.metadata))), h5)


@pytest.mark.parametrize("level", ["GRD", "SLC"])
def test_cog_round_trip(tmp_path: Path, spec: SyntheticSpec, level: Literal["GRD", "SLC"]) -> None:
    tif, sidecar = write_cog(tmp_path, spec, level)
    item = json.loads(sidecar.read_text())
    assert set(item["assets"]) == {f"{level.lower()}-cog", f"{level.lower()}-json"}
    assert item["properties"]["sar:center_frequency"] == 9650000000
    for href in (tif, sidecar):
        meta = read_product(href)
        assert meta.format is (ProductFormat.GRD_COG if level == "GRD" else ProductFormat.SLC_COG)
        assert meta.href == str(tif)
        assert meta.orientation == "shadows-down" and meta.file_shape == spec.shape[::-1]
        assert_matches_spec(meta, spec)
        json.dumps(meta.metadata, allow_nan=False)
    with rasterio.open(tif) as ds:
        assert ds.crs.to_epsg() == 4326
        assert ds.profile["tiled"] and ds.compression is not None
        assert tuple(ds.transform)[:6] == meta.transform
        assert Affine(*ds.transform[:6]).b != 0  # rotated
        assert json.loads(ds.tags()["ICEYE_PROPERTIES"]) == item
        stored = ds.read()
    physical = expected_pixels(spec, level, cog=True)
    if level == "GRD":
        assert stored.dtype == np.uint16
        np.testing.assert_array_equal(stored[0], to_shadows_down(physical))
        np.testing.assert_array_equal(stored[0].T[::-1], physical)
    else:
        assert stored.dtype == np.float32
        np.testing.assert_array_equal(stored, to_shadows_down(physical))


def test_cog_footprint_matches_pixels(tmp_path: Path, spec: SyntheticSpec) -> None:
    """First azimuth line, near range is the geometry's corner (shadows-down mapping)."""
    tif, _ = write_cog(tmp_path, spec, "GRD")
    meta = read_product(tif)
    legacy = read_product(write_legacy_grd(tmp_path / "same.tif", spec))
    aff = Affine(*meta.transform)  # type: ignore[misc]
    n_az, _ = spec.shape
    first_near_file = aff @ (n_az, 0)  # file col = n_az - az, row = range
    assert first_near_file == pytest.approx((legacy.gcps[0].lon, legacy.gcps[0].lat), abs=1e-9)


def test_pixels_deterministic_and_speckled(spec: SyntheticSpec) -> None:
    a = expected_pixels(spec, "GRD")
    assert np.array_equal(a, expected_pixels(spec, "GRD"))
    assert a.dtype == np.uint16 and a.shape == spec.shape
    assert 100 < a.mean() < 1000 and a.std() > 50
    other = expected_pixels(SyntheticSpec(product_id="x", seed=12, shape=spec.shape), "GRD")
    assert not np.array_equal(a, other)
    amp, phase = expected_pixels(spec, "SLC", cog=True)
    assert amp.dtype == np.float32 and np.all(np.abs(phase) <= np.pi)


@pytest.mark.parametrize("flavour", ["legacy-grd", "legacy-slc", "grd-cog", "slc-cog"])
def test_make_stack(tmp_path: Path, flavour: Flavour) -> None:
    specs = make_stack(tmp_path, n=6, shape=(32, 24), flavour=flavour, seed=5, days=12)
    found = find_products(tmp_path)
    assert len(found) == 6
    metas = sorted((read_product(p) for p in found), key=lambda m: m.acquisition_end)
    assert [m.product_id for m in metas] == [s.product_id for s in specs]
    days = [m.acquisition_end.date() for m in metas]
    assert len(set(days)) == 6 and (days[-1] - days[0]).days <= 11
    angles = [m.incidence_angle for m in metas]
    assert len(set(angles)) == 6 and all(20 < a < 40 for a in angles)
    assert {m.shape for m in metas} == {(32, 24)}
    assert len({m.orbit_state for m in metas}) == 2


def test_make_stack_explicit_angles(tmp_path: Path) -> None:
    specs = make_stack(tmp_path, n=3, shape=(8, 8), incidence_angles=[30.5, 29.5, 28.5])
    assert [s.incidence_angle for s in specs] == [30.5, 29.5, 28.5]
    with pytest.raises(ValueError, match="incidence_angles"):
        make_stack(tmp_path, n=2, incidence_angles=[1.0])
