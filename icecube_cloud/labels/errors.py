"""Typed errors of label ingest; each names the labels file, the product or the key at fault."""

from __future__ import annotations

from icecube_cloud.errors import DataError


class LabelError(DataError):
    """Labels cannot be read or registered (CLI exit code 1).

    Args:
        source: The labels file (path or URL) or mask at fault.
        reason: What is wrong, naming the entry, item or key.
    """

    def __init__(self, source: str, reason: str) -> None:
        self.source = source
        self.reason = reason
        super().__init__(f"{source}: {reason}")

    def __reduce__(self) -> tuple[type[LabelError], tuple[str, str]]:
        return (type(self), (self.source, self.reason))


class LabelFormatError(LabelError):
    """The labels file is unreadable, or holds an unknown label type, geometry or key."""


class UnknownProductError(LabelError):
    """Labels name (or intersect) no product of the catalog."""


class MaskShapeError(LabelError):
    """A segmentation mask does not have the shape of its product (azimuth, range)."""
