"""The mstlsd stream preamble and the application error codes of the daemon.

Theory of operation
-------------------
mstls carries bytes; the daemon needs to know which service a stream is for.
The client's first bytes on every bidirectional stream are one line::

    SERVICE-NAME "\\n"

``SERVICE-NAME`` is 1 to :data:`MAX_SERVICE_NAME` bytes of ASCII letters,
digits, ``.``, ``_`` and ``-``; the whole line, newline included, is at most
:data:`MAX_PREAMBLE` (255) bytes.  There is no reply: the client writes its
data straight after the newline, and everything after it belongs to the
service (the daemon hands the service the bytes it already read).

A stream the daemon will not serve is ended with RESET_STREAM and
STOP_SENDING carrying one of the :class:`StreamCode` values, so the client's
read raises ``StreamReset(code)`` and its write ``StreamStopped(code)``.
When the daemon ends a whole connection it uses a :class:`ConnectionCode` in
an application CONNECTION_CLOSE (RFC 9000 §10.2), so the client's calls raise
``ConnectionTerminated`` with ``is_application=True`` and that ``code``.

Every code is an application error code (RFC 9000 §20.2), so it never
collides with QUIC transport codes; the values are fixed and documented in the
README ("Running mstlsd").
"""

from __future__ import annotations

import re
from enum import IntEnum

import trio

import mstls.trio

__all__ = [
    "MAX_PREAMBLE",
    "MAX_SERVICE_NAME",
    "ConnectionCode",
    "PreambleError",
    "PrefixedStream",
    "StreamCode",
    "describe_code",
    "encode_preamble",
    "parse_preamble",
    "read_preamble",
]

#: The preamble line, newline included, is at most this many bytes.
MAX_PREAMBLE = 255
#: A service name is at most this many bytes (the line minus its newline).
MAX_SERVICE_NAME = MAX_PREAMBLE - 1
#: Bytes asked for per read while looking for the newline.
_READ_SIZE = 4096

_NAME = re.compile(rb"[A-Za-z0-9._-]+")


class StreamCode(IntEnum):
    """Why the daemon reset a stream (RESET_STREAM and STOP_SENDING code)."""

    #: The stream ended normally; also what a plain ``aclose`` sends.
    NO_ERROR = 0x0
    #: The preamble names no configured service.
    UNKNOWN_SERVICE = 0x100
    #: The client's identity is not on the service's allow-list.
    NOT_AUTHORISED = 0x101
    #: The ``forward`` backend refused the TCP connection (or could not be reached).
    BACKEND_REFUSED = 0x102
    #: The preamble is malformed, too long, or did not arrive in time.
    BAD_PREAMBLE = 0x103
    #: The backend failed in the middle of the stream (TCP reset, I/O error).
    BACKEND_FAILED = 0x104
    #: The connection already has ``max_streams_per_connection`` streams open.
    TOO_MANY_STREAMS = 0x105
    #: A ``python`` service handler raised an exception.
    HANDLER_FAILED = 0x106
    #: The daemon is shutting down and takes no new stream, or the drain timeout
    #: cut this one short.
    SHUTTING_DOWN = 0x107
    #: A unidirectional stream: the daemon serves bidirectional streams only.
    UNSUPPORTED_STREAM = 0x108


class ConnectionCode(IntEnum):
    """Why the daemon closed a connection (application CONNECTION_CLOSE code)."""

    #: Normal close.
    NO_ERROR = 0x0
    #: The daemon shut down (after the drain) or refused a connection while draining.
    SERVER_SHUTDOWN = 0x200
    #: The daemon already serves ``max_connections`` connections.
    TOO_MANY_CONNECTIONS = 0x201


def describe_code(code: int) -> str:
    """``"0x100 UNKNOWN_SERVICE"`` for a daemon code; other codes as hex only."""
    for table in (StreamCode, ConnectionCode):
        try:
            return f"{code:#x} {table(code).name}"
        except ValueError:
            continue
    return f"{code:#x}"


class PreambleError(Exception):
    """The preamble is malformed; ``code`` is the stream code to reset with."""

    def __init__(self, reason: str, code: StreamCode = StreamCode.BAD_PREAMBLE) -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code


def encode_preamble(service: str) -> bytes:
    """The preamble line for ``service`` (raises ValueError on a bad name)."""
    raw = service.encode("ascii", "replace")
    if not _NAME.fullmatch(raw) or len(raw) > MAX_SERVICE_NAME:
        raise ValueError(
            f"service name {service!r}: use 1-{MAX_SERVICE_NAME} letters, digits, '.', '_', '-'"
        )
    return raw + b"\n"


def parse_preamble(buffer: bytes | bytearray) -> tuple[str, bytes] | None:
    """``(service, rest)`` once ``buffer`` holds a whole line, None while it may still come.

    Handles untrusted input: raises only :class:`PreambleError`.
    """
    end = buffer.find(b"\n", 0, MAX_PREAMBLE)
    if end < 0:
        if len(buffer) >= MAX_PREAMBLE:
            raise PreambleError(f"no newline in the first {MAX_PREAMBLE} bytes")
        return None
    name = bytes(buffer[:end])
    if not _NAME.fullmatch(name):
        raise PreambleError(f"malformed service name {name[:64]!r}")
    return name.decode("ascii"), bytes(buffer[end + 1 :])


async def read_preamble(stream: trio.abc.ReceiveStream) -> tuple[str, bytes]:
    """Read the preamble from ``stream``: ``(service, bytes read past the newline)``.

    Raises :class:`PreambleError` on a malformed line or when the stream ends
    first; the caller bounds the wait with a timeout.
    """
    buffer = bytearray()
    while True:
        parsed = parse_preamble(buffer)
        if parsed is not None:
            return parsed
        data = await stream.receive_some(_READ_SIZE)
        if not data:
            raise PreambleError("the stream ended before the preamble")
        buffer += data


class PrefixedStream(trio.abc.HalfCloseableStream):
    """A stream whose first received bytes are ``prefix`` (read past the preamble).

    Everything else is passed to the wrapped stream, so services and Python
    handlers see an ordinary :class:`trio.abc.HalfCloseableStream`.
    """

    def __init__(self, stream: trio.abc.HalfCloseableStream, prefix: bytes) -> None:
        self.stream = stream
        self._prefix = prefix

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        if self._prefix:
            await trio.lowlevel.checkpoint()
            size = len(self._prefix) if max_bytes is None else max_bytes
            data, self._prefix = self._prefix[:size], self._prefix[size:]
            return data
        return bytes(await self.stream.receive_some(max_bytes))

    @property
    def at_end(self) -> bool:
        """Whether the bytes returned so far end at the client's FIN (the wrapped
        stream's ``at_end``; False for a stream that cannot tell)."""
        return not self._prefix and bool(getattr(self.stream, "at_end", False))

    async def send_all(self, data: bytes | bytearray | memoryview, *, end: bool = False) -> None:
        """``end=True``: also end our sending, in the same packet (mstls streams);
        ``send_eof`` after the data on a stream without that parameter."""
        if not end:
            await self.stream.send_all(data)
        elif isinstance(self.stream, mstls.trio.Stream):
            await self.stream.send_all(data, end=True)
        else:
            await self.stream.send_all(data)
            await self.stream.send_eof()

    async def wait_send_all_might_not_block(self) -> None:
        await self.stream.wait_send_all_might_not_block()

    async def send_eof(self) -> None:
        await self.stream.send_eof()

    async def aclose(self) -> None:
        await self.stream.aclose()
