"""From "the connection ended" to what every later call raises (rules E2, E8, E9).

The connection core reports the end of a connection as one event (who closed
it, the code, the reason phrase and a *kind*: ``close``, ``idle_timeout``,
``handshake_timeout``, ``stateless_reset``, ``premature_close``, ``tls_error``,
``tcp_reset``, ``io_error``).  :func:`terminated_from_event` turns it into

* a factory of the exception that every later call on the connection raises
  (a new instance per call: see :meth:`mstls.exceptions.Error.fresh`), and
* the queue entries that explain it, for :meth:`mstls.errors.Channel.fail`.

Mapping rules:

* A CRYPTO_ERROR (``0x100 + alert``, RFC 9001 §4.8) or TLS alert before the
  handshake completed is a handshake failure: :class:`HandshakeAlert` when the
  peer sent it, :class:`CertificateError` when we rejected the peer's
  certificate, else :class:`HandshakeError` (or the local exception itself,
  when the driver passes it as ``cause``).
* The peer's CRYPTO_ERROR or TLS alert after our side completed (a server
  refusing our client certificate) is a :class:`HandshakeAlert` too, on both
  transports: the same class, ``code``, ``by_peer`` and ``alert``.
* A TCP FIN or reset without CONNECTION_CLOSE is a :class:`PrematureClose`
  carrying the bytes that did arrive (E8); a fatal socket error is a
  :class:`ConnectionIOError`; everything else is a :class:`ConnectionTerminated`.
* Application codes stay plain ``int``; known transport codes are named.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import NamedTuple, Protocol

from ._error_queue import ErrorEntry, Lib, Reason, caller_location
from .codes import CRYPTO_ERROR_BASE, AlertDescription, TransportErrorCode
from .core.lifecycle import TerminationKind
from .exceptions import (
    CertificateError,
    ConnectionIOError,
    ConnectionTerminated,
    Error,
    HandshakeAlert,
    HandshakeError,
    PrematureClose,
    TLSError,
    kept,
)

__all__ = [
    "CERTIFICATE_ALERTS",
    "Termination",
    "TerminationInfo",
    "describe_code",
    "terminated_from_event",
]

#: The last CRYPTO_ERROR code: ``0x100 + 255`` (RFC 9001 §4.8).
CRYPTO_ERROR_LAST = CRYPTO_ERROR_BASE + 0xFF

#: Alerts that mean a certificate was rejected (RFC 8446 §6.2).
CERTIFICATE_ALERTS = frozenset(
    {
        AlertDescription.bad_certificate,
        AlertDescription.unsupported_certificate,
        AlertDescription.certificate_revoked,
        AlertDescription.certificate_expired,
        AlertDescription.certificate_unknown,
        AlertDescription.unknown_ca,
        AlertDescription.certificate_required,
    }
)


class TerminationInfo(Protocol):
    """What :func:`terminated_from_event` reads: a ``ConnectionTerminatedEvent``."""

    @property
    def error_code(self) -> int: ...
    @property
    def frame_type(self) -> int | None: ...
    @property
    def reason(self) -> str: ...
    @property
    def by_peer(self) -> bool: ...
    @property
    def is_application(self) -> bool: ...
    @property
    def kind(self) -> str: ...


class Termination(NamedTuple):
    """A factory of the exception to raise (new instance per call) and the entries."""

    factory: Callable[[], Error]
    entries: list[ErrorEntry]


@dataclass(frozen=True, slots=True)
class _Context:
    event: TerminationInfo
    during_handshake: bool
    idle_timeout: float | None
    handshake_timeout: float | None
    bytes_received: int
    cause: BaseException | None


class _Outcome(NamedTuple):
    factory: Callable[[], Error]
    lib: Lib | None  # None: the connection's own library (quic or qmux)
    reason: Reason
    text: str
    replaces_cause: bool = False  # raise factory() even when the cause is an mstls Error


def _is_crypto(code: int) -> bool:
    return CRYPTO_ERROR_BASE <= code <= CRYPTO_ERROR_LAST


def _alert(value: int) -> AlertDescription | int:
    try:
        return AlertDescription(value)
    except ValueError:
        return value


def _alert_name(alert: AlertDescription | int) -> str:
    if isinstance(alert, AlertDescription):
        return f"{alert.name} ({int(alert)})"
    return f"{alert}"


def describe_code(code: int, *, is_application: bool) -> str:
    """``application error 7``, ``transport error PROTOCOL_VIOLATION (0xa)``,
    ``TLS alert bad_certificate (42)`` or ``transport error 0x4242`` (unknown)."""
    if is_application:
        return f"application error {code}"
    if _is_crypto(code):
        return f"TLS alert {_alert_name(_alert(code - CRYPTO_ERROR_BASE))}"
    try:
        return f"transport error {TransportErrorCode(code).name} ({code:#x})"
    except ValueError:
        return f"transport error {code:#x}"


def _with_reason(text: str, reason: str) -> str:
    return f"{text}: {reason}" if reason else text


def _terminated(ctx: _Context, reason: str) -> Callable[[], Error]:
    ev = ctx.event

    def make() -> Error:
        return ConnectionTerminated(
            ev.error_code,
            reason,
            by_peer=ev.by_peer,
            is_application=ev.is_application,
            frame_type=ev.frame_type,
        )

    return make


def _handshake_failure(ctx: _Context) -> _Outcome:
    """A TLS alert or CRYPTO_ERROR before the handshake completed."""
    ev, cause = ctx.event, ctx.cause
    code = ev.error_code
    value = code - CRYPTO_ERROR_BASE if _is_crypto(code) else AlertDescription.internal_error
    alert = _alert(value)
    phrase = cause.reason if isinstance(cause, TLSError) else ev.reason
    factory: Callable[[], Error]
    if isinstance(cause, HandshakeError):
        factory = cause.fresh
    elif ev.by_peer:
        factory = partial(HandshakeAlert, alert, ev.reason or "the peer aborted the handshake")
    elif alert in CERTIFICATE_ALERTS:
        factory = partial(CertificateError, alert, phrase or "certificate rejected")
    else:
        factory = partial(HandshakeError, alert, phrase or "handshake failed")
    replaces = not isinstance(cause, HandshakeError)
    if ev.by_peer:
        head = f"handshake failed: peer sent TLS alert {_alert_name(alert)}"
        return _Outcome(factory, Lib.TLS, Reason.TLS_ALERT, _with_reason(head, phrase), replaces)
    certificate = isinstance(cause, CertificateError) or alert in CERTIFICATE_ALERTS
    reason = Reason.CERTIFICATE_VERIFY_FAILED if certificate else Reason.TLS_ALERT
    head = f"handshake failed: {reason.value}, sent TLS alert {_alert_name(alert)}"
    return _Outcome(factory, Lib.TLS, reason, _with_reason(head, phrase), replaces)


def _close(ctx: _Context) -> _Outcome:
    """CONNECTION_CLOSE from either side (RFC 9000 §10.2), or a TLS alert."""
    ev = ctx.event
    crypto = not ev.is_application and _is_crypto(ev.error_code)
    if crypto and (ctx.during_handshake or isinstance(ctx.cause, HandshakeError)):
        return _handshake_failure(ctx)
    if crypto and ev.by_peer:
        return _peer_alert(ctx)
    who = "by peer" if ev.by_peer else "locally"
    text = _with_reason(
        f"connection closed {who}: "
        + describe_code(ev.error_code, is_application=ev.is_application),
        ev.reason,
    )
    if crypto:
        reason, lib = Reason.TLS_ALERT, Lib.TLS
    elif ev.by_peer:
        reason, lib = Reason.PEER_CLOSED, None
    elif ev.is_application or ev.error_code == TransportErrorCode.NO_ERROR:
        reason, lib = Reason.LOCAL_CLOSED, None
    else:
        reason, lib = Reason.PROTOCOL_VIOLATION, None
    return _Outcome(_terminated(ctx, ev.reason), lib, reason, text)


def _peer_alert(ctx: _Context) -> _Outcome:
    """The peer's fatal alert once our side of the handshake completed: over TCP
    a TLS alert record, over QUIC CRYPTO_ERROR ``0x100 + alert`` (RFC 9001 §4.8).
    Both become one :class:`HandshakeAlert` (a server refusing the client's
    certificate answers the client's last flight, RFC 8446 §4.4.4)."""
    ev = ctx.event
    alert = _alert(ev.error_code - CRYPTO_ERROR_BASE)
    phrase = ev.reason or f"peer sent fatal alert {_alert_name(alert)}"
    factory = partial(HandshakeAlert, alert, phrase, frame_type=ev.frame_type)
    text = _with_reason(f"connection closed by peer: TLS alert {_alert_name(alert)}", ev.reason)
    return _Outcome(factory, Lib.TLS, Reason.TLS_ALERT, text, replaces_cause=True)


def _idle_timeout(ctx: _Context) -> _Outcome:
    """RFC 9000 §10.1: silently closed after the idle timeout."""
    if ctx.idle_timeout is None:
        text = ctx.event.reason or Reason.IDLE_TIMEOUT.value
    else:
        text = f"idle timeout after {ctx.idle_timeout:.1f} s"
    if ctx.event.by_peer:  # QMux §7.2: the peer's close_notify stands for its idle timeout
        text = f"peer's idle timeout: {text}"
    return _Outcome(_terminated(ctx, text), None, Reason.IDLE_TIMEOUT, text)


def _handshake_timeout(ctx: _Context) -> _Outcome:
    """The handshake did not complete in its time limit."""
    if ctx.handshake_timeout is None:
        text = ctx.event.reason or Reason.HANDSHAKE_TIMEOUT.value
    else:
        text = f"handshake did not complete within {ctx.handshake_timeout:.1f} s"
    return _Outcome(_terminated(ctx, text), None, Reason.HANDSHAKE_TIMEOUT, text)


def _stateless_reset(ctx: _Context) -> _Outcome:
    """RFC 9000 §10.3: the peer lost the connection's state."""
    text = ctx.event.reason or Reason.STATELESS_RESET.value
    return _Outcome(_terminated(ctx, text), None, Reason.STATELESS_RESET, text)


def _premature_close(ctx: _Context) -> _Outcome:
    """E8: TCP ended without CONNECTION_CLOSE / close_notify: a truncation."""
    received = ctx.bytes_received
    phrase = ctx.event.reason or "connection ended without CONNECTION_CLOSE"
    text = f"premature close ({received} bytes received): {phrase}"
    return _Outcome(
        lambda: PrematureClose(phrase, bytes_received=received), None, Reason.PREMATURE_CLOSE, text
    )


def _tcp_reset(ctx: _Context) -> _Outcome:
    """E8: a TCP reset before CONNECTION_CLOSE is a premature close too."""
    received = ctx.bytes_received
    text = _with_reason(f"TCP connection reset ({received} bytes received)", ctx.event.reason)
    return _Outcome(
        lambda: PrematureClose(text, bytes_received=received), Lib.SYS, Reason.PREMATURE_CLOSE, text
    )


def _io_error(ctx: _Context) -> _Outcome:
    """A fatal socket error (``SSL_ERROR_SYSCALL``); a premature close if the
    driver says so (QMux reports a live connection's socket error as one)."""
    if isinstance(ctx.cause, PrematureClose):
        return _premature_close(ctx)
    errno = getattr(ctx.cause, "errno", None)
    phrase = ctx.event.reason or (str(ctx.cause) if ctx.cause is not None else "I/O error")
    text = f"socket error: {phrase}"
    return _Outcome(lambda: ConnectionIOError(phrase, errno=errno), Lib.SYS, Reason.SYSCALL, text)


#: One handler per termination kind; the table is total (checked at import).
_HANDLERS: dict[TerminationKind, Callable[[_Context], _Outcome]] = {
    TerminationKind.CLOSE: _close,
    TerminationKind.TLS_ERROR: _close,
    TerminationKind.IDLE_TIMEOUT: _idle_timeout,
    TerminationKind.HANDSHAKE_TIMEOUT: _handshake_timeout,
    TerminationKind.STATELESS_RESET: _stateless_reset,
    TerminationKind.PREMATURE_CLOSE: _premature_close,
    TerminationKind.TCP_RESET: _tcp_reset,
    TerminationKind.IO_ERROR: _io_error,
}
assert set(_HANDLERS) == set(TerminationKind), "a termination kind without a handler"


def _factory(outcome: _Outcome, cause: BaseException | None) -> Callable[[], Error]:
    """The driver's own mstls exception is raised itself (fresh copies) unless
    the outcome replaces it; any other cause is chained (``raise ... from cause``)."""
    if cause is None:
        return outcome.factory
    if isinstance(cause, Error) and not outcome.replaces_cause:
        return cause.fresh
    factory = outcome.factory

    def make() -> Error:
        exc = factory()
        exc.__cause__ = cause
        return exc

    return make


def _detail(ctx: _Context, reason: Reason) -> str:
    ev = ctx.event
    frame = "none" if ev.frame_type is None else f"{ev.frame_type:#x}"
    side = "peer" if ev.by_peer else "local"
    space = "application" if ev.is_application else "transport"
    text = f"kind={ev.kind} code={ev.error_code:#x} frame_type={frame} by={side} space={space}"
    if reason is Reason.PREMATURE_CLOSE:
        text += f" bytes_received={ctx.bytes_received}"
    if ctx.cause is not None:
        text += f" cause={type(ctx.cause).__name__}"
    return text


def terminated_from_event(
    event: TerminationInfo,
    *,
    transport: str = "udp",
    during_handshake: bool = False,
    idle_timeout: float | None = None,
    handshake_timeout: float | None = None,
    bytes_received: int | None = None,
    cause: BaseException | None = None,
    stacklevel: int = 1,
) -> Termination:
    """Map a ``ConnectionTerminatedEvent`` to an exception factory and one entry.

    ``transport`` is ``"udp"`` (QUIC) or ``"tcp"`` (QMux); ``during_handshake``
    whether the handshake had not completed.  ``idle_timeout`` and
    ``handshake_timeout`` (seconds) go into the text.  ``cause`` is the
    exception behind the end when the driver has it: an mstls exception (such
    as QMux's ``termination_error``) is what every later call raises, except
    that a TLS failure during the handshake always becomes a
    :class:`HandshakeError`; anything else (an ``OSError``) becomes the
    ``__cause__``.  ``bytes_received`` defaults to the cause's.  ``kind`` must
    be a :class:`~mstls.core.lifecycle.TerminationKind` (or its value): an
    unknown kind is a ``ValueError``, never silently a ``close``.
    """
    if cause is not None:
        cause = kept(cause)  # the factory keeps it for the connection's lifetime
    if bytes_received is None:
        bytes_received = getattr(cause, "bytes_received", 0)
    ctx = _Context(
        event, during_handshake, idle_timeout, handshake_timeout, bytes_received or 0, cause
    )
    lib = Lib.QMUX if transport == "tcp" else Lib.QUIC
    kind = TerminationKind(event.kind)
    outcome = _HANDLERS[kind](ctx)
    errno = getattr(cause, "errno", None)
    io_error = kind is TerminationKind.IO_ERROR
    code = errno if io_error and isinstance(errno, int) else event.error_code
    entry = ErrorEntry(
        outcome.lib or lib,
        outcome.reason,
        outcome.text,
        _detail(ctx, outcome.reason),
        caller_location(stacklevel),
        code,
    )
    return Termination(_factory(outcome, cause), [entry])
