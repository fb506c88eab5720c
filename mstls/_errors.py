"""The error model's machinery: the connection's error stack, classification, entries
for exceptions.  Private: users reach the queue API through :mod:`mstls.errors`; the
rules are written in ``docs/error-model.md``.

Theory of operation
-------------------
mstls reports failures twice, as OpenSSL does for QUIC:

* by the **exception** a call raises (rooted at :class:`mstls.Error`), whose
  ``kind`` is the ``SSL_get_error``-style classification (:func:`classify`,
  :func:`classify_read`).  Classification never looks at any queue (E7);
* by **entries** in an error queue that explain it step by step.  Each thread,
  and each trio task, has its own queue (E1): :func:`get_error`,
  :func:`peek_error`, :func:`peek_last_error`, :func:`clear_error`,
  :func:`print_errors`, :func:`errors`.  See :mod:`mstls._error_queue` for how
  queues are kept apart when trio copies contexts into child tasks.

A connection owns a :class:`Channel`, its persistent error stack (E2).  When the
connection fails for good, whoever noticed (a reader, a writer, the thread
that runs timers) calls :meth:`Channel.fail`: the first failure wins, and the
failure's own entries (given explicitly, or recorded since a :func:`mark`)
move onto the channel; unrelated older entries stay in the caller's queue.
Every later call on the connection or any of its streams calls
:meth:`Channel.raise_if_failed` (E3): the channel's entries are *copied* into
the caller's queue, followed by a ``CONNECTION_TERMINATED`` entry, and a fresh
copy of the stored exception is raised.  Entries stay on the channel, so N
threads blocked on N streams all wake and all see the same entries, and so does
a thread that comes later.
Entries are immutable; copying one means sharing the object.

Stream-only failures (E5) never touch the channel: :func:`stream_error` records
into the caller's queue only.  A stream's read and write sides fail apart (E6)
in the stream layer (``mstls.core.streams``) and the session.  Intermittent
conditions (E4) are recorded inside :func:`intermittent` and gone when the call
goes on; :func:`classify_os_error` tells them from fatal ones.  Would-block
results (``WantRead``, ``WantWrite`` and ``Timeout``, a would-block with a
deadline) leave no entry at all: the exception says it, and a retry must not
find a stale entry (E4, E7).

Locking: queues belong to one thread or task and take no lock.  A channel takes
its own short lock; nothing waits while holding it.
"""

from __future__ import annotations

import errno as _errno
import threading
from collections.abc import Callable, Iterable
from typing import Literal, TypeVar

from ._error_queue import (
    QUEUE_LIMIT,
    ErrorEntry,
    Lib,
    Reason,
    _queue,
    caller_location,
    clear_error,
    errors,
    get_error,
    intermittent,
    mark,
    peek_error,
    peek_last_error,
    print_errors,
    put_error,
    put_errors,
    record,
    taken_since,
)
from ._termination import Termination, TerminationInfo, describe_code, terminated_from_event
from .exceptions import (
    CertificateError,
    ConfigurationError,
    ConnectionIOError,
    ConnectionTerminated,
    Error,
    ErrorKind,
    HandshakeError,
    IncompleteRead,
    ListenerClosed,
    PrematureClose,
    ProtocolError,
    StreamError,
    StreamLimitReached,
    StreamReset,
    StreamStopped,
    Timeout,
    TLSError,
    WantRead,
    WantWrite,
)

__all__ = [
    "DATAGRAM_INTERMITTENT_ERRNOS",
    "INTERMITTENT_ERRNOS",
    "QUEUE_LIMIT",
    "CertificateError",
    "Channel",
    "ConnectionTerminated",
    "Error",
    "ErrorEntry",
    "ErrorKind",
    "HandshakeError",
    "IncompleteRead",
    "Lib",
    "ListenerClosed",
    "PrematureClose",
    "Reason",
    "StreamReset",
    "StreamStopped",
    "Termination",
    "TerminationInfo",
    "Timeout",
    "WantRead",
    "WantWrite",
    "classify",
    "classify_os_error",
    "classify_read",
    "clear_error",
    "describe_code",
    "entry_for",
    "errno_of",
    "errors",
    "get_error",
    "intermittent",
    "mark",
    "peek_error",
    "peek_last_error",
    "print_errors",
    "put_error",
    "put_errors",
    "record",
    "record_exception",
    "recorded",
    "stream_error",
    "taken_since",
    "terminated_from_event",
    "timeout_error",
]

