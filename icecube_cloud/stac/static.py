"""A self-contained static STAC catalog on any fsspec filesystem (local folder, ``s3://``, ...).

Layout under the root::

    catalog.json
    <collection-id>/collection.json
    <collection-id>/<item-id>/<item-id>.json

Every href that points inside the catalog's folder is written relative: structural links, links
between items (a label's ``source``, a cube's ``derived_from``) and assets stored in the folder (label
GeoJSON, products kept there), so the folder can be moved or copied as a whole (STAC best practices:
a self-contained catalog). Hrefs outside the folder stay absolute (local path or ``s3://`` URL). Reading
resolves relative hrefs against the item's own location: callers always see absolute hrefs. The JSON is
written directly (no pystac I/O): items first, then collections, the root catalog last.
"""

from __future__ import annotations

import json
import logging
import posixpath
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import fsspec
import pystac

from icecube_cloud.errors import CatalogError
from icecube_cloud.stac.collections import COLLECTION_IDS, load_collection
from icecube_cloud.stac.search import SearchParams, search_items
from icecube_cloud.stac.static_index import (
    INDEX_NAME,
    index_document,
    index_row,
    index_rows,
    may_match,
)

log = logging.getLogger(__name__)

CATALOG_ID = "icecube-cloud"
_STRUCTURAL = frozenset({"root", "parent", "self", "collection", "child", "item"})
_BATCH = 1000
"""Items read per batch (bounds the JSON held at once)."""
_CONCURRENCY = 32
"""Concurrent item reads from an object store (one GET each)."""


@dataclass(frozen=True)
class UpsertResult:
    """Item ids written by :meth:`StaticCatalog.upsert`."""

    added: tuple[str, ...]
    """Items that were not in the catalog before."""
    updated: tuple[str, ...]
    """Items that replaced an item of the same collection and id."""


