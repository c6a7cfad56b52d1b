"""Deterministic, speckle-like pixels of synthetic products (vectorised; no per-pixel Python)."""

from __future__ import annotations

from typing import Literal

import numpy as np

from icecube_cloud.synthetic.spec import SyntheticSpec
from icecube_cloud.synthetic.targets import paint_targets

IQDtype = Literal["int16", "float32"]


def scene(spec: SyntheticSpec) -> np.ndarray:
    """Smooth backscatter (Rayleigh scale) over (azimuth, range), float32; shared by a stack.

    With ``spec.targets``, water bodies and bright targets replace it where they are
    (:func:`icecube_cloud.synthetic.targets.paint_targets`).
    """
    rng = np.random.default_rng([spec.scene_seed, 7919])
    n_az, n_rg = spec.shape
    az = np.linspace(0.0, 1.0, n_az, dtype=np.float32)
    rg = np.linspace(0.0, 1.0, n_rg, dtype=np.float32)
    out = np.ones((n_az, n_rg), dtype=np.float32)
    for _ in range(3):  # separable waves: cheap outer products
        f_az, f_rg = rng.uniform(0.5, 4.0, size=2)
        p_az, p_rg = rng.uniform(0.0, 2 * np.pi, size=2)
        wave_az = np.sin(2 * np.pi * f_az * az + p_az).astype(np.float32)
        wave_rg = np.sin(2 * np.pi * f_rg * rg + p_rg).astype(np.float32)
        out += np.float32(0.25) * np.outer(wave_az, wave_rg)
    out *= np.float32(spec.amplitude_scale / np.sqrt(np.pi / 2))  # mean of Rayleigh(sigma)
    if spec.targets is not None:
        paint_targets(spec, out)
    return out


def complex_field(spec: SyntheticSpec) -> tuple[np.ndarray, np.ndarray]:
    """Float32 (i, q) whose amplitude is Rayleigh-distributed over the smooth scene."""
    sigma = scene(spec)
    rng = np.random.default_rng([spec.seed, 104729])
    i = rng.standard_normal(spec.shape, dtype=np.float32)
    i *= sigma
    q = rng.standard_normal(spec.shape, dtype=np.float32)
    q *= sigma
    return i, q


def grd_pixels(spec: SyntheticSpec) -> np.ndarray:
    """uint16 amplitude (azimuth, range)."""
    i, q = complex_field(spec)
    amplitude: np.ndarray = np.hypot(i, q)
    np.rint(amplitude, out=amplitude)
    np.clip(amplitude, 0, 65535, out=amplitude)
    return amplitude.astype(np.uint16)


def slc_iq(spec: SyntheticSpec, iq_dtype: IQDtype = "int16") -> np.ndarray:
    """(2, azimuth, range) I/Q in ``iq_dtype`` (int16 as in real deliveries, or float32)."""
    i, q = complex_field(spec)
    if iq_dtype == "float32":
        return np.stack([i, q])
    out = np.empty((2, *spec.shape), dtype=np.int16)
    for k, part in enumerate((i, q)):
        np.rint(part, out=part)
        np.clip(part, -32768, 32767, out=part)
        out[k] = part
    return out


def slc_amplitude_phase(spec: SyntheticSpec) -> np.ndarray:
    """(2, azimuth, range) float32 amplitude and phase (radians) of a COG SLC."""
    i, q = complex_field(spec)
    return np.stack([np.hypot(i, q), np.arctan2(q, i)]).astype(np.float32)


def expected_pixels(
    spec: SyntheticSpec,
    level: Literal["GRD", "SLC"],
    *,
    cog: bool = False,
    iq_dtype: IQDtype = "int16",
) -> np.ndarray:
    """The pixels a generated product holds, in physical (azimuth, range) orientation.

    Args:
        spec: The product.
        level: ``GRD`` -> uint16 (azimuth, range); ``SLC`` -> (2, azimuth, range).
        cog: For SLC: COG amplitude/phase (float32) instead of legacy I/Q.
        iq_dtype: Legacy SLC I/Q dtype.
    """
    if level == "GRD":
        return grd_pixels(spec)
    return slc_amplitude_phase(spec) if cog else slc_iq(spec, iq_dtype)
