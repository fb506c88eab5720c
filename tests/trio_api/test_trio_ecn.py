"""ECN through the trio UDP drivers on 127.0.0.1 (RFC 9000 §13.4): both ends mark,
count and validate; the public stats show it."""

from __future__ import annotations

import pytest
import trio

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
