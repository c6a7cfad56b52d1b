"""The legacy ICEYE metadata field set (ICEYE's names and structure), generated values.

Field names follow the ICEYE product spec 2.x as found in real deliveries; the values are computed
from a :class:`SyntheticSpec` (times, angles, geometry) or are plausible constants.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import numpy as np

from icecube_cloud.synthetic.spec import SyntheticSpec, geo

N_STATE_VECTORS = 81
N_DC = 10
_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%f"


def iso(moment: datetime) -> str:
    """ICEYE legacy timestamp: ISO 8601, microseconds, no zone designator (UTC implied)."""
    return moment.strftime(_TIME_FORMAT)


def corner(spec: SyntheticSpec, line: int, sample: int) -> np.ndarray:
    """ICEYE ``coord_*`` value: [range_sample, azimuth_line, lat, lon], 1-based pixel indices."""
    lon, lat = geo(spec, np.array(line - 1), np.array(sample - 1))
    return np.array([float(sample), float(line), lat, lon])


def state_vectors(spec: SyntheticSpec) -> dict[str, Any]:
    start = spec.acquisition_start.replace(microsecond=0) - timedelta(seconds=1)
    step = max(0.1, (spec.duration.total_seconds() + 2.0) / (N_STATE_VECTORS - 1))
    t = np.arange(N_STATE_VECTORS) * step
    lon, lat = np.radians(spec.center_lon), np.radians(spec.center_lat)
    radius = 6_371_000.0 + 536_675.0
    up = np.array([np.cos(lat) * np.cos(lon), np.cos(lat) * np.sin(lon), np.sin(lat)])
    sign = 1.0 if spec.orbit_state == "ascending" else -1.0
    velocity = sign * 7600.0 * np.array([-np.sin(lat) * np.cos(lon), -np.sin(lat) * np.sin(lon),
                                         np.cos(lat)])  # fmt: skip
    pos = radius * up[None, :] + t[:, None] * velocity[None, :]
    times = np.array([iso(start + timedelta(seconds=float(s))) for s in t])
    return {
        "state_vector_time_utc": times,
        "posX": pos[:, 0], "posY": pos[:, 1], "posZ": pos[:, 2],
        "velX": np.full(N_STATE_VECTORS, velocity[0]),
        "velY": np.full(N_STATE_VECTORS, velocity[1]),
        "velZ": np.full(N_STATE_VECTORS, velocity[2]),
    }  # fmt: skip


def common_fields(spec: SyntheticSpec, level: str, product_file: str) -> dict[str, Any]:
    """Fields shared by legacy GRD tags and legacy SLC datasets (ICEYE names, lower-case)."""
    n_az, n_rg = spec.shape
    mid = spec.acquisition_start + spec.duration / 2
    dc_times = np.array([iso(mid + timedelta(seconds=0.08 * (k - N_DC / 2))) for k in range(N_DC)])
    dc = np.zeros((N_DC, 4))
    dc[:, 0] = np.linspace(-2259.75, 2384.49, N_DC)
    fields: dict[str, Any] = {
        "acquisition_end_utc": iso(spec.acquisition_end),
        "acquisition_mode": spec.instrument_mode,
        "acquisition_prf": 5886.672581404736,
        "acquisition_start_utc": iso(spec.acquisition_start),
        "ant_elev_corr_flag": 1,
        "avg_scene_height": 110.74176,
        "azimuth_looks": spec.looks_azimuth,
        "azimuth_time_interval": 7.076784388926729e-05,
        "calibration_factor": spec.calibration_factor,
        "carrier_frequency": spec.center_frequency_ghz * 1e9,
        "chirp_bandwidth": 300000000.0,
        "chirp_duration": 3.397714285714286e-05,
        "coord_center": corner(spec, n_az // 2 + 1, n_rg // 2 + 1),
        "coord_first_far": corner(spec, 1, n_rg),
        "coord_first_near": corner(spec, 1, 1),
        "coord_last_far": corner(spec, n_az, n_rg),
        "coord_last_near": corner(spec, n_az, 1),
        "dc_estimate_coeffs": dc,
        "dc_estimate_poly_order": 3,
        "dc_estimate_time_utc": dc_times,
        "doppler_rate_coeffs": np.array(
            [-5.58027093e03, 1.34212242e06, -3.22798340e08, 7.7637014e10]
        ),
        "doppler_rate_poly_order": 3,
        "geo_ref_system": "WGS84",
        "heading": spec.heading,
        "incidence_center": spec.incidence_angle,
        "incidence_far": spec.incidence_far,
        "incidence_near": spec.incidence_near,
        "look_side": spec.observation_direction,
        "mean_earth_radius": 6370576.1554293325,
        "mean_orbit_altitude": 536675.3876030303,
        "number_of_azimuth_samples": n_az,
        "number_of_dc_estimations": N_DC,
        "number_of_range_samples": n_rg,
        "number_of_state_vectors": N_STATE_VECTORS,
        "orbit_absolute_number": spec.absolute_orbit,
        "orbit_direction": spec.orbit_state.upper(),
        "orbit_processing_level": "precise",
        "orbit_relative_number": spec.relative_orbit,
        "orbit_repeat_cycle": 99999,
        "polarization": spec.polarization,
        "processing_prf": 36909.21454162281,
        "processing_time": iso(spec.acquisition_end + timedelta(hours=7)).split(".")[0],
        "processor_version": spec.processor_version,
        "product_file": product_file,
        "product_level": level,
        "product_name": product_file.rsplit(".", 1)[0],
        "product_type": spec.product_type,
        "range_looks": spec.looks_range,
        "range_sampling_rate": 358148331.2923262,
        "range_spread_comp_flag": 1,
        "sample_precision": "uint16" if level == "GRD" else "int16",
        "satellite_look_angle": round(spec.incidence_angle),
        "satellite_name": spec.platform,
        "slant_range_to_first_pixel": 621685.2427500114,
        "spec_version": 2.2,
        "total_processed_bandwidth_azimuth": 26363.724672587723,
        "tropo_range_delay": 2.8238412754811586,
        "window_function_azimuth": "TAYLOR_20_4",
        "window_function_range": "TAYLOR_20_4",
        "zerodoppler_end_utc": iso(mid + timedelta(seconds=0.38)),
        "zerodoppler_start_utc": iso(mid - timedelta(seconds=0.38)),
    }
    fields.update(state_vectors(spec))
    return fields


def grd_only_fields(spec: SyntheticSpec) -> dict[str, Any]:
    """Fields only legacy GRD GeoTIFFs carry."""
    zd = iso(spec.acquisition_start + spec.duration / 2)
    return {
        "applied_processing": {"library_version": "0.1.0", "processing": {}},
        "azimuth_look_bandwidth": 9478.957370916767,
        "azimuth_look_overlap": 1042.4495680720643,
        "azimuth_spacing": spec.pixel_spacing_azimuth,
        "gcp_terrain_model": "DEM",
        "grsr_coefficients": np.array(
            [6.21685243e05, 5.24903202e-01, 6.49477815e-07, -5.5055995e-13, 1.30562747e-19]
        ),
        "grsr_ground_range_origin": 0.0,
        "grsr_poly_order": 4,
        "grsr_zero_doppler_time": zd,
        "incidence_angle_coefficients": np.array(
            [spec.incidence_near, spec.incidence_span / max(spec.shape[1], 1), 0.0, 0.0, 0.0]
        ),
        "incidence_angle_ground_range_origin": 0.0,
        "incidence_angle_poly_order": 4,
        "incidence_angle_zero_doppler_time": zd,
        "range_look_bandwidth": 299486104.61513484,
        "range_look_overlap": 0.0,
        "range_spacing": spec.pixel_spacing_range,
    }


def slc_only_fields(spec: SyntheticSpec) -> dict[str, Any]:
    """Datasets only legacy SLC HDF5 files carry."""
    _, n_rg = spec.shape
    lon, lat = geo(spec, np.array(spec.shape[0] / 2), np.array(n_rg / 2))
    return {
        "angX": np.zeros(N_STATE_VECTORS),
        "angY": np.zeros(N_STATE_VECTORS),
        "angZ": np.zeros(N_STATE_VECTORS),
        "antenna_pattern_compensation": np.linspace(1.006, 1.012, n_rg, dtype=np.float32)[:, None],
        "azimuth_angles_of_the_beam": np.linspace(-0.248, 0.245, spec.shape[0]),
        "azimuth_ground_spacing": spec.pixel_spacing_azimuth,
        "data_orientation": "native",
        "first_pixel_time": 0.004147432745721746,
        "fsl_compensation": np.linspace(0.957, 0.965, n_rg),
        "local_incidence_angle": np.linspace(spec.incidence_near, spec.incidence_far, n_rg),
        "pitch": 0.0,
        "ref_track_point_ecef": np.array([5.039944e06, -5.5241e05, 3.856819e06], dtype=np.float32),
        "ref_track_point_lla": np.array([lat, lon, -42.9]),
        "slant_range_spacing": spec.pixel_spacing_range,
        "yaw": 0.0,
    }
