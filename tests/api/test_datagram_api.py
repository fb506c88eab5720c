"""Datagrams (RFC 9221) through the blocking API, over UDP and TCP (QMux, §8.1)."""

from __future__ import annotations

import threading

import pytest

import mstls
from mstls import errors
from mstls.core.datagrams import largest_datagram_payload
from mstls.qmux.config import DEFAULT_RECORD_SIZE

from .helpers import TIMEOUT, client_config, server

#: Over TCP a datagram fills one whole QMux record of the default size (draft §8.1).
TCP_MAX_DATAGRAM = largest_datagram_payload(DEFAULT_RECORD_SIZE)

pytestmark = pytest.mark.network

TRANSPORTS = ["udp", "tcp"]


def datagram_echo(conn: mstls.Connection) -> None:
    """Server side: echo every datagram, prefixed with ``echo:``, until the end."""
    try:
        while True:
            data = conn.receive_datagram(timeout=TIMEOUT)
            conn.send_datagram(b"echo:" + data)
    except mstls.Error:
        pass


def connect(port: int, transport: str, **kw: object) -> mstls.Connection:
    config = client_config(datagrams=True, **kw)
    return mstls.connect("127.0.0.1", port, config, transport=transport, timeout=TIMEOUT)


def receive_some(conn: mstls.Connection, want: int, send: bytes) -> list[bytes]:
    """Send ``send`` until ``want`` answers came (UDP may lose some; loopback rarely)."""
    got: list[bytes] = []
    for _ in range(want * 20):
        conn.send_datagram(send)
        try:
            got.append(conn.receive_datagram(timeout=0.5))
        except mstls.Timeout:
            continue
        if len(got) >= want:
            break
    return got


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_datagram_echo_and_limits(transport: str) -> None:
    with (
        server(on_connection=datagram_echo, transport=transport, datagrams=True) as (listener, _),
        connect(listener.address[1], transport) as conn,
    ):
        assert receive_some(conn, 3, b"hi")[:3] == [b"echo:hi"] * 3
        size = conn.max_datagram_size
        # UDP: a 1200-byte (or larger, PMTU) packet; TCP: a whole default QMux record
        # minus the type and a 2-byte Length.
        assert size > 1100 if transport == "udp" else size == TCP_MAX_DATAGRAM
        with pytest.raises(mstls.DatagramTooLarge, match=f"maximum of {size} bytes") as info:
            conn.send_datagram(bytes(size + 1))
        assert isinstance(info.value, ValueError)
        assert errors.peek_error() is not None  # recorded, like other local misuse
        errors.clear_error()
        conn.send_datagram(bytes(size - 5))  # the echo adds 5 bytes: exactly the maximum
        assert conn.receive_datagram(timeout=TIMEOUT if transport == "tcp" else 2) == (
            b"echo:" + bytes(size - 5)
        )
        stats = conn.stats()
        assert stats.datagrams_sent >= 4 and stats.datagrams_received >= 4


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_peer_without_datagrams_is_a_clear_error(transport: str) -> None:
    with (
        server(on_connection=datagram_echo, transport=transport) as (listener, _),
        connect(listener.address[1], transport) as conn,
    ):
        assert conn.max_datagram_size == 0
        with pytest.raises(mstls.DatagramsUnsupported, match="peer does not accept"):
            conn.send_datagram(b"x")


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_full_send_queue_raises_instead_of_blocking(transport: str) -> None:
    with (
        server(on_connection=datagram_echo, transport=transport, datagrams=True) as (listener, _),
        connect(listener.address[1], transport) as conn,
    ):
        conn.wait_handshake(TIMEOUT)
        sans_io = conn.sans_io
        with conn._core.lock:  # nothing is flushed while we hold the lock
            sans_io.datagrams.send_limit = 2
            sans_io.send_datagram_frame(b"a")
            sans_io.send_datagram_frame(b"b")
            with pytest.raises(mstls.DatagramQueueFull) as info:
                conn.send_datagram(b"c")
        assert info.value.kind is errors.ErrorKind.WANT_WRITE
        assert isinstance(info.value, mstls.WantWrite)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_waiting_receivers_see_the_connection_failure(transport: str) -> None:
    with (
        server(on_connection=lambda c: None, transport=transport, datagrams=True) as (
            listener,
            server_conns,
        ),
        connect(listener.address[1], transport) as conn,
    ):
        conn.wait_handshake(TIMEOUT)
        failures: list[BaseException] = []

        def receiver() -> None:
            try:
                conn.receive_datagram(timeout=TIMEOUT)
            except mstls.Error as exc:
                failures.append(exc)

        threads = [threading.Thread(target=receiver) for _ in range(4)]
        for thread in threads:
            thread.start()
        for _ in range(int(TIMEOUT * 100)):
            if server_conns:
                break
            threading.Event().wait(0.01)
        server_conns[0].close(7, "bye")
        for thread in threads:
            thread.join(TIMEOUT)
        assert len(failures) == 4
        for exc in failures:
            assert isinstance(exc, mstls.ConnectionTerminated)
            assert exc.code == 7


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_non_blocking_receive_is_want_read_and_timeouts_leave_no_entry(transport: str) -> None:
    with (
        server(on_connection=lambda c: None, transport=transport, datagrams=True) as (listener, _),
        connect(listener.address[1], transport) as conn,
    ):
        conn.wait_handshake(TIMEOUT)
        errors.clear_error()
        with pytest.raises(mstls.Timeout):
            conn.receive_datagram(timeout=0.05)
        conn.blocking = False
        with pytest.raises(mstls.WantRead):
            conn.receive_datagram()
        assert errors.peek_error() is None  # would-block results stay out of the queue (E4)
