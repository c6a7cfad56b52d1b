"""Encode and store whole chunks of a Zarr v3 array: the hot path of the band tasks.

``zarr.Array.__setitem__`` is general (any selection, partial chunks, any codec chain) and pays for it:
for a band of 8 full 1024² uint16 chunks it runs an asyncio pipeline, one thread hop per codec and
chunk, and an ``array_equal`` against the fill value per chunk — 38 ms per 16 MiB band, where the same
encode + store done directly takes 18 ms (measured in one process, ``benchmarks``; the difference is
the build's throughput on a few cores). Band tasks write only *whole* chunks of arrays this project
created with one codec chain (``bytes`` little-endian → ``blosc``), so this module does exactly that:

* the Blosc codec is built from the array's own codec objects (cname, clevel, shuffle, blocksize,
  typesize), and encodes the chunk's little-endian bytes as zarr's ``BloscCodec`` does: the stored
  bytes are identical to what zarr writes (tested);
* edge chunks are padded with the fill value to the full chunk shape (the Zarr v3 rule);
* a chunk equal to the fill value is not stored and any old object under its key is deleted (zarr's
  ``write_empty_chunks=False``, its default);
* keys come from the array's chunk-key encoding; writes go through the array's own store (atomic
  local writes, S3 PUTs), concurrently.

Sharded arrays (config ``shards``) store one object per shard: zarr's ``sharding_indexed`` codec
with the same ``bytes`` → ``blosc`` chain inside and the default index (``bytes`` little-endian →
``crc32c``, at the end). A band task writes whole shards, and :class:`ShardEncoder` lays one out as
zarr does: the inner chunks encoded as above in zarr's (Morton) order, inner chunks equal to the fill
value left out (index entry all ones), then the index and its CRC32C; a shard of empty chunks is not
stored. The stored bytes are zarr's (tested).

Arrays with any other codec chain are written by ``zarr`` itself (:func:`write_blocks` falls back).
The few zarr internals this needs (the array's codec chain, its chunk keys, running the store's
coroutines on zarr's event loop) are behind :mod:`icecube_cloud.write.zarr_internals`; this module
uses only that adapter and public zarr API.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numcodecs
import numpy as np
import numpy.typing as npt
import zarr
from zarr.codecs import BloscCodec, BytesCodec, Crc32cCodec, Endian, ShardingCodec

from icecube_cloud.write.zarr_internals import codec_chain, shard_chunk_order, store_chunks

_SHUFFLE = {"noshuffle": 0, "shuffle": 1, "bitshuffle": 2}


@dataclass(frozen=True)
class ChunkEncoder:
    """Encodes whole chunks of one array exactly as its Zarr metadata says."""

    codec: numcodecs.Blosc
    """The array's Blosc codec (typesize from its metadata)."""
    chunk_shape: tuple[int, ...]
    """Shape of a full chunk."""
    dtype: np.dtype[Any]
    """Little-endian sample type of the array."""
    fill_value: Any
    """The array's fill value (chunks equal to it are not stored)."""

    @classmethod
    def for_array(cls, array: zarr.Array[Any]) -> ChunkEncoder | None:
        """An encoder for ``array``, or ``None`` when its codec chain is not ``bytes`` → ``blosc``."""
        return cls.for_codecs(codec_chain(array), tuple(array.chunks), array)  # () for zarr v2

    @classmethod
    def for_codecs(
        cls, codecs: Sequence[Any], chunk_shape: tuple[int, ...], array: zarr.Array[Any]
    ) -> ChunkEncoder | None:
        """An encoder for ``array``'s chunks of ``chunk_shape`` that ``codecs`` encode.

        ``None`` unless ``codecs`` are ``bytes`` (little-endian) → ``blosc``.
        """
        if len(codecs) != 2:
            return None
        raw, blosc = codecs
        if not isinstance(raw, BytesCodec) or not isinstance(blosc, BloscCodec):
            return None
        if raw.endian not in (None, Endian.little) or blosc.typesize is None:
            return None
        codec = numcodecs.Blosc(
            cname=blosc.cname.value,
            clevel=blosc.clevel,
            shuffle=_SHUFFLE[blosc.shuffle.value],
            blocksize=blosc.blocksize,
            typesize=blosc.typesize,
        )
        return cls(
            codec=codec,
            chunk_shape=chunk_shape,
            dtype=np.dtype(array.dtype).newbyteorder("<"),
            fill_value=array.fill_value,
        )

    def encode(self, block: npt.NDArray[Any]) -> bytes | None:
        """The stored bytes of a chunk holding ``block`` (its top-left part); ``None`` if empty.

        ``block`` may omit leading length-1 axes of the chunk (a 2-D window of a one-time chunk).
        """
        block = _full_rank(block, len(self.chunk_shape))
        if block.shape != self.chunk_shape:
            full = np.full(self.chunk_shape, self.fill_value, dtype=self.dtype)
            full[tuple(slice(0, n) for n in block.shape)] = block
            block = full
        # The one copy of the pixels: from the reader's band (or the page cache, for memory-mapped
        # sources) into the contiguous little-endian buffer Blosc reads, which then is still in the
        # CPU cache for the fill check and the encoder.
        raw = np.ascontiguousarray(block, dtype=self.dtype)
        if _all_equal(raw, self.fill_value):
            return None
        return bytes(self.codec.encode(raw.reshape(-1).view(np.uint8)))


_NO_CHUNK = 2**64 - 1
"""A shard index entry (offset and size) of an inner chunk that is not stored."""


