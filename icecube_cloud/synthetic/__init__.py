"""Generator of realistic synthetic ICEYE products of every flavour, with known pixels.

The field names and structure follow real ICEYE deliveries (legacy GRD tags, legacy SLC datasets,
COG sidecar items); values and pixels are generated deterministically from a :class:`SyntheticSpec`.
"""

from __future__ import annotations

from icecube_cloud.synthetic.cog import sidecar_item, to_shadows_down, write_cog
from icecube_cloud.synthetic.legacy import write_legacy_grd, write_legacy_slc
from icecube_cloud.synthetic.pixels import expected_pixels
from icecube_cloud.synthetic.spec import SyntheticSpec
from icecube_cloud.synthetic.stack import Flavour, make_stack, write_product

__all__ = [
    "Flavour",
    "SyntheticSpec",
    "expected_pixels",
    "make_stack",
    "sidecar_item",
    "to_shadows_down",
    "write_cog",
    "write_legacy_grd",
    "write_legacy_slc",
    "write_product",
]