E = TypeVar("E", bound=BaseException)


def _errnos(*names: str) -> frozenset[int]:
    """The errno values of ``names`` that exist on this platform."""
    return frozenset(getattr(_errno, name) for name in names if hasattr(_errno, name))


#: Retry later, on any socket: would block, interrupted, no buffer space (E4).
INTERMITTENT_ERRNOS = _errnos("EAGAIN", "EWOULDBLOCK", "EINTR", "ENOBUFS", "WSAEWOULDBLOCK")
#: Also intermittent on a UDP socket: errors latched by ICMP messages (port or
#: host unreachable, Linux ``icmp_err_convert``) and an oversized datagram.
#: On TCP the same errno (ECONNRESET, ECONNREFUSED) ends the connection.
DATAGRAM_INTERMITTENT_ERRNOS = INTERMITTENT_ERRNOS | _errnos(
    "ECONNREFUSED",
    "ECONNRESET",
    "EHOSTUNREACH",
    "ENETUNREACH",
    "EHOSTDOWN",
    "ENONET",
    "EPROTO",
    "EMSGSIZE",
    "WSAECONNRESET",
    "WSAENETRESET",
    "WSAEMSGSIZE",
)


def classify_os_error(exc: OSError, *, datagram: bool = False) -> Literal["intermittent", "fatal"]:
    """Whether a socket error is intermittent (handled inside, E4) or fatal.

    ``datagram`` selects the UDP rules (ICMP-latched errors are intermittent);
    the default is the stricter TCP rule.
    """
    allowed = DATAGRAM_INTERMITTENT_ERRNOS if datagram else INTERMITTENT_ERRNOS
    if exc.errno is not None:
        return "intermittent" if exc.errno in allowed else "fatal"
    if isinstance(exc, BlockingIOError | InterruptedError | TimeoutError):
        return "intermittent"
    return "fatal"


#: How many links of a cause chain :func:`errno_of` follows.
_MAX_ERRNO_DEPTH = 8


def errno_of(exc: BaseException) -> int | None:
    """The ``errno`` behind a socket error: its own, else the first one found in
    its cause or exception group (trio's happy-eyeballs connect raises a bare
    ``OSError`` from a group of per-address errors)."""
    pending: list[tuple[BaseException, int]] = [(exc, 0)]
    while pending:
        current, depth = pending.pop(0)
        value = getattr(current, "errno", None)
        if isinstance(value, int):
            return value
        if depth >= _MAX_ERRNO_DEPTH:
            continue
        inner = list(getattr(current, "exceptions", ()))
        if current.__cause__ is not None:
            inner.insert(0, current.__cause__)
        pending.extend((child, depth + 1) for child in inner if isinstance(child, BaseException))
    return None


# -- classification (E7) ------------------------------------------------------------------
#: Kinds of exceptions that are not mstls's own, most specific first.
_FOREIGN_KINDS: tuple[tuple[type[BaseException], ErrorKind], ...] = (
    (BlockingIOError, ErrorKind.WANT_READ),
    (InterruptedError, ErrorKind.WANT_READ),
    (TimeoutError, ErrorKind.WANT_READ),
    (OSError, ErrorKind.SYSCALL),
)


def classify(exc: BaseException | None) -> ErrorKind:
    """The ``SSL_get_error``-style kind of a call's outcome (E7).

    ``None`` (the call succeeded) is ``NONE``; an mstls exception gives its
    ``kind``; a would-block or timeout ``OSError`` is ``WANT_READ``, another
    ``OSError`` ``SYSCALL``, anything else ``SSL``.  Error queues are never read.
    """
    if exc is None:
        return ErrorKind.NONE
    if isinstance(exc, Error):
        return exc.kind
    for cls, kind in _FOREIGN_KINDS:
        if isinstance(exc, cls):
            return kind
    return ErrorKind.SSL


