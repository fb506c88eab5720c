"""The exception hierarchy (rule E9): one root, the right ``kind`` on every
class, wire codes kept, copies that never share state with the original."""

from __future__ import annotations

import copy
import errno
import os
import pickle
from typing import Any

import pytest

import mstls
from mstls.codes import AlertDescription, TransportErrorCode
from mstls.exceptions import (
    CertificateError,
    ConfigurationError,
    ConnectionIOError,
    ConnectionTerminated,
    DecodeError,
    DecryptionFailed,
    Error,
    ErrorKind,
    HandshakeAlert,
    HandshakeError,
    IncompleteRead,
    ListenerClosed,
    PeerAlert,
    PrematureClose,
    ProtocolError,
    StreamError,
    StreamLimitReached,
    StreamReset,
    StreamResetError,
    StreamStateError,
    StreamStopped,
    StreamStoppedError,
    Timeout,
    TLSError,
    TransportParameterError,
    WantRead,
    WantWrite,
    WouldBlock,
)

#: One instance of every class, built with its documented constructor.
SAMPLES: list[Error] = [
    Error("root"),
    WantRead("read would block"),
    WantWrite("write would block"),
    Timeout("read timed out"),
    Timeout("write timed out", writing=True),
    ConfigurationError("no such file: key.pem"),
    IncompleteRead("stream ended after 3 of 10 bytes", partial=b"abc", expected=10),
    ListenerClosed("listener closed"),
    ProtocolError("bad frame", error_code=0x0A, frame_type=0x08),
    DecodeError("truncated varint"),
    DecryptionFailed("forged packet"),
    TransportParameterError("duplicate parameter"),
    TLSError(AlertDescription.decode_error, "bad message"),
    HandshakeError(AlertDescription.handshake_failure, "no common cipher"),
    CertificateError(AlertDescription.bad_certificate, "name mismatch"),
    PeerAlert(AlertDescription.unknown_ca, "peer rejected us"),
    HandshakeAlert(AlertDescription.unknown_ca, "peer aborted the handshake"),
    ConnectionTerminated(7, "bye", by_peer=True, is_application=True),
    ConnectionTerminated(0x0A, "bad", by_peer=False, is_application=False, frame_type=0x06),
    PrematureClose("TCP FIN without close_notify", bytes_received=1234),
    ConnectionIOError("socket error: EBADF", errno=9),
    StreamStateError("write after FIN", stream_id=4),
    StreamLimitReached("MAX_STREAMS reached"),
    StreamReset(7, stream_id=4),
    StreamStopped(9, stream_id=8),
    StreamResetError("stream 4 was reset", 7, stream_id=4),
    StreamStoppedError("stream 8 was stopped", 9, stream_id=8),
]

KINDS: list[tuple[Error, ErrorKind]] = [
    (SAMPLES[0], ErrorKind.SSL),
    (WantRead("x"), ErrorKind.WANT_READ),
    (WantWrite("x"), ErrorKind.WANT_WRITE),
    (Timeout(), ErrorKind.WANT_READ),
    (Timeout(writing=True), ErrorKind.WANT_WRITE),
    (ConfigurationError("x"), ErrorKind.SSL),
    (IncompleteRead("x"), ErrorKind.ZERO_RETURN),
    (ListenerClosed("x"), ErrorKind.CONNECTION_CLOSED),
    (ProtocolError("x"), ErrorKind.SSL),
    (DecodeError("x"), ErrorKind.SSL),
    (TLSError(AlertDescription.internal_error, "x"), ErrorKind.SSL),
    (HandshakeError(AlertDescription.handshake_failure, "x"), ErrorKind.SSL),
    (CertificateError(AlertDescription.bad_certificate, "x"), ErrorKind.SSL),
    (HandshakeAlert(AlertDescription.bad_certificate, "x"), ErrorKind.SSL),
    (ConnectionTerminated(0, "x"), ErrorKind.CONNECTION_CLOSED),
    (PrematureClose("x"), ErrorKind.SYSCALL),
    (ConnectionIOError("x"), ErrorKind.SYSCALL),
    (StreamReset(1), ErrorKind.STREAM_RESET),
    (StreamStopped(1), ErrorKind.STREAM_RESET),
    (StreamResetError("x", 1), ErrorKind.STREAM_RESET),
    (StreamStoppedError("x", 1), ErrorKind.STREAM_RESET),
    (StreamLimitReached("x"), ErrorKind.WANT_WRITE),
    (StreamStateError("x"), ErrorKind.SSL),
]


