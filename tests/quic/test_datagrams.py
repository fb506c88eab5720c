"""DATAGRAM frames over QUIC, sans-I/O (RFC 9221): negotiation, limits, queues, errors."""

from __future__ import annotations

import pytest

from mstls.codes import TransportErrorCode
from mstls.core.datagrams import MAX_DATAGRAM_RECEIVE_BYTES
from mstls.core.events import ConnectionTerminatedEvent, DatagramsAvailable
from mstls.exceptions import DatagramQueueFull, DatagramsUnsupported, DatagramTooLarge
from mstls.quic.connection import QuicConnection
from mstls.wire.datagram_frames import datagram_frame_size
from mstls.wire.frame_types import FrameType
from tests.quic.fuzz_checks import deliver
from tests.quic.fuzz_corpus import protect_one_rtt
from tests.quic.pair import Pair, client_config, server_config

#: PADDING frames before an injected frame (RFC 9001 §5.4.2: 16 bytes sampled 4 past the
#: packet number start).
MIN_PAYLOAD = 20

ON = {"max_datagram_frame_size": 65535}


def datagram_pair(
    client: dict[str, int] | None = None, server: dict[str, int] | None = None, **kw: object
) -> Pair:
    pair = Pair(
        client=client_config(**(ON if client is None else client)),
        server=server_config(**(ON if server is None else server)),
        **kw,  # type: ignore[arg-type]
    )
    pair.handshake()
    pair.run_until(lambda: pair.client.handshake_confirmed)
    return pair


def drain(conn: QuicConnection) -> list[bytes]:
    out = []
    while (data := conn.receive_datagram_frame()) is not None:
        out.append(data)
    return out


def terminated(events: list[object]) -> ConnectionTerminatedEvent:
    found = [e for e in events if isinstance(e, ConnectionTerminatedEvent)]
    assert found, events
    return found[0]


def test_datagrams_both_ways() -> None:
    pair = datagram_pair()
    pair.client.send_datagram_frame(b"ping")
    pair.run_until(lambda: pair.server.datagrams.pending > 0)
    assert drain(pair.server) == [b"ping"]
    assert any(isinstance(e, DatagramsAvailable) for e in pair.server_events)
    pair.server.send_datagram_frame(b"pong")
    pair.run_until(lambda: pair.client.datagrams.pending > 0)
    assert drain(pair.client) == [b"pong"]
    stats = pair.client.stats(pair.now)
    assert (stats.datagrams_sent, stats.datagrams_received, stats.datagrams_dropped) == (1, 1, 0)


def test_max_datagram_size_is_exactly_what_fits_a_packet() -> None:
    pair = datagram_pair(client={**ON, "pmtu_discovery": False})
    size = pair.client.max_datagram_size
    # 1200-byte datagram, 1-byte flags + 8-byte DCID + 4-byte packet number, 16-byte tag.
    assert datagram_frame_size(size) == 1200 - 1 - 8 - 4 - 16
    pair.client.send_datagram_frame(bytes(size))
    with pytest.raises(DatagramTooLarge, match=f"maximum of {size} bytes") as info:
        pair.client.send_datagram_frame(bytes(size + 1))
    assert info.value.max_size == size
    assert isinstance(info.value, ValueError)
    pair.run_until(lambda: pair.server.datagrams.pending > 0)
    assert drain(pair.server) == [bytes(size)]


def test_peer_limit_caps_the_size() -> None:
    pair = datagram_pair(server={"max_datagram_frame_size": 100})
    assert datagram_frame_size(pair.client.max_datagram_size) == 100
    assert pair.server.max_datagram_size > 1000


def test_not_enabled_or_not_supported_is_a_clear_error() -> None:
    pair = datagram_pair(client={}, server=ON)
    assert pair.client.max_datagram_size == 0 == pair.server.max_datagram_size
    with pytest.raises(DatagramsUnsupported, match="not enabled"):
        pair.client.send_datagram_frame(b"x")
    with pytest.raises(DatagramsUnsupported, match="peer does not accept"):
        pair.server.send_datagram_frame(b"x")