def classify_read(result: bytes | bytearray | memoryview | int | BaseException | None) -> ErrorKind:
    """Classify what a read returned: ``b""`` (or 0 bytes read into a buffer) is
    the stream's FIN, ``ZERO_RETURN``; data is ``NONE``; ``None`` is the
    non-blocking "no data yet" of :mod:`io` (``WANT_READ``); an exception goes
    through :func:`classify`."""
    if isinstance(result, BaseException):
        return classify(result)
    if result is None:
        return ErrorKind.WANT_READ
    size = result if isinstance(result, int) else len(result)
    return ErrorKind.ZERO_RETURN if size == 0 else ErrorKind.NONE


# -- entries for exceptions ---------------------------------------------------------------
#: (library, reason) per exception class; the most derived class in the MRO wins.
_ENTRY_TABLE: dict[type[BaseException], tuple[Lib, Reason]] = {
    StreamReset: (Lib.STREAM, Reason.STREAM_RESET),
    StreamStopped: (Lib.STREAM, Reason.STREAM_STOPPED),
    StreamLimitReached: (Lib.STREAM, Reason.WANT_WRITE),
    StreamError: (Lib.STREAM, Reason.STREAM_STATE),
    CertificateError: (Lib.TLS, Reason.CERTIFICATE_VERIFY_FAILED),
    TLSError: (Lib.TLS, Reason.TLS_ALERT),
    ProtocolError: (Lib.QUIC, Reason.PROTOCOL_VIOLATION),
    PrematureClose: (Lib.SYS, Reason.PREMATURE_CLOSE),
    ConnectionIOError: (Lib.SYS, Reason.SYSCALL),
    ConnectionTerminated: (Lib.QUIC, Reason.CONNECTION_TERMINATED),
    ConfigurationError: (Lib.API, Reason.BAD_CONFIGURATION),
    IncompleteRead: (Lib.STREAM, Reason.INCOMPLETE_READ),
    ListenerClosed: (Lib.API, Reason.LISTENER_CLOSED),
    Timeout: (Lib.API, Reason.TIMEOUT),
    WantRead: (Lib.API, Reason.WANT_READ),
    WantWrite: (Lib.API, Reason.WANT_WRITE),
    OSError: (Lib.SYS, Reason.SYSCALL),
    BaseException: (Lib.API, Reason.INTERNAL),
}


def _code_of(exc: BaseException) -> int | None:
    for name in ("code", "error_code", "errno"):
        value = getattr(exc, name, None)
        if isinstance(value, int):
            return value
    return None


def entry_for(exc: BaseException, *, lib: Lib | None = None, stacklevel: int = 1) -> ErrorEntry:
    """The queue entry that explains ``exc`` (not recorded anywhere).

    ``lib`` overrides the library for connection-level errors (``qmux``).
    """
    table_lib, reason = next(_ENTRY_TABLE[cls] for cls in type(exc).__mro__ if cls in _ENTRY_TABLE)
    if reason is Reason.CONNECTION_TERMINATED and isinstance(exc, ConnectionTerminated):
        reason = Reason.PEER_CLOSED if exc.by_peer else Reason.LOCAL_CLOSED
    if lib is not None and table_lib in (Lib.QUIC, Lib.QMUX):
        table_lib = lib
    return ErrorEntry(
        table_lib,
        reason,
        str(exc),
        type(exc).__name__,
        caller_location(stacklevel),
        _code_of(exc),
    )


def record_exception(
    exc: BaseException, *, lib: Lib | None = None, stacklevel: int = 1
) -> ErrorEntry:
    """Record the entry for ``exc`` in the caller's queue and return it."""
    entry = entry_for(exc, lib=lib, stacklevel=stacklevel + 1)
    put_error(entry)
    return entry


def recorded(exc: E, *, lib: Lib | None = None) -> E:
    """Record the entry for ``exc`` in the caller's queue and return ``exc``:
    ``raise recorded(IncompleteRead(...))``.  Not for would-block results
    (:class:`WantRead`, :class:`WantWrite`, :class:`Timeout`): those are raised
    bare and leave no entry (E4)."""
    record_exception(exc, lib=lib, stacklevel=2)
    return exc


