"""icecube-cloud: cloud-native datacubes of ICEYE SAR time series (STAC in, Zarr out, dask in between).

The public API is re-exported here and imported lazily, so ``import icecube_cloud`` stays cheap (the CLI
starts fast) while ``icecube_cloud.build_cube`` etc. work as expected.
"""

from __future__ import annotations

import importlib
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

try:
    __version__ = version("icecube-cloud")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0+unknown"

if TYPE_CHECKING:
    from icecube_cloud.build import build_cube, plan_cube
    from icecube_cloud.config import CubeConfig, load_config, parse_config
    from icecube_cloud.cube import cube_info, open_cube
    from icecube_cloud.export import ExportResult, export_cube, open_netcdf
    from icecube_cloud.ingest import ingest
    from icecube_cloud.plan import CubePlan
    from icecube_cloud.products import read_product
    from icecube_cloud.stac.items import product_to_item
    from icecube_cloud.write.executor import BuildResult

_EXPORTS = {
    "BuildResult": "icecube_cloud.write.executor",
    "build_cube": "icecube_cloud.build",
    "plan_cube": "icecube_cloud.build",
    "CubeConfig": "icecube_cloud.config",
    "load_config": "icecube_cloud.config",
    "parse_config": "icecube_cloud.config",
    "cube_info": "icecube_cloud.cube",
    "open_cube": "icecube_cloud.cube",
    "ExportResult": "icecube_cloud.export",
    "export_cube": "icecube_cloud.export",
    "open_netcdf": "icecube_cloud.export",
    "ingest": "icecube_cloud.ingest",
    "CubePlan": "icecube_cloud.plan",
    "read_product": "icecube_cloud.products",
    "product_to_item": "icecube_cloud.stac.items",
}

__all__ = [
    "BuildResult",
    "CubeConfig",
    "CubePlan",
    "ExportResult",
    "__version__",
    "build_cube",
    "cube_info",
    "export_cube",
    "ingest",
    "load_config",
    "open_cube",
    "open_netcdf",
    "parse_config",
    "plan_cube",
    "product_to_item",
    "read_product",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'icecube_cloud' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
