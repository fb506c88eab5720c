"""A dropped QMux connection, its streams included, is freed by reference counting
(issue 11, the soak's RSS slope): each stream's send half used to hold the stream
manager that holds it, so every connection's streams waited for the cyclic
collector, which runs rarely once a daemon's heap is large."""

from __future__ import annotations

import weakref

from mstls.core.send_stream import SendStream
from mstls.core.stream_manager import StreamManager
from tests.helpers.cycles import cycle_garbage
from tests.qmux.pair import Pair


def test_a_connection_with_streams_is_freed_when_dropped(no_cycle_collector: None) -> None:
    pair = Pair()
    pair.handshake()
    for _ in range(3):
        sid = pair.client.streams.open_stream()
        pair.client.streams.write(sid, b"x" * 3000, fin=True)
    pair.flush()
    assert pair.server_events
    refs = [weakref.ref(pair.client), weakref.ref(pair.server)]
    del pair
    assert [ref() for ref in refs] == [None, None], "a connection is in a cycle"
    assert not cycle_garbage(StreamManager, SendStream), "the streams are in a cycle"


def test_a_terminated_connection_is_freed_when_dropped(no_cycle_collector: None) -> None:
    pair = Pair()
    pair.handshake()
    sid = pair.client.streams.open_stream()
    pair.client.streams.write(sid, b"y" * 100)
    pair.client.close(now=pair.now)
    pair.flush()
    refs = [weakref.ref(pair.client), weakref.ref(pair.server)]
    del pair
    assert [ref() for ref in refs] == [None, None], "a closed connection is in a cycle"
