"""QMux over TLS 1.3 (draft-ietf-quic-qmux-02): handshake, streams, errors and closing.

Most tests run two endpoints in memory with a virtual clock (:mod:`tests.qmux.pair`).
Protocol violations are sent by a :class:`~tests.qmux.pair.RawTLSPeer`, a bare TLS
endpoint that writes hand-made QMux records.  One test runs our client and server
over a real 127.0.0.1 TCP connection with a small threaded socket loop.
"""

from __future__ import annotations

import hashlib
import random
import selectors
import socket
import threading
import time
from collections.abc import Callable

import hypothesis
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mstls.codes import AlertDescription, TransportErrorCode
from mstls.core.events import (
    ConnectionTerminatedEvent,
    HandshakeCompletedEvent,
    StopSendingReceived,
    StreamReset,
)
from mstls.exceptions import (
    ConnectionTerminated,
    PeerAlert,
    PrematureClose,
    StreamLimitReached,
    TLSError,
)
from mstls.qmux.connection import QMuxConnection
from mstls.qmux.records import RecordSink, fixed_varint
from mstls.wire.buffer import encode_varint
from mstls.wire.frame_types import FrameType
from mstls.wire.frames import (
    ApplicationCloseFrame,
    ConnectionCloseFrame,
    Frame,
    MaxDataFrame,
    PaddingFrame,
    StreamFrame,
    encode_frame,
)
from mstls.wire.qmux import (
    QMuxFrameType,
    QxPingFrame,
    QxTransportParametersFrame,
    RecordReader,
    decode_record,
)
from mstls.wire.transport_params import (
    DEFAULT_MAX_RECORD_SIZE,
    QMUX_FORBIDDEN_PARAMETERS,
    QMUX_PERMITTED_PARAMETERS,
    TransportParameterId,
    decode_transport_parameters,
    encode_transport_parameters,
    validate_qmux_parameters,
)
from tests.qmux.pair import (
    Pair,
    RawTLSPeer,
    Transfer,
    client_config,
    server_config,
    server_tls,
)

MiB = 1 << 20


# -- helpers -----------------------------------------------------------------------------------
def raw_server_pair(**client_kw: object) -> tuple[Pair, RawTLSPeer]:
    """Our client against a bare TLS server, handshake done, no QMux frame from the server."""
    raw = RawTLSPeer(server_tls(), is_client=False)
    pair = Pair(client=client_config(**client_kw), server_side=raw)
    pair.start()
    pair.run_until(lambda: raw.handshake_complete and pair.client.handshake_complete)
    return pair, raw


def records_of(data: bytes | bytearray, max_size: int = DEFAULT_MAX_RECORD_SIZE) -> list[bytes]:
    reader = RecordReader(max_size)
    records = [bytes(r) for r in reader.feed(bytes(data))]
    assert reader.buffered == 0
    return records


def frames_of(data: bytes | bytearray) -> list[Frame]:
    return [f for record in records_of(data) for f in decode_record(record)]


def send_frames(raw: RawTLSPeer, *frames: Frame) -> None:
    raw.send_record(b"".join(encode_frame(f) for f in frames))


def expect_close(pair: Pair, raw: RawTLSPeer, code: int, frame_type: int | None) -> None:
    """The client closed with ``code``: event, CONNECTION_CLOSE on the wire, close_notify."""
    pair.run()
    event = pair.terminated("client")
    assert (event.kind, event.error_code, event.by_peer) == ("close", code, False)
    assert event.frame_type == frame_type
    assert not event.is_application
    closes = [f for f in frames_of(raw.received) if isinstance(f, ConnectionCloseFrame)]
    assert len(closes) == 1
    assert closes[0].error_code == code
    assert closes[0].offending_frame_type == (frame_type or 0)
    assert raw.close_notify_received
    assert pair.client.should_shutdown_write
    error = pair.client.termination_error
    assert isinstance(error, ConnectionTerminated)
    assert error.code == code


