"""A dropped connection is freed by reference counting, not by the cycle collector.

The cyclic collector runs rarely once a daemon's heap is large, so a connection in a
reference cycle keeps its memory long after it ended: the 30-minute soak's RSS rose
3.6 MiB/h (issue 11).  Every server connection was in one: the HANDSHAKE_DONE it
sent waits in recovery with a record callback that was a method of the connection.
"""

from __future__ import annotations

from mstls.core.send_stream import SendStream
from mstls.core.stream_manager import StreamManager
from tests.helpers.cycles import Survivors, cycle_garbage
from tests.quic.pair import Pair


def test_a_server_connection_with_handshake_done_in_flight_is_freed_when_dropped(
    no_cycle_collector: None,
) -> None:
    pair = Pair()
    pair.handshake()
    connections = Survivors(pair.client, pair.server)
    assert pair.server.recovery.bytes_in_flight > 0  # HANDSHAKE_DONE not yet acknowledged
    del pair
    assert not connections.alive(), "a connection is in a reference cycle"


def test_a_connection_with_streams_is_freed_when_dropped(no_cycle_collector: None) -> None:
    """Each stream's send half reports progress to the stream manager that holds it
    (stream -> listener -> manager -> stream): that cycle kept every connection that
    had opened a stream."""
    pair = Pair()
    pair.handshake()
    for _ in range(3):
        sid = pair.client.streams.open_stream()
        pair.client.streams.write(sid, b"x" * 3000, fin=True)
    for _ in range(4):  # data in flight both ways, streams open on both sides
        pair.step()
    assert pair.server_events
    connections = Survivors(pair.client, pair.server)
    del pair
    assert not connections.alive(), "a connection is in a reference cycle"
    assert not cycle_garbage(StreamManager, SendStream), "the streams are in a cycle"
