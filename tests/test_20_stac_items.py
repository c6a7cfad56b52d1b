"""ProductMetadata -> STAC Item (SPEC §3), validated offline, and the accessors the build uses."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pystac
import pytest

from icecube_cloud.errors import CatalogError
from icecube_cloud.model import ProductFormat
from icecube_cloud.products.model import GroundControlPoint, ProductMetadata
from icecube_cloud.stac.items import (
    item_band_dtypes,
    item_data_href,
    item_format,
    item_physical_shape,
    product_to_item,
)
from icecube_cloud.stac.validate import validate_stac


def legacy_grd(**overrides: Any) -> ProductMetadata:
    """A legacy GRD GeoTIFF as the reader would describe it (realistic ICEYE 2.x values)."""
    fields: dict[str, Any] = dict(
        product_id="ICEYE_GRD_SLED_54549_20210427T215124",
        href="/data/stack/ICEYE_GRD_SLED_54549_20210427T215124.tif",
        format=ProductFormat.LEGACY_GRD,
        product_type="SpotlightExtendedDwell",
        acquisition_start=datetime(2021, 4, 27, 21, 51, 24, 500000, tzinfo=UTC),
        acquisition_end=datetime(2021, 4, 27, 21, 51, 34, 250000, tzinfo=UTC),
        platform="ICEYE-X7",
        instrument_mode="spotlight",
        polarizations=("VV",),
        center_frequency_ghz=9.65,
        incidence_angle=29.1,
        incidence_near=28.9,
        incidence_far=29.3,
        observation_direction="right",
        orbit_state="ascending",
        absolute_orbit=14561,
        relative_orbit=61,
        shape=(2000, 1500),
        dtype="uint16",
        pixel_spacing_range=0.5,
        pixel_spacing_azimuth=0.5,
        looks_range=1.0,
        looks_azimuth=5.0,
        calibration_factor=2.5e-05,
        footprint=(
            (24.80, 60.10),
            (24.84, 60.10),
            (24.84, 60.13),
            (24.80, 60.13),
            (24.80, 60.10),
        ),
        processing_software={"ICEYE_P": "2.1.0"},
        metadata={
            "product_level": "LEVEL1B",
            "satellite_name": "ICEYE-X7",
            "number_of_azimuth_samples": 2000,
            "range_spacing": 0.5,
            "calibration_factor": 99.0,  # collides with the typed field: the typed one wins
            "orbit_states": [[1.0, 2.0], [3.0, 4.0]],  # array: not copied
            "rpc": {"line_off": 1.0},  # object: not copied
            "aws_secret_access_key": "hunter2",  # credential-like: never copied
            "sar:center_frequency": 9600000000,  # another namespace: not copied
            "geo_ref_system": "WGS84",
        },
    )
    fields.update(overrides)
    return ProductMetadata(**fields)


def legacy_slc(**overrides: Any) -> ProductMetadata:
    """A legacy SLC HDF5 with GCPs instead of a footprint ring."""
    base = legacy_grd(
        product_id="ICEYE_SLC_SM_128305_20220101T101010",
        href="s3://iceye-bucket/slc/ICEYE_SLC_SM_128305_20220101T101010.h5",
        format=ProductFormat.LEGACY_SLC,
        product_type="StripmapHigh",
        instrument_mode="stripmap",
        orbit_state="descending",
        dtype="float32",
        footprint=(),
        gcps=tuple(
            GroundControlPoint(row=r, col=c, lon=24.8 + c * 1e-5, lat=60.1 + r * 1e-5)
            for r in (0.0, 1000.0, 1999.0)
            for c in (0.0, 750.0, 1499.0)
        ),
        metadata={"product_level": "LEVEL1A"},
    )
    fields = {f: getattr(base, f) for f in base.__dataclass_fields__}
    fields.update(overrides)
    return ProductMetadata(**fields)


def cog_grd(samples: Path) -> ProductMetadata:
    """The real ICEYE Open Data GRD-COG sidecar, as the COG reader would turn it into metadata."""
    sidecar_path = next((samples / "opendata").glob("*_GRD.json"))
    sidecar = json.loads(sidecar_path.read_text())
    p = sidecar["properties"]
    c, a, b, f, d, e = p["proj:transform"]  # GDAL order in the sidecar -> affine order
    rows, cols = p["proj:shape"]
    metadata = {k.removeprefix("iceye:"): v for k, v in p.items() if k.startswith("iceye:")}
    return ProductMetadata(
        product_id=sidecar["id"],
        href=f"s3://iceye-open-data/crop/{p['iceye:filename']}",
        format=ProductFormat.GRD_COG,
        product_type=p["sar:product_type"],
        acquisition_start=datetime.fromisoformat(p["start_datetime"]),
        acquisition_end=datetime.fromisoformat(p["end_datetime"]),
        datetime=datetime.fromisoformat(p["datetime"]),
        platform=p["platform"],
        instrument_mode=p["sar:instrument_mode"],
        polarizations=tuple(p["sar:polarizations"]),
        center_frequency_ghz=p["sar:center_frequency"] / 1e9,
        incidence_angle=p["view:incidence_angle"],
        incidence_near=p["iceye:incidence_angle_near"],
        incidence_far=p["iceye:incidence_angle_far"],
        observation_direction=p["sar:observation_direction"],
        orbit_state=p["sat:orbit_state"],
        shape=(cols, rows),
        orientation="shadows-down",
        dtype="uint16",
        pixel_spacing_range=p["sar:pixel_spacing_range"],
        pixel_spacing_azimuth=p["sar:pixel_spacing_azimuth"],
        looks_range=p["sar:looks_range"],
        looks_azimuth=p["sar:looks_azimuth"],
        calibration_factor=p["iceye:calibration_factor"],
        footprint=tuple(tuple(pt) for pt in sidecar["geometry"]["coordinates"][0]),
        transform=(a, b, c, d, e, f),
        crs=p["proj:code"],
        processing_software=p["processing:software"],
        sidecar=sidecar,
        metadata=metadata,
    )


ALL = [legacy_grd, legacy_slc, cog_grd]


def made(make: Any, request: pytest.FixtureRequest) -> ProductMetadata:
    """``make()``; ``cog_grd`` reads ICEYE's sidecar from the ``samples`` fixture."""
    return make(request.getfixturevalue("samples")) if make is cog_grd else make()


