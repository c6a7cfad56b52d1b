"""Labels: icecube JSON / masks / GeoJSON in lon/lat -> STAC label items; map -> SAR; cube rasters."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
import shapely
from click.testing import CliRunner
from rasterio.transform import AffineTransformer, GCPTransformer, RPCTransformer

from icecube_cloud.cli import cli
from icecube_cloud.ingest import ingest
from icecube_cloud.labels import (
    LabelFormatError,
    MaskShapeError,
    UnknownProductError,
    flag_attrs,
    ingest_labels,
    label_classes,
    label_mask,
    label_vectors,
    labels_by_product,
    lonlat_to_pixel,
)
from icecube_cloud.products import read_product
from icecube_cloud.stac.catalogs import open_catalog
from icecube_cloud.stac.validate import validate_stac
from icecube_cloud.synthetic import (
    CLASSES,
    Flavour,
    SyntheticSpec,
    make_training_stack,
    present_objects,
    write_cog,
    write_legacy_grd,
)
from icecube_cloud.synthetic.spec import geo

pytestmark = pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
STEM = "ICEYE_GRD_54549_20210427T215124_hollow_10x10pixels_fake_"


@pytest.fixture
def sample_catalog(tmp_path: Path, samples: Path) -> str:
    cat = str(tmp_path / "cat")
    ingest([str(samples / "grd_stack")], cat)
    return cat


def _label_items(cat: str) -> dict[str, Any]:
    items = list(open_catalog(cat).items(["iceye-labels"]))
    return labels_by_product(items)


def _mask_json(tmp_path: Path, samples: Path) -> Path:
    entries = [
        {"product_file": f"{STEM}{i}.tif", "labels": {"segmentation": str(samples / "masks" / f"{STEM}{i}.png")}}
        for i in range(3)
    ]  # fmt: skip
    path = tmp_path / "labels" / "masks.json"
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(entries))
    return path


# --- icecube labels JSON (pixel coordinates) ------------------------------------------------------


def test_sample_vector_labels_ingest_as_valid_items(
    sample_catalog: str, samples: Path, stac_schemas: Path
) -> None:
    result = ingest_labels(str(samples / "labels" / "dummy_vector_labels.json"), sample_catalog)
    assert sorted(result.products) == [f"{STEM}{i}" for i in range(3)]
    root = Path(sample_catalog) / "iceye-labels"
    for item_id, product in zip(result.items, result.products, strict=True):
        data = json.loads((root / item_id / f"{item_id}.json").read_text())
        report = validate_stac(data, stac_schemas)
        assert report.valid, report.errors
        props = data["properties"]
        assert props["label:type"] == "vector"
        assert props["label:tasks"] == ["detection"]
        assert props["label:classes"] == [
            {"name": "class", "classes": ["rand-a", "rand-b", "rand-c"]}
        ]
        # Links and assets inside the catalog are relative to the item (a movable catalog).
        (source,) = [ln for ln in data["links"] if ln["rel"] == "source"]
        assert source["href"] == f"../../iceye-grd/{product}/{product}.json"
        product_json = root / item_id / source["href"]
        assert product_json.is_file() and json.loads(product_json.read_text())["id"] == product
        assert source["label:assets"] == ["grd-tiff"]
        assert data["assets"]["labels"]["roles"] == ["labels", "labels-vector"]
        assert data["assets"]["labels"]["href"] == f"./{item_id}.geojson"
        assert (root / item_id / f"{item_id}.geojson").is_file()
        assert "labels-lonlat" not in data["assets"]  # pixel labels: no map geometry
    # Re-ingest replaces, never duplicates.
    again = ingest_labels(str(samples / "labels" / "dummy_vector_labels.json"), sample_catalog)
    assert sorted(again.updated) == sorted(result.items) and not again.added


def test_bbox_raster_matches_hand_computed_inclusive_boxes(
    sample_catalog: str, samples: Path
) -> None:
    """icecube boxes are inclusive: pixels xmin..xmax (range) x ymin..ymax (azimuth); later wins."""
    ingest_labels(str(samples / "labels" / "dummy_vector_labels.json"), sample_catalog)
    by_product = _label_items(sample_catalog)
    classes = label_classes([i for items in by_product.values() for i in items])
    assert classes == {"rand-a": 1, "rand-b": 2, "rand-c": 3}
    assert flag_attrs(classes) == {
        "flag_values": [1, 2, 3],
        "flag_meanings": "rand-a rand-b rand-c",
    }
    source = json.loads((samples / "labels" / "dummy_vector_labels.json").read_text())
    for entry in source:
        pid = entry["product_file"].removesuffix(".tif")
        want = np.zeros((10, 10), np.uint8)
        for obj in entry["labels"]["objects"]:
            b = obj["bbox"]
            want[b["ymin"] : b["ymax"] + 1, b["xmin"] : b["xmax"] + 1] = classes[obj["class"]]
        got = label_mask(by_product[pid], (10, 10), classes)
        assert got.dtype == np.uint8
        np.testing.assert_array_equal(got, want)
        vectors = label_vectors(by_product[pid])
        assert len(vectors) == len(entry["labels"]["objects"])
        b = entry["labels"]["objects"][0]["bbox"]
        geom = shapely.from_wkt(vectors[0][0])
        assert geom.bounds == (b["xmin"], b["ymin"], b["xmax"] + 1, b["ymax"] + 1)
        assert vectors[0][1] == entry["labels"]["objects"][0]["class"]


def test_segmentation_masks_land_exactly(
    tmp_path: Path, sample_catalog: str, samples: Path, stac_schemas: Path
) -> None:
    result = ingest_labels(str(_mask_json(tmp_path, samples)), sample_catalog)
    by_product = _label_items(sample_catalog)
    classes = label_classes([i for items in by_product.values() for i in items])
    assert classes == {"class_255": 255}
    for pid in result.products:
        (item,) = by_product[pid]
        assert item.properties["label:type"] == "raster"
        assert item.properties["label:tasks"] == ["segmentation"]
        assert item.assets["mask"].href == str(samples / "masks" / f"{pid}.png")
        assert validate_stac(item.to_dict(transform_hrefs=False), stac_schemas).valid
        with rasterio.open(samples / "masks" / f"{pid}.png") as src:
            np.testing.assert_array_equal(label_mask([item], (10, 10), classes), src.read(1))


def test_masks_and_boxes_share_one_coding(
    tmp_path: Path, sample_catalog: str, samples: Path
) -> None:
    ingest_labels(str(_mask_json(tmp_path, samples)), sample_catalog)
    ingest_labels(str(samples / "labels" / "dummy_vector_labels.json"), sample_catalog)
    items = [i for items in _label_items(sample_catalog).values() for i in items]
    assert label_classes(items) == {"rand-a": 1, "rand-b": 2, "rand-c": 3, "class_255": 255}


def test_relative_mask_path_and_classification_tags(
    tmp_path: Path, sample_catalog: str, samples: Path, stac_schemas: Path
) -> None:
    folder = tmp_path / "lbl"
    (folder / "masks").mkdir(parents=True)
    shutil.copy(
        samples / "masks" / f"{STEM}0.png", folder / "masks" / "m.png"
    )  # into tmp, not samples
    entry = {"product_file": f"{STEM}0", "labels": {"segmentation": "masks/m.png", "objects": [
        {"classification": ["ship", "calm-sea"]}, {"class": "boat", "point": {"x": 3, "y": 7}},
        {"class": "slick", "polygon": [[1, 1], [5, 1], [5, 4]]}]}}  # fmt: skip
    (folder / "l.json").write_text(json.dumps([entry]))
    (pid,) = ingest_labels(str(folder / "l.json"), sample_catalog).products
    (item,) = _label_items(sample_catalog)[pid]
    assert item.assets["mask"].href == str(folder / "masks" / "m.png")
    assert item.properties["label:tasks"] == ["classification", "detection", "segmentation"]
    assert validate_stac(item.to_dict(transform_hrefs=False), stac_schemas).valid
    classes = label_classes([item])
    got = label_mask([item], (10, 10), classes)
    assert got[7, 3] == classes["boat"]  # point: its pixel
    assert [c for _, c in label_vectors([item])] == ["boat", "slick"]  # tags have no geometry


@pytest.mark.parametrize(
    ("entry", "error", "words"),
    [
        ({"product_file": "nope.tif", "labels": {"objects": [{"class": "a", "point": [1, 1]}]}},
         UnknownProductError, "'nope.tif' is not in the catalog"),
        ({"product_file": f"{STEM}0.tif", "labels": {"objects": [{"class": "a", "circle": [1]}]}},
         LabelFormatError, "unknown label type"),
        ({"product_file": f"{STEM}0.tif", "labels": {"keypoints": []}},
         LabelFormatError, "unknown label type 'keypoints'"),
    ],
)  # fmt: skip
def test_bad_labels_are_clear_errors(
    tmp_path: Path, sample_catalog: str, entry: dict[str, Any], error: type[Exception], words: str
) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps([entry]))
    with pytest.raises(error, match=words) as info:
        ingest_labels(str(path), sample_catalog)
    assert str(path) in str(info.value)
    assert not (Path(sample_catalog) / "iceye-labels").exists()  # nothing registered


def test_wrong_shape_mask_is_an_error(tmp_path: Path, sample_catalog: str) -> None:
    mask = tmp_path / "small.png"
    with rasterio.open(mask, "w", driver="PNG", width=5, height=4, count=1, dtype="uint8") as dst:
        dst.write(np.ones((1, 4, 5), np.uint8))
    path = tmp_path / "m.json"
    path.write_text(
        json.dumps([{"product_file": f"{STEM}1.tif", "labels": {"segmentation": str(mask)}}])
    )
    with pytest.raises(
        MaskShapeError,
        match=r"mask shape 4x5 does not match product .*fake_1 \(10 azimuth x 10 range\)",
    ):
        ingest_labels(str(path), sample_catalog)


def test_unreadable_json_is_an_error(tmp_path: Path, sample_catalog: str) -> None:
    path = tmp_path / "broken.json"
    path.write_text("[{")
    with pytest.raises(LabelFormatError, match="cannot read labels JSON"):
        ingest_labels(str(path), sample_catalog)


def test_cli_catalog_labels_exit_codes(tmp_path: Path, sample_catalog: str, samples: Path) -> None:
    runner = CliRunner()
    ok = runner.invoke(cli, ["catalog", "labels", str(samples / "labels" / "dummy_vector_labels.json"),
                             "--stac-url", sample_catalog])  # fmt: skip
    assert ok.exit_code == 0, ok.output
    assert "3 label items added" in ok.output
    bad = tmp_path / "bad.json"
    bad.write_text(
        json.dumps(
            [{"product_file": "other.tif", "labels": {"objects": [{"classification": "x"}]}}]
        )
    )
    unknown = runner.invoke(cli, ["catalog", "labels", str(bad), "--stac-url", sample_catalog])
    assert unknown.exit_code == 1 and "other.tif" in unknown.output
    usage = runner.invoke(cli, ["catalog", "labels", str(bad)])
    assert usage.exit_code == 2
    api = runner.invoke(cli, ["catalog", "labels", str(bad), "--stac-url", "http://127.0.0.1:9/"])
    assert api.exit_code == 2 and "--assets-url" in api.output


# --- map (lon/lat) -> SAR pixel geometry ------------------------------------------------------------

SPEC = SyntheticSpec(product_id="ICEYE_GEO_TEST", shape=(48, 64))
# Physical (azimuth, range) positions of a polygon's vertices, continuous pixel coordinates.
TRUE_AZ_RG = np.array([[5.3, 7.1], [9.0, 50.5], [40.2, 44.0], [30.7, 3.3]])


def _polygon_lonlat() -> np.ndarray:
    return geo(SPEC, TRUE_AZ_RG[:, 0], TRUE_AZ_RG[:, 1])


@pytest.mark.parametrize("method", ["gcps", "rpc"])
def test_legacy_grd_lonlat_to_pixel_matches_rasterio(tmp_path: Path, method: str) -> None:
    tif = write_legacy_grd(tmp_path / "p.tif", SPEC)
    meta = read_product(str(tif))
    lonlat = _polygon_lonlat()
    x, y = lonlat_to_pixel(meta, lonlat[:, 0], lonlat[:, 1], method=method)  # type: ignore[arg-type]
    with rasterio.open(tif) as src:  # independent: rasterio straight from the file
        if method == "gcps":
            tr = GCPTransformer(src.gcps[0])
            z = np.full(len(lonlat), np.mean([g.z for g in src.gcps[0]]))
        else:
            tr = RPCTransformer(src.rpcs)
            z = np.full(len(lonlat), src.rpcs.height_off)
        with tr:
            rows, cols = tr.rowcol(lonlat[:, 0], lonlat[:, 1], zs=z, op=np.positive)
    assert np.all(np.abs(x - cols) < 0.5) and np.all(np.abs(y - rows) < 0.5)
    # and the generator's truth (range = x, azimuth = y): its GCPs and RPC model the same geometry
    # exactly (GDAL reads RPC line/sample as pixel centres, the generator's offsets say so).
    tol = 1e-6
    assert np.all(np.abs(x - TRUE_AZ_RG[:, 1]) < tol) and np.all(np.abs(y - TRUE_AZ_RG[:, 0]) < tol)


def test_cog_lonlat_to_pixel_undoes_shadows_down(tmp_path: Path) -> None:
    tif, _ = write_cog(tmp_path, SPEC)
    meta = read_product(str(tif))
    assert meta.orientation == "shadows-down"
    lonlat = _polygon_lonlat()
    x, y = lonlat_to_pixel(meta, lonlat[:, 0], lonlat[:, 1])
    with rasterio.open(tif) as src, AffineTransformer(src.transform) as tr:
        rows, cols = tr.rowcol(lonlat[:, 0], lonlat[:, 1], op=np.positive)
        n_cols = src.width
    # shadows-down: range runs down the rows, azimuth backwards along the columns
    assert np.all(np.abs(x - rows) < 0.5) and np.all(np.abs(y - (n_cols - cols)) < 0.5)
    assert np.all(np.abs(x - TRUE_AZ_RG[:, 1]) < 0.5) and np.all(np.abs(y - TRUE_AZ_RG[:, 0]) < 0.5)


@pytest.mark.parametrize("flavour", ["legacy", "cog"])
def test_geojson_labels_land_where_rasterio_puts_them(
    tmp_path: Path, flavour: str, stac_schemas: Path
) -> None:
    products = tmp_path / "products"
    products.mkdir()
    if flavour == "legacy":
        write_legacy_grd(products / f"{SPEC.product_id}.tif", SPEC)
    else:
        write_cog(products, SPEC)
    other = SyntheticSpec(product_id="FAR_AWAY", shape=(16, 16), center_lon=20.0, center_lat=60.0)
    write_legacy_grd(products / "FAR_AWAY.tif", other)
    cat = str(tmp_path / "cat")
    ingest([str(products)], cat)
    lonlat = _polygon_lonlat()
    ring = [*map(list, lonlat), list(lonlat[0])]
    fc = {"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {"label": "field"},
         "geometry": {"type": "Polygon", "coordinates": [ring]}}]}  # fmt: skip
    (tmp_path / "map.geojson").write_text(json.dumps(fc))
    result = ingest_labels(str(tmp_path / "map.geojson"), cat)
    assert len(result.products) == 1 and result.products[0] != "FAR_AWAY"  # matched by footprint
    (item,) = _label_items(cat)[result.products[0]]
    assert validate_stac(item.to_dict(transform_hrefs=False), stac_schemas).valid
    ((wkt, cls),) = label_vectors([item])
    assert cls == "field"
    got = np.array(shapely.from_wkt(wkt).exterior.coords)[:-1]
    # the same vertices (in some order): within half a pixel of the truth (x = range, y = azimuth)
    for rg_az in TRUE_AZ_RG[:, ::-1]:
        assert np.min(np.hypot(*(got - rg_az).T)) < 0.5
    mask = label_mask([item], SPEC.shape, label_classes([item]))
    assert mask[20, 30] == 1 and mask[0, 0] == 0
    # The lon/lat geometry is kept as given, beside the pixel one (map-geometry cubes draw it).
    asset = item.assets["labels-lonlat"]
    assert asset.href == item.assets["labels"].href.removesuffix(".geojson") + ".lonlat.geojson"
    (feature,) = json.loads(Path(asset.href).read_text())["features"]
    assert feature["properties"]["class"] == "field"
    np.testing.assert_array_equal(feature["geometry"]["coordinates"], [ring])


def test_geojson_unknown_geometry_and_missing_product(tmp_path: Path, samples: Path) -> None:
    cat = str(tmp_path / "cat")
    ingest([str(samples / "grd_stack")], cat)
    fc = {"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {"class": "x"},
         "geometry": {"type": "GeometryCollection", "geometries": []}}]}  # fmt: skip
    (tmp_path / "a.geojson").write_text(json.dumps(fc))
    with pytest.raises(
        LabelFormatError, match="feature 0: unknown geometry kind 'GeometryCollection'"
    ):
        ingest_labels(str(tmp_path / "a.geojson"), cat)
    fc["features"][0]["geometry"] = {"type": "Point", "coordinates": [100.0, 10.0]}
    (tmp_path / "b.geojson").write_text(json.dumps(fc))
    with pytest.raises(UnknownProductError, match="no product of the catalog intersects"):
        ingest_labels(str(tmp_path / "b.geojson"), cat)
    with pytest.raises(UnknownProductError, match="'missing' is not in the catalog"):
        ingest_labels(str(tmp_path / "b.geojson"), cat, products=["missing"])


# --- the generator's training stacks: written labels rasterise back to the truth --------------------


def _centres_on_water_edges(spec: SyntheticSpec, tol: float = 1e-6) -> np.ndarray:
    """Pixels whose centre lies within ``tol`` of a water polygon's edge (their side is a tie)."""
    out = np.zeros(spec.shape, bool)
    az, rg = np.mgrid[0 : spec.shape[0], 0 : spec.shape[1]]
    centres = shapely.points(rg.ravel() + 0.5, az.ravel() + 0.5)
    for obj in present_objects(spec):
        if obj.kind == "polygon":
            near = shapely.distance(obj.geometry.boundary, centres) < tol
            out |= near.reshape(spec.shape)
    return out


