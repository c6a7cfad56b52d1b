"""A build lease on the output: one writer per cube at a time, enforced by the storage itself.

The lease is one small object, ``<cube>/_icecube/lease.json``, created with an exclusive write (``O_EXCL``
locally, ``If-None-Match: *`` on S3) so that of two builds starting together exactly one wins. A lease
expires (a crashed build must not block the cube forever); an expired lease is taken over with a
conditional replace (``If-Match`` on its ETag on S3), so two builds cannot both take it over.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import socket
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from icecube_cloud.errors import IcecubeError
from icecube_cloud.storage import StorageTarget, is_remote
from icecube_cloud.write.journal import LEASE_KEY

log = logging.getLogger(__name__)

DEFAULT_TTL = timedelta(hours=6)
"""How long a lease lives without renewal: longer than any sane single build."""


class LeaseHeldError(IcecubeError):
    """Another build holds the output's lease."""


@dataclass(frozen=True)
class Lease:
    """A held lease; release it when the build ends (also on failure)."""

    target: StorageTarget
    owner: str

    @property
    def path(self) -> str:
        """Path of the lease object in its filesystem."""
        return f"{self.target.path}/{LEASE_KEY}"

    def release(self) -> None:
        """Give the lease up (only if it is still ours)."""
        current = _read(self.target, self.path)
        if current is not None and current[0].get("owner") == self.owner:
            self.target.fs.rm_file(self.path)


def _read(target: StorageTarget, path: str) -> tuple[dict[str, Any], str | None] | None:
    """The lease document and its ETag (``None`` when there is no lease)."""
    fs = target.fs
    try:
        data = json.loads(fs.cat_file(path))
    except FileNotFoundError:
        return None
    etag = None
    if is_remote(target.url):
        etag = fs.info(path).get("ETag")
    return data, etag


def _create(target: StorageTarget, path: str, body: bytes, etag: str | None = None) -> bool:
    """Write ``body`` only if no lease exists (or, with ``etag``, only if it is unchanged)."""
    fs = target.fs
    if not is_remote(target.url):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        if etag is not None:  # local takeover: remove the expired lease, then race on O_EXCL
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "wb") as handle:
            handle.write(body)
        return True
    try:
        if etag is None:
            fs.pipe_file(path, body, mode="create")
        else:
            fs.pipe_file(path, body, IfMatch=etag)
    except (FileExistsError, OSError) as err:
        if (
            isinstance(err, FileExistsError)
            or err.errno == errno.EINVAL
            or "Precondition" in str(err)
        ):
            return False
        raise
    return True


def acquire(target: StorageTarget, *, ttl: timedelta = DEFAULT_TTL) -> Lease:
    """Take the output's lease, or fail clearly if another live build holds it.

    Raises:
        LeaseHeldError: Another build holds an unexpired lease (names its owner and expiry).
    """
    owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    now = datetime.now(UTC)
    body = json.dumps(
        {"owner": owner, "acquired": now.isoformat(), "expires": (now + ttl).isoformat()}
    ).encode()
    lease = Lease(target, owner)
    if _create(target, lease.path, body):
        return lease
    current = _read(target, lease.path)
    if current is None:  # released meanwhile: one more try
        if _create(target, lease.path, body):
            return lease
        current = _read(target, lease.path)
    data, etag = current if current is not None else ({}, None)
    expires = datetime.fromisoformat(str(data.get("expires", now.isoformat())))
    if expires <= now:
        log.warning("taking over the expired lease of %s (owner %s)", target.url, data.get("owner"))
        if _create(target, lease.path, body, etag=etag or "expired"):
            return lease
    raise LeaseHeldError(
        f"{target.url} is being built by another process ({data.get('owner', '?')}, lease until "
        f"{data.get('expires', '?')}); wait for it to finish, or rerun after the lease expires"
    )
