"""The bound on pending QUIC handshakes at the server endpoint (issue 11).

Stuck clients (a first flight, then silence) fill the bound; each further
handshake sheds the oldest pending one, silently, on a virtual clock.
"""

from __future__ import annotations

import gc

import pytest

from mstls.core.admission import SHED
from mstls.core.lifecycle import State
from mstls.exceptions import ConfigurationError, HandshakeRefused
from mstls.quic.endpoint import ServerEndpoint
from mstls.session import Session
from tests.helpers.cycles import Survivors
from tests.quic.pair import server_config
from tests.quic.test_admission import Net, established

BOUND = 4
EXTRA = 3


def test_beyond_the_bound_the_oldest_pending_handshakes_are_shed() -> None:
    net = Net(ServerEndpoint(server_config(), max_pending_handshakes=BOUND))
    endpoint = net.endpoint
    for i in range(BOUND + EXTRA):
        net.now += 0.01
        net.stuck((f"192.0.2.{i + 1}", 1000))
    assert endpoint.handshakes_in_progress == BOUND
    alive = [c.peer_address for c in endpoint.connections]
    assert alive == [(f"192.0.2.{i + 1}", 1000) for i in range(EXTRA, BOUND + EXTRA)]
    assert endpoint.shed_handshakes == EXTRA
    assert endpoint.refused_initials == EXTRA
    shed = list(endpoint.terminated)
    assert [c.peer_address for c in shed] == [(f"192.0.2.{i + 1}", 1000) for i in range(EXTRA)]
    assert all(c.state is State.TERMINATED for c in shed)
    assert endpoint.datagrams_to_send(net.now) == []  # silently: no CONNECTION_CLOSE

    # The shed connection fails its handshake with the cause the metrics read.
    session = Session(shed[0], transport="udp")
    session.pump_events()
    assert session.failed
    error = session.channel.exception()  # what a listener records for its metrics
    assert isinstance(error, HandshakeRefused)
    assert error.cause == SHED

    # A real client still gets in (shedding one more stuck handshake) and completes.
    client = net.client(("203.0.113.9", 4433))
    net.pump()
    assert established(client)
    assert endpoint.shed_handshakes == EXTRA + 1
    assert endpoint.handshakes_in_progress == BOUND - 1  # the client's completed


def test_the_bound_is_validated_and_can_be_lowered() -> None:
    with pytest.raises(ConfigurationError, match="max_pending_handshakes"):
        ServerEndpoint(server_config(), max_pending_handshakes=0)
    net = Net(ServerEndpoint(server_config()))
    endpoint = net.endpoint
    for i in range(BOUND):
        net.stuck((f"192.0.2.{i + 1}", 1000))
    with pytest.raises(ConfigurationError):
        endpoint.max_pending_handshakes = True
    endpoint.max_pending_handshakes = 2  # a reload: applies at the next handshake
    net.stuck(("198.51.100.1", 1000))
    assert endpoint.handshakes_in_progress == 2
    assert endpoint.shed_handshakes == BOUND - 1


def test_a_timed_out_or_shed_handshake_is_freed_without_the_cycle_collector() -> None:
    """Issue 11: a pending handshake's state goes when it ends, by reference counting.

    A reference cycle through the connection (its TLS handshake held a bound method
    of it) left every failed handshake to the cyclic collector, which runs rarely in
    a large heap: an Initial flood's timeouts kept the daemon's memory up."""
    net = Net(ServerEndpoint(server_config(), max_pending_handshakes=2))
    endpoint = net.endpoint
    for i in range(3):  # the third sheds the first
        net.stuck((f"192.0.2.{i + 1}", 1000))
    handshakes = [*endpoint.terminated, *endpoint.connections]
    assert len(handshakes) == 3
    survivors = Survivors(*handshakes)
    del handshakes
    endpoint.terminated.clear()
    endpoint.accepted.clear()
    endpoint.pop_changed()
    enabled = gc.isenabled()
    gc.disable()
    try:
        for _ in range(40):  # past the handshake timeout
            net.now += 1.0
            endpoint.handle_timer(net.now)
            endpoint.datagrams_to_send(net.now)
        assert not endpoint.connections
        endpoint.terminated.clear()
        endpoint.pop_changed()
        assert not survivors.alive()
    finally:
        if enabled:
            gc.enable()
