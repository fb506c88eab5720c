"""The exception hierarchy: one root, every protocol error carries its wire code.

Theory of operation
-------------------
Everything mstls raises derives from :class:`Error`.  Errors that correspond to
something on the wire carry the code that goes on the wire:

* :class:`ProtocolError` carries a QUIC transport error code (RFC 9000 §20.1),
  the frame type that triggered it (or ``None``) and a human reason.  The
  connection core turns it into a CONNECTION_CLOSE frame.
* :class:`TLSError` is a :class:`ProtocolError` whose code is
  ``0x100 + alert`` (RFC 9001 §4.8), so the same object can be sent as a TLS
  alert over TCP or as a QUIC CRYPTO_ERROR.
* Parsers of untrusted bytes raise only :class:`DecodeError` (a
  FRAME_ENCODING_ERROR) or another :class:`ProtocolError`; never ``IndexError``,
  ``struct.error`` or ``ValueError``.

Every exception also carries an :class:`ErrorKind`, the ``get_error``-style
classification of the OpenSSL design note, which never depends on any error
queue's contents (rule E7).  The API-facing classes (rule E9):

* :class:`WantRead` / :class:`WantWrite` (non-blocking mode) and :class:`Timeout`
  (a blocking call ran out of time; also a :class:`TimeoutError`): retry later.
* :class:`StreamReset` / :class:`StreamStopped`: one stream only, with the
  peer's code (RESET_STREAM, STOP_SENDING).
* :class:`ConnectionTerminated` (code, reason, by_peer, is_application) and
  its :class:`PrematureClose` (truncation) and :class:`ConnectionIOError`
  (fatal socket error): the whole connection is gone.
* :class:`HandshakeError`, :class:`CertificateError`, :class:`HandshakeAlert` (the
  peer's fatal alert: also a :class:`ConnectionTerminated`).

Exceptions can be copied and pickled (:meth:`Error.__reduce__`): a connection
that failed raises a fresh copy of its stored exception in every thread, so
no two threads ever share (and mutate) one ``__traceback__``.  Known wire codes
become enum members; unknown ones stay plain ``int``.
"""

from __future__ import annotations

import copy
import errno as _errno
import os
from enum import Enum
from typing import Any, Self, TypeVar

from .codes import CRYPTO_ERROR_BASE, AlertDescription, TransportErrorCode

__all__ = [
    "CertificateError",
    "ConfigurationError",
    "ConnectionIOError",
    "ConnectionTerminated",
    "DatagramError",
    "DatagramQueueFull",
    "DatagramTooLarge",
    "DatagramsUnsupported",
    "DecodeError",
    "DecryptionFailed",
    "Error",
    "ErrorKind",
    "HandshakeAlert",
    "HandshakeError",
    "HandshakeRefused",
    "IncompleteRead",
    "ListenerClosed",
    "MigrationRefused",
    "PeerAlert",
    "PrematureClose",
    "ProtocolError",
    "StreamError",
    "StreamLimitReached",
    "StreamReset",
    "StreamResetError",
    "StreamStateError",
    "StreamStopped",
    "StreamStoppedError",
    "TLSError",
    "Timeout",
    "TransportParameterError",
    "WantRead",
    "WantWrite",
    "WouldBlock",
    "kept",
]


class ErrorKind(Enum):
    """The ``SSL_get_error``-style classification of a failed call."""

    NONE = "none"
    ZERO_RETURN = "zero_return"
    WANT_READ = "want_read"
    WANT_WRITE = "want_write"
    SYSCALL = "syscall"
    SSL = "ssl"
    STREAM_RESET = "stream_reset"
    CONNECTION_CLOSED = "connection_closed"


#: What an :class:`OSError` keeps outside its ``__dict__`` (copied one by one when
#: set: an explicit ``filename=None`` would change how ``OSError`` formats itself).
_OS_ERROR_FIELDS = ("errno", "strerror", "filename", "filename2")


