"""ECN through the trio UDP drivers on 127.0.0.1 (RFC 9000 §13.4): both ends mark,
count and validate; the public stats show it; a migrate() socket marks and reports
codepoints too."""

from __future__ import annotations

import sys
from typing import Any

import pytest
import trio

import mstls.trio
from mstls.core.ecn import ECT0
from mstls.io.udp import open_udp_socket
from mstls.quic.endpoint import ServerEndpoint
from mstls.trio import _udp as trio_udp
from tests.helpers.ecn_echo_client import check_marking_per_connection
from tests.quic.pair import server_config

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


async def test_listener_marks_each_connection_as_its_validation_says() -> None:
    """RFC 9000 §13.4.2.2 on one trio listener: a connection whose validation failed
    (a client counting nothing) sends Not-ECT, a validated one keeps ECT(0)."""
    if sys.platform != "linux":
        pytest.skip("IP_RECVTOS is Linux's")
    with trio.fail_after(TIMEOUT + 10):
        async with serving(per_stream(echo_stream), "udp") as listener:
            port = listener.address[1]
            await trio.to_thread.run_sync(check_marking_per_connection, port)


async def test_datagrams_the_socket_refused_keep_their_codepoints(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The backlog (brief E4) goes out later with the codepoints it was built with."""
    a, b = ("127.0.0.1", 1), ("127.0.0.1", 2)
    sent: list[tuple[bytes, int]] = []
    budget = [3]

    def send_some(sock: object, group: list[bytes], addr: object, caps: Any, *_: object) -> int:
        count = min(len(group), budget[0])  # then the socket is full
        budget[0] -= count
        sent.extend((data, caps.ecn_codepoint) for data in group[:count])
        return count

    monkeypatch.setattr(trio_udp, "send_datagrams", send_some)
    sock = open_udp_socket("127.0.0.1", 0)
    with sock:
        driver = trio_udp.UdpListenerDriver(sock, ServerEndpoint(server_config()))
        assert driver.endpoint.ecn_marking
        out = [(b"a", a), (b"b", a), (b"c", b), (b"d", b), (b"e", b)]
        assert not driver._send(out, [(1, 0), (4, ECT0), (5, 0)])
        assert list(driver._backlog) == out[3:]
        budget[0] = 10
        assert driver._send(list(driver._backlog), driver._backlog_runs)
    assert sent == [(b"a", 0), (b"b", ECT0), (b"c", ECT0), (b"d", ECT0), (b"e", 0)]


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