@dataclass(frozen=True)
class ShardEncoder:
    """Encodes whole shards of a sharded array exactly as zarr's sharding codec stores them."""

    inner: ChunkEncoder
    """Encoder of the inner chunks (the sharding codec's ``bytes`` → ``blosc`` chain)."""
    shard_shape: tuple[int, ...]
    """Shape of a full shard."""
    order: tuple[tuple[int, ...], ...]
    """Inner chunk coordinates within a shard, in the order zarr stores them."""

    @classmethod
    def for_array(cls, array: zarr.Array[Any]) -> ShardEncoder | None:
        """An encoder for ``array``'s shards, or ``None`` when it is not sharded as the cubes are.

        That is: a ``bytes`` → ``blosc`` inner chain and the default index (``bytes`` little-endian →
        ``crc32c``, at the end of the shard).
        """
        codecs = codec_chain(array)
        if len(codecs) != 1 or not isinstance(codecs[0], ShardingCodec) or array.shards is None:
            return None
        sharding = codecs[0]
        index = sharding.index_codecs
        if sharding.index_location.value != "end" or len(index) != 2:
            return None
        if not isinstance(index[0], BytesCodec) or index[0].endian not in (None, Endian.little):
            return None
        if not isinstance(index[1], Crc32cCodec):
            return None
        inner = ChunkEncoder.for_codecs(sharding.codecs, tuple(sharding.chunk_shape), array)
        if inner is None:
            return None
        shard_shape = tuple(array.shards)
        per_shard = tuple(s // c for s, c in zip(shard_shape, inner.chunk_shape, strict=True))
        return cls(inner=inner, shard_shape=shard_shape, order=shard_chunk_order(per_shard))

    def encode(self, block: npt.NDArray[Any]) -> bytes | None:
        """The stored bytes of a shard holding ``block`` (its top-left part); ``None`` if empty.

        ``block`` may omit leading length-1 axes of the shard. Inner chunks beyond ``block`` (an edge
        shard) hold only the fill value and are not stored.
        """
        block = _full_rank(block, len(self.shard_shape))
        edges = self.inner.chunk_shape
        index = np.full(
            (*(s // c for s, c in zip(self.shard_shape, edges, strict=True)), 2), _NO_CHUNK, "<u8"
        )
        parts: list[bytes] = []
        offset = 0
        for coords in self.order:
            sel = tuple(slice(i * c, (i + 1) * c) for i, c in zip(coords, edges, strict=True))
            part = block[sel]
            if 0 in part.shape:
                continue
            data = self.inner.encode(part)
            if data is None:
                continue
            index[coords] = (offset, len(data))
            parts.append(data)
            offset += len(data)
        if not parts:
            return None
        parts.append(bytes(_CRC32C.encode(index.reshape(-1).view(np.uint8))))
        return b"".join(parts)


_CRC32C = numcodecs.CRC32C(location="end")
"""The shard index's checksum (zarr's ``crc32c`` codec: CRC-32C of the bytes, appended little-endian)."""

Encoder = ChunkEncoder | ShardEncoder
"""Encodes one stored object (a chunk, or a shard of a sharded array)."""


def encoder_for(array: zarr.Array[Any]) -> Encoder | None:
    """The direct encoder of ``array``'s stored objects, or ``None`` to let zarr write them."""
    return ShardEncoder.for_array(array) or ChunkEncoder.for_array(array)


def stored_shape(array: zarr.Array[Any]) -> tuple[int, ...]:
    """Shape of the array's stored objects: its shards, or its chunks when it is not sharded."""
    return tuple(array.shards or array.chunks)


def _full_rank(block: npt.NDArray[Any], ndim: int) -> npt.NDArray[Any]:
    return block.reshape((1,) * (ndim - block.ndim) + block.shape)


PROBES = 64
"""Samples, spread over a chunk, compared with the fill value before the whole chunk is."""


def _all_equal(block: npt.NDArray[Any], fill: Any) -> bool:
    """Whether every sample of the contiguous ``block`` equals ``fill`` (NaN equals NaN).

    A few spread samples are probed first: nearly every chunk of an image has one off the fill value,
    and then the full comparison (1.2 ms per 16 MiB band, measured) is skipped.
    """
    flat = block.reshape(-1)
    probe = flat[:: max(1, flat.size // PROBES)]
    return _all_fill(probe, fill) and _all_fill(flat, fill)


def _all_fill(values: npt.NDArray[Any], fill: Any) -> bool:
    if fill == 0:
        return not values.any()  # no temporary array, unlike array_equal
    if isinstance(fill, float | complex) and np.isnan(fill):
        return bool(np.isnan(values).all())
    return bool((values == fill).all())


def write_blocks(
    array: zarr.Array[Any],
    encoder: Encoder | None,
    blocks: Sequence[tuple[tuple[int, ...], npt.NDArray[Any]]],
) -> None:
    """Write whole stored objects: ``(grid coordinates, block)`` pairs, each block the object's part.

    The objects are chunks, or the shards of a sharded array (:func:`stored_shape`); a block is the
    part of its object inside the array.

    Args:
        array: The Zarr array (metadata and store).
        encoder: :func:`encoder_for` of ``array``; ``None`` lets zarr write.
        blocks: Chunk (shard) grid coordinates and the pixels of each chunk (shard); edge ones may be
            smaller; leading length-1 axes may be omitted.
    """
    if encoder is None:
        shape = stored_shape(array)
        for coords, block2 in blocks:
            block = _full_rank(block2, len(coords))
            sel = tuple(
                slice(c * n, c * n + m) for c, n, m in zip(coords, shape, block.shape, strict=True)
            )
            array[sel] = block
        return
    encoded: dict[tuple[int, ...], bytes] = {}
    empty: list[tuple[int, ...]] = []
    for coords, block in blocks:
        data = encoder.encode(block)
        if data is None:
            empty.append(coords)
        else:
            encoded[coords] = data
    store_chunks(array, encoded, empty)