def _rebuild(
    cls: type[Error],
    args: tuple[Any, ...],
    state: dict[str, Any],
    os_state: dict[str, Any] | None = None,
) -> Error:
    """Recreate an exception without running ``__init__`` (see :meth:`Error.__reduce__`)."""
    exc = cls.__new__(cls, *args)
    exc.args = args  # OSError subclasses (Timeout) leave args to __init__
    exc.__dict__.update(state)
    for name, value in (os_state or {}).items():
        setattr(exc, name, value)
    if "__notes__" in state:  # never share the mutable notes list with the original
        exc.__notes__ = list(state["__notes__"])
    return exc


class Error(Exception):
    """Root of every exception raised by mstls."""

    kind: ErrorKind = ErrorKind.SSL

    def __reduce__(self) -> tuple[Any, ...]:
        """Copy and pickle by state: the subclasses' constructors take other
        arguments than ``self.args``, so the default (``cls(*args)``) would fail."""
        fields = _OS_ERROR_FIELDS if isinstance(self, OSError) else ()
        os_state = {name: getattr(self, name) for name in fields}
        os_state = {name: value for name, value in os_state.items() if value is not None}
        return (_rebuild, (type(self), self.args, dict(self.__dict__), os_state))

    def fresh(self) -> Self:
        """A new instance with the same state and cause but no traceback.

        A failed connection raises ``stored.fresh()`` in every thread, since
        raising one object from many threads would race on its ``__traceback__``.
        """
        new = copy.copy(self)
        new.__cause__ = self.__cause__
        new.__suppress_context__ = self.__suppress_context__
        return new


E = TypeVar("E", bound=BaseException)


def kept(exc: E) -> E:
    """A copy of ``exc`` for a long-lived object to keep and re-raise later.

    The copy has no traceback and its cause chain (``__cause__``) is copied the
    same way; ``__context__`` is dropped.  A kept traceback pins every frame it
    passed through, and with them the connection that stored it: a reference
    cycle that only the full garbage collection frees, so a flood of failed
    handshakes would leave hundreds of dead connections in memory.  Re-raise a
    kept exception as ``raise kept(stored)`` so the stored one never gains a
    traceback either.
    """
    return _kept(exc, _MAX_KEPT_CAUSES)


#: How many ``__cause__`` links :func:`kept` copies (a chain is short; a cycle is not).
_MAX_KEPT_CAUSES = 8


def _kept(exc: E, depth: int) -> E:
    new = copy.copy(exc)
    new.__traceback__ = None
    new.__context__ = None
    cause = exc.__cause__
    new.__cause__ = _kept(cause, depth - 1) if cause is not None and depth > 0 else None
    new.__suppress_context__ = exc.__suppress_context__
    return new


class WouldBlock(Error):
    """Non-blocking mode: the call cannot make progress now; retry it later."""

    kind = ErrorKind.WANT_READ


class WantRead(WouldBlock):
    """Retry when the socket is readable (``SSL_ERROR_WANT_READ``)."""

    kind = ErrorKind.WANT_READ


class WantWrite(WouldBlock):
    """Retry when the socket is writable or flow control opens (``SSL_ERROR_WANT_WRITE``)."""

    kind = ErrorKind.WANT_WRITE


