"""Our QUIC client against our QUIC server in memory, with a virtual clock."""

from __future__ import annotations

import hashlib

from mstls.core.events import ConnectionTerminatedEvent, HandshakeCompletedEvent

from .pair import Pair


def test_handshake() -> None:
    pair = Pair()
    pair.handshake()
    done = [e for e in pair.client_events if isinstance(e, HandshakeCompletedEvent)]
    assert done and done[0].alpn_protocol == "mstls-test"


def transfer(pair: Pair, size: int) -> None:
    client = pair.client
    sid = client.streams.open_stream()
    payload = bytes(i % 251 for i in range(size))
    offset = 0
    received = bytearray()
    server_sid = None

    def progress() -> bool:
        nonlocal offset, server_sid
        if offset < len(payload):
            offset += client.streams.write(sid, payload[offset : offset + 65536], fin=False)
            if offset == len(payload):
                client.streams.write(sid, b"", fin=True)
        server = pair.server
        if server_sid is None:
            pending = server.streams.accept_pending()
            if pending:
                server_sid = pending[0]
        if server_sid is not None:
            data, fin = server.streams.read(server_sid, 1 << 20)
            received.extend(data)
            return fin
        return False

    pair.run_until(progress, max_time=120)
    assert hashlib.sha256(received).digest() == hashlib.sha256(payload).digest()


def test_transfer() -> None:
    pair = Pair()
    pair.handshake()
    transfer(pair, 1 << 20)


def test_transfer_with_loss() -> None:
    pair = Pair(loss=0.1, seed=7)
    pair.handshake()
    transfer(pair, 1 << 20)


def test_close_seen_by_peer() -> None:
    pair = Pair()
    pair.handshake()
    pair.client.close(7, "bye", now=pair.now)
    pair.run_until(
        lambda: any(isinstance(e, ConnectionTerminatedEvent) for e in pair.server_events)
    )
    event = next(e for e in pair.server_events if isinstance(e, ConnectionTerminatedEvent))
    assert (event.error_code, event.reason, event.by_peer, event.is_application) == (
        7,
        "bye",
        True,
        True,
    )
