"""mstls.asyncio.Connection.migrate() mid-transfer (RFC 9000 §9.2, issues 10, 14): a new
socket, a new connection ID on the wire (seen by a relay), the data intact; the cases of
tests/trio_api/test_trio_migrate.py."""

from __future__ import annotations

import asyncio
import hashlib
import os

import pytest

import mstls
import mstls.asyncio
from tests.api.helpers import client_config
from tests.api.test_migrate import DcidTap
from tests.helpers.relay import FaultRelay

from .support import LOOPS, TIMEOUT, connect, echo_server, run

pytestmark = pytest.mark.network

SIZE = 4 << 20
CHUNK = 64 << 10


@pytest.mark.parametrize("loop", LOOPS)
@pytest.mark.parametrize("local", [None, "127.0.0.2"], ids=["port", "addr"])
def test_asyncio_migrate_mid_transfer(local: str | None, loop: str) -> None:
    payload = os.urandom(SIZE)
    tap = DcidTap()

    async def main() -> bytes:
        async with echo_server("udp") as listener:
            with FaultRelay(("127.0.0.1", listener.address[1]), seed=1, tap=tap) as relay:
                host, port = relay.address
                conn = await mstls.asyncio.connect(host, port, client_config(), timeout=TIMEOUT)
                async with conn:
                    stream = await conn.open_stream()

                    async def writer() -> None:
                        for i in range(0, SIZE, CHUNK):
                            stream.write(payload[i : i + CHUNK])
                            await stream.drain()
                        stream.write_eof()

                    task = asyncio.ensure_future(writer())
                    out = bytearray()
                    migrated = False
                    while chunk := await stream.read(65536):
                        out += chunk
                        if not migrated and len(out) >= SIZE // 4:
                            await conn.migrate(local)
                            migrated = True
                    # The end of the echo came in through the new socket, tagged as its
                    # path (answers go back where a datagram arrived, RFC 9000 §8.2.2).
                    assert conn.sans_io.arrival_path.local is conn.sans_io.path.local
                    await task
                    assert conn.sans_io.path.local is not None
                    assert conn.sans_io.migrations == 1
                    return bytes(out)

    out = run(main, loop)
    assert hashlib.sha256(out).digest() == hashlib.sha256(payload).digest()
    assert len(tap.by_address) == 2
    (_, first), (second_address, second) = list(tap.by_address.items())
    assert first.isdisjoint(second), "a connection ID was used on both paths (§9.5)"
    if local is not None:
        assert second_address[0] == local


def test_asyncio_migrate_is_refused_when_the_server_disables_it() -> None:
    async def main() -> None:
        async with (
            echo_server("udp", disable_active_migration=True) as listener,
            await connect(listener.address[1], "udp") as conn,
        ):
            with pytest.raises(mstls.MigrationRefused, match="disable_active_migration"):
                await conn.migrate()
            stream = await conn.open_stream()
            stream.write(b"still fine")
            stream.write_eof()
            assert await stream.read() == b"still fine"

    run(main)


def test_asyncio_migrate_over_tcp_is_refused() -> None:
    async def main() -> None:
        async with (
            echo_server("tcp") as listener,
            await connect(listener.address[1], "tcp") as conn,
        ):
            with pytest.raises(mstls.MigrationRefused, match="TCP"):
                await conn.migrate()

    run(main)


def test_asyncio_migrate_on_a_server_connection_is_refused() -> None:
    refused: list[BaseException] = []

    async def handler(conn: mstls.asyncio.Connection) -> None:
        try:
            await conn.migrate()
        except mstls.MigrationRefused as exc:
            refused.append(exc)

    async def main() -> None:
        from tests.api.helpers import server_config  # noqa: PLC0415

        listener = await mstls.asyncio.serve("127.0.0.1", 0, server_config(), handler)
        async with listener, await connect(listener.address[1], "udp") as conn:
            await conn.wait_handshake()
            for _ in range(500):  # bounded: the handler runs after the server's handshake
                if refused:
                    break
                await asyncio.sleep(0.01)

    run(main)
    assert len(refused) == 1
    assert "client" in str(refused[0])
