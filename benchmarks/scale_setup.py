"""Inputs of the scale benchmark (:mod:`benchmarks.bench_scale`); nothing here is timed.

Per case: ``n + 1`` daily 64² legacy GRD products (the last one is the "new image" the update adds),
their items read from the products themselves (``icecube_cloud.ingest.product_items``), and ``m − n``
history items cloned from them, each moved back by whole multiples of ``n + 1`` days (so that they
precede 2023 and the search must skip them; their files are never read). The catalog is a static
catalog (written by ``StaticCatalog.upsert`` locally, copied to S3 in one concurrent ``put`` for the
``s3`` store) or the STAC API (pgstac), whose items are loaded in bulk with ``pypgstac``.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import fsspec
import pystac

import icecube_cloud.build as build_mod
import icecube_cloud.update as update_mod
import icecube_cloud.write.materialise as materialise
from icecube_cloud.ingest import product_items
from icecube_cloud.stac.api import ApiCatalog
from icecube_cloud.stac.catalogs import ItemCatalog, open_catalog
from icecube_cloud.stac.static import StaticCatalog
from icecube_cloud.storage import StorageOptions, StorageTarget
from icecube_cloud.synthetic import make_stack
from icecube_cloud.testing.moto import MotoServer
from icecube_cloud.testing.stac_api import StacApiServer
from icecube_cloud.write.journal import Journal

START = datetime(2023, 1, 1, 9, 0, tzinfo=UTC)
SHAPE = (64, 64)
BUCKET = "bench"


@dataclass
class Services:
    """What every case shares: a work folder, moto (its log counts requests), the STAC API."""

    tmp: Path
    moto: MotoServer | None
    moto_log: Path
    api: StacApiServer | None
    _products: dict[tuple[int, str], list[pystac.Item]] = field(default_factory=dict)

    def storage_options(self, store: str) -> StorageOptions | None:
        return self.moto.storage_options if store == "s3" and self.moto else None

    def items(self, n: int, store: str) -> list[pystac.Item]:
        """Items of the ``n + 1`` products of a case (generated and uploaded once per size)."""
        key = (n, store)
        if key not in self._products:
            folder = self.tmp / f"products-{n}"
            if not folder.exists():
                make_stack(folder, n=n + 1, shape=SHAPE, start=START, days=n + 1, seed=7)
            source = str(folder)
            if store == "s3":
                assert self.moto is not None
                self.moto.make_bucket(BUCKET)
                source = f"s3://{BUCKET}/src-{n}"
                fs = fsspec.filesystem("s3", **dict(self.moto.storage_options))
                fs.put(f"{folder}/", f"{source}/", recursive=True)
            items, failed = product_items([source], storage_options=self.storage_options(store))
            if failed or len(items) != n + 1:
                raise RuntimeError(f"{source}: {len(items)} items, failures {failed}")
            self._products[key] = sorted(items, key=lambda it: it.datetime or START)
        return self._products[key]


def history(items: list[pystac.Item], count: int) -> list[pystac.Item]:
    """``count`` items cloned from ``items``, moved back by multiples of ``len(items)`` days."""
    out = []
    for j in range(count):
        base = items[j % len(items)]
        shift = timedelta(days=(j // len(items) + 1) * len(items))
        clone = base.clone()
        clone.id = f"{base.id}_h{j}"
        for key in ("datetime", "start_datetime", "end_datetime"):
            value = clone.properties.get(key)
            if value:
                moved = pystac.utils.str_to_datetime(value) - shift
                clone.properties[key] = pystac.utils.datetime_to_str(moved)
        if clone.datetime is not None:
            clone.datetime = clone.datetime - shift
        out.append(clone)
    return out


@dataclass
class CaseEnv:
    """One case's catalog, config and output."""

    catalog_url: str
    cube_url: str
    config: dict[str, Any]
    new_item: pystac.Item
    storage_options: StorageOptions | None
    forget: Callable[[], None]
    allowed_hrefs: tuple[str, ...] = ()
    """Where the products are (a STAC API's local hrefs must be allowed explicitly)."""

    def catalog(self) -> ItemCatalog:
        so = dict(self.storage_options) if self.storage_options else None
        return open_catalog(self.catalog_url, storage_options=so)

    def forget_new_item(self) -> None:
        """Take the new item out of the catalog again (for the next run)."""
        self.forget()


