"""Issue 11: over real UDP, a keep-alive PING costs the trio listener one output
call and no timer wake-up, and its ACK goes out at once.

The driver sends before it checks the timer (:mod:`mstls.trio._udp`), and the
server acknowledges a PING-only packet at once (:mod:`mstls.core.ack_tracker`),
so the delayed-ACK timer is never armed for it.  Counted, not timed: every call
into a server connection is counted while clients with a short keep-alive
ping it.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
import trio

import mstls
import mstls.trio
from mstls.quic.connection import QuicConnection
from tests.certs import get_pki

ALPN = "mstls-test"
CLIENTS = 4
#: A short keep-alive, so the test sees many in little time.
KEEPALIVE = 0.1
WINDOW = 1.0


def client_config() -> mstls.ClientConfig:
    return mstls.ClientConfig(
        alpn=ALPN, cafile=get_pki().files("ca").cert, server_name="localhost", keepalive=KEEPALIVE
    )


def server_config() -> mstls.ServerConfig:
    files = get_pki().files("server")
    return mstls.ServerConfig(files.cert, files.key, alpn=ALPN)


def _count_server_calls(monkeypatch: pytest.MonkeyPatch, calls: Counter[str]) -> None:
    for name in ("receive_datagram", "handle_timer", "datagrams_with_paths"):
        original = getattr(QuicConnection, name)

        def counted(self: QuicConnection, *args: Any, _o: Any = original, _n: str = name) -> Any:
            if not self.is_client and calls["on"]:
                calls[_n] += 1
            return _o(self, *args)

        monkeypatch.setattr(QuicConnection, name, counted)


async def test_keepalives_cost_one_output_call_and_no_timer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: Counter[str] = Counter()
    _count_server_calls(monkeypatch, calls)

    async def idle(connection: Any) -> None:
        await trio.sleep_forever()

    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            listener = await nursery.start(mstls.trio.serve, "127.0.0.1", 0, server_config(), idle)
            port = listener.address[1]
            clients = [
                await mstls.trio.connect("127.0.0.1", port, client_config()) for _ in range(CLIENTS)
            ]
            await trio.sleep(0.5)  # handshake leftovers (HANDSHAKE_DONE, ACKs) settle
            calls["on"] = 1
            await trio.sleep(WINDOW)
            calls["on"] = 0
            for conn in clients:
                await conn.aclose()
            await listener.aclose()
            nursery.cancel_scope.cancel()
    received = calls["receive_datagram"]
    assert received >= CLIENTS * WINDOW / KEEPALIVE / 2, dict(calls)
    assert calls["handle_timer"] == 0, dict(calls)
    assert calls["datagrams_with_paths"] <= received, dict(calls)
