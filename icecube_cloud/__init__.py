"""icecube-cloud: cloud-native datacubes of ICEYE SAR time series (STAC in, Zarr out, dask in between)."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("icecube-cloud")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0+unknown"

__all__ = ["__version__"]
