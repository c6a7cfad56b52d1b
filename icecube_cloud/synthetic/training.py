"""Training stacks: synthetic products with water bodies and targets, and their truth labels as files.

The labels are written in every form ``icecube-cloud catalog labels`` ingests, each rasterising back to
:func:`icecube_cloud.synthetic.targets.truth_mask` through the project's own ``label_mask``:

- ``labels/objects.json``: icecube labels JSON in pixel coordinates: water ``polygon`` (vertices
  written half a pixel back, since the reader puts a vertex at its pixel's centre), target ``bbox``
  (inclusive pixel indices) and ``point`` objects. Exact.
- ``labels/masks.json`` + ``labels/masks/<product id>.png``: icecube labels JSON naming one uint8
  class mask per product (physical azimuth x range; values are :data:`CLASSES` codes). Exact.
- ``labels/geojson/<product id>.geojson``: the objects in lon/lat through the product's exactly affine
  ground geometry (:func:`icecube_cloud.synthetic.spec.geo`), one file per product (objects change
  over time, and a coregistered stack's footprints all overlap): ingest each with ``--product``.
  Exact up to the round trip through lon/lat (~1e-9 pixel): only a pixel whose centre lies on a
  water polygon's edge could flip. Legacy SLC products are located by their RPC, which the generator
  writes edge-based while GDAL reads it centre-based: there GeoJSON labels land half a pixel off.

Ingest one of the three per catalog: their class codes differ when mixed (mask values are kept as
codes, vector classes take the free codes).
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import numpy as np
import rasterio
import shapely
import shapely.geometry
from rasterio.errors import NotGeoreferencedWarning
from shapely.geometry.polygon import orient

from icecube_cloud.synthetic.pixels import IQDtype
from icecube_cloud.synthetic.spec import SceneTargets, SyntheticSpec, geo
from icecube_cloud.synthetic.stack import DEFAULT_START, Flavour, stack_specs, write_product
from icecube_cloud.synthetic.targets import CLASSES, SceneObject, present_objects, truth_mask

LabelKind = Literal["objects", "masks", "geojson"]
"""The label files of a training stack: pixel objects, class masks, lon/lat GeoJSON."""


def _icecube_object(obj: SceneObject) -> dict[str, Any]:
    """One object as icecube labels JSON writes it (x = range, y = azimuth)."""
    if obj.kind == "bbox":
        xmin, ymin, xmax, ymax = (int(v) for v in obj.geometry.bounds)
        box = {"xmin": xmin, "ymin": ymin, "xmax": xmax - 1, "ymax": ymax - 1}  # inclusive
        return {"class": obj.label_class, "bbox": box}
    if obj.kind == "point":
        x, y, _, _ = obj.geometry.bounds
        return {"class": obj.label_class, "point": [int(x), int(y)]}
    assert isinstance(obj.geometry, shapely.geometry.Polygon)
    ring = np.asarray(obj.geometry.exterior.coords)[:-1] - 0.5  # exact: dyadic vertices
    return {"class": obj.label_class, "polygon": ring.tolist()}


def icecube_entry(spec: SyntheticSpec, product_file: str) -> dict[str, Any] | None:
    """The icecube labels JSON entry of one product (its present objects); ``None`` if it has none."""
    objects = [_icecube_object(o) for o in present_objects(spec)]
    if not objects:
        return None
    return {"product_file": product_file, "labels": {"objects": objects}}


def geojson_labels(spec: SyntheticSpec) -> dict[str, Any]:
    """The present objects of one product as a GeoJSON FeatureCollection in lon/lat (EPSG:4326).

    Features carry ``class`` (``water`` / ``target``), ``kind`` (``polygon`` / ``bbox`` / ``point``)
    and ``level_db``; polygons wind counter-clockwise (RFC 7946).
    """

    def to_lonlat(coords: np.ndarray) -> np.ndarray:
        out: np.ndarray = geo(spec, coords[:, 1], coords[:, 0])  # x = range, y = azimuth
        return out

    features = []
    for obj in present_objects(spec):
        geom = shapely.transform(obj.geometry, to_lonlat)
        if isinstance(geom, shapely.geometry.Polygon):
            geom = orient(geom, 1.0)
        features.append(
            {
                "type": "Feature",
                "geometry": shapely.geometry.mapping(geom),
                "properties": {
                    "class": obj.label_class,
                    "kind": obj.kind,
                    "level_db": round(obj.level_db, 3),
                },
            }
        )
    return {"type": "FeatureCollection", "features": features}


def write_mask(path: str | os.PathLike[str], spec: SyntheticSpec) -> Path:
    """Write the truth mask of ``spec`` as a single-band uint8 PNG (azimuth rows, range columns)."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    mask = truth_mask(spec)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(out, "w", driver="PNG", height=mask.shape[0], width=mask.shape[1],
                           count=1, dtype="uint8") as dst:  # fmt: skip
            dst.write(mask, 1)
    return out