@pytest.mark.parametrize(("exc", "kind"), KINDS, ids=lambda v: type(v).__name__)
def test_every_class_has_its_kind(exc: Error, kind: ErrorKind) -> None:
    assert exc.kind is kind


RELATIONS: list[tuple[type[BaseException], type[BaseException]]] = [
    (PrematureClose, ConnectionTerminated),
    (ConnectionIOError, ConnectionTerminated),
    (CertificateError, HandshakeError),
    (HandshakeAlert, HandshakeError),
    (HandshakeAlert, PeerAlert),
    (HandshakeAlert, ConnectionTerminated),
    (HandshakeError, TLSError),
    (TLSError, ProtocolError),
    (WantRead, WouldBlock),
    (WantWrite, WouldBlock),
    (Timeout, TimeoutError),
    (StreamResetError, StreamReset),
    (StreamStoppedError, StreamStopped),
    (StreamReset, StreamError),
    (StreamStopped, StreamError),
]


@pytest.mark.parametrize(("child", "parent"), RELATIONS, ids=lambda c: c.__name__)
def test_hierarchy(child: type[BaseException], parent: type[BaseException]) -> None:
    assert issubclass(child, parent)


def test_handshake_alert_has_the_attributes_of_both_parents() -> None:
    """Issue 17 point 3: one class for the peer's fatal alert on both transports."""
    exc = HandshakeAlert(AlertDescription.certificate_required, "no client certificate")
    assert exc.code == exc.error_code == 0x100 + AlertDescription.certificate_required
    assert exc.alert is AlertDescription.certificate_required
    assert exc.by_peer and not exc.is_application and exc.frame_type is None
    assert exc.reason == "no client certificate"
    assert str(exc) == (
        "connection terminated by peer (transport code 0x174): no client certificate"
    )
    assert HandshakeAlert(0xEE, "x").alert == 0xEE and type(HandshakeAlert(0xEE, "x").alert) is int


@pytest.mark.parametrize("exc", SAMPLES, ids=lambda e: type(e).__name__)
def test_one_root(exc: Error) -> None:
    assert isinstance(exc, mstls.Error)


def test_siblings_stay_apart() -> None:
    # A connection-level end is not a stream error, and a reset is not a stop.
    assert not issubclass(ConnectionTerminated, StreamError)
    assert not issubclass(StreamReset, StreamStopped)
    assert not issubclass(StreamStopped, StreamReset)
    assert not issubclass(HandshakeError, ConnectionTerminated)
    assert not issubclass(WantRead, OSError)
    assert not issubclass(PrematureClose, OSError)


def test_public_package_exports_the_root_and_main_classes() -> None:
    for name in ("Error", "ConnectionTerminated", "PrematureClose", "HandshakeError"):
        assert issubclass(getattr(mstls, name), mstls.Error)


# -- constructors and codes -----------------------------------------------------------------
def test_stream_reset_contract_signature_and_old_aliases() -> None:
    new = StreamReset(7, stream_id=4)
    assert (new.code, new.error_code, new.stream_id) == (7, 7, 4)
    assert "stream 4" in str(new) and "0x7" in str(new)
    old = StreamResetError("stream 4 was reset by the peer", 7, stream_id=4)
    assert isinstance(old, StreamReset)
    assert (old.code, old.error_code, old.reason) == (7, 7, "stream 4 was reset by the peer")
    stopped = StreamStoppedError("stopped", 9)
    assert isinstance(stopped, StreamStopped)
    assert (stopped.code, stopped.error_code, stopped.stream_id) == (9, 9, None)
    with pytest.raises(StreamReset):
        raise StreamResetError("x", 1)


def test_connection_terminated_keeps_its_fields() -> None:
    exc = ConnectionTerminated(7, "bye", by_peer=True, is_application=True)
    assert (exc.code, exc.reason, exc.by_peer, exc.is_application) == (7, "bye", True, True)
    assert exc.frame_type is None
    assert "peer" in str(exc) and "bye" in str(exc)


