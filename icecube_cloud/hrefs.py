"""Which asset hrefs a build may read: catalogs are input, and input is not trusted.

A STAC API (or a static catalog in a bucket) could hand us ``file:///etc/passwd`` or an internal
``http://169.254.169.254/...`` URL as a product's data asset. A build only reads hrefs inside the allowed
locations: by default the catalog's own storage (local files only for a catalog on local disk) and object
storage (``s3://``, reached with the user's own credentials), plus any prefixes the user allows
explicitly (``--allow-href`` / ``ICECUBE_ALLOWED_HREFS``, comma separated).
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Iterable
from dataclasses import dataclass

from icecube_cloud.errors import CatalogError
from icecube_cloud.storage import is_remote, local_path

ENV_ALLOWED = "ICECUBE_ALLOWED_HREFS"
OBJECT_STORE_SCHEMES = ("s3://",)
"""Object storage reached with the user's own credentials: allowed by default."""


def _normalise(href: str) -> str:
    if is_remote(href):
        scheme, rest = href.split("://", 1)
        return f"{scheme.lower()}://{posixpath.normpath('/' + rest).lstrip('/')}"
    return os.path.normpath(local_path(href))


@dataclass(frozen=True)
class HrefPolicy:
    """Allowed locations for asset hrefs."""

    prefixes: tuple[str, ...] = ()
    """Normalised location prefixes (paths or URLs) that are always allowed."""
    local_files: bool = False
    """Whether any local file may be read (only for catalogs on local disk)."""
    object_storage: bool = True
    """Whether ``s3://`` objects may be read."""

    @classmethod
    def for_catalog(cls, catalog_url: str, allowed: Iterable[str] = ()) -> HrefPolicy:
        """The default policy for a catalog, extended by ``allowed`` and ``ICECUBE_ALLOWED_HREFS``."""
        extra = [p for p in os.environ.get(ENV_ALLOWED, "").split(",") if p.strip()]
        prefixes = tuple(_normalise(p.strip()) for p in (*allowed, *extra))
        api = catalog_url.startswith(("http://", "https://"))
        return cls(prefixes=prefixes, local_files=not api and not is_remote(catalog_url))

    def allows(self, href: str) -> bool:
        """Whether ``href`` may be read."""
        norm = _normalise(href)
        if any(norm == p or norm.startswith(p.rstrip("/") + "/") for p in self.prefixes):
            return True
        if is_remote(href):
            return self.object_storage and norm.startswith(OBJECT_STORE_SCHEMES)
        return self.local_files

    def check(self, href: str, item_id: str) -> None:
        """Raise :class:`CatalogError` naming the item if ``href`` is outside the allowed locations."""
        if not self.allows(href):
            where = "local files" if self.local_files else "no local files"
            raise CatalogError(
                f"item {item_id!r}: asset href {href!r} is outside the allowed locations "
                f"({where}; object storage: {'yes' if self.object_storage else 'no'}; "
                f"prefixes: {list(self.prefixes) or 'none'}); allow it explicitly with "
                f"--allow-href PREFIX or {ENV_ALLOWED} if you trust this catalog"
            )
