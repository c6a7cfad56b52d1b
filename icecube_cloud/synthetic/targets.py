"""Water bodies and bright targets in a synthetic scene, and the truth class mask they make.

Geometry lives in the continuous *physical* pixel space of :mod:`icecube_cloud.labels.geometry`:
``x`` = range, ``y`` = azimuth, the pixel ``(azimuth=i, range=j)`` is the unit square
``[j, j+1) x [i, i+1)``. An object covers the pixels whose centre it contains (points: the pixel they
fall in), which is the rule of the project's own :func:`icecube_cloud.labels.label_mask` (GDAL's
rasteriser on the identity grid); the scene and the truth mask are painted with that same rasteriser,
so labels written from these objects rasterise back to exactly the truth.

- Water bodies: star-shaped smooth polygons (a few low harmonics of the radius), vertices on a
  2**-16 pixel lattice (exact in binary, so the half-pixel shift of icecube JSON is exact too).
- Box targets: integer-edged rectangles (edges on pixel boundaries, never through a pixel centre).
- Point targets: one pixel each, stored at the pixel centre.

Objects are drawn in that order (targets over water: ships on a lake). Geometry depends only on the
spec's ``scene_seed``, ``shape`` and ``targets``, so a stack shares it; each category draws from its
own random stream, so changing one count moves nothing else.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import numpy as np
import rasterio.features
import shapely
import shapely.geometry
from affine import Affine
from shapely.geometry.base import BaseGeometry

from icecube_cloud.synthetic.spec import SceneTargets, SyntheticSpec

TARGET = "target"
"""Class name of bright targets (boxes and points)."""
WATER = "water"
"""Class name of water bodies."""
CLASSES: dict[str, int] = {TARGET: 1, WATER: 2}
"""Truth class codes (0 = background): the codes a cube assigns to these class names when both
occur (vector classes are coded in sorted name order), and the values of the written masks."""

_LATTICE = 2.0**-16
_MAX_OBJECTS = 255


@dataclass(frozen=True)
class SceneObject:
    """One painted object: its class, geometry, level and when it exists."""

    label_class: str
    """``water`` or ``target``."""
    kind: Literal["polygon", "bbox", "point"]
    """How it is written in icecube labels JSON."""
    geometry: BaseGeometry
    """Continuous physical pixel coordinates (x = range, y = azimuth)."""
    level_db: float
    """Backscatter relative to the scene's mean land backscatter (power, dB)."""
    appears: datetime | None = None
    """First moment it exists (``None``: always has)."""
    disappears: datetime | None = None
    """First moment it no longer exists (``None``: never)."""

    def present(self, moment: datetime) -> bool:
        """Whether the object is in an image acquired at ``moment``."""
        return (self.appears is None or moment >= self.appears) and (
            self.disappears is None or moment < self.disappears
        )


def _water(
    rng: np.random.Generator, shape: tuple[int, int], cfg: SceneTargets
) -> list[SceneObject]:
    n_az, n_rg = shape
    out = []
    for _ in range(cfg.water):
        radius = rng.uniform(0.06, 0.14) * min(shape)
        stretch = rng.uniform(0.7, 1.4)
        amps = rng.uniform(0.0, 0.5 / 3, 3)
        phases = rng.uniform(0.0, 2 * math.pi, 3)
        fx, fy = rng.uniform(0.0, 1.0, 2)
        level = float(rng.uniform(*cfg.water_db))
        rx, ry = radius * stretch, radius / stretch
        if min(rx, ry) < 2.0:
            continue  # too small an image for a lake
        n = int(np.clip(2 * math.pi * max(rx, ry) / 3, 12, 64))
        theta = np.linspace(0.0, 2 * math.pi, n, endpoint=False)
        k = np.arange(2, 5)[:, None]
        r = 1.0 + np.sum(amps[:, None] * np.cos(k * theta + phases[:, None]), axis=0)  # 0.5..1.5
        cx = 1.5 * rx + fx * (n_rg - 3 * rx)
        cy = 1.5 * ry + fy * (n_az - 3 * ry)
        xs = np.round((cx + rx * r * np.cos(theta)) / _LATTICE) * _LATTICE
        ys = np.round((cy + ry * r * np.sin(theta)) / _LATTICE) * _LATTICE
        poly: BaseGeometry = shapely.geometry.Polygon(np.column_stack([xs, ys]))
        if not poly.is_valid:
            poly = poly.convex_hull
        out.append(SceneObject(WATER, "polygon", poly, level))
    return out


