"""The cube's documents rendered with zarr alone equal xarray's rendering of the same arrays.

Builds render their skeleton without xarray (``write/schema.render_zarr_v3``, for the import cost);
readers rely on xarray's conventions. Each kind of cube is checked object by object: every array
document, every coordinate chunk and the root document with its consolidated metadata.
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import xarray as xr
import zarr
from zarr.core.buffer.cpu import Buffer

from icecube_cloud.build import plan_cube
from icecube_cloud.ingest import ingest
from icecube_cloud.labels import ingest_labels
from icecube_cloud.synthetic import make_stack
from icecube_cloud.write.schema import (
    ArraySpec,
    CubeSchema,
    decode_times,
    render_dataset,
    render_zarr_v3,
    to_dataset,
)
from icecube_cloud.write.skeleton import label_vectors_of, skeleton

START = datetime(2021, 4, 20, tzinfo=UTC)


def _catalog(root: Path, flavour: str, **stack: Any) -> str:
    make_stack(root / "products", start=START, flavour=flavour, seed=3, **stack)
    cat = str(root / "cat")
    ingest([str(root / "products")], cat)
    feature = {
        "type": "Feature",
        "properties": {"class": "field"},
        "geometry": {
            "type": "Polygon",
            "coordinates": [
                [[-6.2542, 37.4458], [-6.2538, 37.4458], [-6.2538, 37.4461], [-6.2542, 37.4458]]
            ],
        },
    }
    (root / "labels.geojson").write_text(
        json.dumps({"type": "FeatureCollection", "features": [feature]})
    )
    ingest_labels(str(root / "labels.geojson"), cat)
    return cat


def _documents(docs: dict[str, bytes]) -> dict[str, Any]:
    """JSON documents parsed, chunks as bytes."""
    return {k: json.loads(v) if k.endswith("zarr.json") else v for k, v in docs.items()}


def _assert_same_as_xarray(schema: CubeSchema) -> None:
    ours = render_zarr_v3(schema)
    theirs = render_dataset(*to_dataset(schema))
    assert sorted(ours) == sorted(theirs)
    got, want = _documents(ours), _documents(theirs)
    for key in sorted(want):
        assert got[key] == want[key], key


CASES = {
    "grd-gaps-labels-shards": (
        "legacy-grd",
        {"n": 4, "days": 12, "shape": (64, 48)},
        {"temporal_resolution": 2, "labels": True, "chunks": {"azimuth": 32, "range": 32},
         "shards": {"azimuth": 64, "range": 32}},
    ),
    "slc": ("legacy-slc", {"n": 3, "days": 3, "shape": (40, 30)}, {}),
    "slc-cog": ("slc-cog", {"n": 2, "days": 2, "shape": (40, 30)}, {}),
    "map-labels": (
        "grd-cog",
        {"n": 3, "days": 3, "shape": (60, 50), "pixel_spacing_range": 1.0,
         "pixel_spacing_azimuth": 1.0},
        {"grid": {"resolution": 1.5}, "labels": True},
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(CASES))
def test_skeleton_documents_equal_xarrays(tmp_path, case):
    flavour, stack, config = CASES[case]
    plan = plan_cube(_catalog(tmp_path, flavour, **stack), config)
    metadata = ["" if s.source is None else json.dumps({"id": s.source.item_id, "é": [1.5, None]})
                for s in plan.slices]  # fmt: skip
    schema = skeleton(plan, metadata, label_vectors_of(plan, {}))
    if "labels" in config:
        assert "labels" in schema.arrays
        assert schema.arrays["label_geometry"].shape[1] > 0  # the case has vector labels
    if "temporal_resolution" in config:
        assert not all(s.valid for s in plan.slices)  # the case has gap slices
    _assert_same_as_xarray(schema)


def test_rendered_cube_reads_back_through_xarray():
    """Values survive the renderer's own encoding: times to the microsecond, NaT, NaN, strings."""
    times = np.array(["2021-04-20T10:00:00.123456", "NaT"], dtype="datetime64[ns]")
    schema = CubeSchema(
        {
            "pixels": ArraySpec(("time", "y"), (2, 3), np.dtype("uint16"), None, {}, {}, coord=False),
            "time": ArraySpec.of(("time",), np.array(["2021-04-20", "2021-04-21"], dtype="datetime64[ns]"),
                                 encoding={"units": "microseconds since 1970-01-01", "dtype": "int64"}),
            "start": ArraySpec.of(("time",), times, encoding={
                "units": "microseconds since 1970-01-01", "dtype": "int64",
                "_FillValue": np.iinfo(np.int64).min, "fill_value": np.iinfo(np.int64).min}),
            "angle": ArraySpec.of(("time",), np.array([31.5, np.nan]),
                                  encoding={"_FillValue": np.nan, "fill_value": np.nan}),
            "name": ArraySpec.of(("time",), np.array(["ä", ""], dtype=object)),
        },
        {"product_type": "GRD", "config": {"a": [1, 2]}},
    )  # fmt: skip
    _assert_same_as_xarray(schema)
    docs = render_zarr_v3(schema)
    store = zarr.storage.MemoryStore({k: Buffer.from_bytes(v) for k, v in docs.items()})
    ds = xr.open_zarr(store, consolidated=True, zarr_format=3)
    np.testing.assert_array_equal(ds["start"].values, times)
    np.testing.assert_array_equal(ds["angle"].values, [31.5, np.nan])
    assert ds["name"].values.tolist() == ["ä", ""]
    assert ds.attrs["config"] == {"a": [1, 2]}
    assert set(ds["pixels"].coords) == {"time", "start", "angle", "name"}
    assert json.loads(docs["pixels/zarr.json"])["attributes"]["coordinates"] == "angle name start"


