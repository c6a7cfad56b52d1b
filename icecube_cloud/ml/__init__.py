"""Training data from cubes (SPEC §6c): calibration, patches, leakage-free splits, predictions.

``calibrate`` and ``split_regions`` need only the base install; ``PatchDataset`` and
``predict_cube`` need PyTorch: ``pip install "icecube-cloud[ml]"`` (``torch==2.13.0``, the CPU build).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from icecube_cloud.ml.calibrate import calibrate
from icecube_cloud.ml.regions import Region, split_regions

if TYPE_CHECKING:
    from icecube_cloud.ml.dataset import PatchDataset
    from icecube_cloud.ml.predict import predict_cube

__all__ = ["PatchDataset", "Region", "calibrate", "predict_cube", "split_regions"]

_NEED_TORCH = {
    "PatchDataset": "icecube_cloud.ml.dataset",
    "predict_cube": "icecube_cloud.ml.predict",
}


def __getattr__(name: str) -> Any:
    """Import the PyTorch parts on first use, with a clear error when PyTorch is missing."""
    module = _NEED_TORCH.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    try:
        import torch  # noqa: F401
    except ImportError as err:
        from icecube_cloud.errors import UsageError

        raise UsageError(
            f"icecube_cloud.ml.{name} needs PyTorch: pip install 'icecube-cloud[ml]' "
            "(torch==2.13.0, CPU build)"
        ) from err
    import importlib

    return getattr(importlib.import_module(module), name)