@pytest.mark.parametrize("flavour", ["legacy-grd", "grd-cog"])
def test_training_stack_labels_rasterise_to_the_truth(tmp_path: Path, flavour: Flavour) -> None:
    """icecube objects JSON and masks: exact; lon/lat GeoJSON: exact but for ties on water edges."""
    stack = make_training_stack(tmp_path / "ts", n=3, shape=(120, 100), flavour=flavour, seed=6)
    assert any(o.kind == "polygon" for o in present_objects(stack.specs[0]))
    for kind in ("objects", "masks", "geojson"):
        cat = str(tmp_path / f"cat-{kind}")
        ingest([str(stack.products_folder)], cat)
        for path, products in stack.label_sources(kind):  # type: ignore[arg-type]
            ingest_labels(str(path), cat, products=products)
        by_product = _label_items(cat)
        classes = label_classes([it for items in by_product.values() for it in items])
        codes = {"objects": CLASSES, "geojson": CLASSES,
                 "masks": {f"class_{v}": v for v in CLASSES.values()}}[kind]  # fmt: skip
        assert classes == dict(sorted(codes.items(), key=lambda kv: kv[1]))  # truth's coding
        for k, spec in enumerate(stack.specs):
            got = label_mask(by_product[spec.product_id], spec.shape, classes)
            differ = got != stack.truth(k)
            if kind != "geojson":
                assert not differ.any(), (kind, spec.product_id)
            else:  # ~1e-9 px through lon/lat: only a centre exactly on an edge may change sides
                assert not (differ & ~_centres_on_water_edges(spec)).any(), spec.product_id
