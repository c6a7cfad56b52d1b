"""Where ``predict_cube`` writes: a Zarr cube of predictions, committed like a build.

The same rules as :mod:`icecube_cloud.write.materialise`: foreign content at the output is refused
before anything is written; the lease keeps a second writer out; the pending record (with the held-back
root document) is written before any array; one marker per finished slice lets a rerun of the same
prediction resume; the root document, written last, is the commit point.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import dask.array as da
import numpy as np
import numpy.typing as npt
import xarray as xr
import zarr

import icecube_cloud
from icecube_cloud.errors import UsageError
from icecube_cloud.ml.calibrate import pixel_variable
from icecube_cloud.storage import StorageOptions, StorageTarget, public_url
from icecube_cloud.write.journal import ROOT_DOC, Journal, slice_key
from icecube_cloud.write.lease import Lease
from icecube_cloud.write.lease import acquire as acquire_lease
from icecube_cloud.write.output import (
    OutputKind,
    OutputState,
    inspect_output,
    is_empty,
    refuse_foreign,
    remove_ours,
)
from icecube_cloud.write.schema import render_dataset
from icecube_cloud.write.skeleton import put_documents

log = logging.getLogger(__name__)

PREDICTION_ATTR = "icecube_cloud_prediction"
"""Root attribute of a prediction cube: the input cube, the model and the settings."""
_INPUT_VARIABLES = ("amplitude", "slc", "labels", "label_geometry", "label_class")


def prediction_dataset(
    cube: xr.Dataset, targets: Sequence[int], dtype: np.dtype[Any], attrs: Mapping[str, Any]
) -> tuple[xr.Dataset, dict[str, dict[str, Any]]]:
    """The prediction cube's skeleton on ``cube``'s coordinates, and its Zarr encoding.

    ``valid`` is true exactly at ``targets`` (the predicted slices); the variable's chunks are the
    input's.
    """
    pixels = cube[pixel_variable(cube)]
    out = cube.drop_vars([v for v in _INPUT_VARIABLES if v in cube.variables]).load()
    valid = np.zeros(out.sizes["time"], dtype=bool)
    valid[list(targets)] = True
    out["valid"] = ("time", valid, out["valid"].attrs if "valid" in out else {})
    chunks = (1, *pixels.encoding["chunks"][1:])  # the input's stored (inner) chunks
    floating = np.issubdtype(dtype, np.floating)
    var_attrs = {
        "long_name": "model prediction" if floating else "predicted class (argmax)",
        "comment": "slices with valid = False hold no prediction (fill)",
    }
    if "grid_mapping" in pixels.attrs:
        var_attrs["grid_mapping"] = pixels.attrs["grid_mapping"]
    out["prediction"] = (
        pixels.dims,
        da.zeros(pixels.shape, dtype=dtype, chunks=chunks),
        var_attrs,
    )
    out.attrs = dict(attrs)
    encoding: dict[str, dict[str, Any]] = {
        "prediction": {
            "chunks": chunks,
            "compressors": [zarr.codecs.BloscCodec(cname="zstd", clevel=3, shuffle="bitshuffle")],
        }
    }
    if floating:  # classes: zarr's fill 0 without a CF _FillValue, so they read as uint8
        encoding["prediction"]["_FillValue"] = np.float32(np.nan)
    return out, encoding


@dataclass
class SliceWriter:
    """Writes one prediction slice at a time and records it (inside :meth:`PredictionStore.writing`)."""

    target: StorageTarget
    done: set[str]
    _array: zarr.Array[Any] | None = field(default=None, repr=False)

    def is_done(self, t: int) -> bool:
        """Whether slice ``t`` was written by an earlier, interrupted run of the same prediction."""
        return slice_key(t) in self.done

    def write(self, t: int, values: npt.NDArray[Any]) -> None:
        """Store slice ``t`` (all its chunks), then its marker."""
        if self._array is None:
            self._array = zarr.open_array(
                self.target.zarr_store(), path="prediction", mode="r+", zarr_format=3
            )
        self._array[t] = values
        Journal(self.target).mark(slice_key(t))


@dataclass
class PredictionStore:
    """A prediction cube's output location, checked and leased (:meth:`open`)."""

    target: StorageTarget
    state: OutputState
    lease: Lease
    fingerprint: str

    @property
    def url(self) -> str:
        """The output's location (no credentials)."""
        return public_url(self.target.url)

    @classmethod
    def open(
        cls,
        out: str,
        storage_options: Mapping[str, Any] | None,
        *,
        overwrite: bool,
        fingerprint: str,
    ) -> PredictionStore:
        """Check the output and take its lease.

        Raises:
            UsageError: Foreign content at ``out``, or a cube (or another prediction's unfinished
                write) there without ``overwrite``.
        """
        target = StorageTarget.from_url(out, StorageOptions.of(storage_options))
        state = inspect_output(target)
        refuse_foreign(state, public_url(target.url))
        if state.kind is OutputKind.CUBE and not overwrite:
            raise UsageError(f"{public_url(out)} already exists; pass overwrite=True to replace it")
        pending = state.pending
        if pending is not None and pending.get("fingerprint") != fingerprint and not overwrite:
            raise UsageError(
                f"{public_url(out)} holds an unfinished write of something else; pass "
                "overwrite=True to replace it"
            )
        return cls(target, state, acquire_lease(target), fingerprint)

    @contextlib.contextmanager
    def writing(
        self,
        cube: xr.Dataset,
        targets: Sequence[int],
        dtype: np.dtype[Any],
        settings: Mapping[str, Any],
    ) -> Iterator[SliceWriter]:
        """Write the skeleton (or resume), yield a writer, and commit when the block ends cleanly.

        The lease is released whatever happens; an interrupted write keeps its pending record and
        markers, so rerunning the same prediction resumes it.
        """
        journal = Journal(self.target)
        try:
            pending = self.state.pending
            if pending is not None and pending.get("fingerprint") == self.fingerprint:
                root_doc, created = json.dumps(pending["root"]).encode(), str(pending["created"])
                log.info("resuming the unfinished prediction at %s", self.url)
            else:
                created = datetime.now(UTC).isoformat()
                attrs = {
                    "icecube_cloud_version": icecube_cloud.__version__,
                    PREDICTION_ATTR: json.dumps(dict(settings)),
                    "product_type": cube.attrs.get("product_type", ""),
                    "created": created,
                }
                ds, encoding = prediction_dataset(cube, targets, dtype, attrs)
                docs = render_dataset(ds, encoding)
                root_doc = docs.pop(ROOT_DOC)
                remove_ours(self.target, self.state)  # a replaced prediction, stale bookkeeping
                journal.begin(root_doc, self.fingerprint, created)
                put_documents(self.target, docs)
            yield SliceWriter(self.target, journal.done())
            journal.commit(root_doc, {"created": created})
        except BaseException:
            after = inspect_output(self.target)
            if after.kind is OutputKind.UNFINISHED and after.pending is None:
                remove_ours(self.target, after, keep_lease=False)  # only our bookkeeping
                if self.state.kind is not OutputKind.EMPTY and is_empty(self.target):
                    self.target.remove()
            raise
        finally:
            self.lease.release()

    def register(self, stac_url: str, input_cube: str) -> str | None:
        """Register the prediction cube as a STAC item derived from the input cube's item.

        Returns the item id, or ``None`` when there is no catalog to register in.
        """
        from icecube_cloud.stac.catalogs import open_catalog
        from icecube_cloud.stac.cube_item import CUBE_COLLECTION, cube_item_id, derived_cube_item
        from icecube_cloud.stac.search import SearchParams

        if not stac_url:
            log.warning("no catalog to register %s in (pass stac_url)", self.url)
            return None
        so = self.target.storage_options
        catalog = open_catalog(stac_url, storage_options=so)
        input_url = StorageTarget.from_url(input_cube, so).url
        source_id = cube_item_id(input_url)
        found = [
            it
            for it in catalog.search(SearchParams(collections=(CUBE_COLLECTION,)))
            if it.id == source_id
        ]
        item = derived_cube_item(
            found[0] if found else None, public_url(input_url), self.target.url
        )
        catalog.upsert([item])
        log.info("registered %s as item %s in %s", self.url, item.id, public_url(stac_url))
        return item.id
