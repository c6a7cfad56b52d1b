"""A real STAC API (PostgreSQL + pgstac + stac-fastapi-pgstac, session fixture ``stac_api``).

Ingest through the Transactions extension (upserts, no duplicates), search with pystac-client giving the
same items as the in-process static search, the CLI and a full build against the API, clear errors.
Each test uses its own acquisition years so that tests sharing the one API never see each other's items.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import tempfile
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from icecube_cloud.build import build_cube
from icecube_cloud.config import parse_config, search_params
from icecube_cloud.errors import CatalogError
from icecube_cloud.ingest import ingest
from icecube_cloud.stac.api import ApiCatalog
from icecube_cloud.stac.catalogs import open_catalog
from icecube_cloud.stac.search import SearchParams, compile_filter
from icecube_cloud.storage import public_url as redact_url
from icecube_cloud.synthetic import expected_pixels, make_stack
from icecube_cloud.testing.stac_api import STATE_FILE, StacApiServer, StacApiServerError, free_port

EXE = str(Path(sys.executable).parent / "icecube-cloud")


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([EXE, *args], capture_output=True, text=True, timeout=300)


def window(year: int) -> tuple[datetime, datetime]:
    return datetime(year, 1, 1, tzinfo=UTC), datetime(year, 12, 31, 23, 59, 59, tzinfo=UTC)


def ids(items) -> list[str]:
    return [it.id for it in items]


def test_ingest_creates_collections_and_reingest_updates(tmp_path, stac_api):
    make_stack(tmp_path / "p", n=4, shape=(16, 16), start=datetime(2001, 3, 1, tzinfo=UTC), seed=3)
    api = open_catalog(stac_api)
    assert isinstance(api, ApiCatalog)
    params = SearchParams(collections=("iceye-grd",), datetime=window(2001))

    first = ingest([str(tmp_path / "p")], stac_api)
    assert len(first.added) == 4 and first.updated == ()
    again = ingest([str(tmp_path / "p")], stac_api)
    assert again.added == () and sorted(again.updated) == sorted(first.added)
    found = api.search(params)
    assert sorted(ids(found)) == sorted(first.added)  # re-ingest never duplicates

    with urllib.request.urlopen(f"{stac_api}/collections/iceye-grd") as resp:
        assert json.load(resp)["id"] == "iceye-grd"  # created from catalog/ on first use
    item = found[0]
    assert item.collection_id == "iceye-grd"
    assert all(a.href.startswith("/") for a in item.assets.values())  # hrefs kept as ingested


def test_search_semantics_match_static_catalog(tmp_path, stac_api):
    start = datetime(2002, 5, 1, 10, tzinfo=UTC)
    angles = [25.0, 27.5, 30.0, 32.5, 35.0, 28.0]
    make_stack(tmp_path / "p", n=6, shape=(16, 16), start=start, incidence_angles=angles, seed=4)
    make_stack(tmp_path / "p", n=3, shape=(16, 16), start=start, flavour="legacy-slc", seed=4)
    ingest([str(tmp_path / "p")], stac_api)
    ingest([str(tmp_path / "p")], str(tmp_path / "cat"))
    api, static = open_catalog(stac_api), open_catalog(str(tmp_path / "cat"))
    bbox = static.search(SearchParams())[0].bbox
    assert bbox is not None
    west, south, east, north = bbox

    cases = [
        SearchParams(),
        SearchParams(collections=("iceye-grd",)),
        SearchParams(collections=("iceye-slc",)),
        SearchParams(datetime=(datetime(2002, 5, 3, tzinfo=UTC), datetime(2002, 5, 8, tzinfo=UTC))),
        SearchParams(datetime=(None, datetime(2002, 5, 5, tzinfo=UTC)), collections=("iceye-grd",)),
        SearchParams(query={"view:incidence_angle": {"gte": 27.5, "lte": 32.5}}),
        SearchParams(query={"view:incidence_angle": {"gt": 27.5, "lt": 32.5}}),
        SearchParams(filter=compile_filter('"view:incidence_angle" BETWEEN 27.5 AND 32.5')),
        SearchParams(
            filter={
                "op": "and",
                "args": [
                    {"op": ">=", "args": [{"property": "view:incidence_angle"}, 28]},
                    {"op": "=", "args": [{"property": "sat:orbit_state"}, "ascending"]},
                ],
            }
        ),
        SearchParams(bbox=(west, south, (west + east) / 2, (south + north) / 2)),
        SearchParams(bbox=(east + 1, north + 1, east + 2, north + 2)),  # disjoint: nothing
    ]
    mine = set(ids(static.search(SearchParams())))
    nonempty = 0
    for case in cases:
        # Bound every search to this test's year: the API is shared by the whole session. An open
        # interval also returns other tests' items: compare this test's items then.
        params = dataclasses.replace(case, datetime=case.datetime or window(2002))
        want = ids(static.search(params))
        got = ids(api.search(params))
        if params.datetime is not None and None in params.datetime:
            got = [i for i in got if i in mine]
        assert got == want, params
        nonempty += bool(want)
    assert nonempty == len(cases) - 1

    # The search a config makes (day rule, incidence bounds) gives the same items too.
    cfg = parse_config(
        {"start_date": "20020503", "end_date": "20020510", "min_incidence_angle": 27.5}
    )
    params = search_params(cfg)
    assert ids(api.search(params)) == ids(static.search(params)) != []


def test_cli_ingest_and_search(tmp_path, stac_api):
    specs = make_stack(
        tmp_path / "p", n=3, shape=(16, 16), start=datetime(2003, 2, 1, tzinfo=UTC), seed=5
    )
    r = run("catalog", "ingest", str(tmp_path / "p"), "--stac-url", stac_api)
    assert r.returncode == 0, r.stderr
    assert "3 added" in r.stdout
    r = run("catalog", "ingest", str(tmp_path / "p"), "--stac-url", stac_api)
    assert r.returncode == 0 and "0 added, 3 updated" in r.stdout, r.stderr
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({"start_date": "20030101", "end_date": "20031231"}))
    # A remote catalog naming local files is refused unless those files are allowed explicitly.
    r = run("search", "--stac-url", stac_api, "--config", str(cfg))
    assert r.returncode == 1 and "outside the allowed locations" in r.stderr, r.stderr
    r = run("search", "--stac-url", stac_api, "--config", str(cfg), "--allow-href", str(tmp_path))
    assert r.returncode == 0, r.stderr
    assert all(s.product_id in r.stdout for s in specs)


def test_build_from_api_equals_sources_and_static_build(tmp_path, stac_api, dask_scheduler):
    shape = (24, 20)
    specs = make_stack(
        tmp_path / "p", n=4, shape=shape, start=datetime(2004, 6, 1, tzinfo=UTC), seed=6
    )
    ingest([str(tmp_path / "p")], stac_api)
    ingest([str(tmp_path / "p")], str(tmp_path / "cat"))
    cfg = {"start_date": "20040101", "end_date": "20041231", "chunks": {"azimuth": 16, "range": 8}}

    # The products are local files: a remote catalog may only name them when we allow it.
    result = build_cube(
        stac_api,
        cfg,
        str(tmp_path / "api.zarr"),
        scheduler=dask_scheduler,
        allowed_hrefs=[str(tmp_path)],
    )
    build_cube(str(tmp_path / "cat"), cfg, str(tmp_path / "static.zarr"), scheduler=dask_scheduler)

    ds = xr.open_zarr(tmp_path / "api.zarr")
    ref = xr.open_zarr(tmp_path / "static.zarr")
    assert ds.sizes == {"time": 4, "azimuth": shape[0], "range": shape[1]}
    np.testing.assert_array_equal(ds["time"].values, ref["time"].values)
    np.testing.assert_array_equal(ds["amplitude"].values, ref["amplitude"].values)
    by_id = {str(p): t for t, p in enumerate(ds["product_id"].values)}
    for spec in specs:
        got = ds["amplitude"].isel(time=by_id[spec.product_id]).values
        np.testing.assert_array_equal(got, expected_pixels(spec, "GRD"))

    # The cube is registered back in the API and found by search like any item.
    cubes = open_catalog(stac_api).search(SearchParams(collections=("icecube-cubes",)))
    assert result.item_id in ids(cubes)


def test_unreachable_api_is_a_clear_error(tmp_path):
    url = f"http://127.0.0.1:{free_port()}"
    cfg = tmp_path / "cfg.json"
    cfg.write_text("{}")
    r = run("search", "--stac-url", url, "--config", str(cfg))
    assert r.returncode == 1
    assert url in r.stderr and "Traceback" not in r.stderr

    make_stack(tmp_path / "p", n=1, shape=(8, 8))
    secret_url = url.replace("http://", "http://alice:s3cret-pw@")
    r = run("catalog", "ingest", str(tmp_path / "p"), "--stac-url", secret_url)
    assert r.returncode == 1
    assert url in r.stderr and "s3cret-pw" not in r.stderr + r.stdout
    assert redact_url(secret_url) == url


def test_http_errors_name_url_and_status(stac_api):
    api = ApiCatalog(stac_api + "/not-an-api")
    with pytest.raises(CatalogError, match=r"not-an-api.*HTTP 404"):
        api.search(SearchParams())
    item = open_catalog(stac_api).search(SearchParams(collections=("iceye-grd",)))[0]
    with pytest.raises(CatalogError, match=r"not-an-api.*HTTP 404"):
        api.upsert([item])


def test_server_up_down_cli():
    # Not under pytest's tmp dirs: they are private to root and the postgres user must enter it.
    workdir = Path(tempfile.mkdtemp(prefix="icecube-stac-api-cli-"))
    exe = [sys.executable, "-m", "icecube_cloud.testing.stac_api"]
    r = subprocess.run([*exe, "up", "--dir", str(workdir)], capture_output=True, text=True)
    try:
        assert r.returncode == 0, r.stderr
        url = r.stdout.strip()
        assert url.startswith("http://127.0.0.1:")
        state = json.loads((workdir / STATE_FILE).read_text())
        assert state["url"] == url and "password" not in json.dumps(state).lower()
        with urllib.request.urlopen(url) as resp:
            assert resp.status == 200
        again = subprocess.run([*exe, "up", "--dir", str(workdir)], capture_output=True, text=True)
        assert again.returncode == 1 and "already running" in again.stderr, again.stderr
    finally:
        r = subprocess.run([*exe, "down", "--dir", str(workdir)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert not workdir.exists()
    with pytest.raises(OSError):
        urllib.request.urlopen(url, timeout=2)


def test_server_refuses_a_non_empty_workdir(tmp_path):
    (tmp_path / "precious.txt").write_text("keep me")
    with pytest.raises(StacApiServerError, match="not empty"):
        StacApiServer(tmp_path).start()
    assert (tmp_path / "precious.txt").read_text() == "keep me"
