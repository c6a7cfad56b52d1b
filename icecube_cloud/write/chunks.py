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
from zarr.codecs import BloscCodec, BytesCodec, Endian

from icecube_cloud.write.zarr_internals import codec_chain, store_chunks

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
        codecs = codec_chain(array)  # () for zarr v2
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
            chunk_shape=tuple(array.chunks),
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
    encoder: ChunkEncoder | None,
    blocks: Sequence[tuple[tuple[int, ...], npt.NDArray[Any]]],
) -> None:
    """Write whole chunks: ``(chunk coordinates, block)`` pairs, each block the chunk's valid part.

    Args:
        array: The Zarr array (metadata and store).
        encoder: :meth:`ChunkEncoder.for_array` of ``array``; ``None`` lets zarr write.
        blocks: Chunk grid coordinates and the pixels of each chunk (edge chunks may be smaller;
            leading length-1 axes may be omitted).
    """
    if encoder is None:
        for coords, block2 in blocks:
            block = _full_rank(block2, len(coords))
            sel = tuple(
                slice(c * n, c * n + m)
                for c, n, m in zip(coords, array.chunks, block.shape, strict=True)
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