# -- handshake and parameters ------------------------------------------------------------------
def test_handshake_in_memory() -> None:
    pair = Pair()
    pair.start()
    pair.run_until(lambda: pair.client.handshake_complete)
    # The server's QX_TRANSPORT_PARAMETERS came right after its Finished (0.5-RTT),
    # so the client has them before the server has even seen the client's Finished.
    assert pair.client.peer_params is not None
    assert not pair.server.handshake_complete
    pair.handshake()
    client, server = pair.client, pair.server
    assert client.state == server.state == "established"
    assert client.tls.alpn_protocol == "mstls-test"
    assert client.tls.peer is not None and client.tls.peer.common_name == "localhost"
    completed = [e for e in pair.client_events if isinstance(e, HandshakeCompletedEvent)]
    assert len(completed) == 1 and completed[0].alpn_protocol == "mstls-test"
    assert client.peer_params == server.config.transport_parameters()
    assert client.handshake_deadline is None and server.handshake_deadline is None
    assert client.get_timer() == pytest.approx(pair.now + 30.0, abs=0.01)


def test_transport_parameters_are_qmux_only() -> None:
    config = client_config(idle_timeout=12.5, max_streams_bidi=7)
    params = config.transport_parameters()
    encoded = encode_transport_parameters(params)
    decoded = decode_transport_parameters(encoded)
    validate_qmux_parameters(decoded)
    assert decoded.received_ids <= QMUX_PERMITTED_PARAMETERS
    assert decoded.max_idle_timeout == 12500 and decoded.initial_max_streams_bidi == 7
    big = client_config(max_record_size=65536).transport_parameters()
    ids = decode_transport_parameters(encode_transport_parameters(big)).received_ids
    assert TransportParameterId.MAX_RECORD_SIZE in ids


@pytest.mark.parametrize(
    ("field", "value"),
    [("max_record_size", 1000), ("send_record_size", 100), ("handshake_timeout", 0)],
)
def test_bad_configuration_is_refused(field: str, value: int) -> None:
    with pytest.raises(ValueError, match=field):
        client_config(**{field: value})


def test_client_sends_transport_parameters_first_and_waits_for_the_servers() -> None:
    pair, raw = raw_server_pair()
    client = pair.client
    frames = frames_of(raw.received)
    assert len(frames) == 1 and isinstance(frames[0], QxTransportParametersFrame)
    assert frames[0].parameters == client.local_params


def test_stream_data_waits_for_peer_transport_parameters() -> None:
    raw = RawTLSPeer(server_tls(), is_client=False)
    pair = Pair(server_side=raw)
    pair.start()
    pair.run_until(lambda: raw.handshake_complete)
    with pytest.raises(StreamLimitReached, match="allows 0"):
        pair.client.streams.open_stream()
    raw.send_transport_parameters()
    pair.run_until(lambda: pair.client.peer_params is not None)
    sid = pair.client.streams.open_stream()
    pair.client.streams.write(sid, b"hello", fin=True)
    pair.drain()
    stream = [f for f in frames_of(raw.received) if isinstance(f, StreamFrame)]
    assert [(f.stream_id, bytes(f.data), f.fin) for f in stream] == [(sid, b"hello", True)]


