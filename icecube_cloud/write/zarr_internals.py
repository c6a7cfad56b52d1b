"""The zarr internals that direct chunk writes need, in one place (written for zarr 3.1.6).

:mod:`icecube_cloud.write.chunks` encodes and stores whole chunks itself, 2x faster than
``zarr.Array.__setitem__`` and byte-identical to it, shards of sharded arrays included. For that it
needs four things zarr 3.1.6 has no public API for; each is one function here, with why it is needed
and what public API would replace it. Everything else it uses is public zarr API (``Array.store``,
``Array.path``, ``Array.chunks``, ``Array.shards``, ``Array.dtype``, ``Array.fill_value``, the
``Store`` coroutines, ``zarr.codecs``, ``zarr.buffer``).

``tests/test_43_chunks.py`` pins the zarr version this module was checked against
(:data:`ZARR_VERSION`, the ``zarr==`` pin of ``pyproject.toml``) and checks that chunks stored through
it are the bytes ``zarr.Array.__setitem__`` stores. After a zarr upgrade, re-check each function below
against the new release, run those tests, then update :data:`ZARR_VERSION`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import zarr
from zarr.buffer import default_buffer_prototype
from zarr.core.indexing import morton_order_iter
from zarr.core.sync import sync

ZARR_VERSION = "3.1.6"
"""The zarr release this module was written for and checked against."""


def codec_chain(array: zarr.Array[Any]) -> tuple[Any, ...]:
    """The array's codec chain exactly as its metadata lists it (``()`` for a Zarr v2 array).

    Internal: ``Array.metadata.codecs`` (``ArrayV3Metadata``). The public ``Array.filters``,
    ``Array.serializer`` and ``Array.compressors`` describe a sharded array's *inner* chain, so a
    sharded array would pass for ``bytes`` → ``blosc`` and its shards be written as plain chunks.
    Public replacement: an ``Array.codecs`` property (the outer chain), which zarr 3.1.6 lacks.
    """
    return tuple(getattr(array.metadata, "codecs", ()))


def shard_chunk_order(chunks_per_shard: Sequence[int]) -> tuple[tuple[int, ...], ...]:
    """The order in which zarr's sharding codec lays out a shard's inner chunks (Morton order).

    Internal: ``zarr.core.indexing.morton_order_iter``, which ``ShardingCodec`` iterates when it
    concatenates the encoded inner chunks of a shard. The Zarr v3 sharding spec leaves the order to the
    writer (the index locates each chunk), so any order reads the same values; this one makes the
    stored bytes zarr's. Public replacement: none in zarr 3.1.6.
    """
    return tuple(
        tuple(int(c) for c in coords) for coords in morton_order_iter(tuple(chunks_per_shard))
    )


def chunk_key(array: zarr.Array[Any], coords: Sequence[int]) -> str:
    """The store key of the chunk at grid ``coords``, relative to the array (e.g. ``c/0/1/2``).

    Internal: ``Array.metadata.encode_chunk_key`` (the array's own chunk-key encoding: ``default`` or
    ``v2``, either separator), so keys are never spelled by hand. Public replacement: a chunk-key method
    on ``Array`` (zarr 3.1.6 has none; ``zarr.core.chunk_key_encodings`` is internal too).
    """
    return str(array.metadata.encode_chunk_key(tuple(coords)))


def _store_key(array: zarr.Array[Any], coords: Sequence[int]) -> str:
    """The key of a chunk relative to the root of the array's store."""
    key = chunk_key(array, coords)
    return f"{array.path}/{key}" if array.path else key


def store_chunks(
    array: zarr.Array[Any],
    encoded: Mapping[tuple[int, ...], bytes],
    empty: Iterable[tuple[int, ...]],
) -> None:
    """Store encoded chunk objects and delete those of empty chunks, concurrently, through the array's store.

    Args:
        array: The array (its store, path and chunk-key encoding).
        encoded: Chunk grid coordinates -> the chunk's stored bytes (as its codec chain encodes them).
        empty: Chunk grid coordinates of chunks equal to the fill value: any stored object is deleted.

    Internal: ``zarr.core.sync.sync``. The ``Store`` methods are coroutines bound to zarr's own event
    loop (an fsspec store's S3 session lives on it), so they must run there, which is what zarr's own
    synchronous API does with ``sync``. Public replacement: a synchronous raw-chunk write on ``Array``
    (storing already-encoded chunk bytes), or a public ``sync``; zarr 3.1.6 has neither.
    """
    store = array.store
    buffer = default_buffer_prototype().buffer
    puts = {_store_key(array, coords): data for coords, data in encoded.items()}
    deletes = [_store_key(array, coords) for coords in empty]

    async def store_all() -> None:
        await asyncio.gather(
            *(store.set(k, buffer.from_bytes(v)) for k, v in puts.items()),
            *(store.delete(k) for k in deletes),
        )

    sync(store_all())
