"""The tests' own resources: ICEYE's samples and the STAC schemas are found, fetched (verified) or reported.

The fetch is exercised against a real HTTP server on loopback serving copies of the files.
"""

from __future__ import annotations

import http.server
import json
import re
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import shared_resources as sr

NAMES = ("iceye-samples", "stac-schemas")


def test_manifest_pins_every_file_the_tests_read(samples: Path, stac_schemas: Path) -> None:
    """The folders in use hold exactly the manifest's bytes (so a fetched copy reads the same)."""
    manifest = sr.load_manifest()
    for folder, name in ((samples, "iceye-samples"), (stac_schemas, "stac-schemas")):
        res = manifest[name]
        for f in res.files:
            assert sr.sha256_of(folder / f.path) == f.sha256, folder / f.path
            assert f.url.startswith("https://raw.githubusercontent.com/"), f.url
            assert len(f.url.split("/")[5]) == 40, f"{f.url} is not pinned to a commit"
        listed = {f.path for f in res.files}
        extra = {"README.md", "SOURCES.md", "validate_example.py"}  # notes, not read by tests
        present = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}
        assert present - extra == listed, (
            f"{folder}: not in the manifest: {present - extra - listed}"
        )


class _Handler(http.server.SimpleHTTPRequestHandler):
    requests: list[str]

    def do_GET(self) -> None:
        self.requests.append(self.path)
        super().do_GET()

    def log_message(self, format: str, *args: object) -> None:
        pass


class Loopback:
    """A real HTTP server on 127.0.0.1 serving ``root``; records the paths it was asked for."""

    def __init__(self, root: Path) -> None:
        self.requests: list[str] = []
        handler = type("Handler", (_Handler,), {"requests": self.requests})
        self.server = http.server.ThreadingHTTPServer(
            ("127.0.0.1", 0),
            lambda *a: handler(*a, directory=str(root)),  # type: ignore[misc]
        )
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


@pytest.fixture
def served(
    tmp_path: Path, samples: Path, stac_schemas: Path
) -> Iterator[tuple[Loopback, Path, Path]]:
    """Copies of both resources on a loopback server, and a manifest whose URLs point there."""
    www = tmp_path / "www"
    raw = json.loads(sr.MANIFEST.read_text())
    server = Loopback(www)
    for name, folder in (("iceye-samples", samples), ("stac-schemas", stac_schemas)):
        for entry in raw[name]["files"]:
            (www / name / entry["path"]).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(folder / entry["path"], www / name / entry["path"])
            entry["url"] = f"{server.url}/{name}/{entry['path']}"
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps(raw))
    try:
        yield server, www, manifest
    finally:
        server.close()


def _checkout(tmp_path: Path) -> Path:
    """A clone with nothing beside it (no ``../shared``)."""
    repo = tmp_path / "lonely" / "icecube-cloud"
    repo.mkdir(parents=True)
    return repo


def test_fetch_fills_the_cache_and_reuses_it_offline(
    tmp_path: Path, served: tuple[Loopback, Path, Path]
) -> None:
    server, www, manifest = served
    repo, cache = _checkout(tmp_path), tmp_path / "cache"
    for name in NAMES:
        res = sr.load_manifest(manifest)[name]
        got = sr.resolve(res, env={}, repo=repo, cache=cache)
        assert got == cache / name
        for f in res.files:
            assert (got / f.path).read_bytes() == (www / name / f.path).read_bytes()
        assert sorted(p.name for p in got.rglob("*.part")) == []
    assert len(server.requests) == sum(len(r.files) for r in sr.load_manifest(manifest).values())
    server.close()  # offline now: the verified cache is enough
    for name in NAMES:
        assert sr.resolve(sr.load_manifest(manifest)[name], env={}, repo=repo, cache=cache)


