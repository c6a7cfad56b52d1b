"""Generator of realistic synthetic ICEYE products of every flavour, with known pixels.

The field names and structure follow real ICEYE deliveries (legacy GRD tags, legacy SLC datasets,
COG sidecar items); values and pixels are generated deterministically from a :class:`SyntheticSpec`.
"""

from __future__ import annotations

from icecube_cloud.synthetic.cog import sidecar_item, to_shadows_down, write_cog
from icecube_cloud.synthetic.legacy import write_legacy_grd, write_legacy_slc
from icecube_cloud.synthetic.pixels import expected_pixels
from icecube_cloud.synthetic.spec import SceneTargets, SyntheticSpec
from icecube_cloud.synthetic.stack import Flavour, make_stack, stack_specs, write_product
from icecube_cloud.synthetic.targets import (
    CLASSES,
    SceneObject,
    present_objects,
    scene_objects,
    truth_mask,
)
from icecube_cloud.synthetic.training import (
    LabelKind,
    TrainingStack,
    geojson_labels,
    icecube_entry,
    make_training_stack,
    write_mask,
)

__all__ = [
    "CLASSES",
    "Flavour",
    "LabelKind",
    "SceneObject",
    "SceneTargets",
    "SyntheticSpec",
    "TrainingStack",
    "expected_pixels",
    "geojson_labels",
    "icecube_entry",
    "make_stack",
    "make_training_stack",
    "present_objects",
    "scene_objects",
    "sidecar_item",
    "stack_specs",
    "to_shadows_down",
    "truth_mask",
    "write_cog",
    "write_legacy_grd",
    "write_legacy_slc",
    "write_mask",
    "write_product",
]
