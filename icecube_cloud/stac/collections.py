"""STAC collections (``iceye-grd``/``iceye-slc``, ``icecube-cubes``, ``iceye-labels``) as package data.

The JSON definitions live in :mod:`icecube_cloud.catalog_defs` (see ``catalog/README.md``).
"""

from __future__ import annotations

import json
from importlib import resources

import pystac

from icecube_cloud.errors import CatalogError
from icecube_cloud.model import COLLECTION_OF_LEVEL

PRODUCT_COLLECTION_IDS: tuple[str, ...] = tuple(COLLECTION_OF_LEVEL.values())
"""Collections of ICEYE products (one per processing level)."""
LABEL_COLLECTION_ID = "iceye-labels"
"""Collection of label-extension items (one per labels source and product)."""
COLLECTION_IDS: tuple[str, ...] = (*PRODUCT_COLLECTION_IDS, "icecube-cubes", LABEL_COLLECTION_ID)
"""Ids of every collection icecube-cloud defines: products, the cubes built from them, and labels."""

_PACKAGE = "icecube_cloud.catalog_defs"


def collection_dict(collection_id: str) -> dict[str, object]:
    """The collection definition as a fresh JSON dict.

    Raises:
        CatalogError: ``collection_id`` is not one of :data:`COLLECTION_IDS`.
    """
    if collection_id not in COLLECTION_IDS:
        raise CatalogError(
            f"unknown collection {collection_id!r} (expected one of {', '.join(COLLECTION_IDS)})"
        )
    text = resources.files(_PACKAGE).joinpath(f"{collection_id}.json").read_text(encoding="utf-8")
    data: dict[str, object] = json.loads(text)
    return data


def load_collection(collection_id: str) -> pystac.Collection:
    """A fresh :class:`pystac.Collection` for ``collection_id`` (callers may mutate it)."""
    return pystac.Collection.from_dict(collection_dict(collection_id), preserve_dict=False)
