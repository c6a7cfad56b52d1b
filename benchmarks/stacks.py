"""Benchmark inputs: synthetic ICEYE stacks of a given size, catalogued locally or in S3 (moto).

Generation is never measured. A stack spreads its ``n`` images over ``3 n`` days, one per UTC day, so
a build with ``temporal_resolution=1`` has ``2 n`` gap slices besides the ``n`` images.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import fsspec

from icecube_cloud.ingest import ingest
from icecube_cloud.products import find_products
from icecube_cloud.storage import StorageOptions
from icecube_cloud.synthetic import Flavour, make_stack

Kind = Literal["grd", "slc"]
Size = Literal["tiny", "small", "large"]

START = datetime(2023, 1, 1, 9, 0, tzinfo=UTC)


@dataclass(frozen=True)
class StackSize:
    """Shape of one benchmark stack."""

    n: int
    """Number of images."""
    shape: tuple[int, int]
    """(azimuth, range) of every image."""


SIZES: dict[Size, dict[Kind, StackSize]] = {
    # smoke test: seconds
    "tiny": {"grd": StackSize(3, (256, 256)), "slc": StackSize(3, (256, 256))},
    # 32 MiB of pixels each
    "small": {"grd": StackSize(4, (2048, 2048)), "slc": StackSize(4, (1024, 1024))},
    # 1 GiB of pixels each (uint16 GRD: 2 B/px; complex64 SLC: 8 B/px)
    "large": {"grd": StackSize(8, (8192, 8192)), "slc": StackSize(8, (4096, 4096))},
}

FLAVOURS: dict[Kind, Flavour] = {"grd": "legacy-grd", "slc": "slc-cog"}
"""Source format per kind: the legacy GeoTIFF GRD of ICEYE stacks, the current SLC COG (2 bands)."""

ITEMSIZE: dict[Kind, int] = {"grd": 2, "slc": 8}
"""Bytes per cube pixel (uint16 amplitude; complex64 = 2 float32 source bands)."""


@dataclass(frozen=True)
class Stack:
    """A generated, catalogued stack."""

    kind: Kind
    flavour: Flavour
    size: StackSize
    files: tuple[str, ...]
    """Data files (local paths or ``s3://`` URLs), time order."""
    catalog: str
    """Static catalog folder holding the stack's items."""

    @property
    def nbytes(self) -> int:
        """Pixel bytes of the cube built from all images."""
        az, rg = self.size.shape
        return self.size.n * az * rg * ITEMSIZE[self.kind]


def generate(folder: Path, kind: Kind, size: StackSize, flavour: Flavour | None = None) -> Path:
    """Write the products of one stack into ``folder/products``; returns that folder."""
    out = folder / "products"
    make_stack(
        out,
        n=size.n,
        shape=size.shape,
        start=START,
        days=3 * size.n,
        flavour=flavour or FLAVOURS[kind],
        seed=7,
    )
    return out


def catalogue(
    products: Path,
    workdir: Path,
    kind: Kind,
    size: StackSize,
    *,
    s3_prefix: str | None = None,
    storage_options: StorageOptions | None = None,
    flavour: Flavour | None = None,
) -> Stack:
    """Ingest ``products`` (uploaded to ``s3_prefix`` first when given) into a fresh static catalog."""
    source = str(products)
    if s3_prefix is not None:
        fs = fsspec.filesystem("s3", **dict(storage_options or {}))
        fs.put(f"{products}/", f"{s3_prefix}/", recursive=True)
        source = s3_prefix
    catalog = workdir / f"catalog-{kind}-{'s3' if s3_prefix else 'local'}"
    shutil.rmtree(catalog, ignore_errors=True)
    ingest([source], str(catalog), storage_options=storage_options)
    files = sorted(find_products(source, storage_options=storage_options))
    return Stack(kind, flavour or FLAVOURS[kind], size, tuple(files), str(catalog))
