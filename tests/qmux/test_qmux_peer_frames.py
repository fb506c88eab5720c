"""What the QMux peer sends: protocol violations (records, frames, transport
parameters), QX_PING, and fuzzed records.

Violations are sent by a :class:`~tests.qmux.pair.RawTLSPeer`, a bare TLS endpoint
that writes hand-made QMux records.
"""

from __future__ import annotations

import random

import hypothesis
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mstls.codes import TransportErrorCode
from mstls.core.events import ConnectionTerminatedEvent
from mstls.qmux.records import RecordSink, fixed_varint
from mstls.wire.buffer import encode_varint
from mstls.wire.frame_types import FrameType
from mstls.wire.frames import (
    ApplicationCloseFrame,
    ConnectionCloseFrame,
    MaxDataFrame,
    PaddingFrame,
    StreamFrame,
    encode_frame,
)
from mstls.wire.qmux import QMuxFrameType, QxPingFrame, QxTransportParametersFrame
from mstls.wire.transport_params import (
    QMUX_FORBIDDEN_PARAMETERS,
    TransportParameterId,
    encode_transport_parameters,
)
from tests.qmux.helpers import expect_close, frames_of, raw_server_pair, records_of, send_frames
from tests.qmux.pair import Pair, server_config


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
    limit = pair.client.config.max_record_size  # what the client advertised
    raw.send(encode_varint(limit + 1) + bytes(100))  # the header is enough
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
