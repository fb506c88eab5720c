"""ECN through the asyncio UDP drivers on 127.0.0.1 (RFC 9000 §13.4), as
tests/trio_api/test_trio_ecn.py: both ends mark, count and validate; a migrate()
socket marks and reports codepoints too."""

from __future__ import annotations

import pytest

import mstls.asyncio

from .support import connect, echo_server, run

pytestmark = pytest.mark.network

PAYLOAD = b"ecn" * 200_000


async def echo(conn: mstls.asyncio.Connection, payload: bytes) -> None:
    stream = await conn.open_stream()
    stream.write(payload)
    await stream.drain()
    stream.write_eof()
    assert await stream.read() == payload


def test_echo_with_ecn_validates_both_ways() -> None:
    async def main() -> mstls.ConnectionStats:
        async with (
            echo_server("udp") as listener,
            await connect(listener.address[1], "udp") as conn,
        ):
            await echo(conn, PAYLOAD)
            return conn.stats()

    stats = run(main)
    assert stats.ecn_state == "capable"
    assert stats.ecn_ect0_reported is not None and stats.ecn_ect0_reported > 0
    # The echo came back marked too: the listener's socket marks ECT(0).
    assert stats.ecn_ect0_received is not None and stats.ecn_ect0_received > 0
    assert stats.ecn_ce_received == stats.ecn_ce_reported == 0


def test_migrated_socket_marks_and_reads_codepoints() -> None:
    async def main() -> tuple[mstls.ConnectionStats, mstls.ConnectionStats]:
        async with (
            echo_server("udp") as listener,
            await connect(listener.address[1], "udp") as conn,
        ):
            await echo(conn, PAYLOAD)
            before = conn.stats()
            await conn.migrate()
            assert conn.sans_io.path.local is not None
            await echo(conn, PAYLOAD)
            return before, conn.stats()

    before, after = run(main)
    assert after.ecn_state == "capable"
    assert before.ecn_ect0_received is not None and after.ecn_ect0_received is not None
    assert before.ecn_ect0_reported is not None and after.ecn_ect0_reported is not None
    # The new socket reads the server's ECT(0) marks (the second 600 kB echo comes back
    # in dozens of datagrams; one may still arrive on the old socket) and sends ECT(0)
    # itself: unmarked packets would fail the validation (RFC 9000 §13.4.2.1).
    assert after.ecn_ect0_received - before.ecn_ect0_received >= 10
    assert after.ecn_ect0_reported > before.ecn_ect0_reported