class StaticCatalog:
    """A static STAC catalog rooted at one fsspec URL; open it with :meth:`open`."""

    def __init__(self, fs: Any, root: str, url: str) -> None:
        self._fs = fs
        self._root = root.rstrip("/") or "/"
        self.url = url
        """The URL the catalog was opened from (for messages)."""

    # --- opening ---------------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        url: str,
        *,
        create: bool = False,
        storage_options: dict[str, Any] | None = None,
    ) -> StaticCatalog:
        """Open the catalog at ``url``: a ``catalog.json`` path or URL, or its folder.

        Args:
            url: Local path, ``file://`` or any fsspec URL (``s3://bucket/prefix``, ``memory://``).
            create: Allow a missing catalog; it is written on the first :meth:`upsert`.
            storage_options: Passed to the fsspec filesystem (credentials stay out of the catalog).

        Raises:
            CatalogError: The catalog does not exist (and ``create`` is false) or cannot be reached.
        """
        try:
            fs, path = fsspec.core.url_to_fs(url, **(storage_options or {}))
        except (ValueError, ImportError) as exc:
            raise CatalogError(f"cannot open STAC catalog {url}: {exc}") from exc
        path = str(path).rstrip("/")
        root = posixpath.dirname(path) if path.endswith(".json") else path
        cat = cls(fs, root, url)
        if not create and not cat._exists(cat._catalog_path):
            raise CatalogError(
                f"no STAC catalog at {url} (expected {cat._display(cat._catalog_path)})"
            )
        return cat

    # --- reading ---------------------------------------------------------------------------

    def collection_ids(self) -> list[str]:
        """Ids of the collections in the catalog (empty for a catalog not written yet)."""
        if not self._exists(self._catalog_path):
            return []
        root = self._read_json(self._catalog_path)
        out = []
        for link in root.get("links", []):
            if link.get("rel") == "child" and isinstance(link.get("href"), str):
                out.append(posixpath.basename(posixpath.dirname(posixpath.normpath(link["href"]))))
        return out

    def items(
        self, collections: Sequence[str] | None = None, params: SearchParams | None = None
    ) -> Iterator[pystac.Item]:
        """Every item of the catalog (or of ``collections``), collection by collection.

        With ``params``, items the collection's index (:mod:`icecube_cloud.stac.static_index`) shows
        cannot match them are not read; the others are read concurrently where the store allows.

        Raises:
            CatalogError: An item or collection JSON is missing or broken (names the file).
        """
        for cid in self.collection_ids():
            if collections is not None and cid not in collections:
                continue
            coll_path = self._collection_path(cid)
            folder = posixpath.dirname(coll_path)
            hrefs = _item_hrefs(self._read_json(coll_path))
            if params is not None:
                rows = index_rows(self._read_index(folder))
                hrefs = [h for h in hrefs if h not in rows or may_match(rows[h], params)]
            paths = [posixpath.normpath(posixpath.join(folder, h)) for h in hrefs]
            for start in range(0, len(paths), _BATCH):
                batch = paths[start : start + _BATCH]
                for path, data in zip(batch, self._read_many(batch), strict=True):
                    yield self._item_from(path, data)

    def get_item(self, collection: str, item_id: str) -> pystac.Item:
        """One item by collection and id.

        Raises:
            CatalogError: No such item, or its JSON is broken.
        """
        path = self._item_path(collection, item_id)
        if not self._exists(path):
            raise CatalogError(f"no item {item_id!r} in collection {collection!r} of {self.url}")
        return self._read_item(path)

    def search(self, params: SearchParams) -> list[pystac.Item]:
        """Run a STAC search in process, with the same semantics as a STAC API."""
        return search_items(self.items(params.collections, params), params)

    # --- writing ---------------------------------------------------------------------------

    def upsert(self, items: Iterable[pystac.Item]) -> UpsertResult:
        """Add or replace items (same collection + id = the same product: never duplicated).

        Items need a ``collection`` of :data:`~icecube_cloud.stac.collections.COLLECTION_IDS`.
        Collection extents grow to cover the items; the root catalog is written last.

        Raises:
            CatalogError: An item has no known collection or an id unusable as a file name.
        """
        added: list[str] = []
        updated: list[str] = []
        touched: dict[str, list[pystac.Item]] = {}
        for item in items:
            cid = item.collection_id
            if cid not in COLLECTION_IDS:
                raise CatalogError(
                    f"item {item.id}: collection {cid!r} is not one of {', '.join(COLLECTION_IDS)}"
                )
            path = self._item_path(cid, item.id)
            (updated if self._exists(path) else added).append(item.id)
            self._write_json(path, self._item_dict(item, posixpath.dirname(path)))
            touched.setdefault(cid, []).append(item)
        for cid, coll_items in touched.items():
            self._write_collection(cid, coll_items)
        if touched or not self._exists(self._catalog_path):
            self._write_catalog(touched)
        log.info("catalog %s: %d items added, %d updated", self.url, len(added), len(updated))
        return UpsertResult(added=tuple(added), updated=tuple(updated))

    def _item_dict(self, item: pystac.Item, folder: str) -> dict[str, Any]:
        data = item.to_dict(include_self_link=False, transform_hrefs=False)
        cid = item.collection_id
        kept = [
            {**ln, "href": self._relative(ln["href"], folder)} if isinstance(ln.get("href"), str)
            else ln
            for ln in data.get("links", []) if ln.get("rel") not in _STRUCTURAL
        ]  # fmt: skip
        data["links"] = [
            {"rel": "root", "href": "../../catalog.json", "type": "application/json"},
            {"rel": "parent", "href": "../collection.json", "type": "application/json"},
            {"rel": "collection", "href": "../collection.json", "type": "application/json"},
            *kept,
        ]
        data["collection"] = cid
        for key, asset in data.get("assets", {}).items():
            href = asset.get("href", "")
            if not (posixpath.isabs(href) or "://" in href):
                raise CatalogError(f"item {item.id}: asset {key!r} href {href!r} is not absolute")
            asset["href"] = self._relative(href, folder)
        return data

    def _relative(self, href: str, folder: str) -> str:
        """``href`` relative to ``folder`` when it points inside the catalog's folder, else as is."""
        if "://" in href:
            if href.split("://", 1)[0] not in self._protocols:
                return href
        elif not (posixpath.isabs(href) and "file" in self._protocols):
            return href
        path = posixpath.normpath(fsspec.core.strip_protocol(href))
        if not path.startswith(self._root.rstrip("/") + "/"):
            return href
        rel = posixpath.relpath(path, folder)
        return rel if rel.startswith("../") else f"./{rel}"

    def _absolute(self, href: str, folder: str, *, as_url: bool) -> str:
        """A relative ``href`` of a JSON file in ``folder`` made absolute (a path or URL)."""
        if "://" in href or posixpath.isabs(href):
            return href
        path = posixpath.normpath(posixpath.join(folder, href))
        return path if "file" in self._protocols and not as_url else self._display(path)

    def _write_collection(self, cid: str, items: list[pystac.Item]) -> None:
        path = self._collection_path(cid)
        if self._exists(path):
            data = self._read_json(path)
            bbox, interval = _extent_of(data)
        else:
            data = load_collection(cid).to_dict(include_self_link=False, transform_hrefs=False)
            bbox, interval = None, None
        for item in items:
            bbox = _union_bbox(bbox, item.bbox)
            start, end = _item_interval(item)
            interval = (
                (start, end)
                if interval is None
                else (min(interval[0], start), max(interval[1], end))
            )
        data["extent"] = {
            "spatial": {"bbox": [bbox or [-180.0, -90.0, 180.0, 90.0]]},
            "temporal": {
                "interval": [
                    [pystac.utils.datetime_to_str(t) for t in interval]
                    if interval
                    else [None, None]
                ]
            },
        }
        hrefs = _item_hrefs(data)
        hrefs += [f"./{it.id}/{it.id}.json" for it in items]
        self._write_index(posixpath.dirname(path), sorted(set(hrefs)), items)
        kept = [ln for ln in data.get("links", []) if ln.get("rel") not in _STRUCTURAL]
        data["links"] = [
            {"rel": "root", "href": "../catalog.json", "type": "application/json"},
            {"rel": "parent", "href": "../catalog.json", "type": "application/json"},
            *kept,
            *(
                {"rel": "item", "href": h, "type": "application/geo+json"}
                for h in sorted(set(hrefs))
            ),
        ]
        self._write_json(path, data)

    def _write_catalog(self, touched: dict[str, list[pystac.Item]]) -> None:
        ids = sorted(set(self.collection_ids()) | set(touched))
        data: dict[str, Any] = {
            "type": "Catalog",
            "stac_version": pystac.get_stac_version(),
            "id": CATALOG_ID,
            "description": "ICEYE SAR products registered by icecube-cloud.",
            "links": [
                {"rel": "root", "href": "./catalog.json", "type": "application/json"},
                *(
                    {"rel": "child", "href": f"./{cid}/collection.json", "type": "application/json"}
                    for cid in ids
                ),
            ],
        }
        if self._exists(self._catalog_path):  # keep a user's title/description edits
            old = self._read_json(self._catalog_path)
            data.update({k: old[k] for k in ("id", "title", "description") if k in old})
        self._write_json(self._catalog_path, data)

    # --- paths and I/O -----------------------------------------------------------------------

    @property
    def _protocols(self) -> tuple[str, ...]:
        protocol = self._fs.protocol
        return tuple(protocol) if isinstance(protocol, tuple | list) else (str(protocol),)

    @property
    def _whole_read(self) -> dict[str, Any]:
        """``cat_file`` options that make reading a JSON one GET.

        s3fs asks an object's size first (a HEAD) to decide on a concurrent download, and ``open()``
        always does; small JSONs need neither.
        """
        return {"max_concurrency": 1} if "s3" in self._protocols else {}

    @property
    def _catalog_path(self) -> str:
        return f"{self._root}/catalog.json"

    def _collection_path(self, cid: str) -> str:
        _check_name(cid, "collection id")
        return f"{self._root}/{cid}/collection.json"

    def _item_path(self, cid: str, item_id: str) -> str:
        _check_name(cid, "collection id")
        _check_name(item_id, "item id")
        return f"{self._root}/{cid}/{item_id}/{item_id}.json"

    def _display(self, path: str) -> str:
        return str(self._fs.unstrip_protocol(path))

    def _exists(self, path: str) -> bool:
        try:
            return bool(self._fs.exists(path))
        except OSError as exc:
            raise CatalogError(f"cannot reach STAC catalog {self.url}: {exc}") from exc

    def _read_json(self, path: str) -> dict[str, Any]:
        try:
            body = self._fs.cat_file(path, **self._whole_read)
        except FileNotFoundError as exc:
            raise CatalogError(
                f"{self._display(path)}: file listed in the catalog is missing"
            ) from exc
        except OSError as exc:
            raise CatalogError(f"{self._display(path)}: unreadable STAC JSON: {exc}") from exc
        try:
            data = json.loads(body)
        except ValueError as exc:
            raise CatalogError(f"{self._display(path)}: unreadable STAC JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise CatalogError(
                f"{self._display(path)}: not a STAC object (JSON {type(data).__name__})"
            )
        return data

    def _read_many(self, paths: list[str]) -> list[dict[str, Any]]:
        """The JSON objects at ``paths``, in order; fetched concurrently from object stores."""
        if "file" in self._protocols or len(paths) < 2:
            return [self._read_json(p) for p in paths]
        with ThreadPoolExecutor(_CONCURRENCY) as pool:
            return list(pool.map(self._read_json, paths))

    def _read_index(self, folder: str) -> dict[str, Any] | None:
        try:
            return self._read_json(f"{folder}/{INDEX_NAME}")
        except CatalogError:
            return None  # no index (an older catalog) or a broken one: every item is read

    def _write_index(self, folder: str, hrefs: list[str], items: list[pystac.Item]) -> None:
        """Rows for ``items`` (just written) and for any listed item the index lacks (read here)."""
        rows = index_rows(self._read_index(folder))
        rows.update({f"./{it.id}/{it.id}.json": index_row(it) for it in items})
        rows = {h: rows[h] for h in hrefs if h in rows}
        missing = {posixpath.normpath(posixpath.join(folder, h)): h for h in hrefs if h not in rows}
        try:
            found = self._read_many(list(missing))
        except CatalogError as exc:  # a broken item stays unindexed: every search reads it
            log.warning("catalog %s: items left out of the index: %s", self.url, exc)
            found = []
        for path, data in zip(missing, found, strict=False):
            rows[missing[path]] = index_row(self._item_from(path, data))
        # compact: json's C encoder (indenting uses the Python one, 10x slower at 5,000 rows)
        self._write_json(f"{folder}/{INDEX_NAME}", index_document(rows), indent=None)

    def _read_item(self, path: str) -> pystac.Item:
        return self._item_from(path, self._read_json(path))

    def _item_from(self, path: str, data: dict[str, Any]) -> pystac.Item:
        folder = posixpath.dirname(path)
        for asset in (data.get("assets") or {}).values():
            if isinstance(asset, dict) and isinstance(asset.get("href"), str):
                asset["href"] = self._absolute(asset["href"], folder, as_url=False)
        for link in data.get("links") or []:
            if (
                isinstance(link, dict)
                and link.get("rel") not in _STRUCTURAL
                and isinstance(link.get("href"), str)
            ):
                link["href"] = self._absolute(link["href"], folder, as_url=True)
        try:
            item = pystac.Item.from_dict(data, preserve_dict=False)
        except (KeyError, TypeError, ValueError, pystac.STACError, pystac.STACTypeError) as exc:
            raise CatalogError(f"{self._display(path)}: not a valid STAC item: {exc!r}") from exc
        # Where the item lives, so others can link to it (e.g. a cube's derived_from links).
        item.set_self_href(self._display(path))
        return item

    def _write_json(self, path: str, data: dict[str, Any], indent: int | None = 2) -> None:
        payload = (json.dumps(data, indent=indent, ensure_ascii=False) + "\n").encode("utf-8")
        try:
            self._fs.makedirs(posixpath.dirname(path), exist_ok=True)
            self._fs.pipe_file(path, payload)
        except OSError as exc:
            raise CatalogError(f"cannot write {self._display(path)}: {exc}") from exc


