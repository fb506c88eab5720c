"""From a connection's termination event to the exception raised and the entries
recorded (``terminated_from_event``), and on through the channel to every thread."""

from __future__ import annotations

import errno
from typing import Any

import pytest

from mstls import _errors as errors
from mstls._errors import Channel, Lib, Reason
from mstls.codes import AlertDescription, TransportErrorCode
from mstls.core.events import ConnectionTerminatedEvent
from mstls.exceptions import (
    CertificateError,
    ConnectionIOError,
    ConnectionTerminated,
    Error,
    HandshakeAlert,
    HandshakeError,
    PeerAlert,
    PrematureClose,
)

from .helpers import run_threads


# -- terminated_from_event -------------------------------------------------------------------------
def _event(
    kind: str = "close",
    code: int = 0,
    reason: str = "",
    *,
    by_peer: bool = True,
    application: bool = False,
    frame_type: int | None = None,
) -> ConnectionTerminatedEvent:
    return ConnectionTerminatedEvent(code, frame_type, reason, by_peer, application, kind)


#: (event, keyword arguments, exception type, entry reason, entry text, library)
MAPPINGS: list[tuple[ConnectionTerminatedEvent, dict[str, Any], type[Error], Reason, str, Lib]] = [
    (
        _event(code=7, reason="bye", application=True),
        {},
        ConnectionTerminated,
        Reason.PEER_CLOSED,
        "connection closed by peer: application error 7: bye",
        Lib.QUIC,
    ),
    (
        _event(code=0, by_peer=False, application=True),
        {"transport": "tcp"},
        ConnectionTerminated,
        Reason.LOCAL_CLOSED,
        "connection closed locally: application error 0",
        Lib.QMUX,
    ),
    (
        _event(code=0x0A, reason="bad ACK", by_peer=False, frame_type=0x02),
        {},
        ConnectionTerminated,
        Reason.PROTOCOL_VIOLATION,
        "connection closed locally: transport error PROTOCOL_VIOLATION (0xa): bad ACK",
        Lib.QUIC,
    ),
    (
        _event(code=0x4242, reason="?"),
        {},
        ConnectionTerminated,
        Reason.PEER_CLOSED,
        "connection closed by peer: transport error 0x4242: ?",
        Lib.QUIC,
    ),
    (
        _event("idle_timeout", reason="idle timeout", by_peer=False),
        {"idle_timeout": 30.0},
        ConnectionTerminated,
        Reason.IDLE_TIMEOUT,
        "idle timeout after 30.0 s",
        Lib.QUIC,
    ),
    (
        _event("handshake_timeout", reason="handshake did not complete in time", by_peer=False),
        {"handshake_timeout": 10.0, "during_handshake": True},
        ConnectionTerminated,
        Reason.HANDSHAKE_TIMEOUT,
        "handshake did not complete within 10.0 s",
        Lib.QUIC,
    ),
    (
        _event("stateless_reset", reason="stateless reset received"),
        {},
        ConnectionTerminated,
        Reason.STATELESS_RESET,
        "stateless reset received",
        Lib.QUIC,
    ),
    (
        _event("premature_close", 1, "TCP FIN without CONNECTION_CLOSE"),
        {"transport": "tcp", "bytes_received": 1234},
        PrematureClose,
        Reason.PREMATURE_CLOSE,
        "premature close (1234 bytes received): TCP FIN without CONNECTION_CLOSE",
        Lib.QMUX,
    ),
    (
        _event("tcp_reset", 1),
        {"transport": "tcp", "bytes_received": 99},
        PrematureClose,
        Reason.PREMATURE_CLOSE,
        "TCP connection reset (99 bytes received)",
        Lib.SYS,
    ),
    (
        _event("close", 0x100 + 42, "bad certificate"),
        {"during_handshake": True},
        HandshakeAlert,
        Reason.TLS_ALERT,
        "handshake failed: peer sent TLS alert bad_certificate (42): bad certificate",
        Lib.TLS,
    ),
    (
        _event("close", 0x100 + 48, "unknown issuer", by_peer=False),
        {"during_handshake": True},
        CertificateError,
        Reason.CERTIFICATE_VERIFY_FAILED,
        "handshake failed: certificate verify failed, sent TLS alert unknown_ca (48): "
        "unknown issuer",
        Lib.TLS,
    ),
    (
        _event("tls_error", 0x100 + 40, "no shared group", by_peer=False),
        {"during_handshake": True, "transport": "tcp"},
        HandshakeError,
        Reason.TLS_ALERT,
        "handshake failed: TLS alert, sent TLS alert handshake_failure (40): no shared group",
        Lib.TLS,
    ),
    (  # the peer's alert after our side of the handshake completed (issue 17 point 3)
        _event("close", 0x100 + 10, "unexpected message"),
        {},
        HandshakeAlert,
        Reason.TLS_ALERT,
        "connection closed by peer: TLS alert unexpected_message (10): unexpected message",
        Lib.TLS,
    ),
    (  # the same over TCP: a TLS alert record
        _event("tls_error", 0x100 + 116, "peer sent fatal alert certificate_required"),
        {"transport": "tcp"},
        HandshakeAlert,
        Reason.TLS_ALERT,
        "connection closed by peer: TLS alert certificate_required (116): "
        "peer sent fatal alert certificate_required",
        Lib.TLS,
    ),
    (  # an alert we sent after the handshake stays a plain termination
        _event("close", 0x100 + 10, "unexpected message", by_peer=False),
        {},
        ConnectionTerminated,
        Reason.TLS_ALERT,
        "connection closed locally: TLS alert unexpected_message (10): unexpected message",
        Lib.TLS,
    ),
]


