"""The label task: one product's labels drawn into ``labels[t]`` (build and update alike).

Its own module, imported only by builds of cubes with labels: it needs rasterio's feature drawing and
pyproj, which a build without labels does not import.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import pystac
import zarr

from icecube_cloud.errors import portable_errors
from icecube_cloud.labels.cube import grid_label_mask, label_mask, on_map
from icecube_cloud.model import SourceRef
from icecube_cloud.read.warp import warp_raster
from icecube_cloud.storage import StorageTarget
from icecube_cloud.write.journal import Journal, label_key


@portable_errors
def write_label_slice(
    target: StorageTarget,
    t: int,
    items: Sequence[Mapping[str, Any]],
    shape: tuple[int, int],
    classes: Mapping[str, int],
    storage_options: Mapping[str, Any] | None = None,
    source: SourceRef | None = None,
) -> int:
    """Rasterise one product's label items into ``labels[t]`` (runs on a worker; deterministic).

    The labels are drawn on the product's pixels; on a map-geometry cube (``source.grid``) see
    :func:`grid_labels`.
    """
    label_items = [pystac.Item.from_dict(dict(d)) for d in items]
    if source is not None and source.grid is not None:
        mask = grid_labels(label_items, source, classes, storage_options)
    else:
        mask = label_mask(label_items, shape, classes, storage_options)
    array = zarr.open_array(store=target.zarr_store(), path="labels", mode="r+", zarr_format=3)
    array[t] = mask
    Journal(target).mark(label_key(t))
    return int(mask.nbytes)


def grid_labels(
    label_items: Sequence[pystac.Item],
    source: SourceRef,
    classes: Mapping[str, int],
    storage_options: Mapping[str, Any] | None = None,
) -> npt.NDArray[np.uint8]:
    """One product's labels on its map grid (``source.grid``), in item order, later over earlier.

    Labels given in lon/lat (GeoJSON) are drawn straight on the grid (:func:`grid_label_mask`);
    labels in the product's pixel coordinates (icecube JSON, masks) are drawn on its pixels and
    warped onto the grid like the product's pixels (:func:`warp_raster`).
    """
    assert source.grid is not None
    out = np.zeros(source.grid.shape, dtype=np.uint8)
    for lonlat, run in itertools.groupby(label_items, key=on_map):
        if lonlat:
            layer = grid_label_mask(list(run), source.grid, classes, storage_options)
        else:
            pixels = label_mask(list(run), source.shape, classes, storage_options)
            layer = warp_raster(pixels, source, storage_options)
        np.copyto(out, layer, where=layer != 0)
    return out
