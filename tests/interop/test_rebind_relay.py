"""tests/helpers/rebind_relay.py on its own: it moves the source address and drops what
still goes to the old one, as a NAT with a new mapping does (RFC 9000 §9.3)."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest

from tests.helpers.rebind_relay import RebindRelay, is_retry_v1

pytestmark = pytest.mark.network

WAIT = 5.0  # seconds for a datagram on loopback


def udp(host: str = "127.0.0.1") -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((host, 0))
    sock.settimeout(WAIT)
    return sock


@contextmanager
def sockets(count: int) -> Iterator[list[socket.socket]]:
    opened = [udp() for _ in range(count)]
    try:
        yield opened
    finally:
        for sock in opened:
            sock.close()


def wait_until(predicate: Callable[[], bool]) -> None:
    deadline = time.monotonic() + WAIT
    while not predicate():
        assert time.monotonic() < deadline, "relay did not get there in time"
        time.sleep(0.01)


@pytest.mark.parametrize("new_host", [None, "127.0.0.2"])
def test_rebind_moves_the_source_and_drops_the_old_mapping(new_host: str | None) -> None:
    with sockets(2) as (client, target):
        relay_target = target.getsockname()
        with RebindRelay(relay_target, rebind_after=2, rebind_host=new_host) as relay:
            sources = []
            for i in range(3):
                client.sendto(b"up%d" % i, relay.address)
                data, source = target.recvfrom(100)
                assert data == b"up%d" % i
                sources.append(source)
            assert sources[0] == sources[1] != sources[2]
            assert sources[2][0] == (new_host or "127.0.0.1")
            assert relay.upstream_addresses == [sources[0], sources[2]]
            assert (relay.rebinds, relay.rebound_at) == (1, [2])

            target.sendto(b"to the old mapping", sources[0])
            wait_until(lambda: relay.dropped_to_old == 1)
            target.sendto(b"down", sources[2])
            assert client.recvfrom(100) == (b"down", relay.address)
            wait_until(lambda: relay.to_client == 1)


def test_a_second_client_is_dropped_and_manual_rebind_works() -> None:
    with sockets(3) as (client, other, target), RebindRelay(target.getsockname()) as relay:
        client.sendto(b"first", relay.address)
        _, before = target.recvfrom(100)
        other.sendto(b"intruder", relay.address)
        wait_until(lambda: relay.foreign_dropped == 1)
        relay.rebind()
        client.sendto(b"second", relay.address)
        data, after = target.recvfrom(100)
        assert data == b"second"
        assert after != before
        assert relay.rebinds == 1


def test_retry_detection() -> None:
    version_1 = (1).to_bytes(4, "big")
    assert is_retry_v1(bytes([0xF0]) + version_1 + b"rest")
    assert not is_retry_v1(bytes([0xC0]) + version_1)  # an Initial
    assert not is_retry_v1(bytes([0xF0]) + (0x6B3343CF).to_bytes(4, "big"))  # v2's numbering
    assert not is_retry_v1(bytes([0x40, 1, 2, 3, 4]))  # short header


def test_loopback_only() -> None:
    with pytest.raises(ValueError, match="loopback"):
        RebindRelay(("192.0.2.1", 443))
