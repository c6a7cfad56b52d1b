"""Where the tests find ICEYE's sample products and the STAC JSON schemas (``../shared`` or elsewhere).

Tests never read them by path; they ask the ``samples`` / ``stac_schemas`` fixtures (``conftest.py``),
which call :func:`require`. A resource is the first of:

1. ``$ICECUBE_SHARED/<name>`` (a folder laid out like ``../shared``);
2. ``../shared/<name>`` beside the checkout;
3. the download cache ``.cache/icecube-test-resources/<name>`` (git-ignored), filled from the pinned
   URLs of ``shared_resources.json``; every file is checked against its sha256 there before it is
   used, and a download that fails or does not match stops the fetch within seconds.

Otherwise the test is skipped with one line saying what is missing and how to get it, or fails when
``ICECUBE_REQUIRE_SHARED=1`` (CI: ``.ci/run``), so that CI never passes by skipping.
"""

from __future__ import annotations

import hashlib
import json
import os
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest

REPO = Path(__file__).resolve().parents[1]
MANIFEST = Path(__file__).with_name("shared_resources.json")
CACHE = REPO / ".cache" / "icecube-test-resources"
ENV_SHARED = "ICECUBE_SHARED"
ENV_REQUIRE = "ICECUBE_REQUIRE_SHARED"
TIMEOUT_S = 5.0
"""Per request (connect and each read): a machine without internet gives up in seconds."""
MAX_BYTES = 8 << 20
"""No file of the manifest is near this; a server sending more is not serving the manifest's file."""


class MissingResourceError(Exception):
    """A resource is nowhere to be found and could not be fetched; the message is one line."""


@dataclass(frozen=True)
class ResourceFile:
    """One file of a resource: where it goes, what it must hash to, where it comes from."""

    path: str
    """Path inside the resource folder (POSIX)."""
    sha256: str
    """Hex digest of the upstream bytes."""
    url: str
    """Pinned upstream URL (a commit, never a branch)."""


@dataclass(frozen=True)
class Resource:
    """A folder of ``../shared`` that tests read: ``iceye-samples`` or ``stac-schemas``."""

    name: str
    """Folder name in ``../shared`` and in the cache."""
    description: str
    """What it is, for messages."""
    files: tuple[ResourceFile, ...]
    """Every file the tests may read."""


def load_manifest(path: Path = MANIFEST) -> dict[str, Resource]:
    """The resources of ``shared_resources.json`` by name."""
    raw = json.loads(path.read_text(encoding="utf-8"))
    return {
        name: Resource(
            name=name,
            description=entry["description"],
            files=tuple(ResourceFile(f["path"], f["sha256"], f["url"]) for f in entry["files"]),
        )
        for name, entry in raw.items()
    }


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _download(f: ResourceFile, target: Path, timeout: float) -> None:
    """Fetch one file into ``target`` (atomically), or raise naming the URL and what went wrong."""
    try:
        with urllib.request.urlopen(f.url, timeout=timeout) as response:
            data = response.read(MAX_BYTES + 1)
    except urllib.error.HTTPError as exc:
        raise MissingResourceError(f"fetching {f.url} failed: {exc}") from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        host = urlsplit(f.url).netloc
        raise MissingResourceError(f"fetching from {host} failed: {reason}") from None
    digest = hashlib.sha256(data).hexdigest()
    if len(data) > MAX_BYTES or digest != f.sha256:
        raise MissingResourceError(
            f"{f.url} does not match the manifest (sha256 {digest}, expected {f.sha256})"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    part = target.with_name(f".{target.name}.{os.getpid()}.part")
    part.write_bytes(data)
    part.replace(target)


def fetch(resource: Resource, cache: Path, *, timeout: float = TIMEOUT_S) -> Path:
    """Make ``cache/<name>`` hold every file of ``resource`` with its manifest sha256.

    Files already there and intact are kept; the others are downloaded. The first failure stops
    the fetch (no point waiting on 60 timeouts), leaving only verified files behind.

    Returns:
        The folder ``cache/<name>``.

    Raises:
        MissingResourceError: A download failed or did not match its sha256.
    """
    root = cache / resource.name
    for f in resource.files:
        target = root / f.path
        if target.is_file() and sha256_of(target) == f.sha256:
            continue
        target.unlink(missing_ok=True)
        _download(f, target, timeout)
    return root


def _complete(folder: Path, resource: Resource) -> bool:
    return folder.is_dir() and all((folder / f.path).is_file() for f in resource.files)


def resolve(
    resource: Resource,
    *,
    env: Mapping[str, str],
    repo: Path = REPO,
    cache: Path = CACHE,
    timeout: float = TIMEOUT_S,
) -> Path:
    """The folder holding ``resource``: ``$ICECUBE_SHARED``, ``../shared``, else the verified cache.

    Raises:
        MissingResourceError: One line naming what is missing, where it was looked for, why the
            fetch failed and how to provide it.
    """
    looked: list[str] = []
    shared_env = env.get(ENV_SHARED, "")
    candidates = [Path(shared_env) / resource.name] if shared_env else []
    candidates.append(repo.parent / "shared" / resource.name)
    for folder in candidates:
        if _complete(folder, resource):
            return folder
        if folder.is_dir():
            missing = next(f.path for f in resource.files if not (folder / f.path).is_file())
            looked.append(f"{folder} lacks {missing}")
        else:
            looked.append(f"no {folder}")
    try:
        return fetch(resource, cache, timeout=timeout)
    except MissingResourceError as exc:
        raise MissingResourceError(
            f"{resource.description} ({resource.name}/) not found ({'; '.join(looked)}) and {exc}; "
            f"set {ENV_SHARED} to a folder holding {resource.name}/ (laid out like ../shared), "
            "or let the tests download them"
        ) from None


def require(
    name: str,
    *,
    env: Mapping[str, str] | None = None,
    manifest: Path = MANIFEST,
    repo: Path = REPO,
    cache: Path = CACHE,
) -> Path:
    """The folder of resource ``name`` for a fixture; skips the test, or fails it where required.

    Session-scoped fixtures call this once: pytest re-raises the skip for every later test, so a
    failed fetch is not retried per test.
    """
    env = os.environ if env is None else env
    try:
        return resolve(load_manifest(manifest)[name], env=env, repo=repo, cache=cache)
    except MissingResourceError as exc:
        reason = str(exc)
    if env.get(ENV_REQUIRE, "") not in ("", "0"):
        pytest.fail(f"{reason} ({ENV_REQUIRE}={env[ENV_REQUIRE]}: required here)", pytrace=False)
    pytest.skip(reason)
