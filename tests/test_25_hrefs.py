"""Untrusted catalogs: a build reads asset hrefs only inside the allowed locations (issue #7.6)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from icecube_cloud.build import build_cube, plan_cube
from icecube_cloud.errors import CatalogError
from icecube_cloud.hrefs import ENV_ALLOWED, HrefPolicy
from icecube_cloud.ingest import ingest
from icecube_cloud.synthetic import make_stack


@pytest.mark.parametrize(
    ("catalog", "href", "allowed"),
    [
        ("/data/cat", "/data/products/a.tif", True),  # local catalog, local files
        ("/data/cat", "s3://bucket/a.tif", True),  # object storage with our credentials
        ("s3://bucket/cat", "/etc/passwd", False),  # a catalog in a bucket naming local files
        ("http://api.example/stac", "file:///etc/passwd", False),  # remote API naming local files
        ("http://api.example/stac", "/etc/passwd", False),
        ("http://api.example/stac", "http://169.254.169.254/latest/meta-data", False),  # SSRF
        ("http://api.example/stac", "s3://bucket/products/a.tif", True),
        ("/data/cat", "https://example.com/a.tif", False),
    ],
)
def test_default_policy(catalog, href, allowed, monkeypatch):
    monkeypatch.delenv(ENV_ALLOWED, raising=False)
    assert HrefPolicy.for_catalog(catalog).allows(href) is allowed


def test_allowed_prefixes_do_not_leak_by_traversal(monkeypatch):
    monkeypatch.setenv(ENV_ALLOWED, "https://cdn.example/iceye/")
    policy = HrefPolicy.for_catalog("http://api.example/stac", ["/srv/products"])
    assert policy.allows("/srv/products/a.tif")
    assert policy.allows("https://cdn.example/iceye/a.tif")
    assert not policy.allows("/srv/products/../../etc/passwd")
    assert not policy.allows("/srv/products-evil/a.tif")
    assert not policy.allows("https://cdn.example/iceye/../other/a.tif")


def test_hostile_href_from_a_catalog_is_refused(tmp_path, dask_scheduler, monkeypatch):
    """A catalog in non-local storage whose item names /etc/passwd: refused before anything is read."""
    import fsspec

    monkeypatch.delenv(ENV_ALLOWED, raising=False)
    make_stack(tmp_path / "p", n=6, shape=(16, 16), start=datetime(2021, 4, 20, tzinfo=UTC), seed=2)
    ingest([str(tmp_path / "p")], str(tmp_path / "cat"))
    # Tamper with one item as a hostile catalog would, and serve the catalog from memory://: it is
    # then treated as remote. Its legitimate products are allowed explicitly, the tampered one is not.
    victim = next((tmp_path / "cat" / "iceye-grd").glob("*/*.json"))
    item = json.loads(victim.read_text())
    item["assets"]["grd-tiff"]["href"] = "file:///etc/passwd"
    victim.write_text(json.dumps(item))
    fsspec.filesystem("memory").put(str(tmp_path / "cat") + "/", "/hostile-cat/", recursive=True)
    allowed = [str(tmp_path / "p")]
    with pytest.raises(CatalogError, match="outside the allowed locations") as err:
        plan_cube("memory://hostile-cat", {}, allowed_hrefs=allowed)
    assert item["id"] in str(err.value) and "/etc/passwd" in str(err.value)
    out = str(tmp_path / "cube.zarr")
    with pytest.raises(CatalogError, match="outside the allowed locations"):
        build_cube("memory://hostile-cat", {}, out, scheduler=dask_scheduler, allowed_hrefs=allowed)
    assert not (tmp_path / "cube.zarr").exists()
