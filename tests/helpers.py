"""Assertions shared by several test modules (importable because pytest puts tests/ on sys.path)."""

from __future__ import annotations

import json
from typing import Any


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


def assert_clean_metadata(metadata: Any) -> None:
    """Full product metadata is strict JSON, lower-case keys, no numpy-printed strings left."""
    json.dumps(metadata, allow_nan=False)
    assert all(k == k.lower() for k in metadata)
    leftovers = [s for s in _strings(metadata) if s.lstrip().startswith(("[", "(", "{"))]
    assert leftovers == []


PER_TIME_COORDS = (
    "acquisition_start",
    "acquisition_end",
    "incidence_angle",
    "orbit_state",
    "observation_direction",
    "polarization",
    "platform",
    "product_id",
    "calibration_factor",
    "valid",
    "metadata",
)
"""SPEC §6: the per-time coordinates every cube carries (the contract, written out independently)."""
