"""Cheap completeness checks: every byte a product file's own header points to must be in the file.

A download or copy cut short can leave a file whose header is intact. GDAL then opens the TIFF and
describes it (dropping, with no error, the tags it cannot reach), HDF5 opens the file, and only a
pixel read much later fails, after a cube's metadata is written. These checks read the header only
(TIFF image directories with their strip/tile offsets and byte counts; HDF5 dataset storage
addresses) and compare it with the file's size, so a truncated file fails by name, saying so, before
anything uses it. They work on any binary file object (local files, fsspec objects in S3).
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from typing import IO, Literal

import h5py
import numpy as np

from icecube_cloud.errors import ProductError

_TYPE_SIZES = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8, 13: 4,
               16: 8, 17: 8, 18: 8}  # fmt: skip
"""TIFF field type -> bytes per value (TIFF 6.0 and BigTIFF)."""
_ARRAY_TYPES = {3: "u2", 4: "u4", 13: "u4", 16: "u8", 18: "u8"}
"""TIFF field types that offsets and byte counts are stored in -> numpy dtype (without byte order)."""
_BLOCK_TAGS = {273: ("strip", 279), 324: ("tile", 325)}
"""StripOffsets / TileOffsets -> (what, tag of their byte counts)."""
_MAX_IFDS = 1024
"""Image directories followed at most (a loop in a corrupt file must not hang the check)."""
_HDF5_TRUNCATED = re.compile(r"truncated file: eof = (\d+).*stored_eof = (\d+)")


class _Truncated(Exception):
    """The header points past the end of the file (internal; becomes a ProductError)."""

    def __init__(self, end: int, what: str) -> None:
        super().__init__(what)
        self.end = end
        self.what = what


@dataclass(frozen=True)
class _Layout:
    """Byte order and field sizes of a classic TIFF or a BigTIFF."""

    order: Literal["<", ">"]
    big: bool

    def unpack(self, fmt: str, data: bytes) -> int:
        return int(struct.unpack(self.order + fmt, data)[0])

    @property
    def offset_fmt(self) -> str:
        return "Q" if self.big else "I"

    @property
    def offset_size(self) -> int:
        return 8 if self.big else 4


def file_size(handle: IO[bytes]) -> int:
    """Size in bytes of an open binary file (local or fsspec)."""
    end = handle.seek(0, 2)
    handle.seek(0)
    return int(end)


def truncated_reason(size: int, end: int, what: str) -> str:
    """The reason every truncation error gives: it starts with "truncated", then the numbers."""
    return f"truncated: the file has {size} bytes, but {what} ends at byte {end}"


def _read_at(handle: IO[bytes], offset: int, n: int, size: int, what: str) -> bytes:
    if offset + n > size:
        raise _Truncated(offset + n, what)
    handle.seek(offset)
    data = handle.read(n)
    if len(data) < n:  # the object shrank under us
        raise _Truncated(offset + n, what)
    return data


def _values(
    handle: IO[bytes], layout: _Layout, entry: tuple[int, int, int, bytes], size: int
) -> np.ndarray:
    """The integer values of an offsets/byte-counts entry (inline or stored elsewhere)."""
    tag, ftype, count, field = entry
    if ftype not in _ARRAY_TYPES:
        raise ValueError(f"TIFF tag {tag} has field type {ftype}, expected an integer type")
    dtype = np.dtype(_ARRAY_TYPES[ftype]).newbyteorder(layout.order)
    nbytes = count * dtype.itemsize
    if nbytes <= len(field):
        raw = field[:nbytes]
    else:
        raw = _read_at(handle, layout.unpack(layout.offset_fmt, field), nbytes, size, f"tag {tag}")
    return np.frombuffer(raw, dtype).astype(np.uint64)


def _directory(
    handle: IO[bytes], layout: _Layout, offset: int, size: int
) -> tuple[list[tuple[int, int, int, bytes]], int]:
    """The entries (tag, type, count, value field) of the directory at ``offset``, and the next one."""
    count_fmt, count_size = ("Q", 8) if layout.big else ("H", 2)
    entry_size = 20 if layout.big else 12
    what = "an image directory"
    count = layout.unpack(count_fmt, _read_at(handle, offset, count_size, size, what))
    nbytes = count * entry_size + layout.offset_size
    raw = _read_at(handle, offset + count_size, nbytes, size, what)
    entries = []
    head = "HHQ" if layout.big else "HHI"
    for k in range(count):
        chunk = raw[k * entry_size : (k + 1) * entry_size]
        tag, ftype, n = struct.unpack(layout.order + head, chunk[: entry_size - layout.offset_size])
        entries.append((tag, ftype, n, chunk[entry_size - layout.offset_size :]))
    return entries, layout.unpack(layout.offset_fmt, raw[count * entry_size :])


def _check_directory(
    handle: IO[bytes], layout: _Layout, entries: list[tuple[int, int, int, bytes]], size: int
) -> None:
    """Every tag value and every strip/tile of one directory lies inside the file."""
    by_tag = {entry[0]: entry for entry in entries}
    for tag, ftype, count, field in entries:
        nbytes = count * _TYPE_SIZES.get(ftype, 0)
        if nbytes > len(field):
            start = layout.unpack(layout.offset_fmt, field)
            if start + nbytes > size:
                raise _Truncated(start + nbytes, f"the value of TIFF tag {tag}")
    for offsets_tag, (what, counts_tag) in _BLOCK_TAGS.items():
        if offsets_tag not in by_tag or counts_tag not in by_tag:
            continue
        offsets = _values(handle, layout, by_tag[offsets_tag], size)
        counts = _values(handle, layout, by_tag[counts_tag], size)
        n = min(len(offsets), len(counts))
        ends = (offsets[:n] + counts[:n])[counts[:n] > 0]
        if ends.size and int(ends.max()) > size:
            raise _Truncated(int(ends.max()), f"pixel data ({what}s)")


def check_tiff(href: str, handle: IO[bytes]) -> None:
    """Raise unless every directory, tag value, strip and tile of a TIFF is inside the file.

    Raises:
        ProductError: The file is truncated (names the file, its size and what is missing) or its
            header is not a TIFF header.
    """
    size = file_size(handle)
    try:
        head = _read_at(handle, 0, 16 if size >= 16 else 8, size, "the TIFF header")
        marks: dict[bytes, Literal["<", ">"]] = {b"II": "<", b"MM": ">"}
        order = marks.get(head[:2])
        if order is None:
            raise ProductError(href, "not a TIFF file (no TIFF byte-order mark)")
        layout = _Layout(order, struct.unpack(order + "H", head[2:4])[0] == 43)
        offset = layout.unpack(layout.offset_fmt, head[8:16] if layout.big else head[4:8])
        if not offset:
            raise ValueError("no image directory")
        seen: set[int] = set()
        while offset and offset not in seen and len(seen) < _MAX_IFDS:
            seen.add(offset)
            entries, offset = _directory(handle, layout, offset, size)
            _check_directory(handle, layout, entries, size)
    except _Truncated as cut:
        raise ProductError(href, truncated_reason(size, cut.end, cut.what)) from None
    except (struct.error, ValueError) as err:
        raise ProductError(href, f"corrupt TIFF header: {err}") from err


def hdf5_open_error(href: str, err: Exception) -> ProductError:
    """A ProductError for an HDF5 file that would not open; HDF5's own truncation check said why."""
    cut = _HDF5_TRUNCATED.search(str(err))
    if cut is not None:
        size, end = int(cut.group(1)), int(cut.group(2))
        return ProductError(href, truncated_reason(size, end, "the data its superblock records"))
    return ProductError(href, f"not a readable HDF5 file: {err}")


def check_hdf5_datasets(href: str, h5: h5py.File, names: tuple[str, ...], size: int) -> None:
    """Raise unless the storage of each dataset in ``names`` lies inside a file of ``size`` bytes.

    HDF5 refuses to open a file shorter than its superblock says; this also catches a file whose
    superblock was rewritten (e.g. by a repair tool) while pixel data is still missing.

    Raises:
        ProductError: A dataset's storage ends beyond the end of the file.
    """
    for name in names:
        ds = h5[name]
        if not isinstance(ds, h5py.Dataset):
            continue
        end = 0
        if ds.chunks is None:
            offset = ds.id.get_offset()
            if offset is not None:
                end = int(offset) + int(ds.id.get_storage_size())
        else:
            for k in range(ds.id.get_num_chunks()):
                info = ds.id.get_chunk_info(k)
                if info.byte_offset is not None:
                    end = max(end, int(info.byte_offset) + int(info.size))
        if end > size:
            raise ProductError(href, truncated_reason(size, end, f"dataset {name!r}"))
