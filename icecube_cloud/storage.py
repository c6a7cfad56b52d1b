"""Where bytes live: local paths and fsspec URLs (``s3://``, ``memory://``, ``file://``) behind one small type.

Targets are small frozen values that pickle cheaply to dask workers; each process builds its own
filesystem / Zarr store from them. Credentials are never part of a target's printable form.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import fsspec
import zarr
import zarr.storage
from fsspec.implementations.local import LocalFileSystem
from zarr.abc.store import Store


def is_remote(url: str) -> bool:
    """Whether ``url`` names something other than a local file."""
    return "://" in url and not url.startswith("file://")


def local_path(url: str) -> str:
    """Absolute local path of a plain path or ``file://`` URL."""
    if url.startswith("file://"):
        url = url[len("file://") :]
    return os.path.abspath(os.path.expanduser(url))


def normalise_url(url: str) -> str:
    """Absolute local paths stay paths; remote URLs are returned unchanged (minus a trailing slash)."""
    return url.rstrip("/") if is_remote(url) else local_path(url)


@dataclass(frozen=True)
class StorageTarget:
    """A location (folder-like) in local or object storage.

    Args:
        url: Local path or fsspec URL.
        storage_options: fsspec options (e.g. ``endpoint_url``); kept out of ``repr``.
    """

    url: str
    """Normalised location (absolute path or URL without trailing slash)."""
    storage_options: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)
    """fsspec options for remote stores; never printed or written anywhere."""

    @classmethod
    def from_url(cls, url: str, storage_options: Mapping[str, Any] | None = None) -> StorageTarget:
        """Build a target from a user-given path or URL."""
        return cls(normalise_url(url), dict(storage_options or {}))

    @property
    def fs(self) -> fsspec.AbstractFileSystem:
        """The fsspec filesystem holding this target."""
        if not is_remote(self.url):
            return LocalFileSystem()
        fs, _ = fsspec.core.url_to_fs(self.url, **dict(self.storage_options))
        return fs

    @property
    def path(self) -> str:
        """The target's path inside its filesystem (no protocol)."""
        if not is_remote(self.url):
            return self.url
        _, path = fsspec.core.url_to_fs(self.url, **dict(self.storage_options))
        return str(path)

    def exists(self) -> bool:
        """Whether anything exists at this location."""
        return bool(self.fs.exists(self.path))

    def zarr_store(self, *, read_only: bool = False) -> Store:
        """A Zarr store rooted at this location."""
        if not is_remote(self.url):
            return zarr.storage.LocalStore(self.url, read_only=read_only)
        return zarr.storage.FsspecStore.from_url(
            self.url, storage_options=dict(self.storage_options), read_only=read_only
        )

    def remove(self) -> None:
        """Delete everything under this location (no error when absent)."""
        fs = self.fs
        if fs.exists(self.path):
            fs.rm(self.path, recursive=True)
