"""The error model through the public blocking API, on both transports (127.0.0.1).

* Would-block results (``WantRead``, ``WantWrite``, ``Timeout``) leave no entry in
  the caller's queue; the exception alone classifies them, and a call that waited
  to send (``write``, ``open_stream``) is ``WANT_WRITE`` (issue 17 point 8).
* A socket error is a ``ConnectionIOError``, which ``except OSError`` catches with
  its ``errno``; a TCP stream that ends without close_notify is a
  ``PrematureClose`` whose message says so (issue 17 point 12).
"""

from __future__ import annotations

import errno
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import trio

import mstls
import mstls.trio
from mstls import errors
from mstls.errors import ErrorKind
from tests.api.helpers import TIMEOUT, client_config, server

pytestmark = pytest.mark.network

TRANSPORTS = ["udp", "tcp"]
#: How long a call that must time out waits (it never succeeds, so no race).
SHORT = 0.2
#: More than the peer's largest flow-control window (16 MiB) plus our send buffer.
BEYOND_WINDOW = 64 << 20
#: More streams than the peer's MAX_STREAMS allows (128 by default).
STREAM_LIMIT_BOUND = 1000


@contextmanager
def stalled_peer(transport: str) -> Iterator[mstls.Connection]:
    """A connection to a server that accepts streams and never reads them."""
    release = threading.Event()

    def never_read(_stream: mstls.Stream) -> None:
        release.wait(TIMEOUT)

    with server(never_read, transport=transport) as (listener, _):
        config = client_config()
        conn = mstls.connect(
            "127.0.0.1", listener.address[1], config, transport=transport, timeout=TIMEOUT
        )
        try:
            yield conn
        finally:
            release.set()
            conn.close()


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_read_timeout_and_want_read_leave_no_entry(transport: str) -> None:
    with stalled_peer(transport) as conn:
        stream = conn.open_stream()
        errors.clear_error()
        with pytest.raises(mstls.Timeout) as info:
            stream.read(timeout=SHORT)
        assert errors.classify(info.value) is ErrorKind.WANT_READ
        assert errors.errors() == []
        conn.blocking = False
        with pytest.raises(mstls.WantRead):
            stream.read()
        assert errors.errors() == []


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_write_timeout_is_want_write_and_leaves_no_entry(transport: str) -> None:
    with stalled_peer(transport) as conn:
        stream = conn.open_stream()
        payload = bytes(BEYOND_WINDOW)
        errors.clear_error()
        with pytest.raises(mstls.Timeout) as info:
            stream.write(payload, timeout=SHORT)
        assert errors.classify(info.value) is ErrorKind.WANT_WRITE
        assert info.value.kind is ErrorKind.WANT_WRITE
        assert errors.errors() == []
        conn.blocking = False
        with pytest.raises(mstls.WantWrite):
            stream.write(payload)
        assert errors.errors() == []


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_open_stream_timeout_is_want_write_and_leaves_no_entry(transport: str) -> None:
    with stalled_peer(transport) as conn:
        errors.clear_error()
        with pytest.raises(mstls.Timeout) as info:
            for _ in range(STREAM_LIMIT_BOUND):
                conn.open_stream(timeout=SHORT)
        assert errors.classify(info.value) is ErrorKind.WANT_WRITE
        assert errors.errors() == []
        conn.blocking = False
        with pytest.raises(mstls.WantWrite):
            conn.open_stream()
        assert errors.errors() == []


def _closed_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on (connecting is refused)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _check_refused(exc: BaseException) -> None:
    assert isinstance(exc, mstls.ConnectionIOError) and isinstance(exc, OSError)
    assert exc.errno == errno.ECONNREFUSED
    assert str(exc).startswith("socket error ECONNREFUSED: TCP connect to 127.0.0.1:")


def test_blocking_refused_tcp_connect_is_an_os_error_with_errno() -> None:
    port = _closed_port()
    with pytest.raises(OSError) as info:
        mstls.connect("127.0.0.1", port, client_config(), transport="tcp", timeout=TIMEOUT)
    _check_refused(info.value)


async def test_trio_refused_tcp_connect_is_an_os_error_with_errno() -> None:
    port = _closed_port()
    with trio.fail_after(TIMEOUT), pytest.raises(OSError) as info:
        await mstls.trio.connect("127.0.0.1", port, client_config(), transport="tcp")
    _check_refused(info.value)


def test_tcp_fin_without_close_notify_is_a_premature_close_that_says_so() -> None:
    """A TCP server that accepts and closes at once: the TLS handshake is cut."""
    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen(1)
        port = listening.getsockname()[1]

        def close_at_once() -> None:
            accepted, _ = listening.accept()
            accepted.close()

        closer = threading.Thread(target=close_at_once)
        closer.start()
        with pytest.raises(mstls.PrematureClose) as info:
            mstls.connect("127.0.0.1", port, client_config(), transport="tcp", timeout=TIMEOUT)
        closer.join(TIMEOUT)
    text = str(info.value)
    assert text.startswith("premature close (0 bytes received): ")
    assert "terminated by" not in text and "code 0x1" not in text


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_accept_timeout_leaves_no_entry(transport: str) -> None:
    with server(transport=transport) as (listener, _), stalled_peer(transport) as conn:
        errors.clear_error()
        with pytest.raises(mstls.Timeout) as info:
            conn.accept_stream(timeout=SHORT)
        assert errors.classify(info.value) is ErrorKind.WANT_READ
        with pytest.raises(mstls.Timeout):
            listener.accept(timeout=0)
        assert errors.errors() == []


async def test_trio_connect_timeout_leaves_no_entry() -> None:
    """The trio API's one timeout (its other calls use cancellation)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as mute:
        mute.bind(("127.0.0.1", 0))  # bound, never answers: the handshake just waits
        port = mute.getsockname()[1]
        errors.clear_error()
        with trio.fail_after(TIMEOUT), pytest.raises(mstls.Timeout) as info:
            await mstls.trio.connect("127.0.0.1", port, client_config(), timeout=SHORT)
    assert errors.classify(info.value) is ErrorKind.WANT_READ
    assert errors.errors() == []
