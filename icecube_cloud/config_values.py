"""Checks of JSON values that several config keys share; each error names its key (exit 2)."""

from __future__ import annotations

import math
from typing import Any

from icecube_cloud.errors import ConfigError


def describe(value: Any) -> str:
    """A value and its JSON-ish type, for error messages."""
    return f"{value!r} ({type(value).__name__})"


def parse_number(key: str, value: Any) -> float:
    """A finite number (a boolean is not one)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ConfigError(key, f"expected a finite number, got {describe(value)}")
    return float(value)


def parse_bbox(key: str, value: Any) -> tuple[float, float, float, float]:
    """A lon/lat box ``[west, south, east, north]`` that does not cross the antimeridian."""
    if not isinstance(value, list | tuple) or len(value) != 4:
        raise ConfigError(key, f"expected 4 numbers [west, south, east, north], got {value!r}")
    w, s, e, n = (parse_number(key, v) for v in value)
    if not (-180 <= w <= 180 and -180 <= e <= 180 and -90 <= s <= n <= 90):
        raise ConfigError(key, f"need lon in ±180, lat in ±90, south <= north: {value!r}")
    if w > e:
        raise ConfigError(key, f"west > east (antimeridian-crossing boxes unsupported): {value!r}")
    return (w, s, e, n)
