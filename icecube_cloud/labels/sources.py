"""Read labels files: the original icecube labels JSON (pixel coordinates) and GeoJSON in lon/lat.

icecube JSON is a list of ``{"product_file": NAME, "labels": {"objects": [...], "segmentation": MASK}}``.
Objects carry a ``class`` and one of ``bbox`` ``{xmin, ymin, xmax, ymax}``, ``polygon`` (list of
``[x, y]`` or ``{"x", "y"}``) or ``point``; or they are image tags ``{"classification": [TAG, ...]}``.
``x`` is the range sample and ``y`` the azimuth line (the legacy file's column and row; for COG
products the physical axes of the cube). Integer coordinates name *pixels*:

- a ``bbox`` covers the pixels ``xmin..xmax`` and ``ymin..ymax`` **inclusive** (icecube's samples have
  boxes with ``xmin == xmax`` and reach ``xmax = width - 1``), i.e. the square
  ``[xmin, xmax + 1] x [ymin, ymax + 1]`` in continuous pixel coordinates;
- points and polygon vertices are placed at their pixel's centre ``(x + 0.5, y + 0.5)``.

A ``segmentation`` mask path is relative to the JSON file (or absolute); its pixel values are class
codes (0 = background), in the physical (azimuth, range) layout.
"""

from __future__ import annotations

import json
import posixpath
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import fsspec
import shapely.geometry
from shapely.geometry.base import BaseGeometry

from icecube_cloud.labels.errors import LabelFormatError

Task = Literal["segmentation", "detection", "classification"]
"""Label-extension tasks icecube-cloud produces."""

CLASS_PROPERTIES: tuple[str, ...] = ("class", "label")
"""GeoJSON feature properties tried, in order, for the class when none is configured."""

_TASK_OF_GEOMETRY: dict[str, Task] = {
    "Polygon": "segmentation",
    "MultiPolygon": "segmentation",
    "Point": "detection",
    "MultiPoint": "detection",
    "LineString": "detection",
    "MultiLineString": "detection",
}


@dataclass(frozen=True)
class LabelObject:
    """One label: a class and a geometry (``None`` for an image tag)."""

    label_class: str
    """Class name."""
    task: Task
    """What the label is for."""
    kind: str
    """Where it came from: ``bbox``, ``polygon``, ``point``, ``classification`` or a GeoJSON type."""
    geometry: BaseGeometry | None
    """Pixel coordinates (icecube JSON) or lon/lat (GeoJSON); ``None`` for image tags."""


@dataclass(frozen=True)
class ProductLabels:
    """The labels of one product in a labels file (or, for GeoJSON, of whatever it intersects)."""

    product: str | None
    """Product file name or id; ``None``: match products by footprint."""
    objects: tuple[LabelObject, ...]
    """Objects in file order (later ones are drawn over earlier ones)."""
    segmentation: str | None = None
    """Absolute href of the segmentation mask."""
    where: str = ""
    """Position in the file, for messages (e.g. ``entry 2``)."""


@dataclass(frozen=True)
class LabelSource:
    """A parsed labels file."""

    href: str
    """Where it was read from."""
    kind: Literal["icecube", "geojson"]
    """``icecube``: pixel coordinates; ``geojson``: lon/lat map geometry."""
    entries: tuple[ProductLabels, ...]
    """One entry per product (icecube) or one for the whole file (GeoJSON)."""

    @property
    def name(self) -> str:
        """The file stem, used in label item ids."""
        return posixpath.basename(self.href.rstrip("/")).rsplit(".", 1)[0]

    @property
    def map_geometry(self) -> bool:
        """Whether geometries are lon/lat (to be transformed per product)."""
        return self.kind == "geojson"


def read_labels(
    href: str,
    *,
    class_property: str | None = None,
    storage_options: Mapping[str, Any] | None = None,
) -> LabelSource:
    """Read and check a labels file (icecube JSON list, or GeoJSON FeatureCollection / Feature).

    Args:
        href: Local path or fsspec URL.
        class_property: GeoJSON property holding the class (default: ``class``, else ``label``).
        storage_options: fsspec options for remote files.

    Raises:
        LabelFormatError: Unreadable JSON, or an unknown label type, geometry or key (named).
    """
    try:
        with fsspec.open(href, "rb", **dict(storage_options or {})) as f:
            data = json.loads(f.read())
    except (OSError, ValueError) as err:
        raise LabelFormatError(href, f"cannot read labels JSON: {err}") from err
    if isinstance(data, list):
        entries = tuple(_icecube_entry(href, i, e) for i, e in enumerate(data))
        return LabelSource(href=href, kind="icecube", entries=entries)
    if isinstance(data, dict) and data.get("type") in ("FeatureCollection", "Feature"):
        features = data.get("features") if data["type"] == "FeatureCollection" else [data]
        if not isinstance(features, list):
            raise LabelFormatError(href, "GeoJSON 'features' must be a list")
        objects = tuple(_feature(href, i, f, class_property) for i, f in enumerate(features))
        return LabelSource(
            href=href,
            kind="geojson",
            entries=(ProductLabels(product=None, objects=objects, where="features"),),
        )
    raise LabelFormatError(
        href, "expected an icecube labels list or a GeoJSON FeatureCollection in lon/lat"
    )


