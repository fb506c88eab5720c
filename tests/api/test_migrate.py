"""Connection.migrate() of the blocking API mid-transfer (RFC 9000 §9.2, issue 10).

The client talks to the server through a relay that records the Destination
Connection ID of every datagram by client address: the new socket must use a
connection ID never seen on the old one (§9.5).
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections import defaultdict
from typing import Any

import pytest

import mstls
from mstls.wire.packet import peek_destination_cid
from tests.helpers.relay import Direction, FaultRelay

from .helpers import TIMEOUT, client_config, server

pytestmark = pytest.mark.network

SIZE = 4 << 20
CHUNK = 64 << 10


class DcidTap:
    """DCIDs of the client's short-header packets, by client address."""

    def __init__(self) -> None:
        self.by_address: dict[Any, set[bytes]] = defaultdict(set)
        self.lock = threading.Lock()

    def __call__(self, direction: Direction, data: bytes, addr: Any) -> None:
        if data and not data[0] & 0x80:
            with self.lock:
                self.by_address[tuple(addr[:2])].add(bytes(peek_destination_cid(data, 8)))


def echo_with_migration(conn: mstls.Connection, payload: bytes, local: str | None) -> bytes:
    stream = conn.open_stream(timeout=TIMEOUT)

    def writer() -> None:
        for i in range(0, len(payload), CHUNK):
            stream.write(payload[i : i + CHUNK], timeout=TIMEOUT)
        stream.conclude()

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    out = bytearray()
    migrated = False
    while chunk := stream.read(timeout=TIMEOUT):
        out += chunk
        if not migrated and len(out) >= len(payload) // 4:
            conn.migrate(local, timeout=TIMEOUT)
            migrated = True
    thread.join(TIMEOUT)
    assert migrated
    return bytes(out)


@pytest.mark.parametrize("local", [None, "127.0.0.2"], ids=["port", "addr"])
def test_migrate_mid_transfer_with_a_new_connection_id(local: str | None) -> None:
    payload = os.urandom(SIZE)
    tap = DcidTap()
    with (
        server() as (listener, served),
        FaultRelay(("127.0.0.1", listener.address[1]), seed=1, tap=tap) as relay,
    ):
        host, port = relay.address
        with mstls.connect(host, port, client_config(), timeout=TIMEOUT) as conn:
            old_address = conn.sans_io.path.address
            echoed = echo_with_migration(conn, payload, local)
            moved = conn.sans_io.path
            assert moved.local is not None and conn.sans_io.migrations == 1
            assert conn.peer_address == old_address  # the server did not move
            server_conn = served[0].sans_io
            assert server_conn.migrations == 1 and server_conn.path.validated
    assert hashlib.sha256(echoed).digest() == hashlib.sha256(payload).digest()
    assert len(tap.by_address) == 2, tap.by_address.keys()
    (_, first), (second_address, second) = list(tap.by_address.items())
    assert first.isdisjoint(second), "a connection ID was used on both paths (§9.5)"
    if local is not None:
        assert second_address[0] == local


def test_migrate_is_refused_when_the_server_disables_it() -> None:
    with server(disable_active_migration=True) as (listener, _):
        port = listener.address[1]
        with mstls.connect("127.0.0.1", port, client_config(), timeout=TIMEOUT) as conn:
            with pytest.raises(mstls.MigrationRefused, match="disable_active_migration"):
                conn.migrate(timeout=TIMEOUT)
            stream = conn.open_stream(timeout=TIMEOUT)
            stream.write(b"still fine", timeout=TIMEOUT)
            stream.conclude()
            assert stream.read(timeout=TIMEOUT) == b"still fine"


def test_migrate_over_tcp_is_refused() -> None:
    with server(transport="tcp") as (listener, _):
        port = listener.address[1]
        with (
            mstls.connect(
                "127.0.0.1", port, client_config(), transport="tcp", timeout=TIMEOUT
            ) as conn,
            pytest.raises(mstls.MigrationRefused, match="TCP"),
        ):
            conn.migrate(timeout=TIMEOUT)


def test_client_follows_the_servers_preferred_address() -> None:
    """RFC 9000 §9.6: the preferred address is a relay in front of the same listener
    (a listener binds one socket); the client validates it and moves there."""
    with server() as (listener, _):
        port = listener.address[1]
        with FaultRelay(("127.0.0.1", port), seed=1) as relay:
            listener._handler.endpoint.config.preferred_address = relay.address
            with mstls.connect("127.0.0.1", port, client_config(), timeout=TIMEOUT) as conn:
                stream = conn.open_stream(timeout=TIMEOUT)
                stream.write(b"x" * 100_000, timeout=TIMEOUT)
                stream.conclude()
                out = bytearray()
                while chunk := stream.read(timeout=TIMEOUT):
                    out += chunk
                deadline = time.monotonic() + TIMEOUT
                while conn.peer_address != relay.address and time.monotonic() < deadline:
                    time.sleep(0.01)
                assert conn.peer_address == relay.address
                assert conn.sans_io.path.validated
            assert relay.counters(Direction.CLIENT_TO_SERVER).forwarded > 0
    assert bytes(out) == b"x" * 100_000