def test_times_finer_than_the_units_are_refused():
    times = np.array(["2021-04-20T10:00:00.000000001"], dtype="datetime64[ns]")
    spec = ArraySpec.of(("time",), times, encoding={"units": "microseconds since 1970-01-01",
                                                     "dtype": "int64"})  # fmt: skip
    with pytest.raises(ValueError, match="cannot be stored exactly"):
        render_zarr_v3(CubeSchema({"time": spec}, {}))


def test_build_and_update_import_no_xarray_pandas_dask_array_or_label_drawing():
    """The build stack stays lean to import (issue #16, fixed cost): what a plain build or update of a
    Zarr cube without labels needs, and not what other commands, virtual cubes or labels need."""
    heavy = ["xarray", "pandas", "dask.array", "rasterio.features", "kerchunk", "torch"]
    code = (
        "import sys, icecube_cloud.cli, icecube_cloud.build, icecube_cloud.update, "
        "icecube_cloud.labels.items; "
        f"print([m for m in {heavy!r} if m in sys.modules])"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert run.stdout.strip() == "[]"


def test_labels_package_names_resolve_lazily():
    import icecube_cloud.labels as labels

    assert sorted(labels.__all__) == sorted(labels._WHERE)
    for name in labels.__all__:
        assert getattr(labels, name).__name__ == name
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        labels.nope  # noqa: B018


def test_stored_times_decode_back():
    """``update`` reads time axes with zarr: our own encoding, NaT fill, and other CF units."""
    times = np.array(["2021-04-20T10:00:00.123456", "NaT"], dtype="datetime64[ns]")
    stored = np.array([1618912800123456, np.iinfo(np.int64).min])
    attrs = {"units": "microseconds since 1970-01-01", "calendar": "proleptic_gregorian",
             "_FillValue": int(np.iinfo(np.int64).min)}  # fmt: skip
    np.testing.assert_array_equal(decode_times(stored, attrs), times)
    other = decode_times(np.array([0, 36]), {"units": "hours since 2021-04-20"})  # xarray's decoder
    np.testing.assert_array_equal(
        other, np.array(["2021-04-20", "2021-04-21T12"], "datetime64[ns]")
    )
