"""The pieces every conformance client shares: operations, calls, outcomes, waiters
(the theory of operation is in :mod:`tests.conformance.adapters`)."""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import trio
import trio.testing

import mstls
import mstls.asyncio
import mstls.trio
from mstls import errors
from mstls.errors import ErrorEntry

APIS = ("blocking", "trio", "asyncio")
#: Longest any operation of the suite may wait before it counts as a stall.
WAKE_TIMEOUT = 20.0
#: How long the blocking client lets N fresh threads reach their waits.
SETTLE = 0.3
#: Extra time :meth:`Waiters.join` gives a waiter beyond its own time limit.
JOIN_MARGIN = 5.0
#: Bytes per write of ``Op.WRITE_UNTIL_ERROR`` (flow control blocks it soon).
WRITE_CHUNK = 64 * 1024
#: Reads of ``Op.READ_UNTIL_ERROR``: this many bytes at most per call.
READ_CHUNK = 64 * 1024
#: What ``Op.BULK`` writes (and reads back) per turn.
BULK_CHUNK = 16 * 1024
#: How long ``Op.READ_BRIEFLY`` / ``Op.WRITE_BRIEFLY`` wait.
BRIEF = 0.05


class Op(StrEnum):
    """What a thread or task does (``arg`` in brackets)."""

    OPEN = "open"  # open_stream(bidirectional=[True])
    ACCEPT = "accept"  # accept_stream()
    READ = "read"  # one read of up to [READ_CHUNK] bytes
    READ_UNTIL_ERROR = "read_until_error"  # read until an exception; value: bytes read
    WRITE = "write"  # write all of [data]
    WRITE_UNTIL_ERROR = "write_until_error"  # write until an exception (flow control)
    CONCLUDE = "conclude"  # FIN
    CLOSE = "close"  # close the connection with [(code, reason)]
    OPEN_AND_READ = "open_and_read"  # open a stream (lazy: the handshake), read until an error
    ACCEPT_AND_READ_ALL = "accept_and_read_all"  # accept a stream, read to its FIN
    OPEN_AND_EXCHANGE = "open_and_exchange"  # open, write [data] and FIN, read to the FIN
    ECHO_ROUNDS = "echo_rounds"  # [rounds] times: read one byte, write it back
    BULK = "bulk"  # write BULK_CHUNK and read it back until [threading.Event] is set
    READ_BRIEFLY = "read_briefly"  # read, giving up after BRIEF (Timeout / cancellation)
    WRITE_BRIEFLY = "write_briefly"  # write [data], giving up after BRIEF
    LISTENER_ACCEPT = "listener_accept"  # accept a connection on the listener [stream]
    LISTENER_CLOSE = "listener_close"  # close the listener [stream]


#: Operations that may run longer than WAKE_TIMEOUT; each of their steps has that limit.
LONG_OPS = frozenset({Op.ECHO_ROUNDS, Op.BULK})


@dataclass(frozen=True)
class Call:
    """One operation: ``op`` on ``stream`` (an API stream object) with ``arg``.

    ``junk``: that many unrelated entries are put in the caller's queue first
    (classification must not depend on them, E7).
    """

    op: Op
    stream: Any = None
    arg: Any = None
    junk: int = 0


@dataclass
class Outcome:
    """What one thread's or task's operation gave, and its queue right after."""

    call: Call
    value: Any = None
    exc: BaseException | None = None
    entries: list[ErrorEntry] = field(default_factory=list)
    received: int = 0  # bytes read by READ_UNTIL_ERROR before it failed

    def unwrap(self) -> Any:
        """The value, or raise the exception."""
        if self.exc is not None:
            raise self.exc
        return self.value


def mstls_class(exc: BaseException) -> type[BaseException]:
    """The mstls class of ``exc``: trio's ``BrokenResourceError`` flavour removed."""
    return next(
        c
        for c in type(exc).__mro__
        if issubclass(c, BaseException) and not issubclass(c, trio.BrokenResourceError)
    )


class Waiters(abc.ABC):
    """N operations running at once; :meth:`join` waits for all and returns their outcomes."""

    @abc.abstractmethod
    def join(self, limit: float = WAKE_TIMEOUT + JOIN_MARGIN) -> list[Outcome]:
        """The outcomes, once every waiter finished; fail after ``limit`` seconds."""


class Client(abc.ABC):
    """A client connection through one API; see the module documentation."""

    api = ""

    def __init__(self, transport: str) -> None:
        self.transport = transport

    @abc.abstractmethod
    def connect(self, port: int, config: mstls.ClientConfig, *, lazy: bool = False) -> None:
        """Connect to 127.0.0.1:``port`` (waiting for the handshake unless ``lazy``)."""

    @abc.abstractmethod
    def listen(self, config: mstls.ServerConfig) -> Any:
        """A listener of this API on 127.0.0.1 (any port), for the ``LISTENER_*`` ops."""

    @abc.abstractmethod
    def call(self, op: Op, stream: Any = None, arg: Any = None) -> Outcome:
        """Run one operation in a fresh thread (task) and return its outcome."""

    @abc.abstractmethod
    def run(self, call: Call) -> Outcome:
        """:meth:`call` with a full :class:`Call` (``junk`` included)."""

    @abc.abstractmethod
    def start(self, calls: Sequence[Call], *, settle: bool = True) -> Waiters:
        """Run ``calls`` at once, each in its own thread (task); return once they
        wait (at once if not ``settle``: for races)."""

    @abc.abstractmethod
    def channel_entries(self) -> tuple[ErrorEntry, ...]:
        """The entries kept on the connection's channel (E2)."""

    @abc.abstractmethod
    def disconnect(self) -> None:
        """Close the current connection (code 0) if there is one; errors are ignored."""

    @abc.abstractmethod
    def shutdown(self) -> None:
        """Release everything (close the connection quietly, stop threads)."""

    def do(self, op: Op, stream: Any = None, arg: Any = None) -> Any:
        """:meth:`call`, returning the value or raising the exception."""
        return self.call(op, stream, arg).unwrap()

    def open_streams(self, count: int) -> list[Any]:
        """``count`` new bidirectional streams (opened in fresh threads or tasks)."""
        return [self.do(Op.OPEN) for _ in range(count)]


def put_junk(count: int) -> None:
    """Fill the caller's queue with ``count`` unrelated entries (for E7)."""
    errors.clear_error()
    for i in range(count):
        errors.put_error(ErrorEntry(errors.Lib.API, errors.Reason.INTERNAL, f"junk {i}"))


def _received(exc: BaseException) -> int:
    for note in getattr(exc, "__notes__", ()):
        if note.startswith("after ") and note.endswith(" bytes"):
            return int(note.split()[1])
    return 0