@contextmanager
def case_env(ctx: Services, n: int, m: int, store: str, catalog: str) -> Iterator[CaseEnv]:
    """The catalog of ``n`` products + ``m - n`` history items, and where the cube goes."""
    items = ctx.items(n, store)
    listed, new = items[:n] + history(items[:n], m - n), items[n]
    so = ctx.storage_options(store)
    root = (
        f"s3://{BUCKET}/case-{n}-{m}-{catalog}" if store == "s3" else str(ctx.tmp / f"case-{n}-{m}")
    )
    last_day = (new.datetime or START).strftime("%Y-%m-%d")
    config = {"start_date": START.strftime("%Y-%m-%d"), "end_date": last_day}
    if catalog == "static":
        url, forget = _static_catalog(ctx.tmp / f"catalog-{n}-{m}", listed, new, root, so)
    else:
        assert ctx.api is not None
        url, forget = _api_catalog(ctx.api, listed, new)
    try:
        yield CaseEnv(url, f"{root}/cube.zarr", config, new, so, forget, (str(ctx.tmp),))
    finally:
        remove(root, so)


def _static_catalog(
    local: Path, items: list[pystac.Item], new: pystac.Item, root: str, so: StorageOptions | None
) -> tuple[str, Callable[[], None]]:
    StaticCatalog.open(str(local), create=True).upsert(items)
    url = str(local)
    if so is not None:
        url = f"{root}/catalog"
        fsspec.filesystem("s3", **dict(so)).put(f"{local}/", f"{url}/", recursive=True)
    target = StorageTarget.from_url(url, so)
    collection = f"{target.path}/{new.collection_id}/collection.json"
    saved = target.fs.cat_file(collection)

    def forget() -> None:
        target.fs.pipe_file(collection, saved)
        target.fs.rm(f"{target.path}/{new.collection_id}/{new.id}", recursive=True)

    return url, forget


def _api_catalog(
    api: StacApiServer, items: list[pystac.Item], new: pystac.Item
) -> tuple[str, Callable[[], None]]:
    import psycopg
    from pypgstac.db import PgstacDB
    from pypgstac.load import Loader, Methods

    dsn = f"postgresql://postgres@/icecube?host={api.workdir / 'socket'}&port={api.pg_port}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("DELETE FROM pgstac.items")
    ApiCatalog(api.url).upsert(items[:1])  # creates the collection as ingest does
    dicts = [_api_dict(it) for it in items[1:]]
    with PgstacDB(dsn=dsn) as db:
        Loader(db=db).load_items(iter(dicts), insert_mode=Methods.upsert)
    item_url = f"{api.url}/collections/{new.collection_id}/items/{new.id}"

    def forget() -> None:
        with urllib.request.urlopen(urllib.request.Request(item_url, method="DELETE"), timeout=30):
            pass

    return api.url, forget


def _api_dict(item: pystac.Item) -> dict[str, Any]:
    data = item.to_dict(include_self_link=False, transform_hrefs=False)
    data["links"] = [
        ln for ln in data.get("links", []) if ln.get("rel") in ("source", "derived_from")
    ]
    data["collection"] = item.collection_id
    return json.loads(json.dumps(data))


@contextmanager
def stac_api(workdir: Path) -> Iterator[StacApiServer]:
    with StacApiServer(workdir) as api:
        yield api


def remove(url: str, so: Mapping[str, Any] | None) -> None:
    target = StorageTarget.from_url(url, so)
    if target.fs.exists(target.path):
        target.fs.rm(target.path, recursive=True)


def warm_up() -> None:
    """Imports of the band and source-check tasks (run on every worker before timing)."""
    import icecube_cloud.write.bands
    import icecube_cloud.write.executor  # noqa: F401


def _stage(*args: Any, **kwargs: Any) -> str:
    stage = args[2] if len(args) > 2 else kwargs.get("stage")
    return {"check": "source check", "write": "band tasks"}.get(str(stage), f"wait {stage}")


def step_targets() -> dict[tuple[Any, str], str | Callable[..., str]]:
    """The functions of a build and of an update whose cost the benchmark attributes to steps."""
    targets: dict[tuple[Any, str], str | Callable[..., str]] = {
        (StaticCatalog, "search"): "search",
        (ApiCatalog, "search"): "search",
        (build_mod, "open_catalog"): "search",
        (build_mod, "search_and_plan"): "plan",
        (update_mod, "search_and_plan"): "plan",
        (Journal, "begin"): "journal",
        (Journal, "done"): "journal",
        (Journal, "pending"): "journal",
        (Journal, "mark_updating"): "journal",
        (Journal, "commit"): "commit",
        (update_mod, "read_stored"): "read cube",
        (update_mod, "_our_cube_root"): "output check",
    }
    for mod in (materialise, update_mod):
        targets[(mod, "gather_futures")] = _stage
        targets[(mod, "submit_pixel_tasks")] = "band tasks"
        for name in ("skeleton", "skeleton_documents", "label_vectors_of", "put_documents"):
            targets[(mod, name)] = "skeleton"
        targets[(mod, "acquire_lease")] = "output check"
    targets[(update_mod, "remove_time_slices")] = "band tasks"
    for name in ("inspect_output", "remove_ours"):
        targets[(materialise, name)] = "output check"
    return targets
