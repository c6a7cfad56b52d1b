"""Where bytes live: local paths and fsspec URLs (``s3://``, ``memory://``, ``file://``) behind one small type.

Targets are small frozen values that pickle cheaply to dask workers; each process builds its own
filesystem / Zarr store from them. Credentials live in :class:`StorageOptions`, resolved once on the
client (as s3fs/botocore would) so that they can be shipped to remote workers, and never printed: its
``repr``/``str`` (what dask logs for a failed task) shows which options are set, never their values.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import fsspec
import zarr
import zarr.storage
from fsspec.implementations.local import LocalFileSystem
from zarr.abc.store import Store


def is_parquet_url(url: str) -> bool:
    """Whether ``url`` names a kerchunk Parquet reference store (a ``*.parq`` folder)."""
    return url.rstrip("/").endswith(".parq")


def is_reference_url(url: str) -> bool:
    """Whether ``url`` names kerchunk references (JSON or Parquet) rather than a Zarr directory."""
    return url.rstrip("/").endswith(".json") or is_parquet_url(url)


def is_remote(url: str) -> bool:
    """Whether ``url`` names something other than a local file.

    Local: a plain path (absolute, relative or ``~``) or a ``file://`` URL; anything else with a
    ``scheme://`` (``s3://``, ``memory://``, ``https://``) is remote.
    """
    return "://" in url and not url.startswith("file://")


def public_url(url: str) -> str:
    """``url`` without user info (``http://user:secret@host`` -> ``http://host``).

    For messages, logs and attributes, which never carry credentials.
    """
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit(parts._replace(netloc=netloc))


def local_path(url: str) -> str:
    """Absolute local path of a plain path or ``file://`` URL (``~`` expanded, relative to the cwd).

    The path :func:`filesystem` gives for the same ``url``, so a file opened directly (``open``,
    ``os.stat``, ``np.memmap``, h5py, GDAL) is the one read through fsspec.
    """
    if url.startswith("file://"):
        url = url[len("file://") :]
    return os.path.abspath(os.path.expanduser(url))


def filesystem(
    url: str, storage_options: Mapping[str, Any] | None = None
) -> tuple[fsspec.AbstractFileSystem, str]:
    """The fsspec filesystem holding ``url`` and the path inside it (a local one: :func:`local_path`)."""
    if not is_remote(url):
        return LocalFileSystem(), local_path(url)
    fs, path = fsspec.core.url_to_fs(url, **dict(storage_options or {}))
    return fs, str(path)


def normalise_url(url: str) -> str:
    """Absolute local paths stay paths; remote URLs are returned unchanged (minus a trailing slash)."""
    return url.rstrip("/") if is_remote(url) else local_path(url)


_SECRET_FIELDS = ("key", "secret", "token")


@dataclass(frozen=True, repr=False)
class StorageOptions(Mapping[str, Any]):
    """fsspec/s3fs options that never print their credentials.

    A read-only mapping, so it goes wherever fsspec ``storage_options`` go (``url_to_fs(url, **opts)``),
    and a small frozen value that pickles to dask workers which do not share the client's environment.
    """

    endpoint_url: str | None = None
    """S3 endpoint override (``AWS_ENDPOINT_URL``); ``None`` for AWS itself."""
    key: str | None = None
    """Access key id; ``None`` lets each process resolve its own credentials."""
    secret: str | None = None
    """Secret access key."""
    token: str | None = None
    """Session token of temporary credentials."""
    extra: tuple[tuple[str, Any], ...] = ()
    """Any other fsspec options, as ``(name, value)`` pairs (values never printed either)."""

    def _options(self) -> dict[str, Any]:
        named = {
            "endpoint_url": self.endpoint_url,
            "key": self.key,
            "secret": self.secret,
            "token": self.token,
        }
        return {**{k: v for k, v in named.items() if v is not None}, **dict(self.extra)}

    def __getitem__(self, name: str) -> Any:
        return self._options()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._options())

    def __len__(self) -> int:
        return len(self._options())

    def __repr__(self) -> str:
        shown = [f"endpoint_url={self.endpoint_url!r}"] if self.endpoint_url else []
        shown += [f"{k}=<set>" for k in _SECRET_FIELDS if getattr(self, k) is not None]
        shown += [f"{k}=<set>" for k, _ in self.extra]
        return f"StorageOptions({', '.join(shown)})"

    __str__ = __repr__

    def __dask_tokenize__(self) -> object:
        """Deterministic token that does not contain the secret itself."""
        digest = hashlib.sha256(repr(sorted(self._options().items())).encode()).hexdigest()
        return ("StorageOptions", digest)

    @classmethod
    def of(cls, options: Mapping[str, Any] | None) -> StorageOptions:
        """Wrap plain fsspec options (``None``: no options); a :class:`StorageOptions` is returned as is."""
        if isinstance(options, StorageOptions):
            return options
        opts = dict(options or {})
        named = {k: opts.pop(k) for k in ("endpoint_url", *_SECRET_FIELDS) if k in opts}
        return cls(**named, extra=tuple(sorted(opts.items())))

    def gdal_config(self) -> dict[str, str]:
        """GDAL ``/vsis3/`` configuration equivalent to these options (credentials included)."""
        config: dict[str, str] = {}
        if self.endpoint_url:
            parts = urlsplit(self.endpoint_url)
            config["AWS_S3_ENDPOINT"] = parts.netloc
            config["AWS_HTTPS"] = "NO" if parts.scheme == "http" else "YES"
            config["AWS_VIRTUAL_HOSTING"] = "FALSE"
        if self.key and self.secret:
            config["AWS_ACCESS_KEY_ID"] = self.key
            config["AWS_SECRET_ACCESS_KEY"] = self.secret
            if self.token:
                config["AWS_SESSION_TOKEN"] = self.token
        return config


def storage_options_from_env(*, resolve_credentials: bool = True) -> StorageOptions:
    """Storage options from the environment, as s3fs/botocore read it.

    The endpoint comes from ``AWS_ENDPOINT_URL``; credentials are resolved through botocore's chain
    (environment, shared credentials/config files and profiles, container or instance roles) on this
    machine, so that workers that do not share our environment can use them.

    Args:
        resolve_credentials: Resolve and carry the credentials; ``False`` leaves that to each process.
    """
    endpoint = os.environ.get("AWS_ENDPOINT_URL") or None
    key = secret = token = None
    if resolve_credentials:
        import botocore.session  # type: ignore[import-untyped]

        credentials = botocore.session.get_session().get_credentials()
        if credentials is not None:
            frozen = credentials.get_frozen_credentials()
            key, secret, token = frozen.access_key, frozen.secret_key, frozen.token
    return StorageOptions(endpoint_url=endpoint, key=key, secret=secret, token=token or None)


@dataclass(frozen=True)
class StorageTarget:
    """A location (folder-like) in local or object storage.

    Args:
        url: Local path or fsspec URL.
        storage_options: fsspec options (e.g. ``endpoint_url``); kept out of ``repr``.
    """

    url: str
    """Normalised location (absolute path or URL without trailing slash)."""
    storage_options: Mapping[str, Any] = field(
        default_factory=StorageOptions, repr=False, compare=False
    )
    """fsspec options for remote stores; never printed or written anywhere."""

    @classmethod
    def from_url(cls, url: str, storage_options: Mapping[str, Any] | None = None) -> StorageTarget:
        """Build a target from a user-given path or URL."""
        return cls(normalise_url(url), StorageOptions.of(storage_options))

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