def _write_json(path: Path, data: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data) + "\n")
    return path


@dataclass(frozen=True)
class TrainingStack:
    """What :func:`make_training_stack` wrote, and the truth."""

    folder: Path
    """The stack's folder (``products/`` and ``labels/``)."""
    specs: tuple[SyntheticSpec, ...]
    """The products' specs, in time order."""
    products: tuple[Path, ...]
    """Their data files (in ``folder/products``), same order."""
    objects_json: Path
    """icecube labels JSON of water polygons, target boxes and points (pixel coordinates)."""
    masks_json: Path
    """icecube labels JSON naming each product's class mask."""
    masks: tuple[Path, ...]
    """The class masks (PNG), one per product, same order."""
    geojson: tuple[tuple[Path, str], ...]
    """(lon/lat GeoJSON, product id) of every product with objects."""

    @property
    def products_folder(self) -> Path:
        """The folder to give ``icecube-cloud catalog ingest``."""
        return self.folder / "products"

    @property
    def classes(self) -> dict[str, int]:
        """Class name -> truth code (:data:`CLASSES`)."""
        return dict(CLASSES)

    def truth(self, index: int | None = None) -> np.ndarray:
        """The truth mask of product ``index``, or of all as one (time, azimuth, range) array."""
        if index is not None:
            return truth_mask(self.specs[index])
        return np.stack([truth_mask(s) for s in self.specs])

    def label_sources(self, kind: LabelKind = "objects") -> list[tuple[Path, tuple[str, ...]]]:
        """(labels file, products to restrict its ingest to) for ``catalog labels`` / ``ingest_labels``.

        Args:
            kind: ``objects`` (one file), ``masks`` (one file), ``geojson`` (one per product, each
                restricted to its product).
        """
        if kind == "objects":
            return [(self.objects_json, ())]
        if kind == "masks":
            return [(self.masks_json, ())]
        return [(path, (pid,)) for path, pid in self.geojson]


def make_training_stack(
    folder: str | os.PathLike[str],
    *,
    n: int = 6,
    shape: tuple[int, int] = (512, 512),
    flavour: Flavour = "legacy-grd",
    seed: int = 0,
    start: datetime = DEFAULT_START,
    days: int = 12,
    targets: SceneTargets | None = None,
    iq_dtype: IQDtype = "int16",
    **stack_options: Any,
) -> TrainingStack:
    """Write a stack with water bodies and targets (``folder/products``) and its labels (``folder/labels``).

    The scene (and its objects) is shared by the stack; speckle differs per image. Unless
    ``targets.period`` is set, it is the stack's span (``start`` .. ``start + days``), so the
    changing targets appear or disappear between acquisitions.

    Args:
        folder: Output folder (created).
        n: Number of products.
        shape: (azimuth, range) of every product.
        flavour: Product flavour (see :func:`icecube_cloud.synthetic.make_stack`).
        seed: Base seed (scene, objects and speckle).
        start: First acquisition start (UTC).
        days: Span of the stack in days.
        targets: What the scene holds (default :class:`SceneTargets`).
        iq_dtype: I/Q dtype of legacy SLC products.
        **stack_options: Further :func:`icecube_cloud.synthetic.stack_specs` arguments
            (``incidence_angles``, ``jitter_m``, ``shapes``, :class:`SyntheticSpec` fields).
    """
    root = Path(folder)
    cfg = targets if targets is not None else SceneTargets()
    if cfg.period is None:
        begin = start if start.tzinfo is not None else start.replace(tzinfo=DEFAULT_START.tzinfo)
        cfg = replace(cfg, period=(begin, begin + timedelta(days=days)))
    specs = stack_specs(n=n, shape=shape, start=start, days=days, flavour=flavour, seed=seed,
                        targets=cfg, **stack_options)  # fmt: skip
    products, masks, geojson, objects, mask_entries = [], [], [], [], []
    for spec in specs:
        product = write_product(root / "products", spec, flavour, iq_dtype=iq_dtype)
        products.append(product)
        mask = write_mask(root / "labels" / "masks" / f"{spec.product_id}.png", spec)
        masks.append(mask)
        mask_entries.append(
            {"product_file": product.name,
             "labels": {"segmentation": f"masks/{mask.name}"}}  # relative to masks.json
        )  # fmt: skip
        entry = icecube_entry(spec, product.name)
        if entry is not None:
            objects.append(entry)
            path = root / "labels" / "geojson" / f"{spec.product_id}.geojson"
            geojson.append((_write_json(path, geojson_labels(spec)), spec.product_id))
    return TrainingStack(
        folder=root,
        specs=tuple(specs),
        products=tuple(products),
        objects_json=_write_json(root / "labels" / "objects.json", objects),
        masks_json=_write_json(root / "labels" / "masks.json", mask_entries),
        masks=tuple(masks),
        geojson=tuple(geojson),
    )
