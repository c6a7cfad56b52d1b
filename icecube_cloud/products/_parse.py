"""Parsing of the string values ICEYE writes into GDAL tags and HDF5 datasets.

Legacy GRD GeoTIFFs store every metadata field as a string: numbers, numpy-printed arrays
(``"[ 1.17e+04  1.0e+00]"``, nested, multi-line, string arrays ``"['a' 'b']"``), Python tuple and
dict reprs. This module turns them into JSON-able values (str, int, float, bool, None, lists, dicts)
without ever calling ``eval``.
"""

from __future__ import annotations

import ast
import math
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import numpy as np

_TOKEN = re.compile(r"""\[|\]|'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*"|\.\.\.|[^\s\[\],]+""")
_ELLIPSIS = "..."


def _number(token: str) -> int | float | None:
    """Parse one numeric token; non-finite floats become ``None`` (JSON has no NaN)."""
    try:
        return int(token)
    except ValueError:
        pass
    value = float(token)  # raises ValueError for non-numbers
    return value if math.isfinite(value) else None


def parse_numpy_array(text: str) -> tuple[list[Any], bool]:
    r"""Parse a numpy-printed (or Python list) array string into nested lists.

    Args:
        text: e.g. ``"[[1. 2.]\n [3. 4.]]"`` or ``"['2021-01-01' '2021-01-02']"``.

    Returns:
        The nested lists and whether the print was elided with ``...`` (values missing
        at the source; what is there is kept).

    Raises:
        ValueError: If ``text`` is not an array print.
    """
    tokens = _TOKEN.findall(text.strip())
    if not tokens or tokens[0] != "[":
        raise ValueError("not an array")
    truncated = False
    stack: list[list[Any]] = []
    result: list[Any] | None = None
    for token in tokens:
        if result is not None:
            raise ValueError("trailing characters after array")
        if token == "[":
            stack.append([])
        elif token == "]":
            if not stack:
                raise ValueError("unbalanced ']'")
            done = stack.pop()
            if stack:
                stack[-1].append(done)
            else:
                result = done
        elif not stack:
            raise ValueError("value outside brackets")
        elif token == _ELLIPSIS:
            truncated = True
        elif token[0] in "'\"":
            stack[-1].append(ast.literal_eval(token))
        else:
            stack[-1].append(_number(token))
    if result is None:
        raise ValueError("unbalanced '['")
    return result, truncated


def _jsonable(value: Any) -> Any:
    """Convert literal_eval output (tuples, sets, bytes, non-finite floats) to JSON-able values."""
    if isinstance(value, tuple | list | set | frozenset):
        return [_jsonable(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, complex):
        return [value.real, value.imag]
    return value


def parse_tag_value(text: str) -> tuple[Any, bool]:
    """Turn one GDAL tag string into a JSON-able value.

    Numbers become int/float, array prints become lists, tuple/dict/list reprs are read with
    :func:`ast.literal_eval`; anything else (timestamps, names, unparseable reprs) stays a string.

    Returns:
        The value and whether it came from an elided (truncated) array print.
    """
    stripped = text.strip()
    if not stripped:
        return text, False
    head = stripped[0]
    if head == "[":
        try:
            return parse_numpy_array(stripped)
        except (ValueError, SyntaxError):
            pass
    if head in "[({":
        try:
            return _jsonable(ast.literal_eval(stripped)), False
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            return text, False
    if head.isdigit() or head in "+-.":
        try:
            number = _number(stripped)
        except ValueError:
            return text, False
        return (text if number is None else number), False
    if stripped in ("True", "False"):
        return stripped == "True", False
    return text, False


def _short_floats(value: np.ndarray | np.generic) -> Any:
    """Floats narrower than float64 as the shortest decimals that read back to the same value.

    ``float32(1.006)`` is ``1.006``, not ``1.0060000419616699``: the value the file holds, as
    h5py and numpy print it, and half as many characters in the metadata JSON.
    """
    return np.asarray(value).astype(str).astype(np.float64).tolist()


def to_jsonable(value: Any) -> Any:
    """Convert an HDF5/numpy value (bytes, numpy scalars and arrays) to JSON-able Python values.

    Arrays keep their shape as nested lists (an ``(N, 1)`` dataset stays ``[[a], [b], ...]``).
    """
    if isinstance(value, np.ndarray | np.generic) and value.dtype.kind == "f":
        if value.dtype.itemsize < 8:
            return _jsonable(_short_floats(value))
        return _jsonable(value.tolist())
    if isinstance(value, np.ndarray):
        if value.dtype.kind in "SO":
            return [to_jsonable(v) for v in value.tolist()]
        return to_jsonable(value.tolist())
    if isinstance(value, np.generic):
        return to_jsonable(value.item())
    if isinstance(value, list | tuple):
        return [to_jsonable(v) for v in value]
    return _jsonable(value)


def parse_utc(value: Any, *, key: str) -> datetime:
    """Parse an ICEYE timestamp (with or without ``Z``; naive means UTC) to an aware datetime.

    Raises:
        ValueError: Naming ``key`` when the value is not an ISO 8601 timestamp.
    """
    if isinstance(value, bytes):
        value = value.decode()
    if not isinstance(value, str):
        raise ValueError(f"{key}: expected an ISO 8601 timestamp, got {value!r}")
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError as exc:
        raise ValueError(f"{key}: expected an ISO 8601 timestamp, got {value!r}") from exc
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