class Timeout(Error, TimeoutError):
    """A blocking call did not complete in its time limit; the connection is intact.

    As with a socket timeout under OpenSSL, the kind is ``WANT_READ`` (or
    ``WANT_WRITE`` for a call that waited to send: ``write``, ``open_stream``):
    the same call may be retried.  Like the other would-block results it leaves
    no error-queue entry (E4).  An *idle* timeout ends the connection and is a
    :class:`ConnectionTerminated` instead.
    """

    kind = ErrorKind.WANT_READ

    def __init__(self, reason: str = "timed out", *, writing: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        if writing:
            self.kind = ErrorKind.WANT_WRITE


class IncompleteRead(Error):
    """The stream ended (clean FIN) before the bytes a call asked for.

    ``partial`` holds what did arrive; ``expected`` how many were wanted.
    """

    kind = ErrorKind.ZERO_RETURN

    def __init__(self, reason: str, *, partial: bytes = b"", expected: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.partial = partial
        self.expected = expected


class ListenerClosed(Error):
    """``accept`` on a listener that was closed: no more connections will come."""

    kind = ErrorKind.CONNECTION_CLOSED


class ConfigurationError(Error):
    """Bad configuration: a missing or unreadable file, a malformed key, a bad option.

    The message names the file or option and the problem.
    """


class MigrationRefused(Error):
    """Connection migration is not possible (RFC 9000 §9): the peer sent
    disable_active_migration or gave no spare connection ID, the handshake is not
    confirmed yet, or the connection runs over TCP, which has no paths."""


class ProtocolError(Error):
    """A violation of the protocol, carrying its QUIC transport error code.

    RFC 9000 §11.1: the endpoint closes the connection with this code.
    """

    default_code: int = TransportErrorCode.PROTOCOL_VIOLATION

    def __init__(
        self, reason: str, *, error_code: int | None = None, frame_type: int | None = None
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.error_code = self.default_code if error_code is None else error_code
        self.frame_type = frame_type

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.reason!r}, error_code={self.error_code:#x}, "
            f"frame_type={self.frame_type!r})"
        )


class DecodeError(ProtocolError):
    """Bytes from the network could not be decoded (truncated or malformed).

    RFC 9000 §12.4: a badly formatted frame is a FRAME_ENCODING_ERROR.  The TLS
    layer maps it to the ``decode_error`` alert.
    """

    default_code = TransportErrorCode.FRAME_ENCODING_ERROR


class DecryptionFailed(ProtocolError):
    """A QUIC packet could not be unprotected: too short to sample, or forged.

    RFC 9001 §5.3, §5.4.2; RFC 9000 §12.2: such a packet is dropped and the
    connection goes on, so this is never sent as a CONNECTION_CLOSE.
    Failures count against the AEAD integrity limit (RFC 9001 §6.6).
    """


class TransportParameterError(ProtocolError):
    """Invalid transport parameters (RFC 9000 §7.4, §18.2)."""

    default_code = TransportErrorCode.TRANSPORT_PARAMETER_ERROR


def _alert(alert: AlertDescription | int) -> AlertDescription | int:
    """A known alert as its enum member; unknown ones stay ``int`` (E9)."""
    try:
        return AlertDescription(alert)
    except ValueError:
        return int(alert)


class TLSError(ProtocolError):
    """A TLS failure: the alert to send and a clear message (RFC 8446 §6)."""

    def __init__(self, alert: AlertDescription | int, reason: str) -> None:
        super().__init__(reason, error_code=CRYPTO_ERROR_BASE + int(alert))
        self.alert: AlertDescription | int = _alert(alert)

    def __repr__(self) -> str:
        alert = self.alert.name if isinstance(self.alert, AlertDescription) else self.alert
        return f"{type(self).__name__}({alert}, {self.reason!r})"


class HandshakeError(TLSError):
    """The TLS handshake failed; no connection was established."""


class CertificateError(HandshakeError):
    """The peer's certificate was rejected (name, validity, chain or pin)."""


class PeerAlert(TLSError):
    """The peer sent a fatal TLS alert (RFC 8446 §6.2)."""


class ConnectionTerminated(Error):
    """The connection has ended; every later call on it raises this.

    ``code`` is the transport or application error code, ``by_peer`` tells who
    closed it, ``is_application`` whether ``code`` is an application code
    (CONNECTION_CLOSE 0x1d) or a transport one (0x1c).
    """

    kind = ErrorKind.CONNECTION_CLOSED

    def __init__(
        self,
        code: int,
        reason: str = "",
        *,
        by_peer: bool = False,
        is_application: bool = False,
        frame_type: int | None = None,
    ) -> None:
        who = "peer" if by_peer else "local"
        what = "application" if is_application else "transport"
        super().__init__(f"connection terminated by {who} ({what} code {code:#x}): {reason}")
        self.code: int = code if is_application else _transport_code(code)
        self.reason = reason
        self.by_peer = by_peer
        self.is_application = is_application
        self.frame_type = frame_type


def _transport_code(code: int) -> int:
    """A known transport code as its enum member; unknown ones stay ``int`` (E9)."""
    try:
        return TransportErrorCode(code)
    except ValueError:
        return code


class HandshakeAlert(HandshakeError, PeerAlert, ConnectionTerminated):
    """The peer ended the connection with a fatal TLS alert (RFC 8446 §6.2): a
    TLS alert over TCP, a CONNECTION_CLOSE with CRYPTO_ERROR over QUIC.

    One class on both transports, before and after our side of the handshake
    completed: a TLS 1.3 client completes one flight before the server has
    verified it (RFC 8446 §4.4.4, §6.2), so a server's refusal of the client's
    certificate reaches a client whose handshake is done.  It is a
    :class:`HandshakeError` and a :class:`ConnectionTerminated` alike, with
    ``code == error_code == 0x100 + alert`` (RFC 9001 §4.8), ``by_peer`` true,
    ``is_application`` false and ``alert`` the description.  The kind is ``SSL``,
    as OpenSSL's ``SSL_ERROR_SSL`` for a received alert.
    """

    kind = ErrorKind.SSL

    def __init__(
        self, alert: AlertDescription | int, reason: str, *, frame_type: int | None = None
    ) -> None:
        # Not TLSError.__init__: ProtocolError's and ConnectionTerminated's
        # constructors take different arguments; this one sets both states.
        code = CRYPTO_ERROR_BASE + int(alert)
        ConnectionTerminated.__init__(self, code, reason, by_peer=True, frame_type=frame_type)
        self.error_code = code
        self.alert = _alert(alert)


class PrematureClose(ConnectionTerminated):
    """The byte stream ended without a clean close: a truncation, not an end (E8).

    On TCP, a FIN or reset that arrives without TLS ``close_notify`` (and, for
    QMux, without CONNECTION_CLOSE) is never reported as end of data.
    ``bytes_received`` counts the application bytes that did arrive;
    ``wire_bytes_received`` every byte of the stream, TLS records included (0: the
    peer closed without sending anything, as a port probe or a TCP health check
    does; None where unknown); ``reason`` says what ended the stream (the FIN, or
    the socket error and its text).  The message says so, never "terminated by
    peer (transport code 0x1)": nothing was sent on the wire (``code`` is
    INTERNAL_ERROR only as a placeholder).
    """

    kind = ErrorKind.SYSCALL

    def __init__(
        self, reason: str, *, bytes_received: int = 0, wire_bytes_received: int | None = None
    ) -> None:
        super().__init__(
            TransportErrorCode.INTERNAL_ERROR, reason, by_peer=True, is_application=False
        )
        self.args = (f"premature close ({bytes_received} bytes received): {reason}",)
        self.bytes_received = bytes_received
        self.wire_bytes_received = wire_bytes_received


class ConnectionIOError(ConnectionTerminated, OSError):
    """A fatal socket error ended the connection (``SSL_ERROR_SYSCALL``).

    Also an :class:`OSError` (``except OSError`` catches it), with the socket's
    :attr:`errno` and :attr:`strerror`; the original exception is the
    ``__cause__``.  Its message is the mstls one, not ``[Errno n] ...``.
    """

    kind = ErrorKind.SYSCALL

    def __init__(self, reason: str, *, errno: int | None = None) -> None:
        super().__init__(
            TransportErrorCode.INTERNAL_ERROR, reason, by_peer=False, is_application=False
        )
        self.errno = errno
        self.strerror = None if errno is None else os.strerror(errno)
        name = "" if errno is None else f" {_errno.errorcode.get(errno, errno)}"
        self.args = (f"socket error{name}: {reason}",)

    def __str__(self) -> str:
        return Exception.__str__(self)


class HandshakeRefused(ConnectionTerminated):
    """The server refused a handshake before doing any work for it (admission control).

    ``cause`` is a short fixed word (``"rate_limited"``: the source address is
    over its handshake rate, see :mod:`mstls.core.admission`; ``"shed"``: a QUIC
    handshake still in progress dropped for a newer one beyond
    ``max_pending_handshakes``); the code is
    CONNECTION_REFUSED (RFC 9000 §20.1).
    """

    def __init__(self, reason: str, *, cause: str) -> None:
        super().__init__(TransportErrorCode.CONNECTION_REFUSED, reason, by_peer=False)
        self.cause = cause


class StreamError(Error):
    """A failure that concerns one stream only, never the connection (E5)."""

    def __init__(self, reason: str, *, stream_id: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.stream_id = stream_id


class StreamStateError(StreamError):
    """Local misuse of a stream: unknown or closed, wrong direction, written after
    its FIN or reset (RFC 9000 §3)."""


class StreamLimitReached(StreamError):
    """The peer's MAX_STREAMS does not allow another stream yet (RFC 9000 §4.6);
    retry once more streams are available."""

    kind = ErrorKind.WANT_WRITE


class StreamReset(StreamError):
    """The peer reset its sending part of the stream we read (RESET_STREAM,
    RFC 9000 §19.4): reads fail with the peer's ``code``; writes go on (E6)."""

    kind = ErrorKind.STREAM_RESET

    def __init__(self, code: int, reason: str = "", *, stream_id: int | None = None) -> None:
        where = "the stream" if stream_id is None else f"stream {stream_id}"
        super().__init__(
            reason or f"{where} was reset by the peer (code {code:#x})", stream_id=stream_id
        )
        self.code = code

    @property
    def error_code(self) -> int:
        """The peer's application error code (same as :attr:`code`)."""
        return self.code


class StreamStopped(StreamError):
    """The peer sent STOP_SENDING for the stream we write (RFC 9000 §19.5):
    writes fail with the peer's ``code``; reads go on (E6)."""

    kind = ErrorKind.STREAM_RESET

    def __init__(self, code: int, reason: str = "", *, stream_id: int | None = None) -> None:
        where = "the stream" if stream_id is None else f"stream {stream_id}"
        super().__init__(
            reason or f"{where}: the peer sent STOP_SENDING (code {code:#x})",
            stream_id=stream_id,
        )
        self.code = code

    @property
    def error_code(self) -> int:
        """The peer's application error code (same as :attr:`code`)."""
        return self.code


class StreamResetError(StreamReset):
    """:class:`StreamReset` with the stream layer's argument order ``(reason, error_code)``."""

    def __init__(self, reason: str, error_code: int, *, stream_id: int | None = None) -> None:
        super().__init__(error_code, reason, stream_id=stream_id)


class StreamStoppedError(StreamStopped):
    """:class:`StreamStopped` with the stream layer's argument order ``(reason, error_code)``."""

    def __init__(self, reason: str, error_code: int, *, stream_id: int | None = None) -> None:
        super().__init__(error_code, reason, stream_id=stream_id)


class DatagramError(Error):
    """A datagram (RFC 9221) could not be sent; the connection is intact."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class DatagramTooLarge(DatagramError, ValueError):
    """The payload exceeds :attr:`max_size`, the largest the peer and the path allow
    now (``connection.max_datagram_size``)."""

    def __init__(self, size: int, max_size: int) -> None:
        super().__init__(f"datagram of {size} bytes exceeds the maximum of {max_size} bytes")
        self.size = size
        self.max_size = max_size


class DatagramQueueFull(DatagramError, WantWrite):
    """The send queue holds :attr:`limit` datagrams already; retry once some were
    sent.  Reported, never a silent drop or a wait (kind ``WANT_WRITE``)."""

    kind = ErrorKind.WANT_WRITE

    def __init__(self, limit: int) -> None:
        super().__init__(f"datagram send queue full ({limit} datagrams waiting)")
        self.limit = limit


class DatagramsUnsupported(DatagramError):
    """Datagrams cannot be used on this connection: not enabled here, or the peer
    did not advertise max_datagram_frame_size (RFC 9221 §3)."""
