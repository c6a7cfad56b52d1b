"""Layer 01: the synthetic product generator round-trips through the product readers."""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import h5py
import numpy as np
import pytest
import rasterio
from affine import Affine
from helpers import assert_clean_metadata, assert_same_as_hdf5
from rasterio.transform import RPCTransformer

from icecube_cloud.products import ProductFormat, ProductMetadata, find_products, read_product
from icecube_cloud.synthetic import (
    CLASSES,
    Flavour,
    SceneTargets,
    SyntheticSpec,
    expected_pixels,
    make_stack,
    make_training_stack,
    present_objects,
    scene_objects,
    to_shadows_down,
    truth_mask,
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


# --- scenes worth learning: water bodies and bright targets (issue 15) ------------------------------

# sha256 prefixes of main's pixels before scenes had targets: a default spec's pixels never change.
MAIN_PIXELS = {
    ("GRD", "int16", False): "d95cad53f905c667",
    ("SLC", "int16", False): "6b15af3ffeb4f9a7",
    ("SLC", "int16", True): "77e4cc8e0f9f2bca",
    ("SLC", "float32", False): "85abe14a7157a1ec",
}


def test_scenes_without_targets_are_unchanged() -> None:
    spec = SyntheticSpec(product_id="HASH", seed=3, scene_seed=4, shape=(40, 56))
    assert spec.targets is None
    for (level, iq, cog), digest in MAIN_PIXELS.items():
        pixels = expected_pixels(spec, level, cog=cog, iq_dtype=iq)  # type: ignore[arg-type]
        assert hashlib.sha256(pixels.tobytes()).hexdigest()[:16] == digest, (level, iq, cog)


def _target_spec(**kw: Any) -> SyntheticSpec:
    return SyntheticSpec(product_id="T", seed=21, scene_seed=8, shape=(512, 640),
                         targets=SceneTargets(), **kw)  # fmt: skip


def test_targets_deterministic_shared_by_scene_seed_speckle_per_image() -> None:
    a, b = _target_spec(), replace(_target_spec(), seed=22)
    assert np.array_equal(expected_pixels(a, "GRD"), expected_pixels(a, "GRD"))
    assert not np.array_equal(expected_pixels(a, "GRD"), expected_pixels(b, "GRD"))
    assert scene_objects(a) == scene_objects(b)  # same geometry and levels
    assert np.array_equal(truth_mask(a), truth_mask(b))
    other = replace(a, scene_seed=9)
    assert not np.array_equal(truth_mask(a), truth_mask(other))
    mask = truth_mask(a)
    assert mask.dtype == np.uint8 and mask.shape == a.shape
    assert set(np.unique(mask)) == {0, CLASSES["water"], CLASSES["target"]}
    kinds = [o.kind for o in scene_objects(a)]
    assert kinds == ["polygon"] * 3 + ["bbox"] * 4 + ["point"] * 6
    # the counts decide only their own category
    fewer = replace(a, targets=SceneTargets(points=2))
    assert scene_objects(fewer)[:7] == scene_objects(a)[:7]


def _power_db(amplitude: np.ndarray, mask: np.ndarray, code: int) -> float:
    return float(10 * np.log10(np.mean(amplitude.astype(np.float64)[mask == code] ** 2)))


@pytest.mark.parametrize("product", ["grd", "slc-iq", "slc-cog"])
def test_classes_separable_without_clipping(product: str) -> None:
    spec = _target_spec()
    mask = truth_mask(spec)
    if product == "grd":
        amplitude = expected_pixels(spec, "GRD")
        assert amplitude.max() < 65535  # no clipping of the brightest targets
    elif product == "slc-iq":
        iq = expected_pixels(spec, "SLC").astype(np.float64)
        assert np.abs(iq).max() < 32767
        amplitude = np.hypot(iq[0], iq[1])
    else:
        amplitude = expected_pixels(spec, "SLC", cog=True)[0]
    land = _power_db(amplitude, mask, 0)
    water = _power_db(amplitude, mask, CLASSES["water"])
    target = _power_db(amplitude, mask, CLASSES["target"])
    assert water < land - 12 and target > land + 8, (water, land, target)
    assert land == pytest.approx(20 * np.log10(300.0 * np.sqrt(4 / np.pi)), abs=1.5)


def test_targets_change_over_the_period() -> None:
    start = datetime(2022, 1, 1, tzinfo=UTC)
    cfg = SceneTargets(changes=2, period=(start, start + timedelta(days=10)))
    specs = [
        SyntheticSpec(product_id=f"C{d}", seed=d, scene_seed=3, shape=(256, 256), targets=cfg,
                      acquisition_start=start + timedelta(days=d),
                      acquisition_end=start + timedelta(days=d, seconds=5))
        for d in (0, 9)
    ]  # fmt: skip
    appearing, leaving = scene_objects(specs[0])[3:5]  # the first two boxes change
    assert appearing.appears is not None and appearing.disappears is None
    assert leaving.disappears is not None and leaving.appears is None
    assert all(start + timedelta(days=2.5) <= t <= start + timedelta(days=7.5)
               for t in (appearing.appears, leaving.disappears))  # fmt: skip
    assert appearing not in present_objects(specs[0]) and appearing in present_objects(specs[1])
    assert leaving in present_objects(specs[0]) and leaving not in present_objects(specs[1])
    before, after = truth_mask(specs[0]), truth_mask(specs[1])
    changed = before != after
    boxes = np.zeros(changed.shape, bool)
    for box in (appearing, leaving):
        x0, y0, x1, y1 = (int(v) for v in box.geometry.bounds)
        boxes[y0:y1, x0:x1] = True
    assert changed.any() and not (changed & ~boxes).any()  # nothing else changes
    grd = expected_pixels(specs[1], "GRD").astype(np.float64)
    x0, y0, x1, y1 = (int(v) for v in appearing.geometry.bounds)
    drawn = after[y0:y1, x0:x1] == CLASSES["target"]
    assert drawn.any() and np.mean(grd[y0:y1, x0:x1][drawn] ** 2) > 10 * np.mean(
        grd[after == 0] ** 2
    )


@pytest.mark.parametrize("shape", [(1, 300), (3, 2), (8, 8), (70, 33)])
def test_targets_fit_any_shape(shape: tuple[int, int]) -> None:
    spec = SyntheticSpec(product_id="S", shape=shape, targets=SceneTargets())
    assert expected_pixels(spec, "GRD").shape == shape
    assert expected_pixels(spec, "SLC", cog=True).shape == (2, *shape)
    mask = truth_mask(spec)
    assert mask.shape == shape and (mask == CLASSES["target"]).any()
    for obj in scene_objects(spec):
        x0, y0, x1, y1 = obj.geometry.bounds
        assert x0 >= 0 and x1 <= shape[1] and y0 >= 0 and y1 <= shape[0]


def test_large_scene_is_vectorised() -> None:
    spec = SyntheticSpec(product_id="BIG", shape=(4096, 4096), targets=SceneTargets())
    began = time.perf_counter()
    pixels = expected_pixels(spec, "GRD")
    mask = truth_mask(spec)
    elapsed = time.perf_counter() - began
    assert elapsed < 15, f"4096x4096 scene with targets took {elapsed:.1f} s"
    assert pixels.shape == mask.shape == (4096, 4096)


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
def test_training_stack_files(tmp_path: Path) -> None:
    stack = make_training_stack(tmp_path / "ts", n=3, shape=(96, 80), flavour="grd-cog", seed=4)
    assert [p.parent for p in stack.products] == [stack.products_folder] * 3
    assert {m.product_id for m in map(read_product, find_products(stack.products_folder))} == {
        s.product_id for s in stack.specs
    }
    assert all(s.targets == stack.specs[0].targets for s in stack.specs)
    assert stack.specs[0].targets is not None and stack.specs[0].targets.period is not None
    for k, (spec, mask_png) in enumerate(zip(stack.specs, stack.masks, strict=True)):
        with rasterio.open(mask_png) as src:
            assert np.array_equal(src.read(1), stack.truth(k))
        assert np.array_equal(stack.truth()[k], truth_mask(spec))
    entries = json.loads(stack.masks_json.read_text())
    assert [e["product_file"] for e in entries] == [p.name for p in stack.products]
    assert [(tmp_path / "ts" / "labels" / e["labels"]["segmentation"]) for e in entries] == list(
        stack.masks
    )
    objects = json.loads(stack.objects_json.read_text())
    assert [len(e["labels"]["objects"]) for e in objects] == [
        len(present_objects(s)) for s in stack.specs
    ]
    geo0 = json.loads(stack.geojson[0][0].read_text())
    assert [f["properties"]["class"] for f in geo0["features"]] == [
        o.label_class for o in present_objects(stack.specs[0])
    ]
    lons = [c[0] for f in geo0["features"] if f["geometry"]["type"] == "Point"
            for c in [f["geometry"]["coordinates"]]]  # fmt: skip
    assert all(abs(lon - stack.specs[0].center_lon) < 0.01 for lon in lons)
    assert stack.label_sources("geojson")[1] == (stack.geojson[1][0], (stack.specs[1].product_id,))