def test_env_then_sibling_then_fetch(tmp_path: Path, served: tuple[Loopback, Path, Path]) -> None:
    server, www, manifest = served
    res = sr.load_manifest(manifest)["stac-schemas"]
    repo = _checkout(tmp_path)
    sibling = repo.parent / "shared"
    mine = tmp_path / "mine"
    for dest in (sibling, mine):
        shutil.copytree(www, dest)
    env = {sr.ENV_SHARED: str(mine)}
    assert sr.resolve(res, env=env, repo=repo, cache=tmp_path / "c") == mine / "stac-schemas"
    assert sr.resolve(res, env={}, repo=repo, cache=tmp_path / "c") == sibling / "stac-schemas"
    assert server.requests == []
    # An incomplete local copy is passed over (and the fetch fills in), never half used.
    (sibling / "stac-schemas" / res.files[0].path).unlink()
    got = sr.resolve(res, env={}, repo=repo, cache=tmp_path / "c")
    assert got == tmp_path / "c" / "stac-schemas" and len(server.requests) == len(res.files)


def test_a_download_that_does_not_match_is_refused(
    tmp_path: Path, served: tuple[Loopback, Path, Path]
) -> None:
    server, www, manifest = served
    res = sr.load_manifest(manifest)["iceye-samples"]
    repo, cache = _checkout(tmp_path), tmp_path / "cache"
    bad = res.files[3]
    served_file = www / "iceye-samples" / bad.path
    good_bytes = served_file.read_bytes()
    served_file.write_bytes(good_bytes[:-1] + bytes([good_bytes[-1] ^ 1]))
    with pytest.raises(sr.MissingResourceError) as info:
        sr.resolve(res, env={}, repo=repo, cache=cache)
    message = str(info.value)
    assert f"{bad.url} does not match the manifest" in message and bad.sha256 in message
    assert "\n" not in message
    assert not (cache / "iceye-samples" / bad.path).exists()
    assert list(cache.rglob("*.part")) == []
    verified = [cache / "iceye-samples" / f.path for f in res.files[:3]]
    assert all(p.is_file() for p in verified)  # what was verified stays
    # A 404 names the URL too.
    served_file.unlink()
    with pytest.raises(
        sr.MissingResourceError, match=re.escape(f"fetching {bad.url} failed: HTTP Error 404")
    ):
        sr.resolve(res, env={}, repo=repo, cache=cache)
    # A cached file damaged later is fetched again, not used.
    served_file.write_bytes(good_bytes)
    verified[0].write_bytes(b"damaged")
    before = len(server.requests)
    assert sr.resolve(res, env={}, repo=repo, cache=cache) == cache / "iceye-samples"
    assert sr.sha256_of(verified[0]) == res.files[0].sha256
    assert len(server.requests) - before == len(res.files) - 3 + 1


@pytest.fixture
def unreachable(tmp_path: Path) -> Path:
    """The real manifest with every URL on a loopback port nobody listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    raw = json.loads(sr.MANIFEST.read_text())
    for entry in raw.values():
        for f in entry["files"]:
            f["url"] = f"http://127.0.0.1:{port}/{f['path']}"
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps(raw))
    return path


def test_unreachable_fails_fast_with_one_line(tmp_path: Path, unreachable: Path) -> None:
    res = sr.load_manifest(unreachable)["iceye-samples"]
    repo = _checkout(tmp_path)
    start = time.monotonic()
    with pytest.raises(sr.MissingResourceError) as info:
        sr.resolve(
            res, env={sr.ENV_SHARED: str(tmp_path / "nowhere")}, repo=repo, cache=tmp_path / "c"
        )
    assert time.monotonic() - start < 3
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("ICEYE's sample products (iceye-samples/) not found")
    assert f"no {tmp_path / 'nowhere' / 'iceye-samples'}" in message
    assert f"no {repo.parent / 'shared' / 'iceye-samples'}" in message
    assert " and fetching from 127.0.0.1:" in message
    assert "set ICECUBE_SHARED to a folder holding iceye-samples/" in message


def test_require_skips_and_fails_where_required(tmp_path: Path, unreachable: Path) -> None:
    where = {"manifest": unreachable, "repo": _checkout(tmp_path), "cache": tmp_path / "c"}
    with pytest.raises(pytest.skip.Exception, match="STAC JSON schemas") as skipped:
        sr.require("stac-schemas", env={}, **where)  # type: ignore[arg-type]
    assert "\n" not in str(skipped.value)
    with pytest.raises(pytest.fail.Exception, match="ICECUBE_REQUIRE_SHARED=1: required") as failed:
        sr.require("stac-schemas", env={sr.ENV_REQUIRE: "1"}, **where)  # type: ignore[arg-type]
    assert "set ICECUBE_SHARED" in str(failed.value)
