"""The ``mstls-test`` service protocol, spoken by every interop test peer.

Both test servers (the aioquic one in :mod:`tests.interop.aioquic_peer` and the one the
lead builds over mstls) implement exactly this, so the same client scenarios run
against either.  This module holds the spec, its constants, a few pure helpers and a
sans-I/O :class:`ServiceSession` that turns received stream data into actions; a
server only has to feed it events and carry the actions out on its QUIC stack.

Theory of operation
-------------------
Bidirectional streams opened by the client start with one command line ended by
``b"\\n"`` (at most :data:`MAX_COMMAND_LINE` bytes including the newline):

==========================  ============================================================
``echo``                    echo every following byte on the same stream; FIN after the
                            client's FIN
``sink``                    read to FIN, reply ``hex(sha256(rest)) + "\\n"`` and FIN
``source N``                send N pattern bytes (:func:`pattern`), then FIN
``reset CODE``              RESET_STREAM with CODE on the server's sending side
``stop CODE``               STOP_SENDING with CODE (stops the client's sending side)
``close CODE REASON...``    close the connection: application error CODE, the rest of
                            the line as reason phrase
``keyupdate``               initiate a 1-RTT key update, then behave like ``echo``
``uni N``                   open a server unidirectional stream with N pattern bytes and
                            FIN; reply ``ok\\n`` and FIN on the command stream
==========================  ============================================================

Once the client sends STOP_SENDING on a stream, the server sends nothing more on it
(RFC 9000 §3.5), whatever the command.

Unidirectional streams opened by the client are read to FIN; the server then opens a
unidirectional stream of its own carrying ``hex(sha256(data)) + "\\n"`` and FIN.

A malformed or unknown command line resets the server's sending side with
:data:`BAD_COMMAND_ERROR`.  Data after a command that does not read it is discarded.

The event log a server keeps (a list of tuples, see the ``EVENT_*`` names):
``("handshake", alpn, cipher_suite_name)``, ``("stream_reset", stream_id, code)``,
``("stop_sending", stream_id, code)``, ``("connection_closed", code, reason, by_peer)``
and, where the stack lets it be seen, ``("key_phase_change", key_phase)``.
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

__all__ = [
    "ALPN",
    "BAD_COMMAND_ERROR",
    "CIPHER_SUITE_NAMES",
    "EVENT_CONNECTION_CLOSED",
    "EVENT_HANDSHAKE",
    "EVENT_KEY_PHASE_CHANGE",
    "EVENT_STOP_SENDING",
    "EVENT_STREAM_RESET",
    "LINE_END",
    "MAX_COMMAND_LINE",
    "MAX_NUMBER",
    "MAX_TRANSFER",
    "OK_REPLY",
    "PATTERN_BLOCK",
    "PATTERN_MODULUS",
    "Action",
    "Close",
    "Command",
    "CommandError",
    "KeyUpdate",
    "Request",
    "Reset",
    "Send",
    "SendUni",
    "ServiceSession",
    "Stop",
    "command_line",
    "digest_line",
    "is_client_initiated",
    "is_unidirectional",
    "parse_command",
    "parse_digest_line",
    "pattern",
    "pattern_chunks",
    "sha256_hex",
]

ALPN = "mstls-test"
LINE_END = b"\n"
#: The longest command line accepted, newline included.
MAX_COMMAND_LINE = 1024
#: The reply on the command stream of ``uni N``.
OK_REPLY = b"ok\n"
#: Application error code of the RESET_STREAM answering a malformed command line.
BAD_COMMAND_ERROR = 0x7E57
#: The largest application error code (RFC 9000 §16: 62-bit varints).
MAX_NUMBER = (1 << 62) - 1
#: The largest N of ``source N`` and ``uni N`` (the server builds the bytes at once).
MAX_TRANSFER = 1 << 30

#: Byte ``i`` of the source pattern is ``i % PATTERN_MODULUS``.
PATTERN_MODULUS = 251
#: 256 whole periods of the pattern (64,256 bytes): each block starts at phase 0.
PATTERN_BLOCK = bytes(range(PATTERN_MODULUS)) * 256

EVENT_HANDSHAKE = "handshake"
EVENT_STREAM_RESET = "stream_reset"
EVENT_STOP_SENDING = "stop_sending"
EVENT_CONNECTION_CLOSED = "connection_closed"
EVENT_KEY_PHASE_CHANGE = "key_phase_change"

#: TLS 1.3 cipher suite code points (RFC 8446 §B.4) to the names logged by servers.
CIPHER_SUITE_NAMES = {
    0x1301: "AES_128_GCM_SHA256",
    0x1302: "AES_256_GCM_SHA384",
    0x1303: "CHACHA20_POLY1305_SHA256",
}


class CommandError(ValueError):
    """A command line that is not part of the protocol (handles untrusted input)."""


class Command(enum.StrEnum):
    """The command words."""

    ECHO = "echo"
    SINK = "sink"
    SOURCE = "source"
    RESET = "reset"
    STOP = "stop"
    CLOSE = "close"
    KEYUPDATE = "keyupdate"
    UNI = "uni"


#: How many integer arguments each command takes (``close`` also takes a reason).
_INT_ARGUMENTS = {
    Command.ECHO: 0,
    Command.SINK: 0,
    Command.SOURCE: 1,
    Command.RESET: 1,
    Command.STOP: 1,
    Command.CLOSE: 1,
    Command.KEYUPDATE: 0,
    Command.UNI: 1,
}
#: Commands whose number is a byte count rather than an error code.
_COUNTS = frozenset({Command.SOURCE, Command.UNI})


@dataclass(frozen=True, slots=True)
class Request:
    """One parsed command line: ``number`` is CODE or N (0 when absent)."""

    command: Command
    number: int = 0
    reason: str = ""


def parse_command(line: bytes) -> Request:
    """Parse one command line, without its newline (handles untrusted input)."""
    try:
        text = line.decode("ascii")
    except UnicodeDecodeError:
        raise CommandError("command line is not ASCII") from None
    word, _, rest = text.partition(" ")
    try:
        command = Command(word)
    except ValueError:
        raise CommandError(f"unknown command {word!r}") from None
    if _INT_ARGUMENTS[command] == 0:
        if rest:
            raise CommandError(f"{command} takes no argument")
        return Request(command)
    number_text, _, reason = rest.partition(" ")
    if not number_text.isdigit() or int(number_text) > MAX_NUMBER:
        raise CommandError(f"{command} needs a number, got {number_text!r}")
    if reason and command is not Command.CLOSE:
        raise CommandError(f"{command} takes one argument")
    if command in _COUNTS and int(number_text) > MAX_TRANSFER:
        raise CommandError(f"{command} count above {MAX_TRANSFER}")
    return Request(command, int(number_text), reason)


def command_line(command: Command | str, number: int | None = None, reason: str = "") -> bytes:
    """Format a command line, newline included: ``command_line("source", 10)``."""
    parts = [str(Command(command))]
    if number is not None:
        parts.append(str(number))
    if reason:
        parts.append(reason)
    line = " ".join(parts).encode("ascii") + LINE_END
    if len(line) > MAX_COMMAND_LINE:
        raise CommandError(f"command line longer than {MAX_COMMAND_LINE} bytes")
    return line


def pattern(n: int) -> bytes:
    """The first ``n`` bytes of the source pattern, ``bytes(i % 251 for i in range(n))``."""
    whole, rest = divmod(n, len(PATTERN_BLOCK))
    return PATTERN_BLOCK * whole + PATTERN_BLOCK[:rest]


def pattern_chunks(n: int) -> Iterator[bytes]:
    """The first ``n`` pattern bytes as chunks of at most ``len(PATTERN_BLOCK)`` bytes."""
    while n > 0:
        size = min(n, len(PATTERN_BLOCK))
        yield PATTERN_BLOCK if size == len(PATTERN_BLOCK) else PATTERN_BLOCK[:size]
        n -= size


def sha256_hex(data: bytes | bytearray | memoryview) -> str:
    """Lowercase hex SHA-256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def digest_line(hex_digest: str) -> bytes:
    """The reply carrying a digest: the hex text and a newline."""
    return hex_digest.encode("ascii") + LINE_END


