"""A picture of a cube's time series: one panel per time slice, in dB, with label outlines.

Reads a decimated subset of each slice (every ``step``-th pixel) lazily, slice by slice, so a big cube
is never loaded whole. Drawn with matplotlib's object API on the Agg canvas (no pyplot state).

Label classes (the ``labels`` raster) are outlined along pixel edges, one colour per class code of the
cube (stable across panels and cubes with the same coding), and named in a legend from the variable's
CF ``flag_values`` / ``flag_meanings``; vector labels (``label_geometry``) are dashed in their class's
colour.
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import fsspec
import numpy as np
import shapely
import xarray as xr
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from icecube_cloud.errors import DataError

DATA_VARIABLES: tuple[str, ...] = ("amplitude", "slc")
"""Cube variables a quicklook can show (GRD amplitude, or the modulus of SLC)."""
CLASS_COLOURS: tuple[str, ...] = (
    "#ff3b30", "#34c759", "#0a84ff", "#ffcc00", "#af52de",
    "#ff9500", "#5ac8fa", "#ff2d55", "#a2845e", "#ffffff",
)  # fmt: skip
"""Outline colours of the first label classes (in code order); more classes get evenly spaced hues."""
_VECTOR_COLOUR = "#00e5ff"


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


def class_names(labels: xr.DataArray) -> dict[int, str]:
    """Class code -> name of a ``labels`` variable, from its CF ``flag_values`` / ``flag_meanings``.

    0 is background and never a class; without usable attributes, codes are named ``class <code>``.
    """
    values = labels.attrs.get("flag_values")
    meanings = str(labels.attrs.get("flag_meanings", "")).split()
    if values is None:
        return {}
    codes = [int(v) for v in np.ravel(values)]
    if len(codes) != len(meanings):
        return {c: f"class {c}" for c in codes if c != 0}
    return {c: m for c, m in zip(codes, meanings, strict=True) if c != 0}


def class_colours(codes: Sequence[int]) -> dict[int, str]:
    """A distinct colour per class code, assigned in code order (so it does not depend on the panel)."""
    ordered = sorted(set(codes))
    if len(ordered) <= len(CLASS_COLOURS):
        return {c: CLASS_COLOURS[k] for k, c in enumerate(ordered)}
    hsv = colormaps["hsv"]
    return {
        c: "#{:02x}{:02x}{:02x}".format(*(round(255 * v) for v in hsv(k / len(ordered))[:3]))
        for k, c in enumerate(ordered)
    }


def _runs(flags: np.ndarray) -> list[tuple[int, int]]:
    """[start, stop) index runs of True in a 1-D boolean array."""
    edges = np.diff(np.concatenate(([0], flags.astype(np.int8), [0])))
    return list(
        zip(np.flatnonzero(edges == 1).tolist(), np.flatnonzero(edges == -1).tolist(), strict=True)
    )


def mask_edges(mask: np.ndarray, step: int = 1) -> list[list[tuple[float, float]]]:
    """The outline of a boolean (rows, cols) mask as segments along pixel edges, in cube coordinates.

    Pixel ``(i, j)`` of the mask covers ``[j*step, (j+1)*step)`` in x (range) and ``[i*step,
    (i+1)*step)`` in y (azimuth), as the quicklook draws it; a segment lies on every edge between a
    pixel inside and one outside (or the border), with collinear edges merged.

    Returns:
        Segments ``[(x0, y0), (x1, y1)]``.
    """
    m = np.pad(np.asarray(mask, dtype=bool), 1)
    segments: list[list[tuple[float, float]]] = []
    horizontal = m[1:, 1:-1] != m[:-1, 1:-1]  # edge above row i (i = 0..rows)
    for i, row in enumerate(horizontal):
        segments += [[(a * step, i * step), (b * step, i * step)] for a, b in _runs(row)]
    vertical = m[1:-1, 1:] != m[1:-1, :-1]  # edge left of column j (j = 0..cols)
    for j, col in enumerate(vertical.T):
        segments += [[(j * step, a * step), (j * step, b * step)] for a, b in _runs(col)]
    return segments


def _outline_masks(ax: Axes, labels: np.ndarray, step: int, colours: dict[int, str]) -> set[int]:
    codes = [int(c) for c in np.unique(labels) if c != 0]
    for code in codes:
        ax.add_collection(
            LineCollection(
                mask_edges(labels == code, step),
                colors=colours[code],
                linewidths=1.0,
                label=f"_class {code}",
            )
        )
    return set(codes)


def _outline_vectors(
    ax: Axes, wkts: Sequence[str], classes: Sequence[str], colours: dict[str, str]
) -> set[str]:
    drawn: set[str] = set()
    for wkt, name in zip(wkts, classes, strict=False):
        if not wkt:
            continue
        colour = colours.get(name, _VECTOR_COLOUR)
        drawn.add(name)
        geom = shapely.from_wkt(wkt)
        for part in getattr(geom, "geoms", [geom]):
            if part.geom_type == "Polygon":
                xs, ys = part.exterior.xy
                ax.plot(xs, ys, color=colour, linewidth=0.8, linestyle="--")
            elif part.geom_type == "Point":
                ax.plot([part.x], [part.y], marker="+", color=colour)
            elif part.geom_type == "LineString":
                xs, ys = part.xy
                ax.plot(xs, ys, color=colour, linewidth=0.8, linestyle="--")
    return drawn


@dataclass(frozen=True)
class _Window:
    """The decimated view of the cube that the panels show."""

    times: list[int]
    """Time indices drawn."""
    step: int
    """Stride in both pixel axes."""
    n_az: int
    """Cube rows (azimuth)."""
    n_rg: int
    """Cube columns (range)."""
    dims: tuple[str, str] = ("azimuth", "range")
    """The image dimensions: ``(azimuth, range)``, or ``(y, x)`` of a map-geometry cube."""

    def isel(self, t: int) -> dict[str, Any]:
        """The ``isel`` selector of time ``t``'s decimated slice."""
        return {"time": t, self.dims[0]: slice(None, None, self.step),
                self.dims[1]: slice(None, None, self.step)}  # fmt: skip


