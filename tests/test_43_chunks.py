"""Direct chunk writes (``icecube_cloud.write.chunks``) store exactly what zarr itself stores.

For each codec and sample type the build uses, the same pixels are written once by
``zarr.Array.__setitem__`` and once by :func:`write_blocks` (through the zarr-internals adapter,
``icecube_cloud.write.zarr_internals``): the stored objects must be byte-identical, edge chunks
included, and chunks equal to the fill value must be absent (and removed when a slice is rewritten
with empty pixels). The adapter relies on zarr internals: the zarr version it was checked against is
pinned here, so an upgrade fails loudly until the adapter has been re-checked.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zarr
import zarr.codecs

from icecube_cloud.write import zarr_internals
from icecube_cloud.write.chunks import (
    ChunkEncoder,
    ShardEncoder,
    encoder_for,
    stored_shape,
    write_blocks,
)

SHAPE, CHUNKS = (2, 100, 70), (1, 64, 32)  # edge chunks in both directions
PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"
RECHECK = (
    "icecube_cloud/write/zarr_internals.py relies on zarr internals checked against zarr "
    f"{zarr_internals.ZARR_VERSION}: re-check codec_chain (ArrayV3Metadata.codecs), chunk_key "
    "(ArrayV3Metadata.encode_chunk_key) and store_chunks (zarr.core.sync.sync, Store.set/delete, "
    "zarr.buffer) against the zarr release in use, run tests/test_43_chunks.py (stored bytes identical "
    "to Array.__setitem__), then set ZARR_VERSION and the zarr== pin of pyproject.toml to it."
)


def test_zarr_is_the_release_the_adapter_was_checked_against() -> None:
    pin = re.search(r'"zarr==([^"]+)"', PYPROJECT.read_text())
    assert pin is not None, f"no zarr== pin in {PYPROJECT}"
    assert pin.group(1) == zarr_internals.ZARR_VERSION, (
        f"pyproject pins zarr {pin.group(1)}. {RECHECK}"
    )
    assert zarr.__version__ == zarr_internals.ZARR_VERSION, (
        f"zarr {zarr.__version__} installed. {RECHECK}"
    )


def _objects(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != "zarr.json"
    }


def _array(
    path: Path, dtype: str, cname: str, shuffle: str, name: str | None = None, **kwargs: Any
) -> zarr.Array[Any]:
    return zarr.create_array(
        store=str(path),
        name=name,
        shape=SHAPE,
        chunks=CHUNKS,
        dtype=dtype,
        compressors=[zarr.codecs.BloscCodec(cname=cname, clevel=5, shuffle=shuffle)],
        zarr_format=3,
        **kwargs,
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
        ("int16", "blosclz", "shuffle"),
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


@pytest.mark.parametrize(
    ("encoding", "key", "empty"),
    [({"name": "default", "separator": "/"}, "c/1/0/2", "c/0/0/0"),
     ({"name": "default", "separator": "."}, "c.1.0.2", "c.0.0.0"),
     ({"name": "v2", "separator": "."}, "1.0.2", "0.0.0")],
)  # fmt: skip
def test_adapter_keys_are_zarrs_in_a_group(
    tmp_path: Path, encoding: dict[str, str], key: str, empty: str
) -> None:
    """An array inside a cube (a path in the store), with each chunk-key encoding."""
    data = _pixels("uint16")
    theirs = _array(tmp_path / "zarr.zarr", "uint16", "zstd", "bitshuffle", "amplitude",
                    chunk_key_encoding=encoding)  # fmt: skip
    theirs[:] = data
    ours = _array(tmp_path / "ours.zarr", "uint16", "zstd", "bitshuffle", "amplitude",
                  chunk_key_encoding=encoding)  # fmt: skip
    assert zarr_internals.chunk_key(ours, (1, 0, 2)) == key
    write_blocks(ours, ChunkEncoder.for_array(ours), _blocks(data))

    stored = _objects(tmp_path / "ours.zarr")
    assert stored == _objects(tmp_path / "zarr.zarr")
    assert f"amplitude/{key}" in stored
    assert f"amplitude/{empty}" not in stored  # the chunk equal to the fill value
    assert len(stored) == SHAPE[0] * 2 * 3 - 1


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


def test_sharded_arrays_get_the_shard_encoder(tmp_path: Path) -> None:
    """A sharded array's *inner* chain is bytes -> blosc; its stored objects are shards, not chunks."""
    array = _array(tmp_path / "s.zarr", "uint16", "lz4", "bitshuffle", shards=(1, 128, 64))
    assert isinstance(array.serializer, zarr.codecs.BytesCodec)  # what the public API reports
    assert [type(c) for c in zarr_internals.codec_chain(array)] == [zarr.codecs.ShardingCodec]
    assert ChunkEncoder.for_array(array) is None
    assert isinstance(encoder_for(array), ShardEncoder)
    assert stored_shape(array) == (1, 128, 64)


