"""ECN through the trio UDP drivers on 127.0.0.1 (RFC 9000 §13.4): both ends mark,
count and validate; the public stats show it; a migrate() socket marks and reports
codepoints too."""

from __future__ import annotations

import pytest
import trio

import mstls.trio

from .test_trio_api import TIMEOUT, connect, echo_stream, per_stream, receive_all, serving

pytestmark = pytest.mark.network

PAYLOAD = b"ecn" * 200_000


async def test_echo_with_ecn_validates_both_ways() -> None:
    with trio.fail_after(TIMEOUT):
        async with (
            serving(per_stream(echo_stream), "udp") as listener,
            await connect(listener) as conn,
        ):
            stream = await conn.open_stream()
            await stream.send_all(PAYLOAD)
            await stream.send_eof()
            assert await receive_all(stream) == PAYLOAD
            stats = conn.stats()
    assert stats.ecn_state == "capable"
    assert stats.ecn_ect0_reported is not None and stats.ecn_ect0_reported > 0
    # The echo came back marked too: the listener's socket marks ECT(0).
    assert stats.ecn_ect0_received is not None and stats.ecn_ect0_received > 0
    assert stats.ecn_ce_received == stats.ecn_ce_reported == 0


async def echo(conn: mstls.trio.Connection) -> None:
    stream = await conn.open_stream()
    await stream.send_all(PAYLOAD, end=True)
    assert await receive_all(stream) == PAYLOAD


async def test_migrated_socket_marks_and_reads_codepoints() -> None:
    with trio.fail_after(TIMEOUT):
        async with (
            serving(per_stream(echo_stream), "udp") as listener,
            await connect(listener) as conn,
        ):
            await echo(conn)
            before = conn.stats()
            await conn.migrate()
            assert conn.sans_io.path.local is not None
            await echo(conn)
            after = conn.stats()
    assert after.ecn_state == "capable"
    assert before.ecn_ect0_received is not None and after.ecn_ect0_received is not None
    assert before.ecn_ect0_reported is not None and after.ecn_ect0_reported is not None
    # As tests/asyncio_api/test_asyncio_ecn.py: the new socket reads the server's ECT(0)
    # marks (one datagram may still arrive on the old socket) and sends ECT(0) itself:
    # unmarked packets would fail the validation (RFC 9000 §13.4.2.1).
    assert after.ecn_ect0_received - before.ecn_ect0_received >= 10
    assert after.ecn_ect0_reported > before.ecn_ect0_reported