def _read_panels(ds: xr.Dataset, var: str, win: _Window) -> list[np.ndarray | None]:
    panels: list[np.ndarray | None] = []
    for t in win.times:
        valid = _coord(ds, "valid", t)
        if valid is not None and not bool(valid):
            panels.append(None)
            continue
        cf = _coord(ds, "calibration_factor", t)
        data = ds[var].isel(win.isel(t)).values  # decimated read of one slice
        panels.append(to_db(data, float(cf) if cf is not None else None))
    return panels


def _draw_labels(ds: xr.Dataset, ax: Axes, t: int, win: _Window, legend: dict[str, str]) -> None:
    """Outline time ``t``'s labels on ``ax``; adds the classes drawn to ``legend`` (name -> colour)."""
    names = class_names(ds["labels"]) if "labels" in ds.data_vars else {}
    labels = None
    if "labels" in ds.data_vars:
        labels = np.asarray(ds["labels"].isel(win.isel(t)).values)
        names.update({int(c): f"class {c}" for c in np.unique(labels) if c != 0 and c not in names})
    colours = class_colours(list(names))
    if labels is not None:
        for code in _outline_masks(ax, labels, win.step, colours):
            legend.setdefault(names[code], colours[code])
    if "label_geometry" in ds.data_vars:
        wkts = [str(w) for w in np.ravel(ds["label_geometry"].isel(time=t).values)]
        classes = [str(c) for c in np.ravel(ds["label_class"].isel(time=t).values)] if (
            "label_class" in ds.data_vars) else [""] * len(wkts)  # fmt: skip
        # flag_meanings spell a class name's spaces as underscores (labels.cube.flag_attrs).
        by_meaning = {n: colours[c] for c, n in names.items()}
        by_name = {c: by_meaning.get(c.replace(" ", "_"), _VECTOR_COLOUR) for c in set(classes)}
        for name in _outline_vectors(ax, wkts, classes, by_name):
            legend.setdefault(name.replace(" ", "_") or "label geometry", by_name[name])


