"""Stored exceptions pin no frames (``mstls.exceptions.kept``).

A sans-I/O object that failed keeps its exception to raise it again on every
later call.  Kept with its traceback, that exception pins the frames it passed
through, and the connection that stored it: a reference cycle that only the
full garbage collection frees.  Under a flood of failed handshakes (issue 6)
hundreds of dead connections piled up that way.
"""

from __future__ import annotations

import errno
import gc
import weakref

import pytest

import mstls
from mstls.codes import AlertDescription
from mstls.exceptions import TLSError, kept
from mstls.qmux.connection import QMuxConnection
from tests.qmux.pair import server_config


def test_kept_drops_tracebacks_and_keeps_the_cause_chain() -> None:
    def fail() -> None:
        try:
            raise OSError(errno.ECONNRESET, "reset")
        except OSError as inner:
            raise TLSError(AlertDescription.decode_error, "bad record") from inner

    with pytest.raises(TLSError) as info:
        fail()
    original = info.value
    assert original.__traceback__ is not None and original.__cause__ is not None
    copy = kept(original)
    assert type(copy) is TLSError and copy.alert is AlertDescription.decode_error
    assert copy.reason == "bad record"
    assert copy.__traceback__ is None and copy.__context__ is None
    assert isinstance(copy.__cause__, OSError) and copy.__cause__.errno == errno.ECONNRESET
    assert copy.__cause__.__traceback__ is None
    assert original.__traceback__ is not None  # the original is untouched


@pytest.mark.parametrize(
    "garbage",
    [
        b"\x50" + bytes(40),  # unknown content type: an alert at once
        b"\x16\x03\x01\x00\x05" + b"\x63" * 5,  # a record holding a bad handshake message
    ],
)
def test_a_failed_tcp_handshake_is_freed_without_the_cycle_collector(garbage: bytes) -> None:
    conn = QMuxConnection(server_config(), is_client=False, now=0.0)
    conn.receive_data(garbage, 0.0)
    conn.receive_eof(0.0)
    assert conn.is_terminated and conn.termination_error is not None
    with pytest.raises(mstls.Error):  # the sticky failure, raised again
        conn.tls_connection.receive_data(b"more")
    ref = weakref.ref(conn)
    gc.disable()
    try:
        del conn
        assert ref() is None, "a stored exception keeps the dead connection in a cycle"
    finally:
        gc.enable()
