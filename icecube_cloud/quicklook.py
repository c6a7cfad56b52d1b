"""A picture of a cube's time series: one panel per time slice, in dB, with label outlines.

Reads a decimated subset of each slice (every ``step``-th pixel) lazily, slice by slice, so a big cube
is never loaded whole. Drawn with matplotlib's object API on the Agg canvas (no pyplot state).
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Sequence
from typing import Any

import fsspec
import numpy as np
import shapely
import xarray as xr
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from icecube_cloud.errors import DataError

DATA_VARIABLES: tuple[str, ...] = ("amplitude", "slc")
"""Cube variables a quicklook can show (GRD amplitude, or the modulus of SLC)."""
_OUTLINE_COLOURS = ("#ff3b30", "#34c759", "#0a84ff", "#ffcc00", "#af52de", "#ff9500", "#5ac8fa")


def to_db(values: np.ndarray, calibration_factor: float | None = None) -> np.ndarray:
    """Amplitude (or complex SLC) -> dB: ``10 log10(|a|^2 cf)`` when calibrated, else ``20 log10|a|``.

    Zero and non-finite samples become NaN.
    """
    amp = np.abs(np.asarray(values)).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        if (
            calibration_factor is not None
            and np.isfinite(calibration_factor)
            and calibration_factor > 0
        ):
            db = 10.0 * np.log10(amp**2 * calibration_factor)
        else:
            db = 20.0 * np.log10(amp)
    db[~np.isfinite(db)] = np.nan
    out: np.ndarray = db
    return out


def pick_times(n: int, max_times: int) -> list[int]:
    """At most ``max_times`` time indices spread evenly over ``n`` (first and last included)."""
    if n <= max_times:
        return list(range(n))
    return sorted({round(float(v)) for v in np.linspace(0, n - 1, max_times)})


def _coord(ds: xr.Dataset, name: str, t: int) -> Any:
    if name not in ds.coords and name not in ds.data_vars:
        return None
    value = ds[name].isel(time=t).values
    return value.item() if hasattr(value, "item") else value


def _title(ds: xr.Dataset, t: int) -> str:
    time = np.datetime_as_string(ds["time"].values[t], unit="m").replace("T", " ")
    pid = _coord(ds, "product_id", t)
    inc = _coord(ds, "incidence_angle", t)
    lines = [time]
    if pid:
        lines.append(str(pid) if len(str(pid)) <= 40 else "…" + str(pid)[-39:])
    if inc is not None and np.isfinite(inc):
        lines.append(f"incidence {float(inc):.2f}°")
    return "\n".join(lines)


def _outline_masks(ax: Axes, labels: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> None:
    codes = [int(c) for c in np.unique(labels) if c != 0]
    for k, code in enumerate(codes):
        z = (labels == code).astype(np.float32)
        if z.shape[0] < 2 or z.shape[1] < 2:
            continue
        ax.contour(cols + 0.5, rows + 0.5, z, levels=[0.5], colors=[_OUTLINE_COLOURS[k % 7]],
                   linewidths=0.8)  # fmt: skip


def _outline_vectors(ax: Axes, wkts: Sequence[str]) -> None:
    for wkt in wkts:
        if not wkt:
            continue
        geom = shapely.from_wkt(wkt)
        for part in getattr(geom, "geoms", [geom]):
            if part.geom_type == "Polygon":
                xs, ys = part.exterior.xy
                ax.plot(xs, ys, color="#00e5ff", linewidth=0.8)
            elif part.geom_type == "Point":
                ax.plot([part.x], [part.y], marker="+", color="#00e5ff")
            elif part.geom_type == "LineString":
                xs, ys = part.xy
                ax.plot(xs, ys, color="#00e5ff", linewidth=0.8)


def quicklook(
    ds: xr.Dataset,
    out: str | os.PathLike[str],
    *,
    max_times: int = 12,
    max_pixels: int = 400,
    storage_options: dict[str, Any] | None = None,
) -> int:
    """Draw the cube's time series into a PNG at ``out`` (local path or fsspec URL).

    Args:
        ds: A cube (e.g. from :func:`icecube_cloud.cube.open_cube`).
        out: Output PNG.
        max_times: Panels at most (times spread evenly when the cube has more).
        max_pixels: Longest edge of a panel in samples; bigger slices are read with a stride.
        storage_options: fsspec options for a remote ``out``.

    Returns:
        The number of panels drawn.

    Raises:
        DataError: The cube has no amplitude or slc variable, or no time slice.
    """
    var = next((v for v in DATA_VARIABLES if v in ds.data_vars), None)
    if var is None:
        raise DataError(f"cube has none of the variables {', '.join(DATA_VARIABLES)}")
    n_az, n_rg = ds.sizes["azimuth"], ds.sizes["range"]
    times = pick_times(ds.sizes["time"], max_times)
    if not times:
        raise DataError("cube has no time slice")
    step = max(1, math.ceil(max(n_az, n_rg) / max_pixels))
    window: dict[str, Any] = {
        "time": 0,
        "azimuth": slice(None, None, step),
        "range": slice(None, None, step),
    }
    rows, cols = np.arange(n_az)[::step], np.arange(n_rg)[::step]

    panels: list[np.ndarray | None] = []
    for t in times:
        valid = _coord(ds, "valid", t)
        if valid is not None and not bool(valid):
            panels.append(None)
            continue
        cf = _coord(ds, "calibration_factor", t)
        data = ds[var].isel({**window, "time": t}).values  # decimated read of one slice
        panels.append(to_db(data, float(cf) if cf is not None else None))
    finite = [p[np.isfinite(p)] for p in panels if p is not None]
    pooled = np.concatenate(finite) if finite else np.array([])
    vmin, vmax = np.percentile(pooled, [2, 98]) if pooled.size else (0.0, 1.0)

    ncols = min(4, len(times))
    nrows = math.ceil(len(times) / ncols)
    aspect = n_az / n_rg if n_rg else 1.0
    fig = Figure(figsize=(3.2 * ncols + 0.8, max(2.0, 3.2 * aspect) * nrows + 0.6), dpi=100)
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    image = None
    for k, ax in enumerate(axes.flat):
        if k >= len(times):
            ax.set_axis_off()
            continue
        t = times[k]
        panel = panels[k]
        ax.set_title(_title(ds, t), fontsize=7)
        ax.set_xlim(0, n_rg)
        ax.set_ylim(n_az, 0)
        ax.tick_params(labelsize=6)
        if panel is None:
            ax.set_facecolor("#dddddd")
            ax.text(0.5, 0.5, "gap", transform=ax.transAxes, ha="center", va="center", fontsize=14)
            continue
        image = ax.imshow(panel, cmap="gray", vmin=vmin, vmax=vmax, extent=(0, n_rg, n_az, 0),
                          interpolation="nearest")  # fmt: skip
        if "labels" in ds.data_vars:
            _outline_masks(
                ax, np.asarray(ds["labels"].isel({**window, "time": t}).values), rows, cols
            )
        if "label_geometry" in ds.data_vars:
            _outline_vectors(
                ax, [str(w) for w in np.ravel(ds["label_geometry"].isel(time=t).values)]
            )
    for ax in axes[-1]:
        ax.set_xlabel("range", fontsize=7)
    for ax in axes[:, 0]:
        ax.set_ylabel("azimuth", fontsize=7)
    if image is not None:
        cbar = fig.colorbar(image, ax=axes.ravel().tolist(), shrink=0.8)
        cbar.set_label("dB", fontsize=7)
    sampling = "full resolution" if step == 1 else f"every {step}th pixel"
    fig.suptitle(f"{var} ({len(times)} of {ds.sizes['time']} times, {sampling})", fontsize=9)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    with fsspec.open(os.fspath(out), "wb", **(storage_options or {})) as f:
        f.write(buf.getvalue())
    return len(times)
