"""Open a catalog by URL: a static catalog (folder, ``catalog.json``, ``file://``, ``s3://``) or a STAC API."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

import pystac

from icecube_cloud.stac.api import ApiCatalog
from icecube_cloud.stac.search import SearchParams
from icecube_cloud.stac.static import StaticCatalog


class ItemCatalog(Protocol):
    """What the pipeline needs of a catalog: search it, and register items in it."""

    url: str

    def search(self, params: SearchParams) -> list[pystac.Item]:
        """Items matching ``params``."""
        ...

    def upsert(self, items: list[pystac.Item]) -> Any:
        """Insert or update ``items``."""
        ...


def is_api_url(url: str) -> bool:
    """Whether ``url`` is an http(s) STAC API root (as opposed to a static catalog)."""
    return url.startswith(("http://", "https://")) and not url.endswith(".json")


def open_catalog(
    url: str, *, create: bool = False, storage_options: Mapping[str, Any] | None = None
) -> ItemCatalog:
    """Open the catalog at ``url``.

    Args:
        url: Static catalog location, or an http(s) STAC API root (searched with pystac-client,
            written through the Transactions extension).
        create: Create a missing static catalog (ingest does; search and build do not).
        storage_options: fsspec options for a static catalog in object storage.
    """
    if is_api_url(url):
        # A STAC API creates its collections on first upsert: ``create`` has nothing to do here.
        return ApiCatalog(url)
    return StaticCatalog.open(
        url, create=create, storage_options=dict(storage_options) if storage_options else None
    )
