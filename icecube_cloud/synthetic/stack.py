"""Coregistered stacks of synthetic products: one scene, varied times, angles and speckle."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import numpy as np

from icecube_cloud.synthetic.cog import write_cog
from icecube_cloud.synthetic.legacy import write_legacy_grd, write_legacy_slc
from icecube_cloud.synthetic.pixels import IQDtype
from icecube_cloud.synthetic.spec import SyntheticSpec

Flavour = Literal["legacy-grd", "legacy-slc", "grd-cog", "slc-cog"]
"""The product flavours: legacy GRD GeoTIFF, legacy SLC HDF5, GRD COG and SLC COG with sidecars."""
_M_PER_DEG = 111_320.0
_COS_LAT = math.cos(math.radians(SyntheticSpec.center_lat))
DEFAULT_START = datetime(2021, 4, 27, 21, 51, 24, 929476, tzinfo=UTC)


def write_product(
    folder: str | os.PathLike[str],
    spec: SyntheticSpec,
    flavour: Flavour,
    *,
    iq_dtype: IQDtype = "int16",
    gcps: bool = True,
    rpc: bool = True,
) -> Path:
    """Write one product of ``flavour`` into ``folder``; returns the data file.

    ``gcps`` and ``rpc`` choose the geolocation a legacy GRD carries (:func:`write_legacy_grd`).
    """
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    if flavour == "legacy-grd":
        return write_legacy_grd(out / f"{spec.product_id}.tif", spec, gcps=gcps, rpc=rpc)
    if flavour == "legacy-slc":
        return write_legacy_slc(out / f"{spec.product_id}.h5", spec, iq_dtype)
    level: Literal["GRD", "SLC"] = "GRD" if flavour == "grd-cog" else "SLC"
    return write_cog(out, spec, level)[0]


def stack_specs(
    *,
    n: int = 6,
    shape: tuple[int, int] = (512, 512),
    start: datetime = DEFAULT_START,
    days: int = 12,
    flavour: Flavour = "legacy-grd",
    seed: int = 0,
    incidence_angles: Sequence[float] | None = None,
    jitter_m: float = 0.0,
    shapes: Sequence[tuple[int, int]] | None = None,
    **overrides: Any,
) -> list[SyntheticSpec]:
    """The specs :func:`make_stack` writes (same arguments, nothing written), in time order."""
    if start.tzinfo is None:
        start = start.replace(tzinfo=UTC)
    rng = np.random.default_rng([seed, 31337])
    if incidence_angles is None:
        angles = [round(float(a), 3) for a in rng.uniform(25.0, 35.0, n)]
    elif len(incidence_angles) != n:
        raise ValueError(f"incidence_angles has {len(incidence_angles)} values, n is {n}")
    else:
        angles = [float(a) for a in incidence_angles]
    if shapes is not None and len(shapes) != n:
        raise ValueError(f"shapes has {len(shapes)} values, n is {n}")
    shifts = rng.uniform(-jitter_m, jitter_m, (n, 2)) if jitter_m else np.zeros((n, 2))
    day_offsets = np.linspace(0, max(days - 1, 0), n).round().astype(int) if n > 1 else [0]
    tag = {"legacy-grd": "GRD", "legacy-slc": "SLC", "grd-cog": "GRDC", "slc-cog": "SLCC"}[flavour]
    specs = []
    for k in range(n):
        begin = start + timedelta(days=int(day_offsets[k]), seconds=float(rng.uniform(0, 60)))
        spec = SyntheticSpec(
            product_id=f"ICEYE_{tag}_SYNTH_{begin:%Y%m%dT%H%M%S}_{seed}_{k}",
            seed=seed * 1000 + k + 1,
            scene_seed=seed,
            shape=shape if shapes is None else (int(shapes[k][0]), int(shapes[k][1])),
            center_lon=SyntheticSpec.center_lon + shifts[k, 0] / _M_PER_DEG / _COS_LAT,
            center_lat=SyntheticSpec.center_lat + shifts[k, 1] / _M_PER_DEG,
            acquisition_start=begin,
            acquisition_end=begin + timedelta(seconds=5.096059),
            incidence_angle=angles[k],
            orbit_state="ascending" if k % 2 == 0 else "descending",
            absolute_orbit=9915 + 15 * int(day_offsets[k]),
        )
        specs.append(replace(spec, **overrides))
    return specs


def make_stack(
    folder: str | os.PathLike[str],
    *,
    n: int = 6,
    shape: tuple[int, int] = (512, 512),
    start: datetime = DEFAULT_START,
    days: int = 12,
    flavour: Flavour = "legacy-grd",
    seed: int = 0,
    incidence_angles: Sequence[float] | None = None,
    iq_dtype: IQDtype = "int16",
    jitter_m: float = 0.0,
    shapes: Sequence[tuple[int, int]] | None = None,
    gcps: bool = True,
    rpc: bool = True,
    **overrides: Any,
) -> list[SyntheticSpec]:
    """Write a stack of ``n`` products and return their specs (in time order).

    Coregistered by default; ``jitter_m`` and ``shapes`` make a stack that is not (each product on
    its own grid, as ICEYE's geocoded COGs are), for map-geometry cubes.

    Times spread over ``days`` (at most one acquisition per UTC day when ``n <= days``), incidence
    angles vary realistically (25-35 degrees) unless given, orbit states alternate, speckle differs
    per image while the scene is shared.

    Args:
        folder: Output folder (created).
        n: Number of products.
        shape: (azimuth, range) of every product.
        start: First acquisition start (UTC).
        days: Span of the stack in days.
        flavour: Which product flavour to write.
        seed: Base seed (scene and speckle).
        incidence_angles: Explicit scene-centre incidence per product.
        iq_dtype: I/Q dtype of legacy SLC products.
        jitter_m: Shift each product's scene centre by up to this many metres east and north.
        shapes: Explicit (azimuth, range) shape per product (instead of ``shape``).
        gcps: Legacy GRDs carry GCPs (``False``: located by their RPC alone).
        rpc: Legacy GRDs carry an RPC namespace.
        **overrides: Further :class:`SyntheticSpec` fields applied to every product (e.g.
            ``targets=SceneTargets()`` for water bodies and targets).
    """
    specs = stack_specs(
        n=n, shape=shape, start=start, days=days, flavour=flavour, seed=seed,
        incidence_angles=incidence_angles, jitter_m=jitter_m, shapes=shapes, **overrides,
    )  # fmt: skip
    for spec in specs:
        write_product(folder, spec, flavour, iq_dtype=iq_dtype, gcps=gcps, rpc=rpc)
    return specs
