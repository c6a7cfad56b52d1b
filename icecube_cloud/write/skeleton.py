"""The cube's documents: everything a build writes but the pixel chunks, rendered in memory.

:func:`skeleton` describes the cube's arrays as a :class:`~icecube_cloud.write.schema.CubeSchema`
(pixel variables as placeholders whose chunks the band tasks write); :func:`skeleton_documents`
renders its Zarr v3 objects (array documents, coordinate chunks, and the root group document with the
consolidated metadata of every array) with zarr alone, so that they are written in one batch, the root
document last (:mod:`icecube_cloud.write.journal`). A virtual cube inlines the same coordinates.
Label and map-grid modules are imported only by cubes that have labels or a grid.
"""

from __future__ import annotations

import dataclasses
import posixpath
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import pystac
import zarr.codecs

from icecube_cloud.model import Compression, SourceRef
from icecube_cloud.plan import CubePlan
from icecube_cloud.storage import StorageTarget, is_remote
from icecube_cloud.write.coords import GAP_STRING, STRING_COORDS, coord_encoding
from icecube_cloud.write.schema import ArraySpec, CubeSchema, render_zarr_v3

_VARIABLE_ATTRS: dict[str, dict[str, str]] = {
    "amplitude": {
        "long_name": "SAR amplitude (digital number)",
        "units": "1",
        "comment": "ICEYE GRD amplitude as delivered, bit-exact; calibrated intensity is "
        "calibration_factor * amplitude**2",
    },
    "slc": {
        "long_name": "single-look complex SAR signal",
        "units": "1",
        "comment": "ICEYE SLC as delivered: s_i + 1j*s_q (legacy) or amplitude*exp(1j*phase) (COG)",
    },
}


def _dt64(values: Sequence[Any]) -> npt.NDArray[np.datetime64]:
    return np.array(
        [
            np.datetime64("NaT", "ns") if v is None else np.datetime64(v.replace(tzinfo=None), "ns")
            for v in values
        ],
        dtype="datetime64[ns]",
    )


def skeleton(
    plan: CubePlan,
    metadata_json: Sequence[str],
    label_vectors: Sequence[Sequence[tuple[str, str]]] | None = None,
) -> CubeSchema:
    """The cube's arrays; its pixel variables (and labels raster) are placeholders.

    Args:
        plan: The cube plan.
        metadata_json: One full-metadata JSON string per time slice ("" for gaps).
        label_vectors: With labels: per time slice, the (WKT in pixel coordinates, class) pairs.
    """
    coords = [s.coords for s in plan.slices]
    enc = _encoding(plan)

    def per_time(attr: str, fill: Any) -> list[Any]:
        return [fill if c is None else getattr(c, attr) for c in coords]

    arrays: dict[str, ArraySpec] = {
        plan.variable: ArraySpec(
            ("time", *plan.dims),
            (len(plan.slices), *plan.shape),
            np.dtype(plan.dtype),
            None,
            dict(_VARIABLE_ATTRS[plan.variable]),
            enc[plan.variable],
            coord=False,
        )
    }
    per_time_values: dict[str, tuple[npt.NDArray[Any], dict[str, str]]] = {
        "time": (
            _dt64([s.time for s in plan.slices]),
            {"comment": "acquisition end (UTC), or bin start with temporal_resolution > 0"},
        ),
        "acquisition_start": (_dt64(per_time("acquisition_start", None)), {}),
        "acquisition_end": (_dt64(per_time("acquisition_end", None)), {}),
        "incidence_angle": (
            np.array(per_time("incidence_angle", np.nan), dtype="float64"),
            {"units": "degree"},
        ),
        "calibration_factor": (
            np.array(per_time("calibration_factor", np.nan), dtype="float64"),
            {},
        ),
        "valid": (
            np.array([s.valid for s in plan.slices], dtype=bool),
            {
                "comment": "false for gap slices: no image; their per-time coordinates hold fill "
                "values (NaT, NaN, '')"
            },
        ),
        "metadata": (
            np.array(list(metadata_json), dtype=object),
            {"comment": "full product metadata as JSON (lossless); " + GAP_STRING},
        ),
        **{
            name: (np.array(per_time(name, ""), dtype=object), {"comment": GAP_STRING})
            for name in STRING_COORDS
        },
    }
    for name, (values, attrs) in per_time_values.items():
        arrays[name] = ArraySpec.of(("time",), values, attrs, encoding=enc.get(name, {}))
    arrays.update(_image_coords(plan))
    schema = CubeSchema(arrays, dict(plan.attrs))
    if plan.labels is not None:
        schema = _add_labels(schema, plan, label_vectors or [[] for _ in plan.slices], enc)
    if plan.grid is not None:
        schema = _georeference(schema, plan)
    return schema