def parse_digest_line(reply: bytes | bytearray) -> str:
    """The hex digest out of a digest reply (handles untrusted input)."""
    text = bytes(reply).decode("ascii", errors="replace")
    if not text.endswith("\n") or len(text) != 65:
        raise CommandError(f"not a digest line: {bytes(reply)[:80]!r}")
    return text[:-1]


def is_unidirectional(stream_id: int) -> bool:
    """Bit 0x2 of a stream ID marks a unidirectional stream (RFC 9000 §2.1)."""
    return bool(stream_id & 0x2)


def is_client_initiated(stream_id: int) -> bool:
    """Bit 0x1 of a stream ID is clear on client-initiated streams (RFC 9000 §2.1)."""
    return not stream_id & 0x1


# --- actions a server carries out -------------------------------------------------


@dataclass(frozen=True, slots=True)
class Send:
    """Send ``data`` on ``stream_id``, with FIN when ``end``."""

    stream_id: int
    data: bytes
    end: bool = False


@dataclass(frozen=True, slots=True)
class SendUni:
    """Open a server-initiated unidirectional stream, send ``data`` and FIN."""

    data: bytes


@dataclass(frozen=True, slots=True)
class Reset:
    """RESET_STREAM on ``stream_id`` with application error ``code``."""

    stream_id: int
    code: int


@dataclass(frozen=True, slots=True)
class Stop:
    """STOP_SENDING on ``stream_id`` with application error ``code``."""

    stream_id: int
    code: int