def _shard_blocks(
    data: np.ndarray, shards: tuple[int, int, int]
) -> list[tuple[tuple[int, ...], np.ndarray]]:
    return [
        ((t, i // shards[1], j // shards[2]), data[t, i : i + shards[1], j : j + shards[2]])
        for t in range(data.shape[0])
        for i in range(0, data.shape[1], shards[1])
        for j in range(0, data.shape[2], shards[2])
    ]


@pytest.mark.parametrize(
    ("dtype", "cname", "inner", "shards"),
    [
        ("uint16", "lz4", (1, 16, 8), (1, 64, 32)),  # 4x4 chunks per shard, edge shards both ways
        ("complex64", "zstd", (1, 16, 16), (1, 48, 32)),  # 3x2: Morton order of a non-power of 2
        ("int16", "lz4", (1, 100, 70), (1, 100, 70)),  # one chunk per shard
    ],
)
def test_same_shard_bytes_as_zarr(
    tmp_path: Path,
    dtype: str,
    cname: str,
    inner: tuple[int, int, int],
    shards: tuple[int, int, int],
) -> None:
    """Whole shards written directly are zarr's bytes: inner chunks in zarr's order, empty inner
    chunks left out of the index, a shard of empty chunks not stored, edge shards padded."""
    data = _pixels(dtype)
    data[0, :64, :32] = data[1, :64, :32]  # (the empty chunk of _pixels)
    data[0, :16, :8] = 0  # an empty inner chunk inside a stored shard
    data[1, : shards[1], : shards[2]] = 0  # a whole shard of fill: not stored

    def array(name: str) -> zarr.Array[Any]:
        return zarr.create_array(
            store=str(tmp_path / name),
            name="amplitude",
            shape=SHAPE,
            chunks=inner,
            shards=shards,
            dtype=dtype,
            compressors=[zarr.codecs.BloscCodec(cname=cname, clevel=5, shuffle="bitshuffle")],
            zarr_format=3,
        )

    theirs = array("zarr.zarr")
    theirs[:] = data
    ours = array("ours.zarr")
    encoder = encoder_for(ours)
    assert isinstance(encoder, ShardEncoder)
    write_blocks(ours, encoder, _shard_blocks(data, shards))

    stored = _objects(tmp_path / "ours.zarr")
    assert stored == _objects(tmp_path / "zarr.zarr")
    assert "amplitude/c/0/0/0" in stored and "amplitude/c/1/0/0" not in stored
    np.testing.assert_array_equal(
        zarr.open_array(str(tmp_path / "ours.zarr"), path="amplitude")[:], data
    )

    # rewritten with empty pixels: the shards are deleted, as zarr does
    write_blocks(ours, encoder, [(c, np.zeros_like(b)) for c, b in _shard_blocks(data, shards)])
    assert _objects(tmp_path / "ours.zarr") == {}


def test_sharded_arrays_with_another_index_are_left_to_zarr(tmp_path: Path) -> None:
    array = zarr.create_array(
        store=str(tmp_path / "s.zarr"),
        shape=SHAPE,
        chunks=CHUNKS,
        shards=(1, 128, 64),
        dtype="uint16",
        serializer=zarr.codecs.ShardingCodec(
            chunk_shape=CHUNKS,
            codecs=[zarr.codecs.BytesCodec(), zarr.codecs.BloscCodec(cname="lz4")],
            index_location="start",
        ),
        compressors=None,
        zarr_format=3,
    )
    assert encoder_for(array) is None
    data = _pixels("uint16")
    write_blocks(array, None, _shard_blocks(data, (1, 128, 64)))
    np.testing.assert_array_equal(array[:], data)