def render(ds: xr.Dataset, *, max_times: int = 12, max_pixels: int = 400) -> tuple[Figure, int]:
    """The quicklook figure of a cube (see :func:`quicklook`) and the number of panels drawn.

    Raises:
        DataError: The cube has no amplitude or slc variable, or no time slice.
    """
    var = next((v for v in DATA_VARIABLES if v in ds.data_vars), None)
    if var is None:
        raise DataError(f"cube has none of the variables {', '.join(DATA_VARIABLES)}")
    row_dim, col_dim = (str(d) for d in ds[var].dims[1:])
    n_az, n_rg = ds.sizes[row_dim], ds.sizes[col_dim]
    times = pick_times(ds.sizes["time"], max_times)
    if not times:
        raise DataError("cube has no time slice")
    step = max(1, math.ceil(max(n_az, n_rg) / max_pixels))
    win = _Window(times, step, n_az, n_rg, (row_dim, col_dim))
    panels = _read_panels(ds, var, win)
    finite = [p[np.isfinite(p)] for p in panels if p is not None]
    pooled = np.concatenate(finite) if finite else np.array([])
    vmin, vmax = np.percentile(pooled, [2, 98]) if pooled.size else (0.0, 1.0)

    ncols = min(4, len(times))
    nrows = math.ceil(len(times) / ncols)
    aspect = n_az / n_rg if n_rg else 1.0
    fig = Figure(figsize=(3.2 * ncols + 0.8, max(2.0, 3.2 * aspect) * nrows + 1.0), dpi=100)
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    image = None
    legend: dict[str, str] = {}
    for ax, t, panel in zip(axes.flat, times, panels, strict=False):
        ax.set_title(_title(ds, t), fontsize=7)
        ax.tick_params(labelsize=6)
        if panel is None:
            ax.set_facecolor("#dddddd")
            ax.text(0.5, 0.5, "gap", transform=ax.transAxes, ha="center", va="center", fontsize=14)
        else:
            # Panel pixel (i, j) covers [j*step, (j+1)*step) x [i*step, (i+1)*step) of the cube.
            extent = (0, panel.shape[1] * win.step, panel.shape[0] * win.step, 0)
            image = ax.imshow(panel, cmap="gray", vmin=vmin, vmax=vmax, extent=extent,
                              interpolation="nearest")  # fmt: skip
            _draw_labels(ds, ax, t, win, legend)
        ax.set_xlim(0, n_rg)
        ax.set_ylim(n_az, 0)
    for ax in list(axes.flat)[len(times) :]:
        ax.set_axis_off()
    for ax in axes[-1]:
        ax.set_xlabel(col_dim + (" (pixels)" if col_dim == "x" else ""), fontsize=7)
    for ax in axes[:, 0]:
        ax.set_ylabel(row_dim + (" (pixels)" if row_dim == "y" else ""), fontsize=7)
    if image is not None:
        cbar = fig.colorbar(image, ax=axes.ravel().tolist(), shrink=0.8)
        cbar.set_label("dB", fontsize=7)
        cbar.ax.tick_params(labelsize=6)
    if legend:
        coding = list(class_names(ds["labels"]).values()) if "labels" in ds.data_vars else []
        ordered = sorted(legend, key=lambda n: coding.index(n) if n in coding else len(coding))
        handles = [Line2D([], [], color=legend[n], linewidth=2, label=n) for n in ordered]
        fig.legend(handles=handles, loc="lower center", ncols=min(6, len(handles)), fontsize=7,
                   title="label classes", title_fontsize=7, frameon=False)  # fmt: skip
    sampling = "full resolution" if win.step == 1 else f"every {win.step}th pixel"
    fig.suptitle(f"{var} ({len(times)} of {ds.sizes['time']} times, {sampling})", fontsize=9)
    return fig, len(times)


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
    fig, n = render(ds, max_times=max_times, max_pixels=max_pixels)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    with fsspec.open(os.fspath(out), "wb", **(storage_options or {})) as f:
        f.write(buf.getvalue())
    return n