@dataclass(frozen=True, slots=True)
class Close:
    """Close the connection with application error ``code`` and ``reason``."""

    code: int
    reason: str


@dataclass(frozen=True, slots=True)
class KeyUpdate:
    """Initiate a 1-RTT key update (RFC 9001 §6)."""


Action = Send | SendUni | Reset | Stop | Close | KeyUpdate


class _Mode(enum.Enum):
    COMMAND = enum.auto()  # still reading the command line
    ECHO = enum.auto()
    HASH = enum.auto()  # sink, or a client unidirectional stream
    DISCARD = enum.auto()


@dataclass(slots=True)
class _StreamState:
    mode: _Mode = _Mode.COMMAND
    line: bytearray = field(default_factory=bytearray)
    hasher: hashlib._Hash = field(default_factory=hashlib.sha256)
    uni: bool = False


class ServiceSession:
    """The server side of one connection, sans-I/O.

    Feed :meth:`on_stream_data` with every received chunk (and :meth:`on_stream_reset`
    when the client resets a stream); carry out the returned actions in order.  The
    data of :class:`Send` actions may be the received chunk itself (no copy).
    """

    def __init__(self) -> None:
        self._streams: dict[int, _StreamState] = {}

    def on_stream_data(self, stream_id: int, data: bytes, fin: bool) -> list[Action]:
        """Handle data (and FIN) received on a client-initiated stream."""
        state = self._streams.get(stream_id)
        if state is None:
            if not is_client_initiated(stream_id):
                return []
            uni = is_unidirectional(stream_id)
            state = _StreamState(mode=_Mode.HASH if uni else _Mode.COMMAND, uni=uni)
            self._streams[stream_id] = state
        actions: list[Action] = []
        if state.mode is _Mode.COMMAND:
            data = self._read_command(stream_id, state, data, fin, actions)
        if state.mode is _Mode.ECHO:
            if data or fin:
                actions.append(Send(stream_id, data, fin))
        elif state.mode is _Mode.HASH:
            state.hasher.update(data)
            if fin:
                reply = digest_line(state.hasher.hexdigest())
                actions.append(SendUni(reply) if state.uni else Send(stream_id, reply, True))
        if fin:
            del self._streams[stream_id]
        return actions

    def on_stream_reset(self, stream_id: int) -> None:
        """Forget a stream the client reset."""
        self._streams.pop(stream_id, None)

    def on_stop_sending(self, stream_id: int) -> None:
        """The client stopped our sending side: nothing more may be sent on the stream."""
        state = self._streams.get(stream_id)
        if state is not None:
            state.mode = _Mode.DISCARD

    def _read_command(
        self, stream_id: int, state: _StreamState, data: bytes, fin: bool, out: list[Action]
    ) -> bytes:
        """Collect the command line; once complete, dispatch it and return the rest."""
        room = MAX_COMMAND_LINE - len(state.line)
        end = data.find(LINE_END, 0, room)
        if end < 0:
            state.line += data[:room]
            if fin or len(data) >= room:
                state.mode = _Mode.DISCARD
                out.append(Reset(stream_id, BAD_COMMAND_ERROR))
            return b""
        state.line += data[:end]
        try:
            request = parse_command(bytes(state.line))
        except CommandError:
            state.mode = _Mode.DISCARD
            out.append(Reset(stream_id, BAD_COMMAND_ERROR))
            return b""
        state.mode = self._dispatch(stream_id, request, out)
        return data[end + 1 :]

    @staticmethod
    def _dispatch(stream_id: int, request: Request, out: list[Action]) -> _Mode:
        """Start a command: append its first actions; how the stream is read after it."""
        actions, mode = _DISPATCH[request.command](stream_id, request)
        out.extend(actions)
        return mode


_Starter = Callable[[int, Request], tuple[tuple[Action, ...], _Mode]]

#: Each command's first actions and the mode its stream is read in afterwards.
_DISPATCH: dict[Command, _Starter] = {
    Command.ECHO: lambda sid, r: ((), _Mode.ECHO),
    Command.KEYUPDATE: lambda sid, r: ((KeyUpdate(),), _Mode.ECHO),
    Command.SINK: lambda sid, r: ((), _Mode.HASH),
    Command.SOURCE: lambda sid, r: ((Send(sid, pattern(r.number), True),), _Mode.DISCARD),
    Command.UNI: lambda sid, r: (
        (SendUni(pattern(r.number)), Send(sid, OK_REPLY, True)),
        _Mode.DISCARD,
    ),
    Command.RESET: lambda sid, r: ((Reset(sid, r.number),), _Mode.DISCARD),
    Command.STOP: lambda sid, r: ((Stop(sid, r.number),), _Mode.DISCARD),
    Command.CLOSE: lambda sid, r: ((Close(r.number, r.reason),), _Mode.DISCARD),
}
