"""Typed errors and warnings of icecube-cloud.

Every error names what is wrong (the file, the STAC item or the config key) and carries the exit code the
CLI maps it to: 2 for bad usage or configuration, 1 for data or runtime problems (SPEC §5).
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
R = TypeVar("R")


class IcecubeError(Exception):
    """Base class of every error raised on purpose by icecube-cloud."""

    exit_code: int = 1


class ConfigError(IcecubeError):
    """The cube config (or a CLI argument) is invalid.

    Args:
        key: The offending config key (``None`` when the config as a whole is wrong).
        reason: What was expected, in words a user understands.
    """

    exit_code = 2

    def __init__(self, key: str | None, reason: str) -> None:
        self.key = key
        self.reason = reason
        super().__init__(f"config key {key!r}: {reason}" if key else f"config: {reason}")

    def __reduce__(self) -> tuple[type[ConfigError], tuple[str | None, str]]:
        return (type(self), (self.key, self.reason))


class DataError(IcecubeError):
    """The data (products, items, catalog content) cannot make a correct cube."""


class ProductError(DataError):
    """A product file cannot be read or lacks required metadata.

    Args:
        path: The file (path or URL) at fault.
        reason: What is wrong with it.
    """

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"{path}: {reason}")

    def __reduce__(self) -> tuple[type[ProductError], tuple[str, str]]:
        # Errors cross process boundaries (dask workers -> client); keep them reconstructible.
        return (type(self), (self.path, self.reason))


class CatalogError(DataError):
    """A STAC catalog cannot be read or written, or holds an unusable item."""


class SelectionError(DataError):
    """The selected images cannot form a cube (e.g. two images share one time)."""


class EmptySelectionError(SelectionError):
    """The search returned no usable image."""


class ShapeMismatchError(SelectionError):
    """The selected images do not all have the same shape (they are not coregistered).

    Args:
        shapes: Item id -> (azimuth, range) shape of every selected image.
    """

    def __init__(self, shapes: dict[str, tuple[int, int]]) -> None:
        self.shapes = dict(shapes)
        groups: dict[tuple[int, int], list[str]] = {}
        for item_id, shape in shapes.items():
            groups.setdefault(shape, []).append(item_id)
        lines = [f"  {s[0]}x{s[1]}: {', '.join(sorted(ids))}" for s, ids in sorted(groups.items())]
        super().__init__(
            "the selected images have different shapes (azimuth x range); a cube needs a "
            "coregistered stack:\n" + "\n".join(lines)
        )

    def __reduce__(self) -> tuple[type[ShapeMismatchError], tuple[dict[str, tuple[int, int]]]]:
        return (type(self), (self.shapes,))


class BuildError(IcecubeError):
    """A cube build failed while reading sources or writing chunks."""


class IcecubeWarning(UserWarning):
    """Base class of icecube-cloud warnings."""


class IgnoredConfigKeyWarning(IcecubeWarning):
    """A config key from the original icecube that is accepted but has no effect."""


class UsageError(IcecubeError):
    """The command was asked for something it cannot do as given (e.g. an output that exists)."""

    exit_code = 2


def portable_errors(fn: Callable[P, R]) -> Callable[P, R]:
    """Make a worker task's icecube errors arrive intact at the client.

    dask ships a task's exception together with its chain of causes; a cause from a C library (GDAL,
    HDF5) may not survive that trip, and dask then downgrades the whole error to a bare ``Exception``.
    The message of our errors already names the file and the reason, so the chain is dropped here.
    """

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except IcecubeError as err:
            detached = copy.copy(err)
            # copy may go through dask's tblib copyreg hook, which carries the chain along: cut it.
            detached.__cause__ = detached.__context__ = None
            detached.__traceback__ = None
        raise detached from None

    return wrapper