def _image_coords(plan: CubePlan) -> dict[str, ArraySpec]:
    """Pixel indices (SAR geometry) or pixel-centre map coordinates (a map grid)."""
    if plan.grid is None:
        return {
            "azimuth": ArraySpec.of(("azimuth",), np.arange(plan.shape[0], dtype="int32")),
            "range": ArraySpec.of(("range",), np.arange(plan.shape[1], dtype="int32")),
        }
    return {
        "y": ArraySpec.of(("y",), np.array(plan.grid.y(), dtype="float64")),
        "x": ArraySpec.of(("x",), np.array(plan.grid.x(), dtype="float64")),
    }


def _with_attrs(spec: ArraySpec, **attrs: Any) -> ArraySpec:
    return dataclasses.replace(spec, attrs={**spec.attrs, **attrs})


def _georeference(schema: CubeSchema, plan: CubePlan) -> CubeSchema:
    """CF grid mapping of a map-geometry cube, as rioxarray and odc-geo read it (SPEC §6b).

    A scalar ``spatial_ref`` coordinate carries the CRS (``crs_wkt``, ``spatial_ref``) and the GDAL
    ``GeoTransform``; every georeferenced variable names it in ``grid_mapping``. Pixels outside an
    image's footprint hold 0 (the array's fill value), declared as ``nodata``.
    """
    import pyproj  # map grids only

    grid = plan.grid
    assert grid is not None
    arrays = dict(schema.arrays)
    arrays["spatial_ref"] = ArraySpec.of(
        (),
        np.array(0, dtype=np.int32),
        {
            "crs_wkt": grid.crs_wkt,
            "spatial_ref": grid.crs_wkt,
            "GeoTransform": grid.geo_transform_text,
            "comment": f"{grid.crs}; pixels warped with {grid.resampling} resampling",
        },
    )
    crs = pyproj.CRS.from_wkt(grid.crs_wkt)
    unit = crs.axis_info[0].unit_name if crs.axis_info else ""
    standard = ("longitude", "latitude") if crs.is_geographic else ("projection_x", "projection_y")
    for name, std in zip(("x", "y"), standard, strict=True):
        suffix = "" if crs.is_geographic else "_coordinate"
        arrays[name] = _with_attrs(
            arrays[name],
            standard_name=std + suffix,
            long_name=f"{name} of pixel centre",
            units=unit,
        )
    pixels = arrays[plan.variable]
    arrays[plan.variable] = _with_attrs(
        pixels,
        grid_mapping="spatial_ref",
        nodata=0,
        comment=pixels.attrs["comment"] + "; 0 outside the image's footprint on the map grid",
    )
    if "labels" in arrays:
        arrays["labels"] = _with_attrs(arrays["labels"], grid_mapping="spatial_ref")
    return CubeSchema(arrays, schema.attrs)


def _add_labels(
    schema: CubeSchema,
    plan: CubePlan,
    vectors: Sequence[Sequence[tuple[str, str]]],
    enc: Mapping[str, Mapping[str, Any]],
) -> CubeSchema:
    """The ``labels`` raster placeholder and the ``label_geometry``/``label_class`` vectors."""
    from icecube_cloud.labels.cube import flag_attrs  # cubes with labels only

    assert plan.labels is not None
    n = len(plan.slices)
    attrs = {
        "long_name": "label class per pixel (0 = background)",
        **flag_attrs(plan.labels.classes),
        "comment": "times without labels hold only background",
    }
    raster = ArraySpec(
        ("time", *plan.dims), (n, *plan.shape), np.dtype("uint8"), None, attrs, enc["labels"],
        coord=False,
    )  # fmt: skip
    width = max((len(v) for v in vectors), default=0)
    geometry = np.full((n, width), "", dtype=object)
    classes = np.full((n, width), "", dtype=object)
    for t, pairs in enumerate(vectors):
        for k, (wkt, name) in enumerate(pairs):
            geometry[t, k], classes[t, k] = wkt, name
    where = (
        "vector labels as WKT in pixel coordinates (x = range, y = azimuth); '' = none"
        if plan.grid is None
        else f"vector labels as WKT in the grid's CRS ({plan.grid.crs}; x, y); '' = none"
    )
    dims = ("time", "label")
    return CubeSchema(
        {
            **schema.arrays,
            "labels": raster,
            "label_geometry": ArraySpec.of(dims, geometry, {"comment": where}, coord=False),
            "label_class": ArraySpec.of(
                dims, classes, {"comment": "class of label_geometry"}, coord=False
            ),
        },
        schema.attrs,
    )


