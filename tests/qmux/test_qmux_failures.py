"""QMux failures: premature close, TCP reset, TLS errors, closing early, stream
resets and local I/O errors, each seen the right way on both sides.
"""

from __future__ import annotations

import pytest

from mstls.codes import AlertDescription
from mstls.core.events import ConnectionTerminatedEvent, StopSendingReceived, StreamReset
from mstls.core.lifecycle import State
from mstls.exceptions import PeerAlert, PrematureClose, TLSError
from mstls.qmux.connection import QMuxConnection
from tests.qmux.helpers import raw_server_pair
from tests.qmux.pair import Pair, client_config, server_config


# -- premature close, resets, TLS errors ---------------------------------------------------------
def test_premature_close_mid_stream() -> None:
    pair = Pair()
    pair.handshake()
    sid = pair.server.streams.open_stream()
    pair.server.streams.write(sid, bytes(100_000))  # no FIN
    pair.run_until(lambda: pair.client.streams.get_stream(sid) is not None)
    pair.drain()
    data, fin = pair.client.streams.read(sid, 1 << 20)
    assert len(data) == 100_000 and not fin
    pair.cut("server")  # a TCP FIN, no CONNECTION_CLOSE, no close_notify
    pair.drain()
    event = pair.terminated("client")
    client = pair.client
    assert (event.kind, event.by_peer) == ("premature_close", True)
    assert f"{client.bytes_received} application bytes" in event.reason
    assert client.bytes_received > 100_000
    error = client.termination_error
    assert isinstance(error, PrematureClose) and error.bytes_received == client.bytes_received
    assert client.is_terminated
    # The stream never reports an end: the reader gets no FIN, the driver raises `error`.
    assert client.streams.read(sid, 100) == (b"", False)


@pytest.mark.parametrize("sent", [b"", b"\x16\x03\x01"])
def test_a_close_before_any_byte_is_told_apart(sent: bytes) -> None:
    """A TCP connect and close with nothing sent (a port probe, a load balancer's
    health check) says so: ``wire_bytes_received`` is 0, unlike a truncated hello."""
    server = QMuxConnection(server_config(), is_client=False, now=0.0)
    if sent:
        server.receive_data(sent, 0.1)
    server.receive_eof(0.2)
    error = server.termination_error
    assert isinstance(error, PrematureClose)
    assert error.wire_bytes_received == len(sent) and error.bytes_received == 0


def test_tcp_reset_is_a_premature_close() -> None:
    pair = Pair()
    pair.handshake()
    pair.client.on_transport_error("tcp_reset", pair.now, "ECONNRESET")
    event = pair.terminated("client")
    assert (event.kind, event.by_peer) == ("tcp_reset", True)
    assert "ECONNRESET" in event.reason
    assert isinstance(pair.client.termination_error, PrematureClose)
    assert pair.client.is_terminated and pair.client.data_to_send(pair.now) == b""
    with pytest.raises(ValueError, match="unknown"):
        pair.client.on_transport_error("bogus", pair.now)


def test_eof_after_our_close_is_not_premature() -> None:
    pair, _raw = raw_server_pair()
    pair.client.close(now=pair.now)
    pair.drain()
    assert pair.client.state is State.CLOSING
    pair.cut("server")
    pair.drain()
    assert pair.client.is_terminated
    event = pair.terminated("client")
    assert event.kind == "close" and not isinstance(pair.client.termination_error, PrematureClose)


def test_corrupted_tls_record_is_a_tls_error_on_both_sides() -> None:
    pair = Pair()
    pair.handshake()
    sid = pair.client.streams.open_stream()
    pair.client.streams.write(sid, b"x" * 1000)
    data = bytearray(pair.client.data_to_send(pair.now))
    data[-3] ^= 1
    pair.server.receive_data(bytes(data), pair.now)
    pair.drain()
    server, client = pair.terminated("server"), pair.terminated("client")
    assert (server.kind, server.by_peer) == ("tls_error", False)
    assert server.error_code == 0x100 + 20  # bad_record_mac
    assert (client.kind, client.by_peer) == ("tls_error", True)
    assert isinstance(pair.client.termination_error, PeerAlert)
    assert isinstance(pair.server.termination_error, TLSError)
    assert pair.client.is_terminated and pair.server.is_terminated


@pytest.mark.parametrize(
    ("client_tls", "server_tls", "alert"),
    [
        ({"server_name": "wrong.example"}, {}, "bad_certificate"),
        ({}, {"alpn_protocols": ["other"]}, "no_application_protocol"),
    ],
)
def test_tls_handshake_failure(
    client_tls: dict[str, object], server_tls: dict[str, object], alert: str
) -> None:
    pair = Pair(client=client_config(tls=client_tls), server=server_config(tls=server_tls))
    pair.start()
    pair.run(max_time=5)
    client, server = pair.terminated("client"), pair.terminated("server")
    assert {client.kind, server.kind} == {"tls_error"}
    assert client.by_peer != server.by_peer
    assert client.error_code == server.error_code == 0x100 + AlertDescription[alert]
    errors = (pair.client.termination_error, pair.server.termination_error)
    assert all(isinstance(e, TLSError) for e in errors)
    assert sum(isinstance(e, PeerAlert) for e in errors) == 1
    assert not pair.client.handshake_complete or not pair.server.handshake_complete
    assert pair.client.is_terminated and pair.server.is_terminated


def test_close_before_the_handshake_completes() -> None:
    pair = Pair()
    pair.start()
    pair.client.close(3, "changed my mind", now=pair.now)
    assert pair.client.state is State.CLOSING
    pair.run(max_time=5)
    event = pair.terminated("server")
    assert (event.kind, event.error_code, event.reason) == ("close", 3, "changed my mind")
    assert pair.client.is_terminated and pair.server.is_terminated


def test_close_before_connect() -> None:
    client = QMuxConnection(client_config(), is_client=True, now=0.0)
    client.close(now=0.0)
    assert client.is_terminated and client.data_to_send(0.0) == b""
    assert isinstance(client.next_event(), ConnectionTerminatedEvent)


def test_stream_reset_and_stop_sending_over_qmux() -> None:
    pair = Pair()
    pair.handshake()
    client, server = pair.client.streams, pair.server.streams
    sid = client.open_stream()
    client.write(sid, b"partial")
    pair.drain()
    client.reset_stream(sid, 0x42)
    server.accept_pending()
    server.stop_sending(sid, 0x43)
    pair.drain()
    assert StreamReset(sid, 0x42, 7) in pair.server_events
    assert StopSendingReceived(sid, 0x43) in pair.client_events
    assert pair.client.is_established and pair.server.is_established


def test_io_error_is_local() -> None:
    pair = Pair()
    pair.handshake()
    pair.server.on_transport_error("io_error", pair.now)
    event = pair.terminated("server")
    assert (event.kind, event.by_peer) == ("io_error", False)
    assert isinstance(pair.server.termination_error, PrematureClose)
