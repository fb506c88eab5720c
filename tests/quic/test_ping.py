"""``ping()`` on a QUIC connection sends a PING whose acknowledgement is a new RTT
sample (RFC 9000 §19.2, RFC 9002 §5.1).

It used to send nothing (QUIC "samples from every acknowledgement"), so on an idle
connection, where nothing is acknowledged, a user asking for a fresh RTT got none.
"""

from __future__ import annotations

import pytest

from mstls.session import Session
from tests.quic.pair import Pair


def _quiet(pair: Pair) -> None:
    for _ in range(1000):
        if not pair.in_flight:
            return
        pair.step()
    raise AssertionError("the pair never went quiet")


def test_ping_on_an_idle_connection_gives_a_new_rtt_sample() -> None:
    pair = Pair()
    pair.handshake()
    _quiet(pair)
    client = pair.client
    sent = client.packets_sent
    before = client.recovery.rtt.latest_rtt
    pair.latency = 0.05  # the path got slower while the connection was idle
    client.ping()
    assert client.datagrams_to_send(pair.now) or client.packets_sent > sent
    pair.run_until(lambda: client.recovery.rtt.latest_rtt != before, max_time=1.0)
    assert client.recovery.rtt.latest_rtt == pytest.approx(2 * pair.latency, abs=0.03)


def test_ping_is_sent_once() -> None:
    pair = Pair()
    pair.handshake()
    _quiet(pair)
    client = pair.client
    client.ping()
    client.ping()
    first = client.datagrams_to_send(pair.now)
    assert first
    assert not client.ping_pending
    assert not client.datagrams_to_send(pair.now)


def test_session_ping_reaches_the_quic_connection() -> None:
    pair = Pair()
    pair.handshake()
    _quiet(pair)
    Session(pair.client, transport="quic").ping()
    assert pair.client.ping_pending


def test_ping_after_close_sends_nothing() -> None:
    pair = Pair()
    pair.handshake()
    pair.client.close(now=pair.now)
    pair.client.ping()
    assert not pair.client.ping_pending