def item_dict(item: pystac.Item) -> dict[str, Any]:
    return item.to_dict(include_self_link=False, transform_hrefs=False)


def catalogued(item: pystac.Item) -> dict[str, Any]:
    """The item as a catalog holds it.

    STAC requires a rel=collection link when "collection" is set; a static catalog or a STAC API
    adds it (product_to_item cannot know where the collection lives).
    """
    d = item_dict(item)
    d["links"].append({"rel": "collection", "href": "../collection.json"})
    return d


@pytest.mark.parametrize("make", ALL, ids=lambda f: f.__name__)
def test_items_validate_offline(
    make: Any, request: pytest.FixtureRequest, stac_schemas: Path
) -> None:
    item = product_to_item(made(make, request))
    report = validate_stac(catalogued(item), stac_schemas)
    assert report.valid, report.errors
    assert report.skipped == ()
    assert item.stac_extensions and all(
        u.startswith("https://stac-extensions.github.io/") for u in item.stac_extensions
    )


def test_standalone_item_lacks_only_the_collection_link(stac_schemas: Path) -> None:
    errors = validate_stac(product_to_item(legacy_grd()), stac_schemas).errors
    assert len(errors) == 1 and "collection" in errors[0]


def test_broken_item_fails_validation(stac_schemas: Path) -> None:
    bad = catalogued(product_to_item(legacy_grd()))
    bad["properties"]["sar:polarizations"] = "VV"
    bad["properties"]["view:incidence_angle"] = 120
    report = validate_stac(bad, stac_schemas)
    assert not report.valid
    joined = "\n".join(report.errors)
    assert "sar:polarizations" in joined and "view:incidence_angle" in joined


def test_iceye_schema_is_skipped_not_fetched(samples: Path, stac_schemas: Path) -> None:
    sidecar = json.loads(next((samples / "opendata").glob("*_GRD.json")).read_text())
    report = validate_stac(sidecar, stac_schemas)
    assert report.skipped == ("https://sar.iceye.com/schema/product-spec/v0.2.2/schema.json",)


def test_unknown_extension_is_an_error(stac_schemas: Path) -> None:
    d = catalogued(product_to_item(legacy_grd()))
    d["stac_extensions"].append("https://example.com/ext/v9/schema.json")
    assert any(
        "not found in the offline mirror" in e for e in validate_stac(d, stac_schemas).errors
    )


