"""A STAC API as an item catalog: search with pystac-client, write through the Transactions extension.

Reads go through ``pystac_client`` (``POST /search``, paged). Writes are upserts: the items' collection
is created from :mod:`icecube_cloud.stac.collections` when the API lacks it, new items are POSTed and
existing ones PUT, so re-ingesting never duplicates. Any failure is a :class:`CatalogError` that names
the API (without credentials) and the HTTP status.
"""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import pystac

from icecube_cloud.errors import CatalogError
from icecube_cloud.stac.collections import collection_dict
from icecube_cloud.stac.search import SearchParams
from icecube_cloud.stac.static import UpsertResult
from icecube_cloud.storage import public_url

log = logging.getLogger(__name__)

PAGE_SIZE = 100
"""Items per search page (and ids per existence check)."""
_STRUCTURAL = frozenset({"root", "parent", "self", "collection", "child", "item", "items"})


class ApiCatalog:
    """A STAC API root with the Transactions extension (e.g. stac-fastapi-pgstac).

    Args:
        url: API root URL.
        headers: Extra HTTP headers for every request (e.g. ``Authorization``); never logged.
        timeout: Seconds per HTTP request.
    """

    def __init__(
        self, url: str, *, headers: Mapping[str, str] | None = None, timeout: float = 30.0
    ) -> None:
        self._root = url.rstrip("/")
        self.url = public_url(url)
        """The API root (for messages; credentials removed)."""
        self._headers = dict(headers or {})
        self._timeout = timeout
        self._checked = False

    # --- reading ---------------------------------------------------------------------------

    def search(self, params: SearchParams) -> list[pystac.Item]:
        """Items matching ``params``, sorted by datetime then id (as the static search returns them).

        Raises:
            CatalogError: The API cannot be reached, rejects the search, or lacks item search.
            ConfigError: ``query`` or ``filter`` uses an unsupported operator.
        """
        import pystac_client
        from pystac_client.exceptions import APIError

        kwargs = params.to_pystac_client_kwargs()
        try:
            client = pystac_client.Client.open(
                self._root, headers=self._headers or None, timeout=self._timeout
            )
            found = client.search(**kwargs, limit=PAGE_SIZE, method="POST")
            items = list(found.items())
        except APIError as err:
            raise self._api_error("search", err) from None
        except (NotImplementedError, pystac.STACError, ValueError) as err:
            raise CatalogError(f"STAC API {self.url}: search failed: {err}") from None
        log.debug("STAC API %s: %d items for %s", self.url, len(items), kwargs)
        return sorted(items, key=_sort_key)

    def _api_error(self, what: str, err: Exception) -> CatalogError:
        status = getattr(err, "status_code", None)
        if status is None:
            return CatalogError(f"cannot reach STAC API at {self.url} ({what}): {_short(err)}")
        return CatalogError(f"STAC API {self.url}: {what} failed with HTTP {status}: {_short(err)}")

    # --- writing ---------------------------------------------------------------------------

    def upsert(self, items: Iterable[pystac.Item]) -> UpsertResult:
        """Add or replace items through the Transactions extension (same collection + id = same item).

        A missing collection is created from the project's definition first. Items are written one
        by one; after a failure, re-running the same upsert completes it (it is idempotent).

        Raises:
            CatalogError: An item lacks a collection or has a relative asset href, the collection is
                unknown to both the API and the project, or the API fails (names URL and status).
        """
        by_collection: dict[str, list[dict[str, Any]]] = {}
        for item in items:
            if not item.collection_id:
                raise CatalogError(f"item {item.id}: no collection")
            by_collection.setdefault(item.collection_id, []).append(_item_dict(item))
        added: list[str] = []
        updated: list[str] = []
        if by_collection:
            self._check_transactions()
        for cid, dicts in by_collection.items():
            self._ensure_collection(cid)
            existing = self._existing_ids(cid, [d["id"] for d in dicts])
            for d in dicts:
                if d["id"] in existing or not self._create_item(cid, d):
                    self._put_item(cid, d)
                    updated.append(d["id"])
                else:
                    added.append(d["id"])
        log.info("STAC API %s: %d items added, %d updated", self.url, len(added), len(updated))
        return UpsertResult(added=tuple(added), updated=tuple(updated))

    def _check_transactions(self) -> None:
        """The root must be a STAC API that advertises the Transactions extension."""
        if self._checked:
            return
        _, root = self._request("GET", "/")
        conforms = root.get("conformsTo", []) if isinstance(root, dict) else []
        if not any(str(c).endswith("/extensions/transaction") for c in conforms):
            raise CatalogError(
                f"{self.url} is not a STAC API with the Transactions extension (nothing in "
                "conformsTo ends with /extensions/transaction); it cannot be written to"
            )
        self._checked = True

    def _ensure_collection(self, cid: str) -> None:
        status, _ = self._request("GET", f"/collections/{_quote(cid)}", ok=(200, 404))
        if status == 200:
            return
        body = collection_dict(cid)  # CatalogError for a collection the project does not define
        links = body.get("links")
        body["links"] = [
            ln
            for ln in (links if isinstance(links, list) else [])
            if isinstance(ln, dict) and ln.get("rel") not in _STRUCTURAL
        ]
        self._request("POST", "/collections", body, ok=(200, 201, 409))
        log.info("STAC API %s: created collection %s", self.url, cid)

    def _existing_ids(self, cid: str, ids: list[str]) -> set[str]:
        found: set[str] = set()
        for i in range(0, len(ids), PAGE_SIZE):
            chunk = ids[i : i + PAGE_SIZE]
            body = {
                "collections": [cid],
                "ids": chunk,
                "limit": len(chunk),
                "fields": {"include": ["id"], "exclude": ["assets", "geometry", "properties"]},
            }
            _, page = self._request("POST", "/search", body)
            found.update(f["id"] for f in (page or {}).get("features", []))
        return found

    def _create_item(self, cid: str, item: dict[str, Any]) -> bool:
        """POST a new item; ``False`` when it exists after all (another writer was first)."""
        status, _ = self._request(
            "POST", f"/collections/{_quote(cid)}/items", item, ok=(200, 201, 409)
        )
        return status != 409

    def _put_item(self, cid: str, item: dict[str, Any]) -> None:
        path = f"/collections/{_quote(cid)}/items/{_quote(item['id'])}"
        self._request("PUT", path, item, ok=(200, 201, 204))

    def _request(
        self,
        method: str,
        path: str,
        body: Mapping[str, Any] | None = None,
        *,
        ok: tuple[int, ...] = (200,),
    ) -> tuple[int, Any]:
        """One JSON request; returns (status, decoded body or ``None``).

        Raises:
            CatalogError: Unreachable, or a status outside ``ok``.
        """
        data = None if body is None else json.dumps(body).encode()
        headers = {"Accept": "application/json", **self._headers}
        if data is not None:
            headers["Content-Type"] = "application/json"
        req = urllib.request.Request(self._root + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=self._timeout) as resp:
                status, raw = resp.status, resp.read()
        except urllib.error.HTTPError as err:
            status, raw = err.code, err.read()
        except (urllib.error.URLError, OSError) as err:
            reason = getattr(err, "reason", err)
            raise CatalogError(
                f"cannot reach STAC API at {self.url} ({method} {path}): {reason}"
            ) from None
        if status not in ok:
            detail = _short(raw.decode("utf-8", errors="replace"))
            raise CatalogError(
                f"STAC API {self.url}: {method} {path} failed with HTTP {status}: {detail}"
            )
        try:
            return status, json.loads(raw) if raw else None
        except ValueError:
            return status, None


def _item_dict(item: pystac.Item) -> dict[str, Any]:
    """The item as the API stores it: no structural links (the API makes its own), absolute hrefs."""
    data = item.to_dict(include_self_link=False, transform_hrefs=False)
    data["links"] = [ln for ln in data.get("links", []) if ln.get("rel") not in _STRUCTURAL]
    data["collection"] = item.collection_id
    for key, asset in data.get("assets", {}).items():
        href = str(asset.get("href", ""))
        if not (_is_local_path(href) or "://" in href):
            raise CatalogError(f"item {item.id}: asset {key!r} href {href!r} is not absolute")
    return data


def _is_local_path(href: str) -> bool:
    return href.startswith("/") and not href.startswith("//")


def _quote(part: str) -> str:
    return urllib.parse.quote(part, safe="")


def _short(err: object, limit: int = 300) -> str:
    text = " ".join(str(err).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _sort_key(item: pystac.Item) -> tuple[datetime, str]:
    dt = item.datetime or item.common_metadata.start_datetime
    if dt is None:
        return (datetime.min.replace(tzinfo=UTC), item.id)
    return (dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC), item.id)
