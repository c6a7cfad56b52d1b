"""``predict_cube``: run a model over a cube in overlapping tiles and store its predictions as a cube.

The predictions land on the input's dims and coordinates (SAR or map geometry), one slice per valid
input slice; gap slices store nothing. The output is written like a build (:mod:`icecube_cloud.write`):
refused when something foreign is there, one writer (the lease), a pending record before any array,
one marker per finished slice (a rerun of the same prediction resumes), and the root document last —
plain readers see nothing until every slice is written.

The model gets batches shaped like :class:`~icecube_cloud.ml.PatchDataset`'s ``x``:
``(batch, times, size, size)`` (``input="complex"``: ``(batch, times, 2, size, size)``) and returns
``(batch, channels, size, size)`` (or ``(batch, size, size)``). One channel is stored as float32,
several as the uint8 index of the largest (argmax). Tiles overlap by ``2 * overlap`` pixels and each
keeps only its centre, so tile seams do not show; tiles at the image's edges keep the edge. With
``times > 1`` the prediction of slice ``t`` comes from slices ``t - times + 1 … t`` (all images);
other slices store nothing, as gap slices. The variable ``prediction`` lies on the input's dims and
coordinates (``valid`` says which slices hold one). The result is registered as a STAC item
(collection ``icecube-cubes``) whose ``derived_from`` link names the input cube's item, in
``stac_url`` or else the catalog the input cube was built from.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from icecube_cloud.cube import open_cube
from icecube_cloud.errors import UsageError
from icecube_cloud.ml.calibrate import DEFAULT_FLOOR_DB, INPUTS, input_array
from icecube_cloud.ml.cubestore import CubeLayout, CubeReader, read_layout
from icecube_cloud.ml.prediction_store import PredictionStore
from icecube_cloud.ml.sampling import tile_spans, window_times
from icecube_cloud.progress import Progress, resolve_progress
from icecube_cloud.storage import StorageTarget, public_url

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PredictionResult:
    """What :func:`predict_cube` wrote."""

    url: str
    """The prediction cube."""
    slices: int
    """Slices predicted (valid input slices)."""
    dtype: str
    """``float32`` (one output channel) or ``uint8`` (argmax of several)."""
    seconds: float
    """Wall time."""
    item_id: str | None = None
    """Id of the registered STAC item (``None`` when not registered)."""


def _fingerprint(model: torch.nn.Module, settings: Mapping[str, Any]) -> str:
    """Digest of the model's weights and the settings: a rerun resumes only the same prediction."""
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
    digest.update(type(model).__qualname__.encode())
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def _classes(output: torch.Tensor, batch: int, size: int) -> npt.NDArray[Any]:
    """A model's output ``(B, C, H, W)`` or ``(B, H, W)`` as float32 (one channel) or uint8 argmax."""
    if output.ndim == 3:
        output = output[:, None]
    if output.ndim != 4 or output.shape[0] != batch or tuple(output.shape[2:]) != (size, size):
        raise UsageError(
            f"the model returned {tuple(output.shape)} for {batch} tiles of {size}x{size}: "
            "expected (batch, channels, height, width) of the tiles' size"
        )
    if output.shape[1] == 1:
        return output[:, 0].detach().to("cpu", torch.float32).numpy()
    if output.shape[1] > 255:
        raise UsageError(f"the model returned {output.shape[1]} classes: at most 255 fit uint8")
    return output.argmax(dim=1).detach().to("cpu", torch.uint8).numpy()


def _tiles(
    rows: list[tuple[int, int, int]], cols: list[tuple[int, int, int]]
) -> Iterator[tuple[tuple[int, int, int], tuple[int, int, int]]]:
    for r in rows:
        for c in cols:
            yield r, c


def predict_slice(
    model: torch.nn.Module,
    x: npt.NDArray[np.float32],
    *,
    size: int,
    overlap: int,
    batch_size: int,
    device: str,
) -> npt.NDArray[Any]:
    """One slice's prediction from its model input ``x`` (``(times, H, W)`` or ``(times, 2, H, W)``).

    Tiles of ``size`` overlapping by ``2 * overlap`` go through the model in batches; each tile
    contributes only its centre (:func:`~icecube_cloud.ml.sampling.tile_spans`).
    """
    h, w = x.shape[-2:]
    rows, cols = tile_spans(h, size, overlap), tile_spans(w, size, overlap)
    tiles = list(_tiles(rows, cols))
    out: npt.NDArray[Any] | None = None
    for first in range(0, len(tiles), batch_size):
        part = tiles[first : first + batch_size]
        batch = np.stack([x[..., r[0] : r[0] + size, c[0] : c[0] + size] for r, c in part])
        with torch.no_grad():
            result = _classes(model(torch.from_numpy(batch).to(device)), len(part), size)
        if out is None:
            out = np.zeros((h, w), dtype=result.dtype)
        for k, ((r0, r_from, r_to), (c0, c_from, c_to)) in enumerate(part):
            out[r_from:r_to, c_from:c_to] = result[
                k, r_from - r0 : r_to - r0, c_from - c0 : c_to - c0
            ]
    assert out is not None
    return out


def _targets(layout: CubeLayout, times: int) -> list[int]:
    """Slices that get a prediction: the last slice of every window of ``times`` valid slices."""
    from icecube_cloud.ml.regions import Region

    starts = window_times(layout.valid, Region.whole(layout.shape), times)
    return [int(t) + times - 1 for t in starts]