def test_legacy_grd_properties() -> None:
    meta = legacy_grd()
    item = product_to_item(meta)
    p = item.properties
    assert item.id == meta.product_id
    assert item.collection_id == "iceye-grd"
    assert item.datetime == meta.acquisition_end
    assert p["start_datetime"] == "2021-04-27T21:51:24.500000Z"
    assert p["end_datetime"] == "2021-04-27T21:51:34.250000Z"
    assert p["constellation"] == "ICEYE" and p["platform"] == "ICEYE-X7"
    assert p["sar:frequency_band"] == "X"
    assert p["sar:center_frequency"] == pytest.approx(9.65)
    assert p["sar:polarizations"] == ["VV"]
    assert p["sar:product_type"] == "SpotlightExtendedDwell"
    assert p["sar:looks_range"] == 1 and isinstance(p["sar:looks_range"], int)
    assert p["sar:looks_azimuth"] == 5
    assert p["sar:observation_direction"] == "right"
    assert p["view:incidence_angle"] == 29.1
    assert p["sat:orbit_state"] == "ascending"
    assert (p["sat:absolute_orbit"], p["sat:relative_orbit"]) == (14561, 61)
    assert p["proj:code"] is None and "proj:transform" not in p
    assert p["proj:shape"] == [2000, 1500]
    assert p["processing:level"] == "L1B"
    assert p["processing:software"] == {"ICEYE_P": "2.1.0"}
    assert p["iceye:orientation"] == "native"
    assert p["iceye:calibration_factor"] == 2.5e-05
    assert p["iceye:incidence_angle_near"] == 28.9
    assert p["iceye:product_level"] == "LEVEL1B"
    assert p["iceye:number_of_azimuth_samples"] == 2000
    assert p["iceye:geo_ref_system"] == "WGS84"
    for absent in ("iceye:orbit_states", "iceye:rpc", "iceye:aws_secret_access_key"):
        assert absent not in p
    assert "hunter2" not in json.dumps(item_dict(item))
    assert not any(k.startswith("iceye:sar") for k in p)
    assert item.bbox == pytest.approx([24.80, 60.10, 24.84, 60.13])
    assert item.geometry is not None and item.geometry["type"] == "Polygon"


def test_legacy_grd_asset() -> None:
    item = product_to_item(legacy_grd())
    assert list(item.assets) == ["grd-tiff"]
    asset = item_dict(item)["assets"]["grd-tiff"]
    assert asset["href"] == "/data/stack/ICEYE_GRD_SLED_54549_20210427T215124.tif"
    assert asset["type"] == "image/tiff; application=geotiff"
    assert asset["roles"] == ["data"]
    assert asset["raster:bands"] == [{"name": "amplitude", "data_type": "uint16"}]


def test_legacy_slc_from_gcps() -> None:
    meta = legacy_slc()
    item = product_to_item(meta)
    assert item.collection_id == "iceye-slc"
    assert item.properties["sat:orbit_state"] == "descending"
    assert item.properties["processing:level"] == "L1A"
    assert item.bbox == pytest.approx([24.8, 60.1, 24.8 + 1499e-5, 60.1 + 1999e-5])
    asset = item_dict(item)["assets"]["slc-hdf5"]
    assert asset["href"] == meta.href  # s3:// URL kept verbatim
    assert asset["type"] == "application/x-hdf5"
    assert [b["name"] for b in asset["raster:bands"]] == ["i", "q"]
    assert item_band_dtypes(item) == ("float32", "float32")


def test_cog_from_real_sidecar(samples: Path) -> None:
    meta = cog_grd(samples)
    item = product_to_item(meta)
    p = item.properties
    sidecar_props = meta.sidecar["properties"] if meta.sidecar else {}
    assert item.id == meta.sidecar["id"] if meta.sidecar else False
    assert p["sar:center_frequency"] == pytest.approx(9.6)  # Hz in the sidecar, GHz in STAC
    assert item.datetime == datetime(2025, 11, 10, 18, 21, 11, 676000, tzinfo=UTC)
    assert p["proj:code"] == "EPSG:4326"
    assert p["proj:shape"] == sidecar_props["proj:shape"] == [1024, 512]
    c, a, b, f, d, e = sidecar_props["proj:transform"]
    assert p["proj:transform"] == [a, b, c, d, e, f]
    assert p["iceye:orientation"] == "shadows-down"
    assert p["iceye:scene_id"] == "6Q31WW"
    assert p["iceye:calibration_factor"] == sidecar_props["iceye:calibration_factor"]
    assert "iceye:orbit_states" not in p and "iceye:rpc" not in p
    assert set(item.assets) == {"grd-cog", "grd-json"}
    data = item_dict(item)["assets"]
    assert data["grd-cog"]["type"] == "image/tiff; application=geotiff; profile=cloud-optimized"
    assert data["grd-json"]["roles"] == ["metadata"]
    assert data["grd-json"]["href"] == meta.href.removesuffix(".tif") + ".json"
    assert item.bbox == pytest.approx(meta.sidecar["bbox"] if meta.sidecar else [])


