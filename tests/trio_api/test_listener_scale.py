"""Issue 11: a trio UDP listener's change step touches only the connections concerned.

Many connections are held open against one listener; then one connection echoes
on a stream.  Every ``pump_events`` of a server session is counted: before the
dirty set, each step after input or a timer pumped every session (and asked
every connection for its timer and datagrams), so the echo cost grew with the
number of idle connections.
"""

from __future__ import annotations

from typing import Any

import pytest
import trio

import mstls
import mstls.trio
from mstls.session import Session
from tests.certs import get_pki

ALPN = "mstls-test"
#: Idle connections held open.
HELD = 60
ECHOES = 10
#: Server-session pumps allowed per echo (the echo connection's steps only).
MAX_PUMPS_PER_ECHO = 40


def client_config() -> mstls.ClientConfig:
    return mstls.ClientConfig(alpn=ALPN, cafile=get_pki().files("ca").cert, server_name="localhost")


def server_config() -> mstls.ServerConfig:
    files = get_pki().files("server")
    return mstls.ServerConfig(files.cert, files.key, alpn=ALPN)


async def test_an_echo_pumps_only_its_own_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    pumped: dict[int, int] = {}
    original = Session.pump_events

    def counting(self: Session) -> Any:
        if not getattr(self.conn, "is_client", True):
            pumped[id(self.conn)] = pumped.get(id(self.conn), 0) + 1
        return original(self)

    monkeypatch.setattr(Session, "pump_events", counting)

    async def echo(connection: Any) -> None:
        while True:
            stream = await connection.accept_stream()
            data = await stream.receive_some()
            await stream.send_all(data)
            await stream.send_eof()

    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            listener = await nursery.start(mstls.trio.serve, "127.0.0.1", 0, server_config(), echo)
            port = listener.address[1]
            held = []
            for _ in range(HELD):
                held.append(await mstls.trio.connect("127.0.0.1", port, client_config()))
            talker = await mstls.trio.connect("127.0.0.1", port, client_config())
            await trio.sleep(0.2)  # handshake leftovers (HANDSHAKE_DONE, ACKs) settle
            pumped.clear()
            for _ in range(ECHOES):
                stream = await talker.open_stream()
                await stream.send_all(b"ping")
                await stream.send_eof()
                assert await stream.receive_some() == b"ping"
            touched = len(pumped)
            total = sum(pumped.values())
            for conn in [*held, talker]:
                await conn.aclose()
            await listener.aclose()
            nursery.cancel_scope.cancel()
    # The talker's server connection, and at most a few held ones whose
    # timers (delayed ACKs) happened to fall in the window.
    assert touched <= 5, f"{touched} server sessions pumped for one connection's echoes"
    assert total <= MAX_PUMPS_PER_ECHO * ECHOES