def _predict_one(
    t: int,
    *,
    model: torch.nn.Module,
    reader: CubeReader,
    layout: CubeLayout,
    input: str,
    floor_db: float,
    times: int,
    size: int,
    overlap: int,
    batch_size: int,
    device: str,
) -> npt.NDArray[Any]:
    """The prediction of slice ``t`` (from slices ``t - times + 1 … t``)."""
    span = slice(t - times + 1, t + 1)
    pixels = reader.pixels(span, slice(None), slice(None))
    x = input_array(
        pixels, layout.calibration_factor[span], layout.incidence_angle[span], input, floor_db
    )
    return predict_slice(model, x, size=size, overlap=overlap, batch_size=batch_size, device=device)


def _check_apart(cube: str, out: str, storage_options: Mapping[str, Any] | None) -> None:
    """Refuse an output that is the input cube, lies inside it, or holds it.

    With ``overwrite`` such an output would replace (or write into) the user's cube.
    """
    a = StorageTarget.from_url(cube, storage_options).url.rstrip("/") + "/"
    b = StorageTarget.from_url(out, storage_options).url.rstrip("/") + "/"
    if a.startswith(b) or b.startswith(a):
        raise UsageError(
            f"{public_url(out)}: the predictions must go outside the input cube {public_url(cube)}"
        )


def _prepare(
    cube: str,
    storage_options: Mapping[str, Any] | None,
    input: str,
    size: int,
    overlap: int,
    batch_size: int,
    times: int,
) -> tuple[CubeLayout, list[int]]:
    """Check the arguments against the cube before any work; the layout and the slices to predict."""
    if input not in INPUTS:
        raise UsageError(f"input={input!r}: expected one of {', '.join(INPUTS)}")
    if batch_size < 1 or times < 1:
        raise UsageError(f"batch_size={batch_size}, times={times}: expected numbers >= 1")
    layout = read_layout(cube, storage_options)
    if input == "complex" and not layout.is_complex:
        raise UsageError(f"input='complex' needs an SLC cube; {layout.url} holds GRD amplitude")
    tile_spans(layout.shape[1], size, overlap)  # fail before any work when tiles cannot fit
    tile_spans(layout.shape[2], size, overlap)
    targets = _targets(layout, times)
    if not targets:
        raise UsageError(f"{layout.url} has no {times} consecutive image slices to predict from")
    return layout, targets


def predict_cube(
    model: torch.nn.Module,
    cube: str,
    out: str,
    *,
    size: int = 256,
    overlap: int = 32,
    input: str = "sigma0_db",
    batch_size: int = 16,
    device: str = "cpu",
    times: int = 1,
    floor_db: float = DEFAULT_FLOOR_DB,
    storage_options: Mapping[str, Any] | None = None,
    overwrite: bool = False,
    register: bool = True,
    stac_url: str | None = None,
    progress: bool | Progress = False,
) -> PredictionResult:
    """Run ``model`` over every valid slice of ``cube`` and write a cube of its predictions at ``out``.

    The model gets batches like ``PatchDataset``'s ``x``; the module docstring says how tiles,
    classes, gaps, the write and the STAC item work.

    Args:
        model: A ``torch.nn.Module``; put in eval mode and moved to ``device``.
        cube: The input cube (local path or ``s3://``).
        out: Where the prediction cube goes (new, an empty folder, or a prediction of ours with
            ``overwrite``).
        size: Tile height and width.
        overlap: Pixels cropped from each inner tile edge (< size / 2).
        input: The model's input, as ``PatchDataset``'s.
        batch_size: Tiles per model call.
        device: Torch device.
        times: Consecutive slices per model input.
        floor_db: Floor of the dB inputs.
        storage_options: fsspec options for ``cube`` and ``out`` in object storage.
        overwrite: Replace a prediction cube of ours at ``out``.
        register: Register the result as a STAC item.
        stac_url: The catalog to register it in (default: the input cube's catalog).
        progress: ``True`` for a ``tqdm`` bar, or ``progress(stage, done, total)`` after each slice.

    Raises:
        UsageError: Bad arguments (named), foreign content at ``out``, or a model output of the wrong
            shape.
        DataError: The input cube is missing or incomplete.
    """
    start, report = time.perf_counter(), resolve_progress(progress)
    layout, targets = _prepare(cube, storage_options, input, size, overlap, batch_size, times)
    model.eval()
    model.to(device)
    settings = {"cube": layout.url, "size": size, "overlap": overlap, "input": input,
                "times": times, "floor_db": floor_db}  # fmt: skip
    reader = CubeReader(cube, layout.variable, None, storage_options or {})
    predict = functools.partial(
        _predict_one, model=model, reader=reader, layout=layout, input=input, floor_db=floor_db,
        times=times, size=size, overlap=overlap, batch_size=batch_size, device=device,
    )  # fmt: skip
    _check_apart(cube, out, storage_options)  # before any work: the user's cube is never replaced
    first = predict(targets[0])  # the model's output decides the variable's dtype
    store = PredictionStore.open(
        out, storage_options, overwrite=overwrite, fingerprint=_fingerprint(model, settings)
    )
    with store.writing(
        open_cube(cube, storage_options=storage_options), targets, first.dtype, settings
    ) as writer:
        for k, t in enumerate(targets):
            if not writer.is_done(t):
                writer.write(t, first if k == 0 else predict(t))
            report("predict", k + 1, len(targets))
    catalog = stac_url or str(layout.attrs.get("icecube_cloud_search", {}).get("catalog", ""))
    item_id = store.register(catalog, cube) if register else None
    log.info("predicted %d slices of %s into %s", len(targets), layout.url, public_url(out))
    return PredictionResult(
        url=store.url,
        slices=len(targets),
        dtype=str(first.dtype),
        seconds=time.perf_counter() - start,
        item_id=item_id,
    )