def test_full_send_queue_is_reported() -> None:
    config = client_config(**ON, datagram_send_queue=3)
    pair = Pair(client=config, server=server_config(**ON))
    pair.handshake()
    for _ in range(3):  # queued, not yet sent: nothing drains the queue in between
        pair.client.send_datagram_frame(b"d")
    with pytest.raises(DatagramQueueFull, match="3 datagrams") as info:
        pair.client.send_datagram_frame(b"d")
    assert info.value.kind.name == "WANT_WRITE"
    pair.run_until(lambda: pair.server.datagrams.pending == 3)
    pair.client.send_datagram_frame(b"d")  # room again once they left


def test_receive_queue_drops_the_oldest_and_counts() -> None:
    pair = datagram_pair(server={**ON, "datagram_receive_queue": 4})
    for i in range(10):
        pair.client.send_datagram_frame(bytes([i]))
    pair.run_until(lambda: pair.server.datagrams.received == 10)
    assert drain(pair.server) == [bytes([i]) for i in range(6, 10)]
    assert pair.server.stats(pair.now).datagrams_dropped == 6


def test_datagrams_are_not_retransmitted_but_congestion_controlled() -> None:
    pair = datagram_pair()
    lost_before = pair.client.recovery.packets_lost
    pair.blackhole = True
    pair.client.send_datagram_frame(b"lost")
    for _ in range(3):  # let loss detection run; the frame must not come back
        pair.step()
    pair.blackhole = False
    pair.run_until(lambda: pair.client.recovery.packets_lost > lost_before, max_time=10)
    deadline = pair.now + 2
    while pair.now < deadline and pair.step():
        pass
    assert pair.server.datagrams.received == 0
    assert pair.client.datagrams.sent == 1


def _inject(pair: Pair, frame: bytes) -> None:
    """Deliver ``frame`` to the server in a 1-RTT packet of the client's, past the
    client's own checks (built outside it: the connection may be a compiled class)."""
    padded = bytes(MIN_PAYLOAD) + frame  # PADDING first: room for the header protection sample
    deliver(pair, protect_one_rtt(pair.client, padded, pair.now), True)
    pair.run_until(
        lambda: any(isinstance(e, ConnectionTerminatedEvent) for e in pair.server_events)
    )


@pytest.mark.parametrize(
    ("server", "frame"),
    [
        ({}, b"\x31\x01x"),  # datagrams never advertised (§3)
        ({"max_datagram_frame_size": 10}, b"\x30" + bytes(10)),  # 11 bytes > 10 (§3)
        ({"max_datagram_frame_size": 10}, b"\x31\x09" + bytes(9)),
    ],
)
def test_unwanted_or_oversized_datagram_is_protocol_violation(
    server: dict[str, int], frame: bytes
) -> None:
    pair = datagram_pair(server=server)
    _inject(pair, frame)
    event = terminated(pair.server_events)
    assert event.error_code == TransportErrorCode.PROTOCOL_VIOLATION
    assert event.frame_type in (FrameType.DATAGRAM, FrameType.DATAGRAM_WITH_LENGTH)


def test_a_datagram_at_the_limit_is_accepted() -> None:
    pair = datagram_pair(server={"max_datagram_frame_size": 10})
    pair.client.send_datagram_frame(bytes(pair.client.max_datagram_size))
    pair.run_until(lambda: pair.server.datagrams.pending > 0)
    assert len(drain(pair.server)[0]) == 8


def test_receive_queue_is_bounded_in_bytes_too() -> None:
    pair = datagram_pair(server={**ON, "datagram_receive_queue": 4096})  # count bound far away
    size = pair.client.max_datagram_size
    count = MAX_DATAGRAM_RECEIVE_BYTES // size + 20
    sent = 0
    while sent < count:  # in batches below the send queue bound
        for _ in range(min(100, count - sent)):
            pair.client.send_datagram_frame(bytes(size))
            sent += 1
        pair.run_until(lambda s=sent: pair.server.datagrams.received == s)  # type: ignore[misc]
    kept = drain(pair.server)
    assert sum(map(len, kept)) <= MAX_DATAGRAM_RECEIVE_BYTES
    assert len(kept) + pair.server.datagrams.dropped == count
    assert pair.server.datagrams.dropped >= 20
