"""Direct chunk writes (``icecube_cloud.write.chunks``) store exactly what zarr itself stores.

For each codec and sample type the build uses, the same pixels are written once by
``zarr.Array.__setitem__`` and once by :func:`write_blocks`: the stored objects must be byte-identical,
edge chunks included, and chunks equal to the fill value must be absent (and removed when a slice is
rewritten with empty pixels).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zarr
import zarr.codecs

from icecube_cloud.write.chunks import ChunkEncoder, write_blocks

SHAPE, CHUNKS = (2, 100, 70), (1, 64, 32)  # edge chunks in both directions


def _objects(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != "zarr.json"
    }


def _array(path: Path, dtype: str, cname: str, shuffle: str) -> zarr.Array[Any]:
    return zarr.create_array(
        store=str(path),
        shape=SHAPE,
        chunks=CHUNKS,
        dtype=dtype,
        compressors=[zarr.codecs.BloscCodec(cname=cname, clevel=5, shuffle=shuffle)],
        zarr_format=3,
    )


def _pixels(dtype: str) -> np.ndarray:
    rng = np.random.default_rng(3)
    if dtype == "complex64":
        data = (rng.normal(size=SHAPE) + 1j * rng.normal(size=SHAPE)).astype(dtype)
    else:
        data = rng.integers(0, 3000, size=SHAPE).astype(dtype)
    data[0, :64, :32] = 0  # one chunk equal to the fill value: not stored
    return data


def _blocks(data: np.ndarray) -> list[tuple[tuple[int, ...], np.ndarray]]:
    out = []
    for t in range(SHAPE[0]):
        for i in range(0, SHAPE[1], CHUNKS[1]):
            for j in range(0, SHAPE[2], CHUNKS[2]):
                block = data[t, i : i + CHUNKS[1], j : j + CHUNKS[2]]
                out.append(((t, i // CHUNKS[1], j // CHUNKS[2]), block))
    return out


@pytest.mark.parametrize(
    ("dtype", "cname", "shuffle"),
    [
        ("uint16", "lz4", "bitshuffle"),
        ("uint16", "zstd", "shuffle"),
        ("complex64", "lz4", "bitshuffle"),
        ("float32", "zlib", "noshuffle"),
    ],
)
def test_same_bytes_as_zarr(tmp_path: Path, dtype: str, cname: str, shuffle: str) -> None:
    data = _pixels(dtype)
    theirs = _array(tmp_path / "zarr.zarr", dtype, cname, shuffle)
    theirs[:] = data
    ours = _array(tmp_path / "ours.zarr", dtype, cname, shuffle)
    encoder = ChunkEncoder.for_array(ours)
    assert encoder is not None
    write_blocks(ours, encoder, _blocks(data))

    stored = _objects(tmp_path / "ours.zarr")
    assert stored == _objects(tmp_path / "zarr.zarr")
    assert "c/0/0/0" not in stored and "c/1/0/0" in stored  # the empty chunk is absent
    np.testing.assert_array_equal(zarr.open_array(str(tmp_path / "ours.zarr"))[:], data)


def test_rewriting_with_empty_pixels_removes_the_old_chunks(tmp_path: Path) -> None:
    array = _array(tmp_path / "a.zarr", "uint16", "lz4", "bitshuffle")
    encoder = ChunkEncoder.for_array(array)
    write_blocks(array, encoder, _blocks(_pixels("uint16")))
    assert "c/1/0/0" in _objects(tmp_path / "a.zarr")
    write_blocks(array, encoder, [(c, np.zeros_like(b)) for c, b in _blocks(_pixels("uint16"))])
    assert _objects(tmp_path / "a.zarr") == {}
    assert not zarr.open_array(str(tmp_path / "a.zarr"))[:].any()


def test_other_codec_chains_are_left_to_zarr(tmp_path: Path) -> None:
    array = zarr.create_array(
        store=str(tmp_path / "z.zarr"),
        shape=SHAPE,
        chunks=CHUNKS,
        dtype="uint16",
        compressors=[zarr.codecs.ZstdCodec(level=1)],
        zarr_format=3,
    )
    assert ChunkEncoder.for_array(array) is None
    data = _pixels("uint16")
    write_blocks(array, None, _blocks(data))
    np.testing.assert_array_equal(array[:], data)
