"""Offline validation of STAC objects against a local mirror of the schemas (never online).

The mirror layout is ``<dir>/<HOST>/<PATH>`` for the document served at ``https://<HOST>/<PATH>``
(``../shared/stac-schemas``). ICEYE's own product-spec schema (``https://sar.iceye.com/...``) is not
mirrored: it is skipped and reported as such, never fetched.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pystac
from jsonschema.exceptions import ValidationError
from jsonschema.validators import Draft7Validator, validator_for
from referencing import Registry, Resource
from referencing.exceptions import NoSuchResource
from referencing.jsonschema import DRAFT7

log = logging.getLogger(__name__)

UNAVAILABLE_OFFLINE: tuple[str, ...] = ("https://sar.iceye.com/",)
"""Schema URL prefixes known to be absent from the mirror; skipped and reported, not errors."""

_CORE = {
    "Feature": "item-spec/json-schema/item.json",
    "Collection": "collection-spec/json-schema/collection.json",
    "Catalog": "catalog-spec/json-schema/catalog.json",
}


@dataclass(frozen=True)
class ValidationReport:
    """Outcome of validating one STAC object."""

    errors: tuple[str, ...]
    """One line per violation: ``[schema URL] at <json path>: <message>``."""
    skipped: tuple[str, ...]
    """Schema URLs not checked because they are not available offline."""

    @property
    def valid(self) -> bool:
        """True when no checked schema reported a violation."""
        return not self.errors


def _refuse(uri: str) -> Any:
    raise NoSuchResource(ref=uri)  # type: ignore[call-arg]


def _local_schemas(root: Path) -> Iterator[tuple[str, Any]]:
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if not path.is_file() or len(rel.parts) < 2 or "." not in rel.parts[0]:
            continue  # only <HOST>/... files
        contents = json.loads(path.read_text(encoding="utf-8"))
        keys = {f"https://{rel.as_posix()}", f"http://{rel.as_posix()}"}
        sid = contents.get("$id") if isinstance(contents, dict) else None
        if isinstance(sid, str) and sid.startswith("http"):
            keys |= {sid, sid.rstrip("#")}
        for key in keys:
            yield key, contents


@functools.lru_cache(maxsize=8)
def schema_registry(schema_dir: str | Path) -> Registry[Any]:
    """A registry over every schema in ``schema_dir``; unknown URIs fail instead of going online."""
    root = Path(schema_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"STAC schema folder not found: {root}")
    resources = [
        (uri, Resource.from_contents(contents, default_specification=DRAFT7))
        for uri, contents in _local_schemas(root)
    ]
    return Registry(retrieve=_refuse).with_resources(resources)  # type: ignore[call-arg]


def _deepest(err: ValidationError) -> ValidationError:
    leaves: list[ValidationError] = []
    todo = [err]
    while todo:
        e = todo.pop()
        if e.context:
            todo.extend(e.context)
        else:
            leaves.append(e)
    return max(leaves, key=lambda e: len(e.absolute_path))


def validate_stac(
    obj: Mapping[str, Any] | pystac.STACObject, schema_dir: str | Path
) -> ValidationReport:
    """Validate a STAC Item/Collection/Catalog against its core schema and declared extensions.

    Args:
        obj: A STAC object or its JSON dict.
        schema_dir: Root of the offline schema mirror.

    Returns:
        The report; schemas under :data:`UNAVAILABLE_OFFLINE` are listed as skipped.
    """
    data: Mapping[str, Any] = (
        obj.to_dict(include_self_link=False, transform_hrefs=False)
        if isinstance(obj, pystac.STACObject)
        else obj
    )
    registry = schema_registry(str(Path(schema_dir).resolve()))
    core = _CORE.get(str(data.get("type")))
    if core is None:
        return ValidationReport(errors=(f"unknown STAC type {data.get('type')!r}",), skipped=())
    uris = [f"https://schemas.stacspec.org/v{data.get('stac_version')}/{core}"]
    uris += [str(u) for u in data.get("stac_extensions", [])]
    errors: list[str] = []
    skipped: list[str] = []
    for uri in uris:
        if uri.startswith(UNAVAILABLE_OFFLINE):
            log.info("schema %s is not available offline; skipped", uri)
            skipped.append(uri)
            continue
        try:
            schema = registry.contents(uri)
        except (NoSuchResource, LookupError):
            errors.append(f"[{uri}] schema not found in the offline mirror {schema_dir}")
            continue
        cls = validator_for(schema, default=Draft7Validator)
        for err in cls(schema, registry=registry).iter_errors(data):
            leaf = _deepest(err)
            where = "/".join(map(str, leaf.absolute_path)) or "<root>"
            errors.append(f"[{uri}] at {where}: {leaf.message[:300]}")
    return ValidationReport(errors=tuple(errors), skipped=tuple(skipped))