def test_known_transport_codes_are_named_unknown_stay_int() -> None:
    known = ConnectionTerminated(0x0A, "x")
    assert known.code is TransportErrorCode.PROTOCOL_VIOLATION
    unknown = ConnectionTerminated(0x4242, "x")
    assert type(unknown.code) is int and unknown.code == 0x4242
    crypto = ConnectionTerminated(0x12A, "x")
    assert type(crypto.code) is int
    # Application codes have their own space: never given transport names.
    application = ConnectionTerminated(0x0A, "x", is_application=True)
    assert type(application.code) is int


def test_premature_close_counts_bytes_and_is_by_peer() -> None:
    exc = PrematureClose("FIN without close_notify", bytes_received=1234)
    assert isinstance(exc, ConnectionTerminated)
    assert exc.bytes_received == 1234 and exc.by_peer


def test_premature_close_says_what_it_is() -> None:
    """Issue 17 point 12: not "terminated by peer (transport code 0x1)"."""
    reason = "TCP connection reset: [Errno 32] Broken pipe"
    exc = PrematureClose(reason, bytes_received=17)
    assert str(exc) == f"premature close (17 bytes received): {reason}"
    assert "terminated by" not in str(exc) and "code 0x1" not in str(exc)
    assert exc.reason == reason and str(exc.fresh()) == str(exc)


def test_connection_io_error_keeps_errno() -> None:
    exc = ConnectionIOError("socket error", errno=9)
    assert exc.errno == 9 and not exc.by_peer


def test_connection_io_error_is_an_os_error() -> None:
    """Issue 17 point 12: ``except OSError`` catches it, with errno and strerror."""
    with pytest.raises(OSError) as info:
        raise ConnectionIOError("sendmsg failed", errno=errno.EPIPE)
    exc = info.value
    assert isinstance(exc, ConnectionIOError) and isinstance(exc, ConnectionTerminated)
    assert (exc.errno, exc.strerror) == (errno.EPIPE, os.strerror(errno.EPIPE))
    assert str(exc) == "socket error EPIPE: sendmsg failed"
    assert exc.kind is ErrorKind.SYSCALL
    for clone in (copy.copy(exc), pickle.loads(pickle.dumps(exc)), exc.fresh()):
        assert (clone.errno, clone.strerror, str(clone)) == (exc.errno, exc.strerror, str(exc))
    bare = ConnectionIOError("no errno")
    assert bare.errno is None and bare.strerror is None and str(bare) == "socket error: no errno"


def test_tls_error_codes() -> None:
    exc = CertificateError(AlertDescription.bad_certificate, "name mismatch")
    assert exc.error_code == 0x100 + 42 and exc.alert is AlertDescription.bad_certificate
    unknown = HandshakeAlert(250, "?")
    assert unknown.alert == 250 and type(unknown.alert) is int


# -- copies ---------------------------------------------------------------------------------
def _state(exc: BaseException) -> tuple[Any, ...]:
    return (type(exc), str(exc), exc.args, vars(exc), getattr(exc, "kind", None))


@pytest.mark.parametrize("exc", SAMPLES, ids=lambda e: type(e).__name__)
def test_copy_and_pickle_keep_type_and_state(exc: Error) -> None:
    for clone in (copy.copy(exc), pickle.loads(pickle.dumps(exc)), exc.fresh()):
        assert clone is not exc
        assert _state(clone) == _state(exc)


def test_fresh_has_no_traceback_and_keeps_the_cause() -> None:
    cause = OSError(9, "bad file descriptor")
    try:
        raise ConnectionIOError("socket error", errno=9) from cause
    except ConnectionIOError as exc:
        original = exc
    assert original.__traceback__ is not None
    clone = original.fresh()
    assert clone.__traceback__ is None
    assert clone.__cause__ is cause and clone.__suppress_context__
    assert clone.errno == 9


def test_fresh_does_not_share_notes() -> None:
    original = ConnectionTerminated(0, "x")
    original.add_note("first")
    clone = original.fresh()
    clone.add_note("second")
    assert original.__notes__ == ["first"]
    assert clone.__notes__ == ["first", "second"]
