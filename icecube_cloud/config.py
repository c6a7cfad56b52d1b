"""The cube config (SPEC §4): validate a ``user_config.json`` and turn it into a STAC search.

Backward compatible with the original icecube config; every key is optional. Decisions where the
spec is silent are stated in the docstrings of the fields and parsers below.
"""

from __future__ import annotations

import copy
import difflib
import json
import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import Any

from icecube_cloud.config_values import describe, parse_bbox, parse_number
from icecube_cloud.errors import ConfigError, IgnoredConfigKeyWarning
from icecube_cloud.gridspec import parse_grid, slc_on_grid
from icecube_cloud.model import (
    BLOSC_NAMES,
    BLOSC_SHUFFLES,
    COLLECTION_OF_LEVEL,
    DEFAULT_CHUNK,
    Chunks,
    Compression,
    GridSpec,
    ProductLevel,
)
from icecube_cloud.stac.search import SearchParams, compile_filter
from icecube_cloud.storage import is_remote, local_path

ProductType = ProductLevel


@dataclass(frozen=True, kw_only=True)
class CubeConfig:
    """A validated cube config. Build it with :func:`parse_config` or :func:`load_config`."""

    start_date: date | None = None
    """First UTC day (inclusive) on which an image's acquisition end may fall."""
    end_date: date | None = None
    """Last UTC day (inclusive) on which an image's acquisition end may fall."""
    min_incidence_angle: float | None = None
    """Inclusive lower bound on ``view:incidence_angle``, degrees."""
    max_incidence_angle: float | None = None
    """Inclusive upper bound on ``view:incidence_angle``, degrees."""
    temporal_resolution: int = 0
    """0: one slice per image; N > 0: bins of N days, each keeping its earliest image."""
    temporal_overlap: bool = True
    """With resolution 0: ``False`` keeps only the latest image of each UTC day."""
    coregistered: bool = True
    """icecube key; always true (cubes are built from coregistered stacks)."""
    space_overlap: bool | None = None
    """icecube key; accepted and ignored (kept only so the config round-trips)."""
    collections: tuple[str, ...] | None = None
    """Collection ids to search; ``None`` = derived from ``product_type`` (or both ICEYE ones)."""
    product_type: ProductType | None = None
    """``"GRD"`` or ``"SLC"``; also keeps only images of that level when the search returns both."""
    bbox: tuple[float, float, float, float] | None = None
    """lon/lat bounding box (west, south, east, north); exclusive with ``intersects``."""
    intersects: Mapping[str, Any] | None = None
    """GeoJSON geometry (lon/lat) the footprints must intersect."""
    filter: Mapping[str, Any] | None = None
    """CQL2-JSON filter expression (CQL2-text input is converted to JSON)."""
    labels: str | bool = False
    """Label collection id, ``True`` (labels linked to the products), or ``False`` (no labels)."""
    chunks: Chunks | None = None
    """Chunk sizes (what readers decode); ``None`` lets the planner decide."""
    shards: Chunks | None = None
    """Shard sizes (Zarr v3 sharding: each stored object holds whole chunks, indexed); ``None``: one
    object per chunk."""
    compression: Compression | None = None
    """Codec of the pixel variable; ``None``: the default :class:`Compression`."""
    grid: GridSpec | None = None
    """A map-geometry cube's grid (SPEC §6b); ``None``: a cube in SAR geometry."""
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)
    """The config exactly as given (for provenance)."""

    def to_dict(self) -> dict[str, Any]:
        """Canonical JSON-able form (only keys that differ from the default); round-trips."""
        out: dict[str, Any] = {}
        if self.start_date is not None:
            out["start_date"] = self.start_date.isoformat()
        if self.end_date is not None:
            out["end_date"] = self.end_date.isoformat()
        if self.min_incidence_angle is not None:
            out["min_incidence_angle"] = self.min_incidence_angle
        if self.max_incidence_angle is not None:
            out["max_incidence_angle"] = self.max_incidence_angle
        out["temporal_resolution"] = self.temporal_resolution
        out["temporal_overlap"] = self.temporal_overlap
        out["coregistered"] = self.coregistered
        if self.space_overlap is not None:
            out["space_overlap"] = self.space_overlap
        if self.collections is not None:
            out["collections"] = list(self.collections)
        if self.product_type is not None:
            out["product_type"] = self.product_type
        if self.bbox is not None:
            out["bbox"] = list(self.bbox)
        if self.intersects is not None:
            out["intersects"] = copy.deepcopy(dict(self.intersects))
        if self.filter is not None:
            out["filter"] = copy.deepcopy(dict(self.filter))
        if self.labels is not False:
            out["labels"] = self.labels
        if self.chunks is not None:
            out["chunks"] = self.chunks.to_dict()
        if self.shards is not None:
            out["shards"] = self.shards.to_dict()
        if self.compression is not None:
            out["compression"] = self.compression.to_dict()
        if self.grid is not None:
            out["grid"] = self.grid.to_dict()
        return out


