"""Radiometric calibration of cube pixels: β⁰ and σ⁰, linear or in dB (SPEC §6c).

ICEYE's calibration is one factor per product: β⁰ = ``calibration_factor`` · |pixel|², where the
pixel is the GRD amplitude (DN) or the SLC complex value. σ⁰ is approximated from β⁰ with the
scene-centre incidence angle of each time slice, σ⁰ = β⁰ · sin(θ_centre): exact at the scene
centre; across a spotlight or stripmap scene the incidence changes by a fraction of a degree to a few
degrees, so σ⁰ is off by up to ~0.1–0.3 dB at the near and far edges (a local incidence per pixel
needs a DEM, which a cube does not carry).

One numpy kernel, :func:`calibrate_array`, computes every quantity; :func:`calibrate` applies it
lazily to a cube and :class:`~icecube_cloud.ml.dataset.PatchDataset` to the windows it reads, so a
patch equals ``calibrate(cube)`` of its window bit for bit.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import xarray as xr

from icecube_cloud.errors import UsageError

Quantity = Literal["sigma0", "beta0"]
"""What :func:`calibrate` computes."""

Input = Literal["amplitude", "beta0_db", "sigma0_db", "complex"]
"""What a patch holds (:class:`~icecube_cloud.ml.dataset.PatchDataset` ``input=``)."""

INPUTS: tuple[str, ...] = ("amplitude", "beta0_db", "sigma0_db", "complex")
DEFAULT_FLOOR_DB = -50.0


def pixel_variable(ds: xr.Dataset) -> str:
    """The name of the cube's pixel variable: ``amplitude`` (GRD) or ``slc`` (SLC).

    Raises:
        UsageError: The dataset holds neither (not an icecube-cloud cube of products).
    """
    for name in ("amplitude", "slc"):
        if name in ds.data_vars:
            return name
    raise UsageError(
        "not an icecube-cloud cube: no `amplitude` (GRD) or `slc` (SLC) variable "
        f"(variables: {', '.join(map(str, ds.data_vars)) or 'none'})"
    )


def power(pixels: npt.NDArray[Any]) -> npt.NDArray[np.float32]:
    """|pixel|² in float32 (GRD DN squared, or re² + im² of SLC values)."""
    if np.iscomplexobj(pixels):
        re = pixels.real.astype(np.float32, copy=False)
        im = pixels.imag.astype(np.float32, copy=False)
        out: npt.NDArray[np.float32] = re * re
        out += im * im
        return out
    amp = pixels.astype(np.float32)
    amp *= amp
    return amp


def calibrate_array(
    pixels: npt.NDArray[Any],
    calibration_factor: npt.ArrayLike,
    incidence_angle: npt.ArrayLike,
    *,
    quantity: Quantity = "sigma0",
    db: bool = True,
    floor_db: float = DEFAULT_FLOOR_DB,
) -> npt.NDArray[np.float32]:
    """Calibrate pixels whose first axis is time (the numpy kernel of :func:`calibrate`).

    Args:
        pixels: ``(time, ...)`` GRD amplitude (any integer or float dtype) or SLC complex values.
        calibration_factor: One factor per time (broadcast over the other axes).
        incidence_angle: Scene-centre incidence per time, degrees (used for σ⁰ only).
        quantity: ``sigma0`` or ``beta0``.
        db: ``10·log10`` of the value, with everything at or below ``floor_db`` (zero and gap
            slices, whose factor is NaN, included) set to ``floor_db``: never -inf or NaN.
        floor_db: The floor, dB.

    Returns:
        float32 array of ``pixels``' shape.
    """
    extra = (1,) * (pixels.ndim - 1)
    factor = np.asarray(calibration_factor, dtype=np.float64)
    if quantity == "sigma0":
        factor = factor * np.sin(np.deg2rad(np.asarray(incidence_angle, dtype=np.float64)))
    value = power(pixels)
    value *= factor.astype(np.float32).reshape(-1, *extra)
    if not db:
        return value
    floor_linear = np.float32(10.0 ** (floor_db / 10.0))
    above = value > floor_linear  # False for NaN (gap slices) as for 0
    np.copyto(value, floor_linear, where=~above)
    np.log10(value, out=value)
    value *= np.float32(10.0)
    np.copyto(value, np.float32(floor_db), where=~above)
    return value


def input_array(
    pixels: npt.NDArray[Any],
    calibration_factor: npt.ArrayLike,
    incidence_angle: npt.ArrayLike,
    input: str,
    floor_db: float = DEFAULT_FLOOR_DB,
) -> npt.NDArray[np.float32]:
    """A model input from pixels ``(time, H, W)``: what :func:`input_of` gives for one window.

    ``amplitude`` is |pixel| (the DN of GRD, as float32); ``complex`` stacks real and imaginary
    parts as a channel axis: ``(time, 2, H, W)``.
    """
    if input == "amplitude":
        if np.iscomplexobj(pixels):
            magnitude: npt.NDArray[np.float32] = np.abs(pixels).astype(np.float32, copy=False)
            return magnitude
        return pixels.astype(np.float32)
    if input == "complex":
        if not np.iscomplexobj(pixels):
            raise UsageError("input='complex' needs an SLC cube (variable `slc`); this is GRD")
        return np.stack([pixels.real, pixels.imag], axis=1).astype(np.float32, copy=False)
    if input in ("beta0_db", "sigma0_db"):
        quantity: Quantity = "beta0" if input == "beta0_db" else "sigma0"
        return calibrate_array(
            pixels, calibration_factor, incidence_angle, quantity=quantity, floor_db=floor_db
        )
    raise UsageError(f"input={input!r}: expected one of {', '.join(INPUTS)}")


def _check_quantity(quantity: str, floor_db: float) -> None:
    if quantity not in ("sigma0", "beta0"):
        raise UsageError(f"quantity={quantity!r}: expected 'sigma0' or 'beta0'")
    if not math.isfinite(floor_db):
        raise UsageError(f"floor_db={floor_db!r}: expected a finite number of dB")


def calibrate(
    ds: xr.Dataset,
    quantity: Quantity = "sigma0",
    db: bool = True,
    floor_db: float = DEFAULT_FLOOR_DB,
) -> xr.DataArray:
    """β⁰ or σ⁰ of every pixel of a cube, lazily (dask) when the cube is.

    Works for GRD and SLC cubes in SAR or map geometry, as opened by ``open_cube`` or
    ``xr.open_zarr``. β⁰ = ``calibration_factor`` · |pixel|²; σ⁰ = β⁰ · sin(``incidence_angle``)
    with each slice's scene-centre incidence (see the module docstring for the approximation);
    with ``db``, 10·log10 floored at ``floor_db`` (DN 0, fill outside a map footprint and gap slices
    are ``floor_db``, never -inf or NaN). Without ``db``, gap slices are NaN.

    Args:
        ds: The cube.
        quantity: ``sigma0`` (default) or ``beta0``.
        db: In decibels (default) or linear.
        floor_db: The dB floor.

    Returns:
        float32 DataArray on the pixel variable's dims and coordinates, named after the quantity
        (``sigma0_db``, ``beta0``, ...).

    Raises:
        UsageError: Not a cube of products, or a bad ``quantity``/``floor_db``.
    """
    _check_quantity(quantity, floor_db)
    var = pixel_variable(ds)
    for coord in ("calibration_factor", "incidence_angle"):
        if coord not in ds.variables:
            raise UsageError(f"the cube has no `{coord}` coordinate (needed to calibrate)")
    pixels = ds[var]
    factor = ds["calibration_factor"].astype(np.float64)
    incidence = ds["incidence_angle"].astype(np.float64)

    def kernel(block: npt.NDArray[Any], cf: npt.NDArray[Any], inc: npt.NDArray[Any]) -> Any:
        return calibrate_array(block, cf, inc, quantity=quantity, db=db, floor_db=floor_db)

    out: xr.DataArray = xr.apply_ufunc(
        kernel,
        pixels,
        factor,
        incidence,
        input_core_dims=[[], [], []],  # elementwise: every chunking gives the same values
        dask="parallelized",
        dask_gufunc_kwargs={"meta": np.empty((0,) * pixels.ndim, dtype=np.float32)},
        keep_attrs=False,
    )
    out = out.transpose(*pixels.dims)
    name = f"{quantity}_db" if db else quantity
    out.name = name
    out.attrs = {
        "long_name": f"{'sigma' if quantity == 'sigma0' else 'beta'} nought"
        + (" (dB)" if db else ""),
        "units": "dB" if db else "1",
        "comment": (
            "beta0 = calibration_factor * |pixel|^2"
            + (
                "; sigma0 = beta0 * sin(scene-centre incidence_angle)"
                if quantity == "sigma0"
                else ""
            )
            + (f"; values at or below {floor_db} dB are {floor_db}" if db else "")
        ),
    }
    if "grid_mapping" in pixels.attrs:
        out.attrs["grid_mapping"] = pixels.attrs["grid_mapping"]
    return out