def _boxes(
    rng: np.random.Generator, shape: tuple[int, int], cfg: SceneTargets
) -> list[SceneObject]:
    n_az, n_rg = shape
    change_at = rng.uniform(0.25, 0.75, cfg.boxes)
    out = []
    for k in range(cfg.boxes):
        sides = np.rint(rng.uniform(0.01, 0.04, 2) * min(shape)).astype(int)
        h, w = (min(max(2, int(s)), n) for s, n in zip(sides, shape, strict=True))
        az0 = int(rng.integers(0, n_az - h + 1))
        rg0 = int(rng.integers(0, n_rg - w + 1))
        level = float(rng.uniform(*cfg.target_db))
        appears = disappears = None
        if cfg.period is not None and k < cfg.changes:
            start, end = cfg.period
            moment = start + (end - start) * float(change_at[k])
            appears, disappears = (moment, None) if k % 2 == 0 else (None, moment)
        geom = shapely.geometry.box(rg0, az0, rg0 + w, az0 + h)
        out.append(SceneObject(TARGET, "bbox", geom, level, appears, disappears))
    return out


def _points(
    rng: np.random.Generator, shape: tuple[int, int], cfg: SceneTargets
) -> list[SceneObject]:
    az = rng.integers(0, shape[0], cfg.points)
    rg = rng.integers(0, shape[1], cfg.points)
    levels = rng.uniform(*cfg.target_db, cfg.points)
    return [
        SceneObject(TARGET, "point", shapely.geometry.Point(rg[k] + 0.5, az[k] + 0.5), float(lv))
        for k, lv in enumerate(levels)
    ]


def scene_objects(spec: SyntheticSpec) -> tuple[SceneObject, ...]:
    """Every object of the spec's scene (whatever its time), in drawing order; ``()`` without targets.

    Raises:
        ValueError: More than 255 objects, or a level range given high-to-low.
    """
    cfg = spec.targets
    if cfg is None:
        return ()
    if cfg.water + cfg.boxes + cfg.points > _MAX_OBJECTS:
        raise ValueError(f"at most {_MAX_OBJECTS} scene objects, asked for more ({cfg})")
    for name, (low, high) in (("water_db", cfg.water_db), ("target_db", cfg.target_db)):
        if low > high:
            raise ValueError(f"SceneTargets.{name} must be (low, high), got ({low}, {high})")
    streams = [np.random.default_rng([spec.scene_seed, 4241, k]) for k in range(3)]
    return (
        *_water(streams[0], spec.shape, cfg),
        *_boxes(streams[1], spec.shape, cfg),
        *_points(streams[2], spec.shape, cfg),
    )


def present_objects(spec: SyntheticSpec) -> tuple[SceneObject, ...]:
    """The objects in this image (at its ``acquisition_start``), in drawing order."""
    return tuple(o for o in scene_objects(spec) if o.present(spec.acquisition_start))


def _object_index(spec: SyntheticSpec, objects: tuple[SceneObject, ...]) -> np.ndarray:
    """uint8 (azimuth, range): 1 + the index of the object drawn last over each pixel, 0 = none."""
    if not objects:
        return np.zeros(spec.shape, dtype=np.uint8)
    shapes = [(o.geometry, k + 1) for k, o in enumerate(objects)]
    out: np.ndarray = rasterio.features.rasterize(
        shapes, out_shape=spec.shape, fill=0, transform=Affine.identity(), dtype="uint8"
    )
    return out


def truth_mask(spec: SyntheticSpec) -> np.ndarray:
    """The uint8 (azimuth, range) class mask of one image: :data:`CLASSES` codes, 0 = background."""
    objects = present_objects(spec)
    lut = np.zeros(len(objects) + 1, dtype=np.uint8)
    lut[1:] = [CLASSES[o.label_class] for o in objects]
    out: np.ndarray = lut[_object_index(spec, objects)]
    return out


def paint_targets(spec: SyntheticSpec, sigma: np.ndarray) -> None:
    """Set ``sigma`` (the Rayleigh scale of the smooth scene) to each present object's level.

    Levels are relative to the scene's mean (``amplitude_scale``): an object at ``L`` dB has the
    Rayleigh scale ``amplitude_scale / sqrt(pi / 2) * 10 ** (L / 20)`` everywhere it covers.
    """
    objects = present_objects(spec)
    if not objects:
        return
    base = spec.amplitude_scale / math.sqrt(math.pi / 2)
    lut = np.zeros(len(objects) + 1, dtype=np.float32)
    lut[1:] = [base * 10.0 ** (o.level_db / 20.0) for o in objects]
    index = _object_index(spec, objects)
    np.copyto(sigma, lut[index], where=index != 0)