# --------------------------------------------------------------------------------------------------
# Field parsers: each takes the key and the raw value and raises ConfigError(key, reason).


def _parse_date(key: str, value: Any) -> date:
    """``YYYYMMDD`` int or string, ISO date, or ISO datetime (its UTC day; naive = UTC)."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ConfigError(key, f"expected a date (YYYYMMDD or ISO 8601), got {describe(value)}")
    text = str(value).strip()
    try:
        if len(text) == 8 and text.isdigit():
            return datetime.strptime(text, "%Y%m%d").date()
        if isinstance(value, str) and len(text) == 10:
            return date.fromisoformat(text)
        if isinstance(value, str):
            dt = datetime.fromisoformat(text.replace("z", "Z"))
            return (dt.astimezone(UTC) if dt.tzinfo else dt).date()
    except ValueError as exc:
        raise ConfigError(key, f"{value!r} is not a valid date: {exc}") from None
    raise ConfigError(key, f"expected a date (YYYYMMDD or ISO 8601), got {describe(value)}")


def _parse_angle(key: str, value: Any) -> float:
    angle = parse_number(key, value)
    if not 0.0 <= angle <= 90.0:
        raise ConfigError(key, f"an incidence angle is in degrees between 0 and 90, got {value!r}")
    return angle


def _parse_bool(key: str, value: Any) -> bool:
    """JSON booleans, and the integers 0/1 that the original icecube sample configs use."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    hint = " (a string is not a boolean: write true or false without quotes)"
    hint = hint if isinstance(value, str) else ""
    raise ConfigError(key, f"expected true or false, got {describe(value)}{hint}")