def _icecube_entry(href: str, index: int, entry: Any) -> ProductLabels:
    where = f"entry {index}"
    if not isinstance(entry, dict):
        raise LabelFormatError(href, f"{where}: expected an object, got {type(entry).__name__}")
    product = entry.get("product_file", entry.get("product_id"))
    if not isinstance(product, str) or not product:
        raise LabelFormatError(href, f"{where}: key 'product_file' (a file name) is missing")
    where = f"{where} ({product})"
    labels = entry.get("labels")
    if not isinstance(labels, dict):
        raise LabelFormatError(href, f"{where}: key 'labels' must be an object")
    unknown = sorted(set(labels) - {"objects", "segmentation"})
    if unknown:
        raise LabelFormatError(
            href, f"{where}: unknown label type {unknown[0]!r} (expected objects, segmentation)"
        )
    raw_objects = labels.get("objects", [])
    if not isinstance(raw_objects, list):
        raise LabelFormatError(href, f"{where}: 'objects' must be a list")
    objects: list[LabelObject] = []
    for k, obj in enumerate(raw_objects):
        objects.extend(_icecube_object(href, f"{where} object {k}", obj))
    mask = labels.get("segmentation")
    if mask is not None and (not isinstance(mask, str) or not mask):
        raise LabelFormatError(href, f"{where}: 'segmentation' must be a mask path")
    if mask is None and not objects:
        raise LabelFormatError(href, f"{where}: no objects and no segmentation")
    seg = _resolve(href, mask) if mask else None
    return ProductLabels(product=product, objects=tuple(objects), segmentation=seg, where=where)


def _resolve(base: str, rel: str) -> str:
    if rel.startswith("/") or "://" in rel:
        return rel
    proto, sep, path = base.rpartition("://")
    return proto + sep + posixpath.normpath(posixpath.join(posixpath.dirname(path), rel))


def _xy(href: str, where: str, value: Any) -> tuple[float, float]:
    if isinstance(value, dict) and "x" in value and "y" in value:
        value = [value["x"], value["y"]]
    if (
        isinstance(value, Sequence)
        and not isinstance(value, str)
        and len(value) == 2
        and all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
    ):
        return float(value[0]) + 0.5, float(value[1]) + 0.5
    raise LabelFormatError(href, f"{where}: expected a pixel [x, y] or {{'x', 'y'}}, got {value!r}")


def _icecube_object(href: str, where: str, obj: Any) -> list[LabelObject]:
    if not isinstance(obj, dict):
        raise LabelFormatError(href, f"{where}: expected an object, got {type(obj).__name__}")
    if "classification" in obj:
        tags = obj["classification"]
        tags = [tags] if isinstance(tags, str) else tags
        if not isinstance(tags, list) or not all(isinstance(t, str) and t for t in tags):
            raise LabelFormatError(href, f"{where}: 'classification' must be a list of tags")
        return [LabelObject(t, "classification", "classification", None) for t in tags]
    kinds = [k for k in ("bbox", "polygon", "point") if k in obj]
    if len(kinds) != 1:
        keys = ", ".join(sorted(obj)) or "none"
        raise LabelFormatError(
            href,
            f"{where}: unknown label type (keys: {keys}); expected exactly one of bbox, polygon, "
            "point, classification",
        )
    cls = obj.get("class")
    if not isinstance(cls, str) or not cls:
        raise LabelFormatError(href, f"{where}: key 'class' (a class name) is missing")
    kind = kinds[0]
    value = obj[kind]
    if kind == "bbox":
        try:
            xmin, ymin, xmax, ymax = (float(value[k]) for k in ("xmin", "ymin", "xmax", "ymax"))
        except (KeyError, TypeError, ValueError) as err:
            raise LabelFormatError(
                href, f"{where}: bbox needs numbers xmin, ymin, xmax, ymax ({err!r})"
            ) from err
        if xmax < xmin or ymax < ymin:
            raise LabelFormatError(href, f"{where}: bbox has xmax < xmin or ymax < ymin")
        geom: BaseGeometry = shapely.geometry.box(xmin, ymin, xmax + 1, ymax + 1)
        return [LabelObject(cls, "detection", "bbox", geom)]
    if kind == "point":
        return [
            LabelObject(cls, "detection", "point", shapely.geometry.Point(_xy(href, where, value)))
        ]
    if not isinstance(value, list) or len(value) < 3:
        raise LabelFormatError(href, f"{where}: polygon needs a list of at least 3 pixels")
    poly = shapely.geometry.Polygon([_xy(href, where, v) for v in value])
    if not poly.is_valid:
        raise LabelFormatError(
            href, f"{where}: polygon is not valid ({shapely.is_valid_reason(poly)})"
        )
    return [LabelObject(cls, "segmentation", "polygon", poly)]


def _feature(href: str, index: int, feature: Any, class_property: str | None) -> LabelObject:
    where = f"feature {index}"
    if not isinstance(feature, dict) or feature.get("type") != "Feature":
        raise LabelFormatError(href, f"{where}: not a GeoJSON Feature")
    props = feature.get("properties") or {}
    keys = (class_property,) if class_property else CLASS_PROPERTIES
    cls = next((props[k] for k in keys if k in props), None)
    if not isinstance(cls, str | int) or isinstance(cls, bool) or cls == "":
        raise LabelFormatError(
            href, f"{where}: no class in properties {' or '.join(repr(k) for k in keys)}"
        )
    geometry = feature.get("geometry")
    if not isinstance(geometry, dict):
        geometry = {}
    gtype = geometry.get("type")
    if gtype not in _TASK_OF_GEOMETRY:
        raise LabelFormatError(
            href,
            f"{where}: unknown geometry kind {gtype!r} (expected {', '.join(_TASK_OF_GEOMETRY)})",
        )
    try:
        geom = shapely.geometry.shape(geometry)
    except (ValueError, TypeError, AttributeError, shapely.errors.ShapelyError) as err:
        raise LabelFormatError(href, f"{where}: broken {gtype} geometry: {err}") from err
    if geom.is_empty:
        raise LabelFormatError(href, f"{where}: empty geometry")
    return LabelObject(str(cls), _TASK_OF_GEOMETRY[str(gtype)], str(gtype), geom)
