"""Register products in a catalog: find product files, read them, turn them into STAC items, upsert."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import pystac

from icecube_cloud.errors import ProductError
from icecube_cloud.products import find_products, read_product
from icecube_cloud.progress import Progress, no_progress
from icecube_cloud.stac.catalogs import open_catalog
from icecube_cloud.stac.items import product_to_item
from icecube_cloud.stac.static import UpsertResult
from icecube_cloud.storage import normalise_url

log = logging.getLogger(__name__)


def product_items(
    sources: Sequence[str],
    *,
    storage_options: Mapping[str, Any] | None = None,
    progress: Progress = no_progress,
) -> list[pystac.Item]:
    """STAC items of every product found under ``sources`` (files, folders, prefixes).

    Raises:
        ProductError: A source holds no product, or a product cannot be read (names the file).
    """
    hrefs: list[str] = []
    for src in sources:
        # Items keep absolute hrefs (local paths or URLs): the catalog may be read from anywhere.
        found = find_products(normalise_url(src), storage_options=storage_options)
        if not found:
            raise ProductError(src, "no ICEYE product found here")
        hrefs.extend(found)
    items = []
    for i, href in enumerate(hrefs):
        items.append(product_to_item(read_product(href, storage_options=storage_options)))
        progress("read", i + 1, len(hrefs))
    return items


def ingest(
    sources: Sequence[str],
    stac_url: str,
    *,
    storage_options: Mapping[str, Any] | None = None,
    progress: Progress = no_progress,
) -> UpsertResult:
    """Register the products under ``sources`` in the catalog at ``stac_url`` (created when missing).

    Every product is read before the catalog is touched, so a bad file changes nothing.
    """
    items = product_items(sources, storage_options=storage_options, progress=progress)
    catalog = open_catalog(stac_url, create=True, storage_options=storage_options)
    result: UpsertResult = catalog.upsert(items)
    log.info("ingested %d products into %s", len(items), catalog.url)
    return result
