"""``Stream.write(data, end=True)``: data and FIN in one call, so a small request and
its end leave in one packet and the ACKs ride on the next stream's data (issue 11).

Counted, not timed: the QUIC packets each side sent (``stats().packets_sent``) for
sequential 1 KiB request/response streams over 127.0.0.1.  Writing and concluding
separately costs 3 packets per stream on each side (data, FIN, ACK).
"""

from __future__ import annotations

import time

import pytest

import mstls

from .helpers import TIMEOUT, client_config, server

#: Sequential request/response streams counted.
STREAMS = 100
SIZE = 1024
#: Packets per stream allowed each way: 1 when everything coalesces, a few lone ACKs
#: when the loaded machine delays a turn past the peer's ACK delay; 3 without coalescing.
MAX_PACKETS_PER_STREAM = 1.8


def _answer_with_end(conn: mstls.Connection) -> None:
    try:
        while True:
            with conn.accept_stream(timeout=TIMEOUT) as stream:
                request = bytearray()
                while data := stream.read(timeout=TIMEOUT):
                    request += data
                stream.write(request, timeout=TIMEOUT, end=True)
    except mstls.Error:
        pass


@pytest.mark.network
def test_small_streams_take_one_packet_each_way() -> None:
    with server(on_connection=_answer_with_end) as (listener, server_conns):
        conn = mstls.connect("127.0.0.1", listener.address[1], client_config(), timeout=TIMEOUT)
        with conn:
            with conn.open_stream(timeout=TIMEOUT) as stream:  # warm-up: the server conn exists
                stream.write(b"x", timeout=TIMEOUT, end=True)
                assert stream.read_exactly(1, timeout=TIMEOUT) == b"x"
            time.sleep(0.2)  # handshake leftovers (HANDSHAKE_DONE's ACK, tickets) are sent
            client_before = conn.stats().packets_sent
            server_before = server_conns[0].stats().packets_sent
            for index in range(STREAMS):
                request = bytes([index % 256]) * SIZE
                with conn.open_stream(timeout=TIMEOUT) as stream:
                    assert stream.write(request, timeout=TIMEOUT, end=True) == SIZE
                    assert stream.read_exactly(SIZE, timeout=TIMEOUT) == request
                    assert stream.read(timeout=TIMEOUT) == b""
            client_sent = conn.stats().packets_sent - client_before
            server_sent = server_conns[0].stats().packets_sent - server_before
    assert client_sent <= MAX_PACKETS_PER_STREAM * STREAMS, client_sent
    assert server_sent <= MAX_PACKETS_PER_STREAM * STREAMS, server_sent


@pytest.mark.network
@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_write_end_ends_the_stream(transport: str) -> None:
    with server(transport=transport) as (listener, _):
        conn = mstls.connect(
            "127.0.0.1", listener.address[1], client_config(), transport=transport, timeout=TIMEOUT
        )
        with conn:
            stream = conn.open_stream(timeout=TIMEOUT)
            big = b"b" * 300_000  # more than one flow-control window's worth of writes
            assert stream.write(big, timeout=TIMEOUT, end=True) == len(big)
            assert stream.read_exactly(len(big), timeout=TIMEOUT) == big
            assert stream.read(timeout=TIMEOUT) == b""  # the echo's FIN: ours arrived
            with pytest.raises(mstls.Error):
                stream.write(b"late", timeout=TIMEOUT)
            mstls.errors.clear_error()
            empty = conn.open_stream(timeout=TIMEOUT)
            assert empty.write(b"", timeout=TIMEOUT, end=True) == 0  # the FIN alone
            assert empty.read(timeout=TIMEOUT) == b""
            stream.close()
            empty.close()


def _echo_at_end(conn: mstls.Connection) -> None:
    """An echo that ends with its last chunk once the client's FIN came with it."""
    try:
        while True:
            with conn.accept_stream(timeout=TIMEOUT) as stream:
                while data := stream.read(timeout=TIMEOUT):
                    if stream.at_end:
                        stream.write(data, timeout=TIMEOUT, end=True)
                        break
                    stream.write(data, timeout=TIMEOUT)
                else:
                    stream.conclude()
    except mstls.Error:
        pass


@pytest.mark.network
def test_at_end_lets_an_echo_answer_in_one_packet() -> None:
    """Without ``at_end`` the echo sends the data, then the FIN: 2 packets per stream."""
    with server(on_connection=_echo_at_end) as (listener, server_conns):
        conn = mstls.connect("127.0.0.1", listener.address[1], client_config(), timeout=TIMEOUT)
        with conn:
            with conn.open_stream(timeout=TIMEOUT) as stream:
                stream.write(b"x", timeout=TIMEOUT, end=True)
                assert stream.read_exactly(1, timeout=TIMEOUT) == b"x"
            time.sleep(0.2)
            server_before = server_conns[0].stats().packets_sent
            for index in range(STREAMS):
                request = bytes([index % 256]) * SIZE
                with conn.open_stream(timeout=TIMEOUT) as stream:
                    stream.write(request, timeout=TIMEOUT, end=True)
                    assert stream.read_exactly(SIZE, timeout=TIMEOUT) == request
                    assert stream.read(timeout=TIMEOUT) == b""
                    assert stream.at_end
            server_sent = server_conns[0].stats().packets_sent - server_before
    assert server_sent <= MAX_PACKETS_PER_STREAM * STREAMS, server_sent
