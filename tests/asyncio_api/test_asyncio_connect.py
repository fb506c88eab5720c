"""mstls.asyncio connect options: lazy, auto (QUIC first, TCP fallback), timeouts,
listener counters, serve's handler life."""

from __future__ import annotations

import asyncio

import pytest

import mstls
import mstls.asyncio
from mstls import errors
from tests.api.helpers import ALPN, client_config, server_config
from tests.api.test_unified_api import mismatched_config

from .support import TIMEOUT, TRANSPORTS, echo_server, run

pytestmark = pytest.mark.network


async def exchange(conn: mstls.asyncio.Connection, data: bytes) -> bytes:
    stream = await conn.open_stream()
    stream.write(data)
    stream.write_eof()
    await stream.drain()
    return await stream.read()


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_lazy_connect_returns_before_the_handshake(transport: str) -> None:
    async def main() -> None:
        async with echo_server(transport) as listener:
            conn = await mstls.asyncio.connect(
                "127.0.0.1", listener.address[1], client_config(), transport=transport, lazy=True
            )
            async with conn:
                assert conn.alpn is None
                assert conn.stats().bytes_sent == 0
                assert await exchange(conn, b"lazy") == b"lazy"  # the first use drives it
                assert conn.alpn == ALPN

    run(main)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_lazy_handshake_failure_is_raised_by_every_use(transport: str) -> None:
    async def main() -> None:
        async with echo_server(transport) as listener:
            port = listener.address[1]
            conn = await mstls.asyncio.connect(
                "127.0.0.1", port, mismatched_config(), transport=transport, lazy=True
            )
            with pytest.raises(mstls.Error):
                await conn.open_stream()
            with pytest.raises(mstls.Error):
                await conn.wait_handshake()
            conn.close()
            await asyncio.sleep(0.1)
            assert listener.failed_handshakes == 1
            assert listener.pop_handshake_failures()[0][0][0] == "127.0.0.1"
            errors.clear_error()

    run(main)


def test_auto_prefers_quic_when_it_answers() -> None:
    async def main() -> None:
        async with echo_server("udp") as listener:
            conn = await mstls.asyncio.connect(
                "127.0.0.1", listener.address[1], client_config(), transport="auto", timeout=TIMEOUT
            )
            async with conn:
                assert conn.transport == "udp"

    run(main)


def test_auto_falls_back_to_tcp_when_udp_is_silent() -> None:
    async def main() -> None:
        async with echo_server("tcp") as listener:
            config = client_config(fallback_delay=0.05)
            conn = await mstls.asyncio.connect(
                "127.0.0.1", listener.address[1], config, transport="auto", timeout=TIMEOUT
            )
            async with conn:
                assert conn.transport == "tcp"
                assert await exchange(conn, b"over tcp") == b"over tcp"

    run(main)


def test_connect_times_out_with_mstls_timeout() -> None:
    async def main() -> None:
        async with echo_server("tcp") as listener:  # nothing answers on UDP
            with pytest.raises(mstls.Timeout):
                await mstls.asyncio.connect(
                    "127.0.0.1", listener.address[1], client_config(), timeout=0.3
                )

    run(main)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_serve_closes_the_connection_when_the_handler_returns(transport: str) -> None:
    async def main() -> None:
        async def handler(conn: mstls.asyncio.Connection) -> None:
            stream = await conn.accept_stream()
            stream.write(await stream.readline())
            await stream.drain()
            await stream.wait_acknowledged()

        listener = await mstls.asyncio.serve(
            "127.0.0.1", 0, server_config(), handler, transport=transport
        )
        async with listener:
            conn = await mstls.asyncio.connect(
                "127.0.0.1", listener.address[1], client_config(), transport=transport
            )
            stream = await conn.open_stream()
            stream.write(b"line\n")
            await stream.drain()
            assert await stream.readline() == b"line\n"
            with pytest.raises(mstls.ConnectionTerminated) as info:
                await stream.read()
            assert info.value.code == 0 and info.value.by_peer
            await conn.wait_closed()
            errors.clear_error()

    run(main)


def test_a_failing_handler_goes_to_the_loops_exception_handler() -> None:
    async def main() -> None:
        seen: list[BaseException] = []
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(lambda _, context: seen.append(context["exception"]))

        async def handler(conn: mstls.asyncio.Connection) -> None:
            raise ValueError("handler bug")

        listener = await mstls.asyncio.serve("127.0.0.1", 0, server_config(), handler)
        async with listener:
            conn = await mstls.asyncio.connect(
                "127.0.0.1", listener.address[1], client_config(), timeout=TIMEOUT
            )
            with pytest.raises(mstls.ConnectionTerminated):  # the handler's end closed it
                await (await conn.open_stream()).read()
            errors.clear_error()
        assert [type(e) for e in seen] == [ValueError]

    run(main)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_second_connection_resumes_with_a_ticket(transport: str) -> None:
    async def main() -> None:
        store = mstls.MemoryTicketStore()
        config = client_config(ticket_store=store)
        resumed = []
        async with echo_server(transport) as listener:
            for _ in range(2):
                conn = await mstls.asyncio.connect(
                    "127.0.0.1", listener.address[1], config, transport=transport, timeout=TIMEOUT
                )
                async with conn:
                    assert await exchange(conn, b"hello") == b"hello"
                    await asyncio.sleep(0.05)  # the ticket arrives after the handshake
                    resumed.append(conn.resumed)
        assert resumed == [False, True]

    run(main)
