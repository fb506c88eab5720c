"""The error model, rule E7: a classification that never reads a queue; and the
entries recorded for exceptions."""

from __future__ import annotations

import errno
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mstls import _errors as errors
from mstls._errors import ErrorEntry, ErrorKind, Lib, Reason
from mstls.codes import AlertDescription
from mstls.exceptions import (
    CertificateError,
    ConnectionIOError,
    ConnectionTerminated,
    HandshakeError,
    IncompleteRead,
    PeerAlert,
    PrematureClose,
    ProtocolError,
    StreamReset,
    StreamStopped,
    Timeout,
    WantRead,
    WantWrite,
)

# -- E7: classification ------------------------------------------------------------------------
CLASSIFIED: list[tuple[BaseException | None, ErrorKind]] = [
    (None, ErrorKind.NONE),
    (WantRead("x"), ErrorKind.WANT_READ),
    (WantWrite("x"), ErrorKind.WANT_WRITE),
    (Timeout(writing=True), ErrorKind.WANT_WRITE),
    (StreamReset(1), ErrorKind.STREAM_RESET),
    (ConnectionTerminated(0, "x"), ErrorKind.CONNECTION_CLOSED),
    (PrematureClose("x"), ErrorKind.SYSCALL),
    (HandshakeError(AlertDescription.handshake_failure, "x"), ErrorKind.SSL),
    (ProtocolError("x"), ErrorKind.SSL),
    (BlockingIOError(), ErrorKind.WANT_READ),
    (TimeoutError(), ErrorKind.WANT_READ),
    (ConnectionResetError(), ErrorKind.SYSCALL),
    (ValueError(), ErrorKind.SSL),
]


@pytest.mark.parametrize(("outcome", "kind"), CLASSIFIED)
def test_classify(outcome: BaseException | None, kind: ErrorKind) -> None:
    assert errors.classify(outcome) is kind


@pytest.mark.parametrize(
    ("result", "kind"),
    [
        (b"", ErrorKind.ZERO_RETURN),
        (b"data", ErrorKind.NONE),
        (memoryview(b""), ErrorKind.ZERO_RETURN),
        (0, ErrorKind.ZERO_RETURN),
        (5, ErrorKind.NONE),
        (None, ErrorKind.WANT_READ),
        (StreamReset(3), ErrorKind.STREAM_RESET),
    ],
)
def test_classify_read(result: Any, kind: ErrorKind) -> None:
    assert errors.classify_read(result) is kind


junk_entries = st.lists(
    st.builds(
        ErrorEntry,
        st.sampled_from(Lib),
        st.sampled_from(Reason),
        st.text(max_size=20),
        st.text(max_size=20),
        st.text(max_size=10),
        st.none() | st.integers(0, 2**62 - 1),
    ),
    max_size=errors.QUEUE_LIMIT,
)


@settings(max_examples=200, deadline=None)
@given(junk=junk_entries, case=st.sampled_from(CLASSIFIED))
def test_classification_never_depends_on_queue_contents(
    junk: list[ErrorEntry], case: tuple[BaseException | None, ErrorKind]
) -> None:
    outcome, kind = case
    errors.clear_error()
    errors.put_errors(junk)
    assert errors.classify(outcome) is kind
    assert errors.classify_read(b"") is ErrorKind.ZERO_RETURN
    assert errors.errors() == junk  # and classification does not touch the queue


# -- entries for exceptions ------------------------------------------------------------------------
def test_recorded_and_timeout_error() -> None:
    exc = IncompleteRead("stream ended after 3 of 9 bytes")
    assert errors.recorded(exc) is exc
    (entry,) = errors.errors()
    assert entry.where.endswith(" in test_recorded_and_timeout_error")
    assert (entry.reason, entry.reason_text) == (Reason.INCOMPLETE_READ, str(exc))


def test_timeout_error_is_a_would_block_and_leaves_no_entry() -> None:
    """Issue 17 point 8: a timeout is a would-block with a deadline (E4, E7)."""
    timeout = errors.timeout_error("accept", 2.5)
    assert isinstance(timeout, Timeout) and str(timeout) == "accept timed out after 2.5 s"
    assert errors.classify(timeout) is ErrorKind.WANT_READ
    writing = errors.timeout_error("write", 0.5, writing=True)
    assert errors.classify(writing) is ErrorKind.WANT_WRITE
    assert errors.errors() == []


@pytest.mark.parametrize(
    ("exc", "lib", "reason", "code"),
    [
        (StreamStopped(9), Lib.STREAM, Reason.STREAM_STOPPED, 9),
        (
            CertificateError(AlertDescription.unknown_ca, "x"),
            Lib.TLS,
            Reason.CERTIFICATE_VERIFY_FAILED,
            0x130,
        ),
        (PeerAlert(AlertDescription.decode_error, "x"), Lib.TLS, Reason.TLS_ALERT, 0x132),
        (ProtocolError("x", error_code=3), Lib.QUIC, Reason.PROTOCOL_VIOLATION, 3),
        (ConnectionTerminated(7, "x", by_peer=True), Lib.QUIC, Reason.PEER_CLOSED, 7),
        (ConnectionTerminated(0, "x"), Lib.QUIC, Reason.LOCAL_CLOSED, 0),
        (ConnectionIOError("x", errno=9), Lib.SYS, Reason.SYSCALL, 1),
        (OSError(errno.EBADF, "x"), Lib.SYS, Reason.SYSCALL, errno.EBADF),
        (KeyError("x"), Lib.API, Reason.INTERNAL, None),
    ],
)
def test_entry_for(exc: BaseException, lib: Lib, reason: Reason, code: int | None) -> None:
    entry = errors.entry_for(exc)
    assert (entry.lib, entry.reason, entry.code) == (lib, reason, code)
    assert entry.reason_text == str(exc) and entry.detail == type(exc).__name__


def test_errno_of_looks_through_causes_and_groups() -> None:
    """trio's connect raises a bare OSError from a group of per-address errors."""
    assert errors.errno_of(OSError(errno.EPIPE, "broken pipe")) == errno.EPIPE
    refused = ConnectionRefusedError(errno.ECONNREFUSED, "refused")
    bare = OSError("all attempts to connect failed")
    bare.__cause__ = ExceptionGroup("all attempts", [OSError("no errno"), refused])
    assert errors.errno_of(bare) == errno.ECONNREFUSED
    assert errors.errno_of(ValueError("x")) is None
    looped = OSError("loop")
    looped.__cause__ = looped
    assert errors.errno_of(looped) is None