def _item_hrefs(collection: dict[str, Any]) -> list[str]:
    return [
        ln["href"]
        for ln in collection.get("links", [])
        if ln.get("rel") == "item" and isinstance(ln.get("href"), str)
    ]


def _check_name(name: str, what: str) -> None:
    if not name or "/" in name or "\\" in name or name.startswith("."):
        raise CatalogError(f"{what} {name!r} cannot be used as a file name in a static catalog")


def _extent_of(data: dict[str, Any]) -> tuple[list[float] | None, tuple[datetime, datetime] | None]:
    try:
        bbox = [float(v) for v in data["extent"]["spatial"]["bbox"][0]]
        start, end = data["extent"]["temporal"]["interval"][0]
        times = (pystac.utils.str_to_datetime(start), pystac.utils.str_to_datetime(end))
    except (KeyError, IndexError, TypeError, ValueError):
        return None, None
    return bbox, times


def _union_bbox(a: list[float] | None, b: list[float] | None) -> list[float] | None:
    if b is None:
        return a
    if a is None:
        return [float(v) for v in b[:4]]
    return [min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3])]


def _item_interval(item: pystac.Item) -> tuple[datetime, datetime]:
    start = item.common_metadata.start_datetime or item.datetime
    end = item.common_metadata.end_datetime or item.datetime
    if start is None or end is None:
        raise CatalogError(f"item {item.id}: no datetime nor start/end_datetime")
    return start, end
