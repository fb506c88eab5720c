"""Byte buffers: a :class:`Reader` over received bytes, a :class:`Writer` for output.

Theory of operation
-------------------
Reading is done over a ``memoryview`` with an explicit position, so that frames
can hand out views of their payload without copying (the hot path of a QUIC
stack is per-packet Python work, not crypto).  Every ``pull_*`` checks bounds
and raises :class:`~mstls.exceptions.DecodeError` on truncation; nothing here
raises ``IndexError`` or ``struct.error``.  The reader handles untrusted input.

Writing appends to a ``bytearray``; length-prefixed blocks are written with a
placeholder length that is patched when the block ends.

Variable-length integers follow RFC 9000 §16: the two high bits of the first
byte give the length (1, 2, 4 or 8 bytes); values are at most 2**62 - 1.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from contextlib import contextmanager

from ..exceptions import DecodeError

__all__ = [
    "VARINT_MAX",
    "Reader",
    "Writer",
    "decode_varint",
    "encode_varint",
    "varint_size",
]

#: Largest value a variable-length integer can carry (RFC 9000 §16).
VARINT_MAX = (1 << 62) - 1

_U16 = struct.Struct("!H")
_U32 = struct.Struct("!I")
_U64 = struct.Struct("!Q")


def varint_size(value: int) -> int:
    """Number of bytes :func:`encode_varint` uses for ``value`` (RFC 9000 §16)."""
    if value < 0:
        raise ValueError("variable-length integers are unsigned")
    if value < 0x40:
        return 1
    if value < 0x4000:
        return 2
    if value < 0x40000000:
        return 4
    if value <= VARINT_MAX:
        return 8
    raise ValueError(f"{value} does not fit in a QUIC variable-length integer")


def encode_varint(value: int) -> bytes:
    """Encode ``value`` in the shortest variable-length form (RFC 9000 §16).

    Raises ``ValueError`` (a programming error, not a wire error) when the value
    is negative or above :data:`VARINT_MAX`.
    """
    if value < 0:
        raise ValueError("variable-length integers are unsigned")
    if value < 0x40:
        return bytes((value,))
    if value < 0x4000:
        return _U16.pack(value | 0x4000)
    if value < 0x40000000:
        return _U32.pack(value | 0x80000000)
    if value <= VARINT_MAX:
        return _U64.pack(value | 0xC000000000000000)
    raise ValueError(f"{value} does not fit in a QUIC variable-length integer")


def decode_varint(data: bytes | bytearray | memoryview, pos: int = 0) -> tuple[int, int]:
    """Decode a variable-length integer at ``pos``; return ``(value, next_pos)``.

    Handles untrusted input: raises :class:`DecodeError` when truncated.
    """
    try:
        first = data[pos]
    except IndexError:
        raise DecodeError("truncated variable-length integer") from None
    prefix = first >> 6
    if prefix == 0:
        return first, pos + 1
    length = 1 << prefix
    end = pos + length
    if end > len(data):
        raise DecodeError("truncated variable-length integer")
    value = first & 0x3F
    for i in range(pos + 1, end):
        value = (value << 8) | data[i]
    return value, end


class Reader:
    """Sequential reader over untrusted bytes; every pull checks bounds."""

    __slots__ = ("_data", "_end", "_pos")

    def __init__(self, data: bytes | bytearray | memoryview) -> None:
        self._data = memoryview(data).cast("B") if not isinstance(data, bytes) else data
        self._pos = 0
        self._end = len(self._data)

    # -- position -------------------------------------------------------------
    def tell(self) -> int:
        """Current read position."""
        return self._pos

    def seek(self, pos: int) -> None:
        """Move the read position; must stay inside the data."""
        if not 0 <= pos <= self._end:
            raise DecodeError("seek outside the buffer")
        self._pos = pos

    @property
    def remaining(self) -> int:
        """Bytes left to read."""
        return self._end - self._pos

    def eof(self) -> bool:
        """True when everything has been read."""
        return self._pos >= self._end

    @property
    def data(self) -> bytes | memoryview:
        """The whole underlying data (not a copy)."""
        return self._data

    # -- fixed-size integers ----------------------------------------------------
    def _need(self, n: int) -> int:
        pos = self._pos
        if n < 0 or pos + n > self._end:
            raise DecodeError(f"truncated: needed {n} bytes, {self._end - pos} left")
        self._pos = pos + n
        return pos

    def pull_uint8(self) -> int:
        pos = self._need(1)
        return self._data[pos]

    def pull_uint16(self) -> int:
        pos = self._need(2)
        d = self._data
        return (d[pos] << 8) | d[pos + 1]

    def pull_uint24(self) -> int:
        pos = self._need(3)
        d = self._data
        return (d[pos] << 16) | (d[pos + 1] << 8) | d[pos + 2]

    def pull_uint32(self) -> int:
        pos = self._need(4)
        return int(_U32.unpack_from(self._data, pos)[0])

    def pull_uint64(self) -> int:
        pos = self._need(8)
        return int(_U64.unpack_from(self._data, pos)[0])

    def pull_varint(self) -> int:
        """A variable-length integer (RFC 9000 §16)."""
        value, self._pos = decode_varint(self._data, self._pos)
        if self._pos > self._end:
            raise DecodeError("truncated variable-length integer")
        return value

    # -- byte strings -----------------------------------------------------------
    def pull_bytes(self, n: int) -> bytes:
        """``n`` bytes, copied."""
        pos = self._need(n)
        return bytes(self._data[pos : pos + n])

    def pull_view(self, n: int) -> memoryview:
        """``n`` bytes as a view into the underlying data (no copy)."""
        pos = self._need(n)
        return memoryview(self._data)[pos : pos + n]

    def pull_rest(self) -> bytes:
        """Everything that is left, copied."""
        return self.pull_bytes(self.remaining)

    def pull_block(self, length_size: int) -> bytes:
        """A block prefixed by a ``length_size``-byte big-endian length (RFC 8446 §3.4)."""
        n = self._pull_length(length_size)
        return self.pull_bytes(n)

    def pull_varint_block(self) -> bytes:
        """A block prefixed by a variable-length integer length."""
        return self.pull_bytes(self.pull_varint())

    def _pull_length(self, length_size: int) -> int:
        if length_size == 1:
            return self.pull_uint8()
        if length_size == 2:
            return self.pull_uint16()
        if length_size == 3:
            return self.pull_uint24()
        if length_size == 4:
            return self.pull_uint32()
        raise ValueError(f"unsupported length size {length_size}")

    def sub_reader(self, length_size: int) -> Reader:
        """A reader over the next length-prefixed block; this reader skips past it."""
        n = self._pull_length(length_size)
        pos = self._need(n)
        return Reader(memoryview(self._data)[pos : pos + n])

    def expect_eof(self, what: str = "message") -> None:
        """Raise :class:`DecodeError` when bytes are left over."""
        if self._pos != self._end:
            raise DecodeError(f"{self._end - self._pos} trailing bytes after {what}")


class Writer:
    """Appends encoded values to a ``bytearray``."""

    __slots__ = ("_buf",)

    def __init__(self, initial: bytes = b"") -> None:
        self._buf = bytearray(initial)

    def __len__(self) -> int:
        return len(self._buf)

    @property
    def data(self) -> bytes:
        """A copy of everything written."""
        return bytes(self._buf)

    @property
    def buffer(self) -> bytearray:
        """The underlying bytearray (not a copy)."""
        return self._buf

    def push_uint8(self, value: int) -> None:
        self._buf.append(value)

    def push_uint16(self, value: int) -> None:
        self._buf += value.to_bytes(2, "big")

    def push_uint24(self, value: int) -> None:
        self._buf += value.to_bytes(3, "big")

    def push_uint32(self, value: int) -> None:
        self._buf += value.to_bytes(4, "big")

    def push_uint64(self, value: int) -> None:
        self._buf += value.to_bytes(8, "big")

    def push_varint(self, value: int) -> None:
        """A variable-length integer in its shortest form (RFC 9000 §16)."""
        if value < 0x40:
            self._buf.append(value)
        else:
            self._buf += encode_varint(value)

    def push_bytes(self, data: bytes | bytearray | memoryview) -> None:
        self._buf += data

    def push_block(self, length_size: int, data: bytes | bytearray | memoryview) -> None:
        """``data`` prefixed by its length in ``length_size`` bytes (RFC 8446 §3.4)."""
        n = len(data)
        if n >= 1 << (8 * length_size):
            raise ValueError(f"block of {n} bytes does not fit a {length_size}-byte length")
        self._buf += n.to_bytes(length_size, "big")
        self._buf += data

    def push_varint_block(self, data: bytes | bytearray | memoryview) -> None:
        """``data`` prefixed by its length as a variable-length integer."""
        self.push_varint(len(data))
        self._buf += data

    @contextmanager
    def block(self, length_size: int) -> Iterator[None]:
        """Write a length-prefixed block whose length is filled in at the end."""
        buf = self._buf
        start = len(buf)
        buf += bytes(length_size)
        yield
        n = len(buf) - start - length_size
        if n >= 1 << (8 * length_size):
            raise ValueError(f"block of {n} bytes does not fit a {length_size}-byte length")
        buf[start : start + length_size] = n.to_bytes(length_size, "big")