# -- data transfer -----------------------------------------------------------------------------
def test_several_streams_mib_both_ways() -> None:
    pair = Pair()
    pair.handshake()
    transfer = Transfer(pair, [2 * MiB, MiB, MiB // 2 + 17, 1, 0], echo=True)
    pair.run_until(lambda: transfer.complete, max_time=30)
    transfer.check()
    assert pair.client.state == pair.server.state == "established"


def test_records_fit_one_tls_record_and_the_peers_limit() -> None:
    pair, raw = raw_server_pair()
    raw.send_transport_parameters()
    pair.run_until(lambda: pair.client.peer_params is not None)
    client = pair.client
    sid = client.streams.open_stream()
    client.streams.write(sid, bytes(200_000), fin=True)
    raw.received.clear()
    out = client.data_to_send(pair.now)
    records = []
    pos = 0
    while pos < len(out):  # TLS records: 5-byte header, 16 KiB + type + tag at most
        length = int.from_bytes(out[pos + 3 : pos + 5])
        assert length <= (1 << 14) + 1 + 16
        records.append(length)
        pos += 5 + length
    pair.server.receive_data(out, pair.now)
    payloads = records_of(raw.received)
    assert len(payloads) == len(records)  # one QMux record per TLS record
    assert max(len(p) for p in payloads) == DEFAULT_MAX_RECORD_SIZE


def test_larger_records_when_both_sides_allow_them() -> None:
    pair, raw = raw_server_pair(send_record_size=60_000)
    params = server_config(max_record_size=40_000).transport_parameters()
    raw.send_transport_parameters(params)
    pair.run_until(lambda: pair.client.peer_params is not None)
    sid = pair.client.streams.open_stream()
    pair.client.streams.write(sid, bytes(200_000), fin=True)
    raw.received.clear()
    pair.drain()
    assert max(len(p) for p in records_of(raw.received, 40_000)) == 40_000


def test_output_per_call_is_bounded() -> None:
    pair = Pair(
        client=client_config(max_send_per_call=64 * 1024),
        server=server_config(initial_max_data=8 * MiB, initial_max_stream_data=8 * MiB),
    )
    pair.handshake()
    sid = pair.client.streams.open_stream()
    pair.client.streams.write(sid, bytes(MiB))
    out = pair.client.data_to_send(pair.now)
    assert 64 * 1024 <= len(out) < 64 * 1024 + 2 * (16384 + 22)
    assert len(pair.client.data_to_send(pair.now)) > 0  # the rest on the next call


# -- closing -----------------------------------------------------------------------------------
def test_application_close_is_seen_by_the_peer() -> None:
    pair = Pair()
    pair.handshake()
    pair.client.close(0x1234, "done for today", now=pair.now)
    assert pair.client.state == "closing"
    pair.run()
    client, server = pair.terminated("client"), pair.terminated("server")
    assert (client.kind, client.by_peer, client.error_code) == ("close", False, 0x1234)
    assert (server.kind, server.by_peer, server.is_application) == ("close", True, True)
    assert (server.error_code, server.reason) == (0x1234, "done for today")
    assert pair.client.is_terminated and pair.server.is_terminated
    assert pair.shut == {"client": True, "server": True}
    error = pair.server.termination_error
    assert isinstance(error, ConnectionTerminated) and not isinstance(error, PrematureClose)
    assert (error.code, error.by_peer, error.is_application) == (0x1234, True, True)


def test_close_waits_for_the_peer_then_gives_up_after_close_timeout() -> None:
    pair, raw = raw_server_pair(close_timeout=2.0)
    pair.client.close(5, "bye", now=pair.now)
    start = pair.now
    pair.run()  # the raw server never answers
    assert pair.client.is_terminated
    assert pair.now - start == pytest.approx(2.0, abs=0.01)
    frames = frames_of(raw.received)
    assert isinstance(frames[-1], ApplicationCloseFrame) and frames[-1].reason == b"bye"


def test_data_after_connection_close_is_discarded() -> None:
    pair, raw = raw_server_pair()
    raw.send_transport_parameters()
    send_frames(raw, ApplicationCloseFrame(9, b"x"), StreamFrame(1, 0, b"late"))
    send_frames(raw, StreamFrame(5, 0, b"later"))
    pair.run()
    event = pair.terminated("client")
    assert (event.error_code, event.by_peer, event.reason) == (9, True, "x")
    assert pair.client.streams.get_stream(1) is None
    # draining: our reply is close_notify only, no frames (§7.3)
    assert not [f for f in frames_of(raw.received) if isinstance(f, ConnectionCloseFrame)]
    assert raw.close_notify_received


def test_close_notify_without_connection_close_ends_cleanly() -> None:
    pair, raw = raw_server_pair()
    raw.send_transport_parameters()
    pair.run_until(lambda: pair.client.peer_params is not None)
    raw.close()
    pair.run()
    event = pair.terminated("client")
    assert (event.kind, event.by_peer, event.error_code) == ("idle_timeout", True, 0)
    assert "close_notify" in event.reason
    assert raw.close_notify_received and pair.client.is_terminated
    assert not isinstance(pair.client.termination_error, PrematureClose)


def test_idle_timeout_is_the_smaller_of_both() -> None:
    pair = Pair(client=client_config(idle_timeout=30), server=server_config(idle_timeout=4))
    pair.handshake()
    start = pair.now
    assert pair.client.idle_timeout == pair.server.idle_timeout == 4
    pair.run()
    client, server = pair.terminated("client"), pair.terminated("server")
    assert pair.now - start == pytest.approx(4.0, abs=0.01)
    assert {client.kind, server.kind} == {"idle_timeout"}
    assert client.by_peer != server.by_peer  # one timed out, the other saw its close_notify
    assert pair.client.is_terminated and pair.server.is_terminated


def test_keepalive_holds_an_idle_connection_open() -> None:
    pair = Pair(client=client_config(idle_timeout=5, keepalive_interval=1.0))
    pair.handshake()
    pair.run(max_time=30)
    assert pair.client.is_established and pair.server.is_established
    assert pair.client.ping_state.largest_acknowledged >= 25
    assert pair.client.latest_rtt == pytest.approx(2 * pair.latency, abs=1e-6)


def test_keepalive_does_not_hide_a_dead_peer() -> None:
    pair, raw = raw_server_pair(idle_timeout=5, keepalive_interval=1.0)
    raw.send_transport_parameters()
    pair.run_until(lambda: pair.client.peer_params is not None)
    start = pair.now
    pair.run(max_time=30)  # the raw server never answers QX_PING
    event = pair.terminated("client")
    assert event.kind == "idle_timeout" and not event.by_peer
    assert pair.now - start == pytest.approx(5.0 + pair.client.config.close_timeout, abs=0.05)
    pings = [f.sequence_number for f in frames_of(raw.received) if isinstance(f, QxPingFrame)]
    assert pings == list(range(len(pings))) and 4 <= len(pings) <= 5


def test_handshake_timeout() -> None:
    pair = Pair(client=client_config(handshake_timeout=3.0))
    pair.start()
    pair.client.data_to_send(pair.now)  # the ClientHello is lost: the server never hears
    start = pair.now
    pair.run_until(lambda: pair.client.is_terminated, max_time=10)
    event = pair.terminated("client")
    assert event.kind == "handshake_timeout"
    assert pair.now - start == pytest.approx(3.0)


def test_handshake_timeout_without_peer_transport_parameters() -> None:
    pair, _raw = raw_server_pair(handshake_timeout=3.0)
    assert pair.client.is_established
    pair.run(max_time=10)
    event = pair.terminated("client")
    assert event.kind == "handshake_timeout" and "transport parameters" in event.reason


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
    assert pair.client.state == "closing"
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
    assert pair.client.state == "closing"
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


# -- protocol violations from the peer ---------------------------------------------------------
def test_first_frame_not_transport_parameters() -> None:
    pair, raw = raw_server_pair()
    send_frames(raw, MaxDataFrame(1 << 20))
    expect_close(pair, raw, TransportErrorCode.PROTOCOL_VIOLATION, FrameType.MAX_DATA)


def test_second_transport_parameters() -> None:
    pair, raw = raw_server_pair()
    raw.send_transport_parameters()
    raw.send_transport_parameters()
    expect_close(
        pair, raw, TransportErrorCode.PROTOCOL_VIOLATION, QMuxFrameType.QX_TRANSPORT_PARAMETERS
    )


def test_empty_record_is_a_violation() -> None:
    pair, raw = raw_server_pair()
    raw.send_transport_parameters()
    raw.send(b"\x00")
    expect_close(pair, raw, TransportErrorCode.PROTOCOL_VIOLATION, None)


@pytest.mark.parametrize(
    "frame_bytes",
    [
        b"\x01",  # PING
        b"\x02\x00\x00\x00\x00",  # ACK
        b"\x06\x00\x01x",  # CRYPTO
        b"\x07\x01t",  # NEW_TOKEN
        b"\x18\x01\x00\x04abcd" + bytes(16),  # NEW_CONNECTION_ID
        b"\x19\x00",  # RETIRE_CONNECTION_ID
        b"\x1a" + bytes(8),  # PATH_CHALLENGE
        b"\x1b" + bytes(8),  # PATH_RESPONSE
        b"\x1e",  # HANDSHAKE_DONE
    ],
)
def test_forbidden_frame(frame_bytes: bytes) -> None:
    pair, raw = raw_server_pair()
    raw.send_transport_parameters()
    raw.send_record(frame_bytes)
    expect_close(pair, raw, TransportErrorCode.FRAME_ENCODING_ERROR, frame_bytes[0])


@pytest.mark.parametrize("param_id", sorted(QMUX_FORBIDDEN_PARAMETERS))
def test_forbidden_transport_parameter(param_id: int) -> None:
    pair, raw = raw_server_pair()
    body = encode_transport_parameters(server_config().transport_parameters())
    values: dict[int, bytes] = {
        TransportParameterId.STATELESS_RESET_TOKEN: bytes(16),
        TransportParameterId.MAX_UDP_PAYLOAD_SIZE: encode_varint(1500),
        TransportParameterId.ACK_DELAY_EXPONENT: encode_varint(3),
        TransportParameterId.MAX_ACK_DELAY: encode_varint(25),
        TransportParameterId.DISABLE_ACTIVE_MIGRATION: b"",
        TransportParameterId.PREFERRED_ADDRESS: bytes(4 + 2 + 16 + 2) + b"\x01c" + bytes(16),
        TransportParameterId.ACTIVE_CONNECTION_ID_LIMIT: encode_varint(2),
    }
    value = values.get(param_id, b"cid")
    body += encode_varint(param_id) + encode_varint(len(value)) + value
    tp_type = encode_varint(QMuxFrameType.QX_TRANSPORT_PARAMETERS)
    raw.send_record(tp_type + encode_varint(len(body)) + body)
    expect_close(
        pair,
        raw,
        TransportErrorCode.TRANSPORT_PARAMETER_ERROR,
        QMuxFrameType.QX_TRANSPORT_PARAMETERS,
    )


def test_small_max_record_size_parameter() -> None:
    pair, raw = raw_server_pair()
    body = encode_varint(TransportParameterId.MAX_RECORD_SIZE) + b"\x04" + fixed_varint(1000, 4)
    tp_type = encode_varint(QMuxFrameType.QX_TRANSPORT_PARAMETERS)
    raw.send_record(tp_type + encode_varint(len(body)) + body)
    expect_close(
        pair,
        raw,
        TransportErrorCode.TRANSPORT_PARAMETER_ERROR,
        QMuxFrameType.QX_TRANSPORT_PARAMETERS,
    )


def test_unknown_and_grease_transport_parameters_are_ignored() -> None:
    pair, raw = raw_server_pair()
    body = encode_transport_parameters(server_config().transport_parameters())
    body += encode_varint(31 * 5 + 27) + b"\x02hi"  # reserved (RFC 9000 §18.1)
    body += encode_varint(0xFF04DE1B) + b"\x01\x05"  # min_ack_delay: not QMux, ignored
    tp_type = encode_varint(QMuxFrameType.QX_TRANSPORT_PARAMETERS)
    raw.send_record(tp_type + encode_varint(len(body)) + body)
    pair.drain()
    assert pair.client.peer_params is not None and pair.client.is_established


def test_oversized_record() -> None:
    pair, raw = raw_server_pair()
    raw.send_transport_parameters()
    raw.send(encode_varint(DEFAULT_MAX_RECORD_SIZE + 1) + bytes(100))  # the header is enough
    expect_close(pair, raw, TransportErrorCode.FRAME_ENCODING_ERROR, None)


def test_larger_records_are_accepted_when_advertised() -> None:
    pair, raw = raw_server_pair(max_record_size=40_000)
    raw.send_transport_parameters()
    payload = random.Random(1).randbytes(30_000)
    send_frames(raw, StreamFrame(1, 0, payload, fin=True))
    pair.drain()
    assert pair.client.streams.read(1, 1 << 20) == (payload, True)


def test_out_of_order_stream_data() -> None:
    pair, raw = raw_server_pair()
    raw.send_transport_parameters()
    send_frames(raw, StreamFrame(1, 0, b"abc"), StreamFrame(1, 10, b"def"))
    expect_close(pair, raw, TransportErrorCode.PROTOCOL_VIOLATION, 0x0E)


def test_truncated_frame_at_the_end_of_a_record() -> None:
    pair, raw = raw_server_pair()
    raw.send_transport_parameters()
    frame = encode_frame(StreamFrame(1, 0, b"abcdef"))
    raw.send_record(frame[:-2])
    expect_close(pair, raw, TransportErrorCode.FRAME_ENCODING_ERROR, 0x0A)


def test_padding_is_accepted() -> None:
    pair, raw = raw_server_pair()
    raw.send_transport_parameters()
    send_frames(raw, PaddingFrame(5), StreamFrame(1, 0, b"ok", fin=True))
    pair.drain()
    assert pair.client.streams.read(1, 10) == (b"ok", True)


# -- QX_PING -----------------------------------------------------------------------------------
def test_ping_request_gets_one_response_with_the_largest_number() -> None:
    pair, raw = raw_server_pair()
    raw.send_transport_parameters()
    send_frames(raw, QxPingFrame(3), QxPingFrame(4), QxPingFrame(9))
    pair.run_until(lambda: any(isinstance(f, QxPingFrame) for f in frames_of(raw.received)))
    pings = [f for f in frames_of(raw.received) if isinstance(f, QxPingFrame)]
    assert pings == [QxPingFrame(9, response=True)]


def test_ping_request_not_increasing() -> None:
    pair, raw = raw_server_pair()
    raw.send_transport_parameters()
    send_frames(raw, QxPingFrame(5))
    send_frames(raw, QxPingFrame(5))
    expect_close(pair, raw, TransportErrorCode.PROTOCOL_VIOLATION, QMuxFrameType.QX_PING_REQUEST)


def test_ping_response_never_requested() -> None:
    pair, raw = raw_server_pair()
    raw.send_transport_parameters()
    pair.run_until(lambda: pair.client.peer_params is not None)
    assert pair.client.ping() == 0
    pair.drain()
    send_frames(raw, QxPingFrame(0, response=True))
    pair.drain()
    assert pair.client.ping_state.largest_acknowledged == 0
    send_frames(raw, QxPingFrame(1, response=True))
    expect_close(pair, raw, TransportErrorCode.PROTOCOL_VIOLATION, QMuxFrameType.QX_PING_RESPONSE)


def test_ping_sequence_numbers_increase() -> None:
    pair = Pair()
    pair.handshake()
    assert [pair.client.ping() for _ in range(3)] == [0, 1, 2]
    pair.drain()
    assert pair.client.ping_state.largest_acknowledged == 2  # merged: only 2 was sent
    assert pair.client.ping() == 3
    pair.drain()
    assert pair.client.ping_state.largest_acknowledged == 3
    assert pair.client.is_established


# -- fuzz --------------------------------------------------------------------------------------
@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(data=st.binary(min_size=1, max_size=300), with_parameters=st.booleans())
def test_fuzz_application_data_ends_cleanly(data: bytes, with_parameters: bool) -> None:
    pair, raw = raw_server_pair()
    if with_parameters:
        raw.send_transport_parameters()
    raw.send(data)
    pair.run(max_time=120)
    client = pair.client
    terminations = [e for e in pair.client_events if isinstance(e, ConnectionTerminatedEvent)]
    assert len(terminations) == 1
    event = terminations[0]
    # Garbage either violates the protocol (we close with a transport code) or happens
    # to be valid frames, after which the connection idles out.
    assert event.kind in ("close", "idle_timeout", "handshake_timeout")
    if event.kind == "close" and not event.by_peer:
        assert not event.is_application
        assert event.error_code in {c.value for c in TransportErrorCode}
        assert raw.close_notify_received
    assert client.is_terminated


#: Valid frames (and a few invalid ones) for the structured fuzz below to splice together.
FRAME_SAMPLES = [
    encode_frame(f)
    for f in (
        StreamFrame(1, 0, b"abc"),
        StreamFrame(1, 3, b"def", fin=True),
        StreamFrame(3, 0, b"uni"),
        StreamFrame(0, 0, b"ours?"),
        MaxDataFrame(1 << 30),
        QxPingFrame(1),
        QxPingFrame(0, response=True),
        PaddingFrame(3),
        ApplicationCloseFrame(3, b"fuzz"),
        ConnectionCloseFrame(0x0A, 0x08, b"fuzz"),
        QxTransportParametersFrame(server_config().transport_parameters()),
    )
] + [b"\x04\x01\x05", b"\x05\x01\x05", b"\x1e", b"\x10\x05", b"\x11\x01\x05", b"\x12\x09"]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    records=st.lists(
        st.lists(
            st.one_of(st.sampled_from(FRAME_SAMPLES), st.binary(min_size=1, max_size=12)),
            min_size=1,
            max_size=6,
        ),
        min_size=1,
        max_size=4,
    ),
    with_parameters=st.booleans(),
)
def test_fuzz_records_of_spliced_frames(records: list[list[bytes]], with_parameters: bool) -> None:
    pair, raw = raw_server_pair()
    if with_parameters:
        raw.send_transport_parameters()
    for pieces in records:
        raw.send_record(b"".join(pieces))
    pair.run(max_time=120)
    event = pair.terminated("client")
    hypothesis.event(f"{event.kind} {event.error_code:#x} by_peer={event.by_peer}")
    if event.kind == "close" and not event.by_peer:
        assert event.error_code in {c.value for c in TransportErrorCode}
        assert raw.close_notify_received
    assert pair.client.is_terminated


def test_record_sink_sizes() -> None:
    sink = RecordSink(16382)
    assert sink.remaining == 16382 and sink.finish() == b""
    sink.add(b"\x00" * 100)
    assert sink.remaining == 16282
    record = sink.finish()
    assert len(record) == 102 and records_of(record) == [bytes(100)]
    with pytest.raises(ValueError, match="does not fit"):
        RecordSink(1200).add(bytes(1201))
    assert fixed_varint(5, 2) == b"\x40\x05" and fixed_varint(5, 8)[0] == 0xC0
    with pytest.raises(ValueError, match="does not fit"):
        fixed_varint(1 << 20, 2)


# -- real TCP ----------------------------------------------------------------------------------
LOOP_TIMEOUT = 30.0
RECV_SIZE = 256 * 1024


def socket_loop(
    sock: socket.socket,
    conn: QMuxConnection,
    app: Callable[[QMuxConnection, float], bool],
    errors: list[BaseException],
) -> None:
    """A tiny driver: non-blocking socket, selector, the call order of the module docs.

    ``app`` runs the application and says whether it made progress (then the
    loop does not sleep).  Output is pulled until the core has nothing more or
    the socket is full.
    """
    try:
        sock.setblocking(False)
        selector = selectors.DefaultSelector()
        selector.register(sock, selectors.EVENT_READ)
        out = bytearray()
        reading = True
        shut = False
        deadline = time.monotonic() + LOOP_TIMEOUT
        while time.monotonic() < deadline:
            now = time.monotonic()
            timer = conn.get_timer()
            if timer is not None and timer <= now:
                conn.handle_timer(now)
            busy = app(conn, now)
            while True:
                if not out:
                    out += conn.data_to_send(now)
                    if not out:
                        break
                try:
                    del out[: sock.send(out)]
                except BlockingIOError:
                    break
            if not out and conn.should_shutdown_write and not shut:
                sock.shutdown(socket.SHUT_WR)
                shut = True
            if conn.is_terminated and not out:
                return
            mask = (selectors.EVENT_READ if reading else 0) | (selectors.EVENT_WRITE if out else 0)
            if mask:
                selector.modify(sock, mask)
            timer = conn.get_timer()
            wait = 0.05 if timer is None else max(0.0, min(0.05, timer - time.monotonic()))
            if busy:
                wait = 0.0
            if not mask:
                time.sleep(wait)
            for _key, events in selector.select(wait) if mask else []:
                if events & selectors.EVENT_READ:
                    data = sock.recv(RECV_SIZE)
                    if data:
                        conn.receive_data(data, time.monotonic())
                    else:
                        reading = False
                        conn.receive_eof(time.monotonic())
        raise AssertionError("socket loop timed out")
    except BaseException as exc:  # reported to the test thread
        errors.append(exc)
    finally:
        sock.close()


class EchoServerApp:
    """Echo every stream back, with its FIN."""

    def __init__(self) -> None:
        self.pending: dict[int, bytearray] = {}
        self.fin: set[int] = set()
        self.finished: set[int] = set()
        self.closed_by_peer: ConnectionTerminatedEvent | None = None

    def __call__(self, conn: QMuxConnection, now: float) -> bool:
        while (event := conn.next_event()) is not None:
            if isinstance(event, ConnectionTerminatedEvent):
                self.closed_by_peer = event
        if not conn.is_established:
            return False
        streams = conn.streams
        progress = False
        for sid in streams.accept_pending():
            self.pending[sid] = bytearray()
        for sid, buf in self.pending.items():
            if sid in self.finished:
                continue
            if sid not in self.fin:
                data, fin = streams.read(sid, RECV_SIZE)
                buf += data
                if fin:
                    self.fin.add(sid)
            if buf or sid in self.fin:
                taken = streams.write(sid, bytes(buf), fin=sid in self.fin)
                progress |= taken > 0
                del buf[:taken]
                if sid in self.fin and not buf:
                    self.finished.add(sid)
        return progress


class UploadClientApp:
    """Send payloads on several streams, hash the echo, close when all came back."""

    def __init__(self, sizes: list[int]) -> None:
        rng = random.Random(11)
        self.payloads = [rng.randbytes(n) for n in sizes]
        self.sids: list[int] = []
        self.sent: dict[int, int] = {}
        self.hashes: dict[int, hashlib._Hash] = {}
        self.done: set[int] = set()

    def __call__(self, conn: QMuxConnection, now: float) -> bool:
        while conn.next_event() is not None:
            pass
        if not conn.is_established or conn.peer_params is None:
            return False
        streams = conn.streams
        progress = False
        if not self.sids:
            for _ in self.payloads:
                sid = streams.open_stream()
                self.sids.append(sid)
                self.sent[sid] = 0
                self.hashes[sid] = hashlib.sha256()
        for sid, payload in zip(self.sids, self.payloads, strict=True):
            sent = self.sent[sid]
            if sent < len(payload):
                piece = payload[sent : sent + RECV_SIZE]
                taken = streams.write(sid, piece, fin=sent + len(piece) == len(payload))
                self.sent[sid] += taken
                progress |= taken > 0
            if sid not in self.done:
                data, fin = streams.read(sid, RECV_SIZE)
                self.hashes[sid].update(data)
                if fin:
                    self.done.add(sid)
        if len(self.done) == len(self.sids):
            conn.close(0x77, "all echoed", now=now)
        return progress


def test_real_tcp_echo_of_a_few_mib() -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    client_sock = socket.create_connection(listener.getsockname())
    server_sock, _ = listener.accept()
    listener.close()
    now = time.monotonic()
    client = QMuxConnection(client_config(), is_client=True, now=now)
    server = QMuxConnection(server_config(), is_client=False, now=now)
    client.connect(now)
    server_app = EchoServerApp()
    client_app = UploadClientApp([2 * MiB, MiB, MiB // 3])
    errors: list[BaseException] = []
    threads = [
        threading.Thread(target=socket_loop, args=(server_sock, server, server_app, errors)),
        threading.Thread(target=socket_loop, args=(client_sock, client, client_app, errors)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(LOOP_TIMEOUT + 5)
    assert not errors, errors
    for sid, payload in zip(client_app.sids, client_app.payloads, strict=True):
        assert client_app.hashes[sid].hexdigest() == hashlib.sha256(payload).hexdigest()
    event = server_app.closed_by_peer
    assert event is not None and (event.error_code, event.reason) == (0x77, "all echoed")
    assert client.is_terminated and server.is_terminated
