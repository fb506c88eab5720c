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
queue's contents.
"""

from __future__ import annotations

from enum import Enum

from .codes import CRYPTO_ERROR_BASE, AlertDescription, TransportErrorCode

__all__ = [
    "CertificateError",
    "ConfigurationError",
    "ConnectionTerminated",
    "DecodeError",
    "DecryptionFailed",
    "Error",
    "ErrorKind",
    "HandshakeError",
    "PeerAlert",
    "PrematureClose",
    "ProtocolError",
    "StreamError",
    "StreamLimitReached",
    "StreamResetError",
    "StreamStateError",
    "StreamStoppedError",
    "TLSError",
    "TransportParameterError",
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


class Error(Exception):
    """Root of every exception raised by mstls."""

    kind: ErrorKind = ErrorKind.SSL


class ConfigurationError(Error):
    """Bad configuration: a missing or unreadable file, a malformed key, a bad option.

    The message names the file or option and the problem.
    """


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


class TLSError(ProtocolError):
    """A TLS failure: the alert to send and a clear message (RFC 8446 §6)."""

    def __init__(self, alert: AlertDescription | int, reason: str) -> None:
        super().__init__(reason, error_code=CRYPTO_ERROR_BASE + int(alert))
        try:
            self.alert: AlertDescription | int = AlertDescription(alert)
        except ValueError:
            self.alert = int(alert)

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
        self.code = code
        self.reason = reason
        self.by_peer = by_peer
        self.is_application = is_application
        self.frame_type = frame_type


class PrematureClose(ConnectionTerminated):
    """The byte stream ended without a clean close: a truncation, not an end.

    On TCP, a FIN or reset that arrives without TLS ``close_notify`` (and, for
    QMux, without CONNECTION_CLOSE) is never reported as end of data.
    ``bytes_received`` counts the application bytes that did arrive.
    """

    kind = ErrorKind.SYSCALL

    def __init__(self, reason: str, *, bytes_received: int = 0) -> None:
        super().__init__(
            TransportErrorCode.INTERNAL_ERROR, reason, by_peer=True, is_application=False
        )
        self.bytes_received = bytes_received


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


class StreamResetError(StreamError):
    """The peer reset its sending part (RESET_STREAM, RFC 9000 §19.4): reads fail."""

    kind = ErrorKind.STREAM_RESET

    def __init__(self, reason: str, error_code: int, *, stream_id: int | None = None) -> None:
        super().__init__(reason, stream_id=stream_id)
        self.error_code = error_code


class StreamStoppedError(StreamError):
    """The peer asked us to stop sending (STOP_SENDING, RFC 9000 §19.5): writes fail."""

    kind = ErrorKind.STREAM_RESET

    def __init__(self, reason: str, error_code: int, *, stream_id: int | None = None) -> None:
        super().__init__(reason, stream_id=stream_id)
        self.error_code = error_code
