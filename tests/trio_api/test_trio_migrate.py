"""mstls.trio.Connection.migrate() mid-transfer (RFC 9000 §9.2, issue 10): a new socket,
a new connection ID on the wire (seen by a relay), the data intact."""

from __future__ import annotations

import hashlib
import os

import pytest
import trio

import mstls
import mstls.trio
from tests.api.helpers import client_config
from tests.api.test_migrate import DcidTap
from tests.helpers.relay import FaultRelay

from .test_trio_api import TIMEOUT, echo_stream, per_stream, serving

pytestmark = pytest.mark.network

SIZE = 4 << 20
CHUNK = 64 << 10


@pytest.mark.parametrize("local", [None, "127.0.0.2"], ids=["port", "addr"])
async def test_trio_migrate_mid_transfer(local: str | None) -> None:
    payload = os.urandom(SIZE)
    tap = DcidTap()
    with trio.fail_after(TIMEOUT * 3):
        async with serving(per_stream(echo_stream)) as listener:
            with FaultRelay(("127.0.0.1", listener.address[1]), seed=1, tap=tap) as relay:
                host, port = relay.address
                conn = await mstls.trio.connect(host, port, client_config(), timeout=TIMEOUT)
                async with conn:
                    stream = await conn.open_stream()
                    out = bytearray()

                    async def writer() -> None:
                        for i in range(0, SIZE, CHUNK):
                            await stream.send_all(payload[i : i + CHUNK])
                        await stream.send_eof()

                    async with trio.open_nursery() as nursery:
                        nursery.start_soon(writer)
                        migrated = False
                        while chunk := await stream.receive_some():
                            out += chunk
                            if not migrated and len(out) >= SIZE // 4:
                                await conn.migrate(local)
                                migrated = True
                    assert conn.sans_io.path.local is not None
                    assert conn.sans_io.migrations == 1
    assert hashlib.sha256(out).digest() == hashlib.sha256(payload).digest()
    assert len(tap.by_address) == 2
    (_, first), (second_address, second) = list(tap.by_address.items())
    assert first.isdisjoint(second)
    if local is not None:
        assert second_address[0] == local


async def test_trio_migrate_over_tcp_is_refused() -> None:
    with trio.fail_after(TIMEOUT):
        async with serving(per_stream(echo_stream), "tcp") as listener:
            conn = await mstls.trio.connect(
                "127.0.0.1", listener.address[1], client_config(), transport="tcp", timeout=TIMEOUT
            )
            async with conn:
                with pytest.raises(mstls.MigrationRefused, match="TCP"):
                    await conn.migrate()