def timeout_error(op: str, timeout: float | None, *, writing: bool = False) -> Timeout:
    """The :class:`Timeout` to raise for ``op``; nothing is recorded.

    A timeout is a would-block with a deadline: the connection is intact and the
    call may be retried, so, like ``WantRead``/``WantWrite`` (and as OpenSSL
    leaves nothing for ``SSL_ERROR_WANT_READ``), it leaves no entry in any
    queue (E4); the exception alone classifies it (E7).  ``writing`` makes it
    ``WANT_WRITE``: the call waited to send (flow control, stream limit).
    """
    limit = "" if timeout is None else f" after {timeout:g} s"
    return Timeout(f"{op} timed out{limit}", writing=writing)


def stream_error(
    kind: Literal["reset", "stopped"], code: int, stream_id: int | None, *, reason: str = ""
) -> StreamReset | StreamStopped:
    """Record a stream-only failure in the caller's queue only (E5) and return
    the exception to raise: ``reset`` (the peer's RESET_STREAM on the stream we
    read) gives :class:`StreamReset`, ``stopped`` (STOP_SENDING on the stream we
    write) :class:`StreamStopped`."""
    cls = StreamReset if kind == "reset" else StreamStopped
    exc = cls(code, reason, stream_id=stream_id)
    record_exception(exc, stacklevel=2)
    return exc


# -- the connection's error stack (E2, E3) ------------------------------------------------
class Channel:
    """The persistent error stack of one connection; thread-safe.

    :meth:`fail` stores the first permanent failure; :meth:`raise_if_failed`
    replays it, from any thread or task, for as long as the connection exists.
    """

    __slots__ = ("_entries", "_factory", "_lock", "lib")

    def __init__(self, lib: Lib = Lib.QUIC) -> None:
        self.lib = lib
        self._lock = threading.Lock()
        self._entries: tuple[ErrorEntry, ...] = ()
        self._factory: Callable[[], Error] | None = None

    @property
    def failed(self) -> bool:
        """Whether the connection has failed for good."""
        return self._factory is not None

    @property
    def entries(self) -> tuple[ErrorEntry, ...]:
        """The entries kept on the channel (empty until it failed)."""
        with self._lock:
            return self._entries

    def exception(self) -> Error | None:
        """A new instance of the connection's exception, or ``None``."""
        with self._lock:
            factory = self._factory
        return None if factory is None else factory()

    def fail(
        self,
        entries: Iterable[ErrorEntry] | None,
        error: Error | Callable[[], Error],
        *,
        since: int | None = None,
    ) -> bool:
        """Fail the connection; return whether this call was the first.

        ``error`` is the exception (raised as fresh copies) or a factory of new
        instances, as :func:`terminated_from_event` returns.  Only the failure's
        own entries go onto the channel (E2): those the failing operation
        recorded in the caller's queue since the marker ``since``
        (:func:`mark`, taken when the operation began; they are *moved*), then
        ``entries``; one entry for the exception itself when there are none.
        Older entries in the caller's queue (an earlier timeout, a stream reset)
        have nothing to do with the connection's end and stay there, in that
        queue only.  Only the first failure counts: a later call's entries are
        discarded, since the connection has one cause and every thread must see
        the same entries.
        """
        factory = error.fresh if isinstance(error, BaseException) else error
        own = [] if since is None else taken_since(since)
        moved = [*own, *(entries or ())]
        if self._factory is not None:
            return False
        if not moved:
            moved.append(entry_for(factory(), lib=self.lib, stacklevel=2))
        with self._lock:
            if self._factory is not None:
                return False
            self._entries = tuple(moved[-QUEUE_LIMIT:])
            self._factory = factory
            return True

    def raise_if_failed(self, op: str) -> None:
        """If the connection failed, copy its entries into the caller's queue,
        add ``CONNECTION_TERMINATED`` and raise a new instance of its exception.

        ``op`` names the call (``"read"``, ``"open_stream"``...) in the entry.
        Cheap when the connection has not failed: one attribute test.
        """
        if self._factory is None:
            return
        with self._lock:
            entries, factory = self._entries, self._factory
        assert factory is not None
        error = factory()
        queue = _queue()
        for entry in entries:
            queue.append(entry)
        queue.append(
            ErrorEntry(
                self.lib,
                Reason.CONNECTION_TERMINATED,
                f"{op}: {Reason.CONNECTION_TERMINATED.value}",
                str(error),
                caller_location(1),
                _code_of(error),
            )
        )
        raise error
