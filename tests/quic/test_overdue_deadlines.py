"""Input that arrives after a passed idle or handshake deadline does not revive the
connection (RFC 9000 §10.1; docs/error-model.md, timers).

A driver that wakes for a datagram and a deadline at once may hand the datagram in
first.  The connection must then act as if the deadline had fired at its time: the
idle timeout ends the connection silently and the late datagram is dropped, rather
than resetting the idle timer and delivering the data.
"""

from __future__ import annotations

from mstls.core.events import ConnectionTerminatedEvent, StreamDataAvailable, StreamOpened
from mstls.quic.connection import QuicConnection
from tests.quic.pair import CLIENT_ADDR, Pair, client_config, server_config

IDLE = 5.0


def _settled_pair() -> Pair:
    pair = Pair(client=client_config(idle_timeout=IDLE), server=server_config(idle_timeout=IDLE))
    pair.handshake()
    for _ in range(1000):  # until the handshake's ACKs are delivered
        if not pair.in_flight:
            break
        pair.step()
    assert not pair.in_flight
    return pair


def _events(conn: QuicConnection) -> list[object]:
    out: list[object] = []
    while (e := conn.next_event()) is not None:
        out.append(e)
    return out


def _stream_data_at(pair: Pair, payload: bytes, when: float) -> list[object]:
    """The client sends ``payload`` on a new stream; the server receives it at
    ``when``.  Returns the server's events from that input."""
    _events(pair.server)
    sid = pair.client.streams.open_stream()
    pair.client.streams.write(sid, payload)
    datagrams = pair.client.datagrams_to_send(pair.now)
    assert datagrams
    for data in datagrams:
        pair.server.receive_datagram(data, CLIENT_ADDR, when)
    return _events(pair.server)


def test_a_datagram_after_the_idle_deadline_is_dropped_and_the_idle_timeout_fires() -> None:
    pair = _settled_pair()
    server = pair.server
    # the driver slept through the deadline
    events = _stream_data_at(pair, b"too late", server.idle_deadline + 0.5)
    ended = [e for e in events if isinstance(e, ConnectionTerminatedEvent)]
    assert len(ended) == 1 and ended[0].kind == "idle_timeout"
    assert not [e for e in events if isinstance(e, StreamOpened | StreamDataAvailable)]
    assert server.is_terminated or server.state.name == "DRAINING"


def test_a_datagram_before_the_idle_deadline_is_delivered() -> None:
    pair = _settled_pair()
    server = pair.server
    early = server.idle_deadline - 0.5
    events = _stream_data_at(pair, b"in time", early)
    assert not [e for e in events if isinstance(e, ConnectionTerminatedEvent)]
    assert [e for e in events if isinstance(e, StreamDataAvailable)]
    assert server.idle_deadline > early + IDLE - 1  # the datagram reset the idle timer


def test_a_handshake_flight_after_the_handshake_deadline_does_not_complete_it() -> None:
    pair = Pair(client=client_config(handshake_timeout=2.0), server=server_config())
    pair.start()
    client = pair.client
    deadline = client.handshake_deadline
    assert deadline is not None
    for data in client.datagrams_to_send(pair.now):
        pair.endpoint.receive_datagram(data, CLIENT_ADDR, pair.now)
    replies = [d for d, _ in pair.endpoint.datagrams_to_send(pair.now)]
    assert replies
    for data in replies:
        client.receive_datagram(data, pair.server.peer_address, deadline + 0.1)
    events = _events(client)
    ended = [e for e in events if isinstance(e, ConnectionTerminatedEvent)]
    assert len(ended) == 1 and ended[0].kind == "handshake_timeout"
    assert not client.is_established
