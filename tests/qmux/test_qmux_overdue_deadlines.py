"""Bytes that arrive after a passed idle or handshake deadline do not revive a QMux
connection (QMux §7.1; docs/error-model.md, T1-T5).

The driver may read the socket before it runs the timer that fell due in the same
wake-up.  The idle timeout must still win: it sends close_notify (§7.2), the late
stream data is not delivered and the idle timer is not reset by it.
"""

from __future__ import annotations

from mstls.core.events import ConnectionTerminatedEvent, StreamDataAvailable, StreamOpened
from tests.qmux.pair import Pair, client_config, server_config

IDLE = 5.0


def test_bytes_after_the_idle_deadline_are_not_delivered_and_the_idle_timeout_fires() -> None:
    pair = Pair(client=client_config(idle_timeout=IDLE), server=server_config(idle_timeout=IDLE))
    pair.handshake()
    pair.drain()
    server = pair.server
    deadline = server.get_timer()
    assert deadline is not None
    sid = pair.client.streams.open_stream()
    pair.client.streams.write(sid, b"too late")
    data = pair.client.data_to_send(pair.now)
    assert data
    pair.server_events.clear()
    server.receive_data(data, deadline + 0.5)
    event = pair.terminated("server")
    assert event.kind == "idle_timeout" and not event.by_peer
    assert not [e for e in pair.server_events if isinstance(e, StreamOpened | StreamDataAvailable)]
    assert server.should_shutdown_write or server.data_to_send(deadline + 0.5)  # close_notify


def test_bytes_before_the_idle_deadline_are_delivered() -> None:
    pair = Pair(client=client_config(idle_timeout=IDLE), server=server_config(idle_timeout=IDLE))
    pair.handshake()
    pair.drain()
    deadline = pair.server.get_timer()
    assert deadline is not None
    sid = pair.client.streams.open_stream()
    pair.client.streams.write(sid, b"in time")
    pair.server_events.clear()
    pair.server.receive_data(pair.client.data_to_send(pair.now), deadline - 0.5)
    pair.flush()
    assert not [e for e in pair.server_events if isinstance(e, ConnectionTerminatedEvent)]
    assert [e for e in pair.server_events if isinstance(e, StreamDataAvailable)]


def test_a_server_flight_after_the_handshake_deadline_does_not_complete_the_handshake() -> None:
    pair = Pair(client=client_config(handshake_timeout=2.0))
    pair.start()
    client = pair.client
    deadline = client.handshake_deadline
    assert deadline is not None
    pair.server.receive_data(client.data_to_send(pair.now), pair.now)
    reply = pair.server.data_to_send(pair.now)
    assert reply
    client.receive_data(reply, deadline + 0.1)
    event = pair.terminated("client")
    assert event.kind == "handshake_timeout"
    assert not client.is_established
