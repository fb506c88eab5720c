"""Session resumption through the public APIs, blocking and trio, UDP and TCP (issue 12).

A second connection with the same :class:`mstls.MemoryTicketStore` resumes
(``Connection.resumed``) and still knows the server's identity; a server whose
ticket keys changed answers with a full handshake.
"""

from __future__ import annotations

import functools
from pathlib import Path

import pytest
import trio

import mstls
import mstls.trio
from tests.api.helpers import TIMEOUT, client_config, server, server_config

pytestmark = pytest.mark.network

TRANSPORTS = ["udp", "tcp"]
KEY = bytes(32)


def echo_once(conn: mstls.Connection) -> None:
    """One round trip, so that the server's tickets (sent after the handshake) arrive."""
    stream = conn.open_stream(timeout=TIMEOUT)
    stream.write(b"ping", timeout=TIMEOUT)
    stream.conclude()
    assert stream.read_exactly(4, timeout=TIMEOUT) == b"ping"


def connect(port: int, transport: str, store: mstls.TicketStore) -> mstls.Connection:
    config = client_config(ticket_store=store)
    return mstls.connect("127.0.0.1", port, config, transport=transport, timeout=TIMEOUT)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_blocking_second_connection_resumes(transport: str) -> None:
    store = mstls.MemoryTicketStore()
    with server(transport=transport) as (listener, _):
        port = listener.address[1]
        with connect(port, transport, store) as first:
            assert not first.resumed
            echo_once(first)
        with connect(port, transport, store) as second:
            echo_once(second)
            assert second.resumed
            assert second.peer_certificate is not None
            assert second.peer_certificate.dns_names == first.peer_certificate.dns_names


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_blocking_new_server_key_means_full_handshake(transport: str, tmp_path: Path) -> None:
    store = mstls.FileTicketStore(tmp_path / "tickets.json")
    for key, expected in ((KEY, False), (bytes(range(32)), False), (bytes(range(32)), True)):
        with (
            server(transport=transport, session_ticket_keys=[key]) as (listener, _),
            connect(listener.address[1], transport, store) as conn,
        ):
            echo_once(conn)
            assert conn.resumed is expected


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_trio_second_connection_resumes(transport: str) -> None:
    async def main() -> None:
        store = mstls.MemoryTicketStore()

        async def echo(conn: mstls.trio.Connection) -> None:
            async with trio.open_nursery() as nursery:
                while True:
                    stream = await conn.accept_stream()
                    nursery.start_soon(reply, stream)

        async def reply(stream: mstls.trio.Stream) -> None:
            async with stream:
                while data := await stream.receive_some():
                    await stream.send_all(data)
                await stream.send_eof()

        async with trio.open_nursery() as nursery:
            listener = await nursery.start(
                functools.partial(
                    mstls.trio.serve,
                    "127.0.0.1",
                    0,
                    server_config(),
                    echo,
                    transport=transport,
                )
            )
            port = listener.address[1]
            resumed = []
            for _ in range(2):
                with trio.fail_after(TIMEOUT):
                    conn = await mstls.trio.connect(
                        "127.0.0.1", port, client_config(ticket_store=store), transport=transport
                    )
                    async with conn:
                        stream = await conn.open_stream()
                        await stream.send_all(b"ping")
                        await stream.send_eof()
                        assert await stream.receive_some() == b"ping"
                        resumed.append(conn.resumed)
            assert resumed == [False, True]
            nursery.cancel_scope.cancel()

    trio.run(main)
