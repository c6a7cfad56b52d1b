"""Register products in a catalog: find product files, read them, turn them into STAC items, upsert.

Every possible product file is read (see :func:`icecube_cloud.products.find_products` for which files
count); the readable ones are registered and every unreadable one is reported with its reason, the
same way on every run, never skipped without a word.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pystac

from icecube_cloud.errors import DataError, ProductError
from icecube_cloud.products import find_products, read_product
from icecube_cloud.progress import Progress, no_progress, resolve_progress
from icecube_cloud.stac.catalogs import open_catalog
from icecube_cloud.stac.items import product_to_item
from icecube_cloud.storage import normalise_url

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ProductFailure:
    """A file that looks like an ICEYE product but cannot be registered."""

    href: str
    """The file (path or URL) as found."""
    reason: str
    """What is wrong with it (e.g. ``truncated: ...``, ``not a TIFF file ...``)."""

    def __str__(self) -> str:
        return f"{self.href}: {self.reason}"


@dataclass(frozen=True)
class IngestResult:
    """What an ingest registered, and what it could not read."""

    added: tuple[str, ...]
    """Item ids that were not in the catalog before."""
    updated: tuple[str, ...]
    """Item ids that replaced an item of the same collection and id."""
    failed: tuple[ProductFailure, ...] = ()
    """Every possible product file that could not be read, in the order found."""


class IngestError(DataError):
    """Some product files could not be registered; the readable ones were (CLI exit code 1).

    Args:
        result: What the ingest registered, with every failure in ``result.failed``.
    """

    def __init__(self, result: IngestResult) -> None:
        self.result = result
        lines = "".join(f"\n  {failure}" for failure in result.failed)
        super().__init__(f"{len(result.failed)} product file(s) could not be registered:{lines}")

    def __reduce__(self) -> tuple[type[IngestError], tuple[IngestResult]]:
        return (type(self), (self.result,))


def _failure(href: str, err: DataError) -> ProductFailure:
    """The failure of ``href``; an error about another file (its sidecar, say) names that file."""
    if isinstance(err, ProductError):
        reason = err.reason if err.path == href else f"{err.path}: {err.reason}"
        return ProductFailure(href, reason)
    return ProductFailure(href, str(err))


def product_items(
    sources: Sequence[str],
    *,
    storage_options: Mapping[str, Any] | None = None,
    progress: Progress = no_progress,
) -> tuple[list[pystac.Item], list[ProductFailure]]:
    """STAC items of every readable product under ``sources``, and the files that failed.

    Returns:
        The items, and one failure per possible product file that cannot be read (a truncated or
        corrupt file, a file named like a product that is not one, a sidecar whose COG is missing).

    Raises:
        ProductError: A source does not exist, cannot be listed, or holds no possible product.
    """
    hrefs: list[str] = []
    for src in sources:
        # Items keep absolute hrefs (local paths or URLs): the catalog may be read from anywhere.
        found = find_products(normalise_url(src), storage_options=storage_options)
        if not found:
            raise ProductError(src, "no ICEYE product found here")
        hrefs.extend(found)
    items: list[pystac.Item] = []
    failed: list[ProductFailure] = []
    progress("read", 0, len(hrefs))
    for i, href in enumerate(hrefs):
        try:
            meta = read_product(href, storage_options=storage_options, require_data=True)
            items.append(product_to_item(meta))
        except DataError as err:
            failed.append(_failure(href, err))
            log.info("cannot register %s", failed[-1])
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
            # A malformed file the readers did not foresee: still one file's failure, not the run's.
            failed.append(ProductFailure(href, f"cannot be read: {type(err).__name__}: {err}"))
            log.info("cannot register %s", failed[-1], exc_info=True)
        progress("read", i + 1, len(hrefs))
    return items, failed


def ingest(
    sources: Sequence[str],
    stac_url: str,
    *,
    storage_options: Mapping[str, Any] | None = None,
    progress: bool | Progress = False,
    skip_bad: bool = False,
) -> IngestResult:
    """Register the products under ``sources`` in the catalog at ``stac_url`` (created when missing).

    Every readable product is registered, also when other files fail; each file that looks like a
    product but cannot be read is reported with its reason.

    Args:
        sources: Files, folders or prefixes (``s3://``).
        stac_url: Static catalog or STAC API root.
        storage_options: fsspec options for remote sources and catalogs.
        progress: ``True`` for a ``tqdm`` bar, or a callback ``progress(stage, done, total)``
            (stage ``read``, files).
        skip_bad: Return the failures in :attr:`IngestResult.failed` instead of raising.

    Raises:
        IngestError: Some files could not be read (after the readable ones were registered); it
            carries the :class:`IngestResult`. Not raised with ``skip_bad``.
        ProductError: A source does not exist, cannot be listed or holds no possible product
            (nothing is registered).
    """
    report = resolve_progress(progress)
    items, failed = product_items(sources, storage_options=storage_options, progress=report)
    added: tuple[str, ...] = ()
    updated: tuple[str, ...] = ()
    if items:
        catalog = open_catalog(stac_url, create=True, storage_options=storage_options)
        upserted = catalog.upsert(items)
        added, updated = upserted.added, upserted.updated
        log.info("ingested %d products into %s", len(items), catalog.url)
    result = IngestResult(added=added, updated=updated, failed=tuple(failed))
    if failed and not skip_bad:
        raise IngestError(result)
    return result