@pytest.mark.parametrize(
    ("event", "kwargs", "cls", "reason", "text", "lib"),
    MAPPINGS,
    ids=[f"{m[0].kind}-{m[2].__name__}" for m in MAPPINGS],
)
def test_terminated_from_event(
    event: ConnectionTerminatedEvent,
    kwargs: dict[str, Any],
    cls: type[Error],
    reason: Reason,
    text: str,
    lib: Lib,
) -> None:
    factory, entries = errors.terminated_from_event(event, **kwargs)
    first, second = factory(), factory()
    assert type(first) is cls and first is not second
    (entry,) = entries
    assert (entry.reason, entry.reason_text, entry.lib) == (reason, text, lib)
    assert entry.code == event.error_code
    assert f"kind={event.kind}" in entry.detail
    assert entry.where.startswith("test_errors_termination.py:")
    assert entry.where.endswith(" in test_terminated_from_event")
    assert errors.errors() == []  # entries are returned, not recorded


def test_terminated_exception_fields() -> None:
    factory, _ = errors.terminated_from_event(_event(code=7, reason="bye", application=True))
    exc = factory()
    assert isinstance(exc, ConnectionTerminated)
    assert (exc.code, exc.reason, exc.by_peer, exc.is_application) == (7, "bye", True, True)
    factory, _ = errors.terminated_from_event(_event(code=0x4242))
    exc = factory()
    assert isinstance(exc, ConnectionTerminated) and type(exc.code) is int
    factory, _ = errors.terminated_from_event(_event(code=0x0A))
    exc = factory()
    assert isinstance(exc, ConnectionTerminated)
    assert exc.code is TransportErrorCode.PROTOCOL_VIOLATION
    factory, _ = errors.terminated_from_event(
        _event("premature_close", 1, "FIN"), bytes_received=1234
    )
    exc = factory()
    assert isinstance(exc, PrematureClose) and exc.bytes_received == 1234


def test_a_local_certificate_error_is_raised_itself() -> None:
    cause = CertificateError(AlertDescription.bad_certificate, "name mismatch")
    event = _event("close", cause.error_code, cause.reason, by_peer=False)
    factory, entries = errors.terminated_from_event(event, during_handshake=True, cause=cause)
    exc = factory()
    assert type(exc) is CertificateError and exc is not cause and exc.reason == "name mismatch"
    assert entries[0].reason is Reason.CERTIFICATE_VERIFY_FAILED


def test_a_peer_alert_during_the_handshake_becomes_a_handshake_error() -> None:
    cause = PeerAlert(AlertDescription.protocol_version, "no TLS 1.3")
    event = _event("tls_error", cause.error_code, cause.reason)
    factory, _ = errors.terminated_from_event(event, during_handshake=True, cause=cause)
    exc = factory()
    assert isinstance(exc, HandshakeAlert) and isinstance(exc, PeerAlert)
    assert exc.alert is AlertDescription.protocol_version
    # The cause is kept as a traceback-free copy (mstls.exceptions.kept).
    assert type(exc.__cause__) is PeerAlert and exc.__cause__.reason == cause.reason


def test_qmux_termination_error_is_kept_with_its_bytes() -> None:
    cause = PrematureClose("TCP socket error; 10 application bytes had arrived", bytes_received=10)
    event = _event("io_error", 1, cause.reason, by_peer=False)
    factory, entries = errors.terminated_from_event(event, transport="tcp", cause=cause)
    exc = factory()
    assert type(exc) is PrematureClose and exc.bytes_received == 10 and exc is not cause
    assert entries[0].reason is Reason.PREMATURE_CLOSE
    assert "bytes_received=10" in entries[0].detail


def test_socket_error_chains_the_os_error() -> None:
    cause = OSError(errno.EBADF, "Bad file descriptor")
    factory, entries = errors.terminated_from_event(
        _event("io_error", 1, "sendmsg failed", by_peer=False), cause=cause
    )
    exc = factory()
    assert isinstance(exc, ConnectionIOError) and exc.errno == errno.EBADF
    assert type(exc.__cause__) is OSError and exc.__cause__.errno == errno.EBADF
    assert entries[0].reason is Reason.SYSCALL and entries[0].code == errno.EBADF


def test_event_to_channel_to_every_thread() -> None:
    """The drivers' path: event → terminated_from_event → Channel.fail → raise."""
    channel = Channel()
    factory, entries = errors.terminated_from_event(_event(code=7, reason="bye", application=True))
    channel.fail(entries, factory)

    def call(_: int) -> list[Reason]:
        with pytest.raises(ConnectionTerminated) as info:
            channel.raise_if_failed("write")
        assert info.value.code == 7
        return [e.reason for e in errors.errors()]

    results = run_threads(4, call)
    assert results == [[Reason.PEER_CLOSED, Reason.CONNECTION_TERMINATED]] * 4
