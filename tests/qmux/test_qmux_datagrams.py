"""DATAGRAM frames over QMux (RFC 9221, draft-ietf-quic-qmux §8.1), sans-I/O."""

from __future__ import annotations

import pytest

from mstls.codes import TransportErrorCode
from mstls.exceptions import DatagramsUnsupported, DatagramTooLarge
from mstls.wire.datagram_frames import DatagramFrame, datagram_frame_size
from mstls.wire.frame_types import FrameType
from mstls.wire.qmux import QxTransportParametersFrame
from mstls.wire.transport_params import TransportParameters
from tests.qmux.helpers import expect_close, frames_of, raw_server_pair, send_frames
from tests.qmux.pair import Pair, client_config, server_config

ON = {"max_datagram_frame_size": 65535}


def established(client: dict[str, int] | None = None, server: dict[str, int] | None = None) -> Pair:
    pair = Pair(
        client=client_config(**(ON if client is None else client)),
        server=server_config(**(ON if server is None else server)),
    )
    pair.start()
    pair.run_until(lambda: pair.client.peer_params is not None and pair.server.peer_params)
    return pair


def drain(conn: object) -> list[bytes]:
    out = []
    while (data := conn.receive_datagram_frame()) is not None:  # type: ignore[attr-defined]
        out.append(data)
    return out


def test_datagrams_both_ways_in_order_and_none_lost() -> None:
    pair = established()
    for i in range(50):
        pair.client.send_datagram_frame(b"c%d" % i)
        pair.server.send_datagram_frame(b"s%d" % i)
    pair.run_until(lambda: pair.server.datagrams.received == 50 == pair.client.datagrams.received)
    assert drain(pair.server) == [b"c%d" % i for i in range(50)]
    assert drain(pair.client) == [b"s%d" % i for i in range(50)]
    stats = pair.client.stats(pair.now)
    assert (stats.datagrams_sent, stats.datagrams_received, stats.datagrams_dropped) == (50, 50, 0)


def test_max_size_is_the_record_minus_the_frame_header() -> None:
    """§8.1: with the default max_record_size the record bounds the frame."""
    pair = established()
    size = pair.client.max_datagram_size
    assert datagram_frame_size(size) == pair.server.config.max_record_size  # what the peer took
    pair.client.send_datagram_frame(bytes(size))
    with pytest.raises(DatagramTooLarge, match=str(size)):
        pair.client.send_datagram_frame(bytes(size + 1))
    pair.run_until(lambda: pair.server.datagrams.pending > 0)
    assert drain(pair.server) == [bytes(size)]


def test_peer_parameter_caps_the_size_and_absence_disables() -> None:
    pair = established(server={"max_datagram_frame_size": 500})
    assert datagram_frame_size(pair.client.max_datagram_size) == 500
    pair = established(server={})
    assert pair.client.max_datagram_size == 0
    with pytest.raises(DatagramsUnsupported, match="peer does not accept"):
        pair.client.send_datagram_frame(b"x")
    with pytest.raises(DatagramsUnsupported, match="not enabled"):
        pair.server.send_datagram_frame(b"x")


def test_receive_queue_bound_drops_oldest() -> None:
    pair = established(server={**ON, "datagram_receive_queue": 2})
    for i in range(5):
        pair.client.send_datagram_frame(bytes([i]))
    pair.run_until(lambda: pair.server.datagrams.received == 5)
    assert drain(pair.server) == [b"\x03", b"\x04"]
    assert pair.server.stats(pair.now).datagrams_dropped == 3


def test_datagram_without_our_parameter_is_protocol_violation() -> None:
    pair, raw = raw_server_pair()
    raw.send_transport_parameters(TransportParameters(max_datagram_frame_size=65535))
    send_frames(raw, DatagramFrame(b"uninvited"))
    expect_close(pair, raw, TransportErrorCode.PROTOCOL_VIOLATION, FrameType.DATAGRAM_WITH_LENGTH)


def test_oversized_datagram_is_protocol_violation() -> None:
    pair, raw = raw_server_pair(max_datagram_frame_size=100)
    raw.send_transport_parameters()
    send_frames(raw, DatagramFrame(bytes(98), has_length=False))  # 99 bytes: fine
    send_frames(raw, DatagramFrame(bytes(97)))  # 1 + 2 + 97 = 100: fine
    send_frames(raw, DatagramFrame(bytes(99), has_length=False))  # 100: fine
    send_frames(raw, DatagramFrame(bytes(100), has_length=False))  # 101: too large
    expect_close(pair, raw, TransportErrorCode.PROTOCOL_VIOLATION, FrameType.DATAGRAM)
    assert pair.client.datagrams.received == 3


def test_our_parameter_is_sent() -> None:
    pair, raw = raw_server_pair(max_datagram_frame_size=1234)
    pair.run()
    params = [f for f in frames_of(raw.received) if isinstance(f, QxTransportParametersFrame)]
    assert params[0].parameters.max_datagram_frame_size == 1234


def test_a_datagram_sent_before_the_peers_parameters_waits_for_them() -> None:
    """TLS done, QX_TRANSPORT_PARAMETERS not yet read: queued against our record size."""
    pair, raw = raw_server_pair(**ON)
    assert pair.client.handshake_complete and pair.client.peer_params is None
    assert pair.client.max_datagram_size == 0
    pair.client.send_datagram_frame(b"early")
    pair.client.send_datagram_frame(bytes(1000))
    raw.send_transport_parameters(TransportParameters(max_datagram_frame_size=100))
    pair.run()
    sent = [f for f in frames_of(raw.received) if isinstance(f, DatagramFrame)]
    assert [bytes(f.data) for f in sent] == [b"early"]
    assert pair.client.stats(pair.now).datagrams_dropped == 1


def test_early_datagrams_are_dropped_if_the_peer_has_none() -> None:
    pair, raw = raw_server_pair(**ON)
    pair.client.send_datagram_frame(b"early")
    raw.send_transport_parameters()
    pair.run()
    assert not [f for f in frames_of(raw.received) if isinstance(f, DatagramFrame)]
    assert pair.client.datagrams.dropped == 1
