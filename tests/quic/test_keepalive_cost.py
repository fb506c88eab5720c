"""Issue 11: the work one keep-alive PING costs the server, counted (not timed).

200 idle connections (client keep-alive 5 s) on a virtual clock, measured with
the regression tool :mod:`bench.keepalive_cost`.  Per PING the server endpoint
asks the connection for output once, reads its deadline once, is never woken by
a timer for it, and sends the ACK at once (RFC 9000 §13.2.1 allows an ACK
sooner than max_ack_delay).  Before: three output calls, five deadline reads
and a delayed-ACK timer wake-up 25 ms later.
"""

from __future__ import annotations

import pytest

import mstls
from bench.keepalive_cost import KEEPALIVE, Meter, hold
from mstls.core.recovery import PacketNumberSpace
from mstls.quic import sending
from mstls.quic.endpoint import ServerEndpoint
from tests.quic.many import Many

CONNS = 200


@pytest.fixture(scope="module")
def idle() -> Many:
    return hold(CONNS)


@pytest.fixture
def meter(idle: Many) -> Meter:
    meter = Meter(idle.endpoint)
    meter.install()
    try:
        idle.run_for(2 * KEEPALIVE)
    finally:
        meter.uninstall()
    return meter


def test_every_connection_pinged(meter: Meter) -> None:
    assert meter.datagrams_in == 2 * CONNS  # one PING per connection per interval
    assert meter.datagrams_out == meter.datagrams_in  # one ACK each


def test_one_output_call_and_one_deadline_read_per_ping(meter: Meter) -> None:
    assert meter.conn_sends == meter.datagrams_in
    assert meter.timer_reads == meter.datagrams_in


def test_no_timer_wakeup_and_the_ack_at_once(meter: Meter) -> None:
    assert meter.timer_wakeups == 0
    assert len(meter.ack_delays) == meter.datagrams_in
    assert max(meter.ack_delays) == 0.0


def test_stream_data_is_still_acknowledged_after_max_ack_delay() -> None:
    """Only PING-only packets skip the delay: a request's STREAM frame is
    acknowledged max_ack_delay later (or with the response)."""
    many = hold(2)
    client = many.clients[0]
    endpoint: ServerEndpoint = many.endpoint
    client.streams.write(client.streams.open_stream(), b"x", fin=False)
    endpoint.pop_changed()
    for data in client.datagrams_to_send(many.now):
        endpoint.receive_datagram(data, many._client_addr(client), many.now)
    (server,) = endpoint.pop_changed()
    assert endpoint.datagrams_to_send(many.now) == []  # the ACK waits
    acks = server.spaces[PacketNumberSpace.APPLICATION].acks
    assert acks.ack_deadline(server.ack_delay) == pytest.approx(many.now + server.ack_delay)
    assert endpoint.get_timer() == pytest.approx(many.now + server.ack_delay)


@pytest.mark.skipif(
    mstls.compiled,
    reason="counts calls of a method inside the connection, which the compiled build "
    "binds at compile time (no patch reaches it); the pure build's run of this test counts it",
)
def test_one_datagram_assembly_per_ping(idle: Many, monkeypatch: pytest.MonkeyPatch) -> None:
    """After the ACK nothing more is owed: no second, empty pass of the datagram
    builder per PING (sending.py stops once ``_may_send`` says so)."""
    passes = []
    original = sending.SendingMixin._next_datagram

    def counted(self: sending.SendingMixin, now: float) -> bytes:
        passes.append(1)
        return original(self, now)

    monkeypatch.setattr(sending.SendingMixin, "_next_datagram", counted)
    meter = Meter(idle.endpoint)
    meter.install()
    try:
        idle.run_for(KEEPALIVE)
    finally:
        meter.uninstall()
    # The clients' assemblies count too: one PING each, one ACK back each.
    assert meter.datagrams_in == CONNS
    assert len(passes) == 2 * CONNS