def test_datetime_falls_back_to_acquisition_end() -> None:
    meta = legacy_grd(datetime=datetime(2021, 4, 27, 21, 51, 30, tzinfo=UTC))
    assert product_to_item(meta).datetime == datetime(2021, 4, 27, 21, 51, 30, tzinfo=UTC)
    assert product_to_item(legacy_grd()).datetime == legacy_grd().acquisition_end


def test_footprint_from_transform_corners(stac_schemas: Path) -> None:
    meta = legacy_grd(footprint=(), transform=(1e-5, 0.0, 24.8, 0.0, -1e-5, 60.2), crs="EPSG:4326")
    item = product_to_item(meta)
    assert item.bbox == pytest.approx([24.8, 60.2 - 2000e-5, 24.8 + 1500e-5, 60.2])
    assert item.properties["proj:code"] == "EPSG:4326"
    assert validate_stac(catalogued(item), stac_schemas).valid


def test_footprint_from_rpc(stac_schemas: Path) -> None:
    """No corner tags and no GCPs: the RPC's image corners make the footprint."""
    from icecube_cloud.synthetic import SyntheticSpec
    from icecube_cloud.synthetic.spec import geo, rpc_coefficients

    spec = SyntheticSpec(product_id="p", shape=(2000, 1500), center_lon=24.82, center_lat=60.11)
    meta = legacy_grd(footprint=(), gcps=(), rpc=rpc_coefficients(spec))
    item = product_to_item(meta)
    corners = geo(spec, np.array([0, 0, 2000, 2000]), np.array([0, 1500, 0, 1500]))
    assert item.bbox == pytest.approx([*corners.min(axis=0), *corners.max(axis=0)], abs=1e-9)
    assert validate_stac(catalogued(item), stac_schemas).valid


def test_no_footprint_is_an_error_naming_the_product() -> None:
    with pytest.raises(CatalogError, match="ICEYE_GRD_SLED_54549"):
        product_to_item(legacy_grd(footprint=()))


def test_fractional_looks_kept_as_iceye_field(stac_schemas: Path) -> None:
    item = product_to_item(legacy_grd(looks_azimuth=4.6))
    assert "sar:looks_azimuth" not in item.properties
    assert item.properties["iceye:looks_azimuth"] == 4.6
    assert validate_stac(catalogued(item), stac_schemas).valid


@pytest.mark.parametrize(
    ("make", "fmt", "shape", "dtypes"),
    [
        (legacy_grd, ProductFormat.LEGACY_GRD, (2000, 1500), ("uint16",)),
        (legacy_slc, ProductFormat.LEGACY_SLC, (2000, 1500), ("float32", "float32")),
        (cog_grd, ProductFormat.GRD_COG, (512, 1024), ("uint16",)),
    ],
)
def test_accessors_roundtrip_through_json(
    make: Any,
    fmt: ProductFormat,
    shape: tuple[int, int],
    dtypes: tuple[str, ...],
    request: pytest.FixtureRequest,
) -> None:
    meta = made(make, request)
    item = pystac.Item.from_dict(item_dict(product_to_item(meta)))
    assert item_format(item) is fmt
    assert item_data_href(item) == meta.href
    assert item_physical_shape(item) == shape == meta.shape
    assert item_band_dtypes(item) == dtypes


def test_slc_cog_bands(samples: Path, stac_schemas: Path) -> None:
    meta = cog_grd(samples)
    slc = ProductMetadata(
        **{
            **{f: getattr(meta, f) for f in meta.__dataclass_fields__},
            "format": ProductFormat.SLC_COG,
            "product_type": "SLC-COG",
            "dtype": "float32",
            "sidecar": None,
            "href": "/data/x_SLC.tif",
        }
    )
    item = product_to_item(slc)
    assert item.collection_id == "iceye-slc"
    bands = item.assets["slc-cog"].extra_fields["raster:bands"]
    assert [b["name"] for b in bands] == ["amplitude", "phase"]
    assert item.assets["slc-json"].href == "/data/x_SLC.json"
    assert validate_stac(catalogued(item), stac_schemas).valid


def test_accessor_errors_name_the_item() -> None:
    d = item_dict(product_to_item(legacy_grd()))
    broken = copy.deepcopy(d)
    del broken["assets"]["grd-tiff"]
    with pytest.raises(CatalogError, match=d["id"]):
        item_format(pystac.Item.from_dict(broken))
    broken = copy.deepcopy(d)
    del broken["properties"]["proj:shape"]
    with pytest.raises(CatalogError, match=d["id"]):
        item_physical_shape(pystac.Item.from_dict(broken))
    broken = copy.deepcopy(d)
    del broken["assets"]["grd-tiff"]["raster:bands"]
    with pytest.raises(CatalogError, match=d["id"]):
        item_band_dtypes(pystac.Item.from_dict(broken))
