"""TLS slowloris (issue 11): 300 TCP connections each sending a real ClientHello at one
byte per second cannot lock a normal client out.  Each fails at the ClientHello deadline
(``client_hello_timeout``, 2 s) instead of holding one of the ``max_tcp_handshakes``
slots for the whole ``handshake_timeout`` (10 s), so the normal client's handshake and
echo complete while the flood goes on.  Functional only: the latency is a bench claim.
127.0.0.1 only."""

from __future__ import annotations

import functools
import socket

import pytest
import trio

import mstls.trio
from mstls.config import DEFAULT_MAX_TCP_HANDSHAKES
from mstls.qmux.connection import QMuxConnection
from mstls.trio._tcp import AWAITING_HELLO_PER_SLOT

from .test_stream_semantics import client_config, server_config

pytestmark = pytest.mark.network

SLOW = 300
#: The normal client's own budget: under the handshake timeout a slot held by a slow
#: sender would cost, well above the ClientHello deadline.
CLIENT_BUDGET = 8.0
#: How long the slow senders keep trickling (they fail long before it ends).
FLOOD_SECONDS = 16.0
#: After the normal client: by then the first slot-holders' deadline has long passed.
DROP_WAIT = 3.0
#: Bound on waiting for the senders failed at their deadline to notice.
DROP_WAIT_MAX = 8.0


def _client_hello() -> bytes:
    client = QMuxConnection(client_config().qmux_config("localhost"), is_client=True, now=0.0)
    client.connect(0.0)
    return client.data_to_send(0.0)


async def _trickle(port: int, hello: bytes, dropped: list[int]) -> None:
    sock = trio.socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    with sock:
        try:
            await sock.connect(("127.0.0.1", port))
            for byte in hello:
                await sock.send(bytes([byte]))
                await trio.sleep(1.0)
        except OSError:
            dropped.append(1)  # the server closed it (reset, or a close after the deadline)


async def _echo(stream: mstls.trio.Stream) -> None:
    async with stream:
        while data := await stream.receive_some():
            await stream.send_all(data)


async def _serve(conn: mstls.trio.Connection) -> None:
    async with trio.open_nursery() as nursery:
        while True:
            nursery.start_soon(_echo, await conn.accept_stream())


async def test_slowloris_does_not_lock_out_a_normal_client() -> None:
    hello = _client_hello()
    dropped: list[int] = []
    async with trio.open_nursery() as nursery:
        listener = await nursery.start(
            functools.partial(
                mstls.trio.serve, "127.0.0.1", 0, server_config(), _serve, transport="tcp"
            )
        )
        port = listener.address[1]
        with trio.move_on_after(FLOOD_SECONDS):
            async with trio.open_nursery() as flood:
                for _ in range(SLOW):
                    flood.start_soon(_trickle, port, hello, dropped)
                await trio.sleep(1.0)  # every slot is taken by a slow sender
                with trio.fail_after(CLIENT_BUDGET):
                    conn = await mstls.trio.connect(
                        "127.0.0.1",
                        port,
                        client_config(),
                        transport="tcp",
                        timeout=CLIENT_BUDGET,
                    )
                    async with conn:
                        stream = await conn.open_stream()
                        await stream.send_all(b"still served", end=True)
                        got = b""
                        while data := await stream.receive_some():
                            got += data
                        assert got == b"still served"
                # At least the first slot-holders are failed at their deadline (each
                # sender notices at its second send after the close, up to 2 s later).
                with trio.move_on_after(DROP_WAIT_MAX):
                    while len(dropped) < DEFAULT_MAX_TCP_HANDSHAKES:
                        await trio.sleep(0.1)
                assert len(dropped) >= DEFAULT_MAX_TCP_HANDSHAKES, len(dropped)
                flood.cancel_scope.cancel()
        nursery.cancel_scope.cancel()


#: Slots of the eviction test, and its ClientHello deadline: far beyond the client's
#: budget, so only eviction can let the newcomer in.  The listener holds this many
#: connections still sending their ClientHello.
SLOTS = 4
HELD = AWAITING_HELLO_PER_SLOT * SLOTS
LONG_HELLO = 60.0


async def test_a_newcomer_evicts_the_oldest_slow_sender_when_all_slots_are_taken() -> None:
    hello = _client_hello()
    dropped: list[int] = []
    config = server_config()
    config.max_tcp_handshakes = SLOTS
    config.client_hello_timeout = LONG_HELLO
    config.handshake_timeout = 2 * LONG_HELLO
    async with trio.open_nursery() as nursery:
        listener = await nursery.start(
            functools.partial(mstls.trio.serve, "127.0.0.1", 0, config, _serve, transport="tcp")
        )
        port = listener.address[1]
        async with trio.open_nursery() as flood:
            for _ in range(HELD):
                flood.start_soon(_trickle, port, hello, dropped)
            await trio.sleep(1.0)  # the listener holds all it may: slow senders only
            with trio.fail_after(CLIENT_BUDGET):
                conn = await mstls.trio.connect(
                    "127.0.0.1", port, client_config(), transport="tcp", timeout=CLIENT_BUDGET
                )
                async with conn:
                    stream = await conn.open_stream()
                    await stream.send_all(b"let in", end=True)
                    assert await stream.receive_some() == b"let in"
            with trio.fail_after(CLIENT_BUDGET):
                while not dropped:  # the evicted sender sees its connection closed
                    await trio.sleep(0.1)
            await trio.sleep(DROP_WAIT)
            assert len(dropped) == 1  # only as many as needed
            flood.cancel_scope.cancel()
        nursery.cancel_scope.cancel()
