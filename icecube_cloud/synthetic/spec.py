"""What a synthetic ICEYE product looks like, and its (exactly affine) ground geometry."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

import numpy as np

_M_PER_DEG = 111_320.0


@dataclass(frozen=True, kw_only=True)
class SceneTargets:
    """Objects painted into a synthetic scene: dark water bodies and bright targets.

    Their geometry is drawn from the product's ``scene_seed`` and ``shape`` (so a stack shares it)
    in the physical (azimuth, range) pixel space; see :mod:`icecube_cloud.synthetic.targets`.
    Levels are relative to the scene's mean backscatter (power, dB); each object draws its own
    level from the range. Speckle stays per image.
    """

    water: int = 3
    """Number of water bodies (irregular smooth polygons)."""
    boxes: int = 4
    """Number of bright box targets (rectangles of a few pixels to a few percent of the image)."""
    points: int = 6
    """Number of bright point targets (one pixel each)."""
    water_db: tuple[float, float] = (-20.0, -15.0)
    """Range of water levels, dB relative to the mean land backscatter."""
    target_db: tuple[float, float] = (10.0, 20.0)
    """Range of target levels, dB relative to the mean land backscatter."""
    changes: int = 2
    """Number of box targets that change during ``period`` (alternately appear and disappear)."""
    period: tuple[datetime, datetime] | None = None
    """The stack's time span; a change happens at a seeded time in its middle half. ``None``:
    nothing changes."""


@dataclass(frozen=True, kw_only=True)
class SyntheticSpec:
    """Everything that decides one synthetic product: metadata values and pixels (via ``seed``)."""

    product_id: str
    """Product id; the file stem of legacy products, the sidecar ``id`` of COGs."""
    seed: int = 0
    """Seed of the speckle (different for each image of a stack)."""
    scene_seed: int = 0
    """Seed of the smooth backscatter scene (shared by a coregistered stack)."""
    shape: tuple[int, int] = (512, 512)
    """Image shape (azimuth lines, range samples)."""
    acquisition_start: datetime = datetime(2021, 4, 27, 21, 51, 24, 929476, tzinfo=UTC)
    """Acquisition start (UTC)."""
    acquisition_end: datetime = datetime(2021, 4, 27, 21, 51, 30, 25535, tzinfo=UTC)
    """Acquisition end (UTC)."""
    incidence_angle: float = 30.0
    """Scene-centre incidence angle, degrees."""
    incidence_span: float = 0.5
    """Far minus near incidence, degrees."""
    orbit_state: Literal["ascending", "descending"] = "ascending"
    """Orbit direction."""
    observation_direction: Literal["left", "right"] = "right"
    """Antenna look side."""
    platform: str = "ICEYE-X9"
    """Satellite name."""
    polarization: str = "VV"
    """Polarisation."""
    instrument_mode: str = "spotlight"
    """Acquisition mode (spotlight, stripmap, scan)."""
    product_type: str = "SpotlightExtendedDwell"
    """ICEYE product type of legacy products."""
    center_lon: float = -6.254
    """Scene-centre longitude, degrees."""
    center_lat: float = 37.446
    """Scene-centre latitude, degrees."""
    pixel_spacing_range: float = 0.5
    """Ground pixel spacing in range, metres."""
    pixel_spacing_azimuth: float = 0.5
    """Pixel spacing in azimuth, metres."""
    center_frequency_ghz: float = 9.65
    """Carrier frequency, GHz."""
    calibration_factor: float = 3.939204325311276e-08
    """Radiometric calibration factor."""
    absolute_orbit: int = 9915
    """Absolute orbit number."""
    relative_orbit: int = 9915
    """Relative orbit number."""
    looks_range: int = 1
    """Range looks."""
    looks_azimuth: int = 3
    """Azimuth looks."""
    processor_version: str = "ICEYE_P_1.31"
    """Processor name and version as ICEYE writes it."""
    amplitude_scale: float = 300.0
    """Mean amplitude (digital number) of the scene."""
    targets: SceneTargets | None = None
    """Water bodies and bright targets in the scene (``None``: the smooth scene alone)."""

    @property
    def incidence_near(self) -> float:
        """Near-range incidence angle."""
        return self.incidence_angle - self.incidence_span / 2

    @property
    def incidence_far(self) -> float:
        """Far-range incidence angle."""
        return self.incidence_angle + self.incidence_span / 2

    @property
    def heading(self) -> float:
        """Platform heading, degrees clockwise from north."""
        return 349.9 if self.orbit_state == "ascending" else 190.1

    @property
    def duration(self) -> timedelta:
        """Acquisition duration."""
        return self.acquisition_end - self.acquisition_start


def axis_vectors(spec: SyntheticSpec) -> tuple[np.ndarray, np.ndarray]:
    """(lon, lat) degrees per azimuth line and per range sample (ground plane, flat earth)."""
    heading = math.radians(spec.heading)
    look = heading + (math.pi / 2 if spec.observation_direction == "right" else -math.pi / 2)
    cos_lat = math.cos(math.radians(spec.center_lat))

    def step(angle: float, metres: float) -> np.ndarray:
        east, north = math.sin(angle) * metres, math.cos(angle) * metres
        return np.array([east / (_M_PER_DEG * cos_lat), north / _M_PER_DEG])

    return step(heading, spec.pixel_spacing_azimuth), step(look, spec.pixel_spacing_range)


def geo(spec: SyntheticSpec, azimuth: np.ndarray, range_: np.ndarray) -> np.ndarray:
    """(..., 2) lon/lat of continuous physical pixel coordinates (0 = edge of the first pixel)."""
    v_az, v_rg = axis_vectors(spec)
    n_az, n_rg = spec.shape
    az = np.asarray(azimuth, dtype=float)[..., None] - n_az / 2
    rg = np.asarray(range_, dtype=float)[..., None] - n_rg / 2
    out: np.ndarray = np.array([spec.center_lon, spec.center_lat]) + az * v_az + rg * v_rg
    return out


def cog_transform(spec: SyntheticSpec) -> tuple[float, float, float, float, float, float]:
    """Affine (a, b, c, d, e, f) of a shadows-down file (x: azimuth reversed, y: range)."""
    v_az, v_rg = axis_vectors(spec)
    n_az, _ = spec.shape
    origin = geo(spec, np.array(n_az), np.array(0.0))
    return (
        float(-v_az[0]), float(v_rg[0]), float(origin[0]),
        float(-v_az[1]), float(v_rg[1]), float(origin[1]),
    )  # fmt: skip


def rpc_coefficients(spec: SyntheticSpec) -> dict[str, float | list[float]]:
    """Exact (linear) RPC of the geometry: lon/lat -> line (azimuth) / sample (range).

    GDAL reads RPC line/sample with 0 at the *centre* of the first pixel (its GCPs and :func:`geo`
    put 0 at its edge), so the offsets are half a pixel less than the image centre.
    """
    v_az, v_rg = axis_vectors(spec)
    inverse = np.linalg.inv(np.column_stack([v_az, v_rg]))  # (lon, lat) offsets -> (az, rg)
    n_az, n_rg = spec.shape
    corners = geo(spec, np.array([0, 0, n_az, n_az]), np.array([0, n_rg, 0, n_rg]))
    long_scale = float(np.ptp(corners[:, 0]) / 2) or 1e-6
    lat_scale = float(np.ptp(corners[:, 1]) / 2) or 1e-6
    line_scale, samp_scale = n_az / 2, n_rg / 2

    def numerator(row: np.ndarray, scale: float) -> list[float]:
        return [0.0, row[0] * long_scale / scale, row[1] * lat_scale / scale] + [0.0] * 17

    return {
        "line_off": n_az / 2 - 0.5,
        "samp_off": n_rg / 2 - 0.5,
        "lat_off": spec.center_lat,
        "long_off": spec.center_lon,
        "height_off": 100.0,
        "line_scale": line_scale,
        "samp_scale": samp_scale,
        "lat_scale": lat_scale,
        "long_scale": long_scale,
        "height_scale": 500.0,
        "line_num_coeff": [float(v) for v in numerator(inverse[0], line_scale)],
        "line_den_coeff": [1.0] + [0.0] * 19,
        "samp_num_coeff": [float(v) for v in numerator(inverse[1], samp_scale)],
        "samp_den_coeff": [1.0] + [0.0] * 19,
    }
