"""Writer of synthetic current ICEYE COG deliveries: shadows-down COG + sidecar STAC item.

Mirrors what ICEYE ships: EPSG:4326 with a rotated affine transform, the item embedded in the
``ICEYE_PROPERTIES`` tag, and a sidecar whose ``proj:transform`` is in GDAL order, whose
``sar:center_frequency`` is in Hz and whose ``proj:shape`` is ``[width, height]`` (as in the real
Open Data sidecars).
"""

from __future__ import annotations

import json
import os
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import numpy as np
import rasterio
from affine import Affine
from rasterio.crs import CRS

from icecube_cloud.synthetic._fields import state_vectors
from icecube_cloud.synthetic.pixels import grd_pixels, slc_amplitude_phase
from icecube_cloud.synthetic.spec import SyntheticSpec, cog_transform, rpc_coefficients

COG_OPTIONS = {"compress": "ZSTD", "level": 1, "blocksize": 512, "overviews": "NONE"}
"""COG creation options: fast to write (benchmarks write GiBs), tiled and compressed."""


def _zulu(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%f").rstrip("0").rstrip(".") + "Z"


def to_shadows_down(physical: np.ndarray) -> np.ndarray:
    """(..., azimuth, range) -> (..., range, azimuth reversed): the file layout of ICEYE COGs."""
    return np.ascontiguousarray(np.swapaxes(physical, -1, -2)[..., ::-1])


SIDECAR_EXTENSIONS = (
    "https://stac-extensions.github.io/sar/v1.0.0/schema.json",
    "https://stac-extensions.github.io/sat/v1.0.0/schema.json",
    "https://stac-extensions.github.io/view/v1.0.0/schema.json",
    "https://stac-extensions.github.io/processing/v1.1.0/schema.json",
    "https://stac-extensions.github.io/projection/v2.0.0/schema.json",
    "https://stac-extensions.github.io/raster/v1.0.0/schema.json",
)
"""STAC extensions an ICEYE sidecar declares."""


def _orbit_states(spec: SyntheticSpec) -> list[dict[str, Any]]:
    """``iceye:orbit_states``: the generated state vectors as ICEYE lists them."""
    vectors = state_vectors(spec)
    return [
        {"time": _zulu(datetime.fromisoformat(str(t)).replace(tzinfo=UTC)),
         "position": [float(vectors[f"pos{a}"][k]) for a in "XYZ"],
         "velocity": [float(vectors[f"vel{a}"][k]) for a in "XYZ"]}
        for k, t in enumerate(vectors["state_vector_time_utc"])
    ]  # fmt: skip


def _acquisition_properties(spec: SyntheticSpec, level: Literal["GRD", "SLC"]) -> dict[str, Any]:
    """Times, platform and the sar/sat/view/processing extension fields."""
    mid = spec.acquisition_start + spec.duration / 2
    return {
        "datetime": _zulu(mid),
        "created": _zulu(spec.acquisition_end + timedelta(days=1)),
        "start_datetime": _zulu(spec.acquisition_start),
        "end_datetime": _zulu(spec.acquisition_end),
        "platform": spec.platform,
        "constellation": "ICEYE",
        "sar:instrument_mode": spec.instrument_mode,
        "sar:frequency_band": "X",
        "sar:center_frequency": round(spec.center_frequency_ghz * 1e9),
        "sar:polarizations": [spec.polarization],
        "sar:product_type": f"{level}-COG",
        "sar:resolution_range": spec.pixel_spacing_range * 2,
        "sar:resolution_azimuth": spec.pixel_spacing_azimuth * 2,
        "sar:pixel_spacing_range": spec.pixel_spacing_range,
        "sar:pixel_spacing_azimuth": spec.pixel_spacing_azimuth,
        "sar:looks_range": spec.looks_range,
        "sar:looks_azimuth": spec.looks_azimuth,
        "sar:observation_direction": spec.observation_direction,
        "sat:orbit_state": spec.orbit_state,
        "sat:absolute_orbit": spec.absolute_orbit,
        "sat:relative_orbit": spec.relative_orbit,
        "view:off_nadir": spec.incidence_angle - 2.6,
        "view:azimuth": (spec.heading + (90 if spec.observation_direction == "right" else -90))
        % 360,
        "view:incidence_angle": spec.incidence_angle,
        "processing:software": {"forge": "v1.0.1", "processor": spec.processor_version},
    }


def _raster_properties(
    transform: Affine, width: int, height: int, level: Literal["GRD", "SLC"]
) -> dict[str, Any]:
    """The proj fields in ICEYE's conventions (``[width, height]``, GDAL order) and raster bands."""
    centre = transform @ (width / 2, height / 2)
    band = {"data_type": "ui16", "bits_per_sample": 16} if level == "GRD" else {
        "data_type": "f32", "bits_per_sample": 31}  # fmt: skip
    return {
        "proj:code": "EPSG:4326",
        "proj:shape": [width, height],
        "proj:centroid": {"lat": centre[1], "lon": centre[0]},
        "proj:transform": [
            transform.c,
            transform.a,
            transform.b,
            transform.f,
            transform.d,
            transform.e,
        ],
        "raster:bands": [band] if level == "GRD" else [band, dict(band)],
    }


def _iceye_properties(spec: SyntheticSpec, tif_name: str) -> dict[str, Any]:
    """ICEYE's own ``iceye:`` fields (ids, Doppler, orbit, incidence, RPC, calibration)."""
    mid = spec.acquisition_start + spec.duration / 2
    return {
        "iceye:image_id": spec.absolute_orbit,
        "iceye:image_reference": str(uuid.uuid5(uuid.NAMESPACE_URL, spec.product_id)),
        "iceye:scene_id": spec.product_id[-6:].upper(),
        "iceye:frame_number": 1,
        "iceye:filename": tif_name,
        "iceye:zero_doppler_start_datetime": _zulu(mid - timedelta(seconds=0.36)),
        "iceye:zero_doppler_end_datetime": _zulu(mid + timedelta(seconds=0.36)),
        "iceye:doppler_centroid_coeffs": [[float(v)] for v in np.linspace(-1851.8, 1833.9, 10)],
        "iceye:doppler_rate_coeffs": [1651.75, -1119565.08, 337146032.3, -38066106785.27],
        "iceye:orientation": "shadows-down",
        "iceye:coordinate_frame": "ecef",
        "iceye:orbit_mean_altitude": 588584,
        "iceye:orbit_states": _orbit_states(spec),
        "iceye:orbit_precision": "precise",
        "iceye:incidence_angle_near": spec.incidence_near,
        "iceye:incidence_angle_far": spec.incidence_far,
        "iceye:incidence_angle_coeffs": [
            spec.incidence_near,
            spec.incidence_span / spec.shape[1],
            0.0,
            0.0,
        ],
        "iceye:average_scene_height": 110,
        "iceye:rpc": rpc_coefficients(spec),
        "iceye:processing_mode": "SLEDF",
        "iceye:calibration_factor": spec.calibration_factor,
    }


def _assets(level: Literal["GRD", "SLC"], tif_name: str) -> dict[str, Any]:
    """The data (COG) and metadata (sidecar) assets."""
    kind = level.lower()
    return {
        f"{kind}-cog": {
            "href": tif_name,
            "type": "image/tiff; application=geotiff; profile=cloud-optimized",
            "roles": ["data"],
        },
        f"{kind}-json": {
            "href": Path(tif_name).with_suffix(".json").name,
            "type": "application/geo+json",
            "roles": ["metadata"],
        },
    }


def sidecar_item(
    spec: SyntheticSpec, level: Literal["GRD", "SLC"], tif_name: str
) -> dict[str, Any]:
    """The STAC item ICEYE writes next to (and into) a COG, with generated values."""
    n_az, n_rg = spec.shape
    transform = Affine(*cog_transform(spec))
    width, height = n_az, n_rg  # shadows-down: cols = azimuth, rows = range
    ring = [transform @ xy for xy in ((0, 0), (width, 0), (width, height), (0, height))]
    ring.append(ring[0])
    lons, lats = [p[0] for p in ring], [p[1] for p in ring]
    props: dict[str, Any] = {
        **_acquisition_properties(spec, level),
        **_raster_properties(transform, width, height, level),
        **_iceye_properties(spec, tif_name),
    }
    return {
        "stac_version": "1.0.0",
        "stac_extensions": list(SIDECAR_EXTENSIONS),
        "id": spec.product_id,
        "type": "Feature",
        "geometry": {"type": "Polygon", "coordinates": [[list(p) for p in ring]]},
        "bbox": [min(lons), min(lats), max(lons), max(lats)],
        "properties": props,
        "links": [],
        "assets": _assets(level, tif_name),
    }


def write_cog(
    folder: str | os.PathLike[str], spec: SyntheticSpec, level: Literal["GRD", "SLC"] = "GRD"
) -> tuple[Path, Path]:
    """Write ``<product_id>_<level>.tif`` (shadows-down COG) and its sidecar ``.json``.

    Returns:
        The TIFF and sidecar paths.
    """
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    tif = out / f"{spec.product_id}_{level}.tif"
    item = sidecar_item(spec, level, tif.name)
    if level == "GRD":
        data = to_shadows_down(grd_pixels(spec))[None]
    else:
        data = to_shadows_down(slc_amplitude_phase(spec))
    with rasterio.open(
        tif, "w", driver="COG", height=data.shape[1], width=data.shape[2], count=data.shape[0],
        dtype=data.dtype, crs=CRS.from_epsg(4326), transform=Affine(*cog_transform(spec)),
        **COG_OPTIONS,
    ) as dst:  # fmt: skip
        dst.write(data)
        dst.update_tags(ICEYE_PROPERTIES=json.dumps(item))
        if level == "SLC":
            dst.set_band_description(1, "amplitude")
            dst.set_band_description(2, "phase")
    sidecar = tif.with_suffix(".json")
    sidecar.write_text(json.dumps(item, indent=2))
    return tif, sidecar
