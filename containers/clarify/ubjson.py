"""A UBJSON reader for XGBoost models: typed arrays come back as numpy arrays.

XGBoost saves a model as UBJSON (`save_raw("ubj")`, its default format) with each tree's node
arrays written as strongly typed containers: raw big-endian numbers after one header. Those come
back as read-only big-endian views of the bytes (`np.frombuffer`, no copy; numpy computes with
them as with any array, and `astype` makes a native copy), which makes a 150-tree model load
in about 8 ms, where `save_raw("json")` plus `json.loads` takes about 30 ms. Everything else in the
format (Draft 12: https://ubjson.org) decodes to the Python values `json.loads` gives.

`loads` still takes a Python step per value (~6,000 for 150 trees, 8 ms). `typed_arrays` skips
those steps when only some arrays are wanted: numpy finds every typed-array header in the bytes
at once, and the arrays under each wanted key come back joined into one numpy array.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

_NUMBERS = {  # marker: (reader of one number, numpy dtype), big-endian
    ord(marker): (struct.Struct(fmt), np.dtype(dtype))
    for marker, fmt, dtype in (
        ("i", ">b", ">i1"),
        ("U", ">B", ">u1"),
        ("I", ">h", ">i2"),
        ("l", ">i", ">i4"),
        ("L", ">q", ">i8"),
        ("d", ">f", ">f4"),
        ("D", ">d", ">f8"),
    )
}
_CONSTANTS = {ord("Z"): None, ord("T"): True, ord("F"): False}
_NO_OP, _TYPE, _COUNT = ord("N"), ord("$"), ord("#")
_ARRAY_END, _OBJECT_END = ord("]"), ord("}")


class UBJSONError(ValueError):
    """The bytes are not UBJSON (or use a part of it XGBoost never writes)."""


def loads(data: bytes | bytearray | memoryview) -> Any:
    """The value encoded in `data`."""
    reader = _Reader(bytes(data))
    try:
        value = reader.value(reader.marker())
    except (IndexError, struct.error):
        raise UBJSONError(f"the data ends inside a value (at byte {reader.position})") from None
    if reader.position != len(reader.data):
        raise UBJSONError(f"{len(reader.data) - reader.position} bytes after the value")
    return value


def value_after(data: bytes | bytearray, key: str) -> Any:
    """The value stored under the first occurrence of object key `key` (found by its bytes, as
    `typed_arrays` finds arrays: the caller checks it); KeyError when the key is absent."""
    raw = key.encode("utf-8")
    first = None  # (where the key starts, where its value starts)
    for marker in b"LiUIl":  # the key's length: any integer marker, XGBoost's `L` first
        reader, dtype = _NUMBERS[marker]
        if len(raw) < 1 << (8 * dtype.itemsize - (dtype.kind == "i")):
            encoded = bytes([marker]) + reader.pack(len(raw)) + raw
            end = len(data) if first is None else first[0] + len(encoded) - 1  # earlier only
            if (at := data.find(encoded, 0, end)) >= 0:
                first = (at, at + len(encoded))
    if first is None:
        raise KeyError(key)
    reader = _Reader(data)
    reader.position = first[1]
    try:
        return reader.value(reader.marker())
    except (IndexError, struct.error):
        raise UBJSONError(f"the data ends inside a value (at byte {reader.position})") from None


@dataclass(frozen=True)
class TypedArrays:
    """The typed number arrays stored under one key, in the order of the bytes."""

    offsets: np.ndarray  # [n] byte offset of each array's key
    ends: np.ndarray  # [n] byte offset just after each array's last element
    counts: np.ndarray  # [n] elements in each array
    values: np.ndarray  # [counts.sum()] every array's elements end to end, native byte order


def typed_arrays(
    data: bytes | bytearray | memoryview, keys: Sequence[str]
) -> dict[str, TypedArrays | None]:
    """Every strongly typed number array that `data` stores under each of the object `keys`.

    A scan, not a parse: numpy finds every typed-array header (`[$<type>#<count>`) in the bytes
    at once and keeps those right after one of the keys, so bytes inside some other value could
    in principle look like one. The caller checks what it finds against the document's own
    structure (XGBoost's tree and node counts, the order of its keys) and reads with `loads`
    when that does not hold. A key's entry is None when its arrays do not share one element
    type (they cannot be joined).
    """
    buffer = np.frombuffer(data, np.uint8)
    dollars = np.flatnonzero(buffer[1:-3] == _TYPE) + 1  # few: one per array, and stray bytes
    heads = dollars[(buffer[dollars - 1] == ord("[")) & (buffer[dollars + 2] == _COUNT)] - 1
    before = heads[:, None] + np.arange(-8, 0)
    suffixes = np.where(before >= 0, buffer[np.maximum(before, 0)], 0)  # the 8 bytes before
    suffixes = suffixes.astype(np.uint8).view("<u8").ravel()  # (a key's last 8), as one number
    return {key: _typed_arrays_under(buffer, heads, suffixes, key) for key in keys}


def _typed_arrays_under(
    buffer: np.ndarray, heads: np.ndarray, suffixes: np.ndarray, key: str
) -> TypedArrays | None:
    """The arrays whose header (at one of `heads`) follows `key` and its length."""
    raw = key.encode("utf-8")
    tail = int.from_bytes(raw[-8:].rjust(8, b"\0"), "little")
    mask = (1 << (8 * min(len(raw), 8))) - 1 << (8 * max(0, 8 - len(raw)))
    heads = heads[suffixes & np.uint64(mask) == np.uint64(tail)]  # then the whole key, below
    offsets = np.full(heads.size, -1, np.int64)  # where the key's length marker is
    for marker in b"LiUIl":  # the key's length: any integer marker, XGBoost's `L` first
        reader, dtype = _NUMBERS[marker]
        if np.all(offsets >= 0) or len(raw) >= 1 << (8 * dtype.itemsize - (dtype.kind == "i")):
            continue
        prefix = np.frombuffer(bytes([marker]) + reader.pack(len(raw)) + raw, np.uint8)
        start = heads - prefix.size
        fits = (start >= 0) & (offsets < 0)
        match = np.zeros(heads.size, bool)
        match[fits] = np.all(_gather(buffer, start[fits], prefix.size) == prefix, axis=1)
        offsets[match] = start[match]
    heads, offsets = heads[offsets >= 0], offsets[offsets >= 0]
    if heads.size == 0:
        return TypedArrays(offsets, offsets, offsets, np.zeros(0))
    types, count_types = buffer[heads + 2], buffer[heads + 4]
    if np.any(types != types[0]) or int(types[0]) not in _NUMBERS:
        return None
    counts = np.full(heads.size, -1, np.int64)
    starts = heads + 5
    for count_type in np.unique(count_types):  # XGBoost writes every count as `L`: one pass
        width = _NUMBERS.get(int(count_type), (None, np.dtype("f4")))[1]
        if width.kind not in "iu":
            raise UBJSONError(f"a typed array under {key!r} without an integer count")
        chosen = count_types == count_type
        counts[chosen] = _gather(buffer, starts[chosen], width.itemsize).view(width).ravel()
        starts[chosen] += width.itemsize
    dtype = _NUMBERS[int(types[0])][1]
    ends = starts + counts * dtype.itemsize
    if np.any(counts < 0) or ends.max() > buffer.size:
        raise UBJSONError(f"a typed array under {key!r} has a bad count or ends after the data")
    values = np.concatenate(
        [buffer[a:b] for a, b in zip(starts.tolist(), ends.tolist(), strict=True)]
    )
    return TypedArrays(offsets, ends, counts, values.view(dtype).astype(dtype.newbyteorder("=")))


def _gather(buffer: np.ndarray, starts: np.ndarray, size: int) -> np.ndarray:
    """[len(starts), size]: the `size` bytes from each start."""
    return buffer[starts[:, None] + np.arange(size)]


class _Reader:
    """One pass over the bytes; markers are read as ints (`data[i]`), numbers with
    `Struct.unpack_from`, so no slice is made per value (the model has ~10k values)."""

    def __init__(self, data: bytes | bytearray) -> None:
        self.data = data
        self.position = 0
        self.readers = {
            ord("S"): self.text,
            ord("C"): self.char,
            ord("H"): self.high_precision,
            ord("["): self.array,
            ord("{"): self.object,
        }

    def marker(self) -> int:
        data, position = self.data, self.position
        while data[position] == _NO_OP:
            position += 1
        self.position = position + 1
        return data[position]

    def value(self, marker: int) -> Any:
        number = _NUMBERS.get(marker)
        if number is not None:
            (value,) = number[0].unpack_from(self.data, self.position)
            self.position += number[0].size
            return value
        if marker in _CONSTANTS:
            return _CONSTANTS[marker]
        reader = self.readers.get(marker)
        if reader is None:
            raise UBJSONError(f"unknown marker {bytes([marker])!r} at byte {self.position - 1}")
        return reader()

    def length(self) -> int:
        size = self.value(self.marker())
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise UBJSONError(f"bad length {size!r} at byte {self.position}")
        return size

    def take(self, size: int) -> bytes:
        start = self.position
        if start + size > len(self.data):
            raise UBJSONError(f"the data ends inside a value (at byte {start})")
        self.position = start + size
        return self.data[start : self.position]

    def text(self) -> str:
        return self.take(self.length()).decode("utf-8")

    def char(self) -> str:
        return self.take(1).decode()

    def high_precision(self) -> int | float:
        text = self.text()
        return float(text) if any(c in text for c in ".eE") else int(text)

    def header(self) -> tuple[int | None, int | None]:
        """The optimized container's element type and count, where given."""
        data = self.data
        element_type = count = None
        if data[self.position] == _TYPE:
            element_type = data[self.position + 1]
            self.position += 2
        if data[self.position] == _COUNT:
            self.position += 1
            count = self.length()
        elif element_type is not None:
            raise UBJSONError(f"a typed container without a count at byte {self.position}")
        return element_type, count

    def array(self) -> Any:
        element_type, count = self.header()
        if element_type in _NUMBERS and count is not None:
            dtype = _NUMBERS[element_type][1]
            start = self.position
            self.take(count * dtype.itemsize)
            return np.frombuffer(self.data, dtype, count, start)
        if count is not None:
            if element_type is not None:
                return [self.value(element_type) for _ in range(count)]
            return [self.value(self.marker()) for _ in range(count)]
        items = []
        while (marker := self.marker()) != _ARRAY_END:
            items.append(self.value(marker))
        return items

    def key(self) -> str:
        """An object's key: a length (any integer marker) and UTF-8 bytes, no `S` marker."""
        data, position = self.data, self.position
        while data[position] == _NO_OP:
            position += 1
        number = _NUMBERS.get(data[position])
        if number is None or number[1].kind not in "iu":
            raise UBJSONError(f"an object key without a length at byte {position}")
        (size,) = number[0].unpack_from(data, position + 1)
        start = position + 1 + number[0].size
        self.position = start + size
        if size < 0 or self.position > len(data):
            raise UBJSONError(f"bad key length {size} at byte {position}")
        return data[start : self.position].decode("utf-8")

    def object(self) -> dict[str, Any]:
        element_type, count = self.header()
        if count is not None:
            if element_type is not None:
                return {self.key(): self.value(element_type) for _ in range(count)}
            return {self.key(): self.value(self.marker()) for _ in range(count)}
        items = {}
        data = self.data
        while True:
            while data[self.position] == _NO_OP:
                self.position += 1
            if data[self.position] == _OBJECT_END:
                self.position += 1
                return items
            key = self.key()
            items[key] = self.value(self.marker())