def _encoding(plan: CubePlan) -> dict[str, dict[str, Any]]:
    """Chunking and codecs; a sharded plan's pixel arrays (and labels) get the same shards.

    Sharding: zarr's ``sharding_indexed`` codec with the Blosc codec inside and the default index
    (little-endian offsets and sizes + CRC32C, at the end of the shard).
    """
    c = plan.compression
    layout: dict[str, Any] = {"chunks": (1, *plan.read_chunks)}
    if plan.inner_chunks is not None:
        layout["shards"] = (1, *plan.chunks)
    enc: dict[str, dict[str, Any]] = {
        plan.variable: {
            **layout,
            "compressors": [
                zarr.codecs.BloscCodec(cname=c.cname, clevel=c.clevel, shuffle=c.shuffle)
            ],
        }
    }
    if plan.labels is not None:
        enc["labels"] = {
            **layout,
            "compressors": [zarr.codecs.BloscCodec(cname="zstd", clevel=3, shuffle="shuffle")],
        }
    return {**enc, **coord_encoding(zarr_format=3)}


def _codecs(codecs: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """A codec chain with a sharding codec's inner chain in its place."""
    out: list[Mapping[str, Any]] = []
    for codec in codecs:
        if codec.get("name") == "sharding_indexed":
            out += _codecs(codec.get("configuration", {}).get("codecs", []))
        else:
            out.append(codec)
    return out


def stored_compression(root: Mapping[str, Any]) -> Compression | None:
    """The Blosc codec of a cube's pixel variable, from its root document's consolidated metadata."""
    arrays = root.get("consolidated_metadata", {}).get("metadata", {})
    for name in _VARIABLE_ATTRS:
        for codec in _codecs(arrays.get(name, {}).get("codecs", [])):
            if codec.get("name") == "blosc":
                conf = codec.get("configuration", {})
                return Compression(
                    cname=conf["cname"], clevel=int(conf["clevel"]), shuffle=conf["shuffle"]
                )
    return None


def skeleton_documents(schema: CubeSchema) -> dict[str, bytes]:
    """Every object of the cube but the pixel chunks, rendered in memory.

    That is: the array documents, the coordinate chunks, and the root document with the consolidated
    metadata of every array (one batch of writes instead of one request per object and a listing).
    """
    return render_zarr_v3(schema)


def put_documents(target: StorageTarget, docs: Mapping[str, bytes]) -> None:
    """Write ``docs`` (keys relative to the cube) to ``target`` concurrently where the store allows."""
    fs = target.fs
    paths = {f"{target.path}/{key}": value for key, value in docs.items()}
    if not is_remote(target.url):
        for parent in sorted({posixpath.dirname(p) for p in paths}):
            fs.makedirs(parent, exist_ok=True)
    fs.pipe(paths)  # s3fs: one batch of concurrent PUTs


def label_vectors_of(
    plan: CubePlan, storage_options: Mapping[str, Any]
) -> list[list[tuple[str, str]]] | None:
    """Per time slice, the vector labels of its product (WKT, class).

    In the product's pixel coordinates (x = range, y = azimuth), or, on a map grid, in the grid's CRS
    (labels given in lon/lat transformed straight to it; pixel labels mapped through each
    product's geolocation, whose header is read here).
    """
    if plan.labels is None:
        return None
    from icecube_cloud.labels.cube import label_vectors  # cubes with labels only

    items = plan.labels.items
    out: list[list[tuple[str, str]]] = []
    for s in plan.slices:
        src = s.source
        if src is None or src.item_id not in items:
            out.append([])
            continue
        label_items = [pystac.Item.from_dict(dict(d)) for d in items[src.item_id]]
        if plan.grid is None:
            out.append(label_vectors(label_items, storage_options))
        else:
            out.append(_grid_vectors(label_items, src, plan.grid.crs_wkt, storage_options))
    return out


def _grid_vectors(
    label_items: Sequence[pystac.Item],
    src: SourceRef,
    crs_wkt: str,
    storage_options: Mapping[str, Any],
) -> list[tuple[str, str]]:
    """(WKT in the grid's CRS, class) of one product's labels, in item and file order.

    Lon/lat labels are transformed straight to the CRS, pixel labels through the product's
    geolocation (its header read once, when needed).
    """
    import shapely

    from icecube_cloud.labels.cube import label_vectors, map_vectors, on_map
    from icecube_cloud.labels.geometry import pixel_geometry_to_crs
    from icecube_cloud.products import read_product

    out: list[tuple[str, str]] = []
    meta = None
    for item in label_items:
        if on_map(item):
            out.extend((g.wkt, name) for g, name in map_vectors(item, crs_wkt, storage_options))
            continue
        for wkt, name in label_vectors([item], storage_options):
            if meta is None:
                meta = read_product(src.href, storage_options=storage_options, expected=src.format)
            out.append((pixel_geometry_to_crs(meta, shapely.from_wkt(wkt), crs_wkt).wkt, name))
    return out