def _parse_resolution(key: str, value: Any) -> int:
    """Integer days >= 0; an integral float (``1.0``) is accepted as JSON Schema does."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(key, f"expected an integer number of days >= 0, got {describe(value)}")
    if isinstance(value, float) and not (math.isfinite(value) and value.is_integer()):
        raise ConfigError(key, f"must be a whole number of days, got {value!r}")
    if value < 0:
        raise ConfigError(key, f"must be >= 0 days, got {value!r}")
    return int(value)


_NOT_GEOMETRY = (None, "Feature", "FeatureCollection")


def _parse_positive_int(key: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigError(key, f"expected an integer > 0, got {describe(value)}")
    return int(value)


def _parse_collections(key: str, value: Any) -> tuple[str, ...]:
    if not isinstance(value, list | tuple) or not value:
        raise ConfigError(key, f"expected a non-empty list of collection ids, got {value!r}")
    for v in value:
        if not isinstance(v, str) or not v:
            raise ConfigError(key, f"collection ids are non-empty strings, got {describe(v)}")
    return tuple(value)


def _parse_product_type(key: str, value: Any) -> ProductType:
    if isinstance(value, str) and value.strip().upper() in ("GRD", "SLC"):
        return "GRD" if value.strip().upper() == "GRD" else "SLC"
    raise ConfigError(key, f'expected "GRD" or "SLC", got {describe(value)}')


def _parse_geometry(key: str, value: Any) -> dict[str, Any]:
    import shapely.geometry
    from shapely.validation import explain_validity

    if not isinstance(value, Mapping) or value.get("type") in _NOT_GEOMETRY:
        raise ConfigError(key, f"expected a GeoJSON geometry object, got {value!r:.200}")
    try:
        geom = shapely.geometry.shape(dict(value))
    except Exception as exc:
        raise ConfigError(key, f"not a valid GeoJSON geometry: {exc}") from None
    if geom.is_empty or not geom.is_valid:
        raise ConfigError(key, f"not a valid geometry: {explain_validity(geom)}")
    return copy.deepcopy(dict(value))


def _parse_filter(key: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, Mapping | str):
        raise ConfigError(key, f"expected a CQL2-JSON object, got {describe(value)}")
    return compile_filter(value)


def _parse_labels(key: str, value: Any) -> str | bool:
    if isinstance(value, bool) or (isinstance(value, str) and value):
        return value
    raise ConfigError(key, f"expected a label collection id or true/false, got {describe(value)}")


def _parse_chunks(key: str, value: Any) -> Chunks:
    if not isinstance(value, Mapping):
        raise ConfigError(key, f'expected {{"azimuth": n, "range": n}}, got {describe(value)}')
    unknown = set(value) - {"azimuth", "range", "time"}
    if unknown:
        raise ConfigError(key, f"unknown dimension(s) {sorted(unknown)}; use azimuth, range, time")
    missing = {"azimuth", "range"} - set(value)
    if missing:
        raise ConfigError(key, f"missing {sorted(missing)} (both azimuth and range are required)")
    time_ = value.get("time")
    if time_ is not None and _parse_positive_int(f"{key}.time", time_) != 1:
        raise ConfigError(
            f"{key}.time", f"a {key[:-1]} holds one image along time; expected 1, got {time_!r}"
        )
    return Chunks(
        azimuth=_parse_positive_int(f"{key}.azimuth", value["azimuth"]),
        range=_parse_positive_int(f"{key}.range", value["range"]),
        time=None if time_ is None else 1,
    )


def _parse_compression(key: str, value: Any) -> Compression:
    if not isinstance(value, Mapping):
        raise ConfigError(
            key, f'expected {{"cname": ..., "clevel": n, "shuffle": ...}}, got {describe(value)}'
        )
    unknown = set(value) - {"cname", "clevel", "shuffle"}
    if unknown:
        raise ConfigError(key, f"unknown field(s) {sorted(unknown)}; use cname, clevel, shuffle")
    default = Compression()
    cname = value.get("cname", default.cname)
    if cname not in BLOSC_NAMES:
        raise ConfigError(
            f"{key}.cname", f"expected one of {list(BLOSC_NAMES)}, got {describe(cname)}"
        )
    shuffle = value.get("shuffle", default.shuffle)
    if shuffle not in BLOSC_SHUFFLES:
        raise ConfigError(
            f"{key}.shuffle", f"expected one of {list(BLOSC_SHUFFLES)}, got {describe(shuffle)}"
        )
    clevel = value.get("clevel", default.clevel)
    if isinstance(clevel, bool) or not isinstance(clevel, int) or not 0 <= clevel <= 9:
        raise ConfigError(
            f"{key}.clevel", f"expected an integer from 0 to 9, got {describe(clevel)}"
        )
    return Compression(cname=cname, clevel=clevel, shuffle=shuffle)


_PARSERS: dict[str, Any] = {
    "start_date": _parse_date,
    "end_date": _parse_date,
    "min_incidence_angle": _parse_angle,
    "max_incidence_angle": _parse_angle,
    "temporal_resolution": _parse_resolution,
    "temporal_overlap": _parse_bool,
    "coregistered": _parse_bool,
    "space_overlap": _parse_bool,
    "collections": _parse_collections,
    "product_type": _parse_product_type,
    "bbox": parse_bbox,
    "intersects": _parse_geometry,
    "filter": _parse_filter,
    "labels": _parse_labels,
    "chunks": _parse_chunks,
    "shards": _parse_chunks,
    "compression": _parse_compression,
    "grid": parse_grid,
}

CONFIG_KEYS: tuple[str, ...] = tuple(_PARSERS)
"""Every valid config key."""


def _check_shards(shards: Chunks, chunks: Chunks | None) -> None:
    """A shard holds whole chunks: each shard edge is a multiple of the chunk edge."""
    for dim in ("azimuth", "range"):
        edge = chunks[dim] if chunks is not None else DEFAULT_CHUNK
        if shards[dim] % edge:
            default = "" if chunks is not None else " (the default; set chunks to change it)"
            raise ConfigError(
                f"shards.{dim}",
                f"a shard holds whole chunks: {shards[dim]} is not a multiple of the chunk edge "
                f"{edge}{default}",
            )


def _check_map_cube(values: Mapping[str, Any]) -> None:
    """What a map-geometry cube cannot hold: SLC products (their phase must not be interpolated)."""
    if values.get("product_type") == "SLC":
        raise slc_on_grid()  # early; build.py checks the selection's own level too


def parse_config(obj: Mapping[str, Any]) -> CubeConfig:
    """Validate a config mapping (the parsed JSON).

    Args:
        obj: The config as read from JSON; every key is optional.

    Returns:
        The validated config.

    Raises:
        ConfigError: A key is unknown or a value is wrong; the error names the key and the reason.
    """
    if not isinstance(obj, Mapping):
        raise ConfigError(None, f"expected a JSON object, got {describe(obj)}")
    for key in obj:
        if key not in _PARSERS:
            close = difflib.get_close_matches(str(key), CONFIG_KEYS, n=1)
            valid = ", ".join(CONFIG_KEYS)
            hint = f"did you mean {close[0]!r}?" if close else f"valid keys: {valid}"
            raise ConfigError(str(key), f"unknown key; {hint}")
    values = {key: _PARSERS[key](key, value) for key, value in obj.items() if value is not None}
    if values.get("coregistered") is False and "grid" not in values:
        raise ConfigError(
            "coregistered",
            "must be true for a cube in SAR geometry (built from a coregistered stack); for "
            "products that are not coregistered, add a map grid (config key 'grid')",
        )
    if "grid" in values:
        _check_map_cube(values)
    if "shards" in values:
        _check_shards(values["shards"], values.get("chunks"))
    if "space_overlap" in values:
        warnings.warn(
            "config key 'space_overlap' is accepted for icecube compatibility and ignored",
            IgnoredConfigKeyWarning,
            stacklevel=2,
        )
    start, end = values.get("start_date"), values.get("end_date")
    if start is not None and end is not None and end < start:
        raise ConfigError("end_date", f"end_date {end} is before start_date {start}")
    lo, hi = values.get("min_incidence_angle"), values.get("max_incidence_angle")
    if lo is not None and hi is not None and lo > hi:
        raise ConfigError(
            "min_incidence_angle", f"min_incidence_angle {lo} is above max_incidence_angle {hi}"
        )
    if "bbox" in values and "intersects" in values:
        raise ConfigError("intersects", "give either bbox or intersects, not both (STAC API rule)")
    return CubeConfig(**values, raw=copy.deepcopy(dict(obj)))


def load_config(path_or_url: str) -> CubeConfig:
    """Read and validate a JSON config from a local path or an fsspec URL.

    Raises:
        ConfigError: The file cannot be read, is not JSON, or holds an invalid config.
    """
    try:
        if is_remote(path_or_url):
            import fsspec

            with fsspec.open(path_or_url, "rt", encoding="utf-8") as f:
                text = f.read()
        else:
            text = Path(local_path(path_or_url)).read_text(encoding="utf-8")
    except (OSError, ImportError, ValueError) as exc:
        raise ConfigError(None, f"cannot read config file {path_or_url}: {exc}") from None
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(None, f"config file {path_or_url} is not valid JSON: {exc}") from None
    if not isinstance(obj, dict):
        kind = type(obj).__name__
        raise ConfigError(None, f"config file {path_or_url} must hold a JSON object, got {kind}")
    return parse_config(obj)


def search_params(cfg: CubeConfig) -> SearchParams:
    """The STAC search a config asks for (rules a search cannot express run later, in selection)."""
    collections = cfg.collections
    if collections is None:
        # Only ICEYE product collections: a catalog also holds cubes, labels and other data.
        collections = (
            (COLLECTION_OF_LEVEL[cfg.product_type],)
            if cfg.product_type is not None
            else tuple(COLLECTION_OF_LEVEL.values())
        )
    interval = None
    if cfg.start_date is not None or cfg.end_date is not None:
        interval = (
            None if cfg.start_date is None else datetime.combine(cfg.start_date, time.min, UTC),
            None if cfg.end_date is None else datetime.combine(cfg.end_date, time.max, UTC),
        )
    query = None
    if cfg.min_incidence_angle is not None or cfg.max_incidence_angle is not None:
        ops: dict[str, float] = {}
        if cfg.min_incidence_angle is not None:
            ops["gte"] = cfg.min_incidence_angle
        if cfg.max_incidence_angle is not None:
            ops["lte"] = cfg.max_incidence_angle
        query = {"view:incidence_angle": ops}
    return SearchParams(
        collections=collections,
        datetime=interval,
        bbox=cfg.bbox,
        intersects=cfg.intersects,
        query=query,
        filter=cfg.filter,
    )
