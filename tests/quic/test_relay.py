"""Tests of the fault-injecting UDP relay (tests/helpers/relay.py), on loopback only."""

from __future__ import annotations

import select
import socket
import struct
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.helpers.relay import (
    Direction,
    DirectionCounters,
    FaultRelay,
    FaultSpec,
    UdpEchoServer,
)

pytestmark = pytest.mark.network

C2S = Direction.CLIENT_TO_SERVER
S2C = Direction.SERVER_TO_CLIENT
QUIET = 0.15  # seconds without traffic after which a transfer is considered over
WAIT = 2.0  # seconds: upper bound of any wait
SIZE = 100


def _has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.fixture
def echo() -> Iterator[UdpEchoServer]:
    with UdpEchoServer() as server:
        yield server


def message(index: int) -> bytes:
    """A datagram numbered ``index``, with a recognisable body."""
    return struct.pack("!I", index) + bytes(range(SIZE - 4))


def number(datagram: bytes) -> int:
    value: int = struct.unpack_from("!I", datagram)[0]
    return value


def exchange(
    relay: FaultRelay, count: int, *, expect: int | None = None, interval: float = 0.0
) -> list[bytes]:
    """Send ``count`` numbered datagrams through ``relay``; collect the echoes.

    Stops once ``expect`` echoes arrived (default ``count``), or after QUIET
    seconds without any, or after WAIT seconds in all.
    """
    expect = count if expect is None else expect
    with socket.socket(
        socket.AF_INET6 if ":" in relay.address[0] else socket.AF_INET, socket.SOCK_DGRAM
    ) as client:
        client.bind((relay.address[0], 0))
        client.setblocking(False)
        for index in range(count):
            client.sendto(message(index), relay.address)
            if interval:
                time.sleep(interval)
        got: list[bytes] = []
        deadline = time.monotonic() + WAIT
        while len(got) < expect and time.monotonic() < deadline:
            if not select.select([client], [], [], QUIET)[0]:
                break
            while True:
                try:
                    got.append(client.recv(65535))
                except BlockingIOError:
                    break
        return got


def settled(relay: FaultRelay) -> tuple[DirectionCounters, DirectionCounters]:
    """Both directions' counters once nothing changes any more (bounded wait)."""
    last = (relay.counters(C2S), relay.counters(S2C))
    for _ in range(int(WAIT / 0.05)):
        time.sleep(0.05)
        now = (relay.counters(C2S), relay.counters(S2C))
        if now == last:
            break
        last = now
    return last


def test_no_faults_everything_echoed(echo: UdpEchoServer) -> None:
    with FaultRelay(echo.address, seed=1) as relay:
        got = exchange(relay, 100)
        c2s, s2c = settled(relay)
    assert got == [message(i) for i in range(100)]
    assert c2s.forwarded == s2c.forwarded == 100
    assert c2s.dropped == s2c.dropped == 0
    assert relay.error is None and not relay.running


def lossy_run(
    echo: UdpEchoServer, seed: int
) -> tuple[list[int], DirectionCounters, DirectionCounters]:
    with FaultRelay(echo.address, seed=seed, loss=0.5) as relay:
        got = exchange(relay, 200, interval=0.0002)
        c2s, s2c = settled(relay)
    return sorted(number(d) for d in got), c2s, s2c


def test_loss_is_reproducible(echo: UdpEchoServer) -> None:
    first, c2s, s2c = lossy_run(echo, 7)
    again, c2s_again, s2c_again = lossy_run(echo, 7)
    other, _, _ = lossy_run(echo, 8)
    assert first == again and (c2s, s2c) == (c2s_again, s2c_again)
    assert first != other
    assert c2s.received == 200 and 0 < c2s.dropped < 200
    assert s2c.received == c2s.forwarded and 0 < s2c.dropped < s2c.received
    assert len(first) == s2c.forwarded


def test_duplication(echo: UdpEchoServer) -> None:
    spec = FaultSpec(duplicate=1.0)
    with FaultRelay(
        echo.address, seed=2, client_to_server=spec, server_to_client=FaultSpec()
    ) as relay:
        got = exchange(relay, 20, expect=40)
        c2s, s2c = settled(relay)
    assert sorted(number(d) for d in got) == sorted(list(range(20)) * 2)
    assert c2s.duplicated == 20 and c2s.forwarded == 40 and s2c.duplicated == 0


def test_corruption_flips_exactly_one_byte(echo: UdpEchoServer) -> None:
    with FaultRelay(
        echo.address, seed=3, client_to_server=FaultSpec(corrupt=1.0), server_to_client=FaultSpec()
    ) as relay:
        got = exchange(relay, 30)
        c2s, _ = settled(relay)
    assert len(got) == 30 and c2s.corrupted == 30
    originals = {message(i) for i in range(30)}
    for datagram in got:
        closest = min(
            originals, key=lambda m: sum(a != b for a, b in zip(m, datagram, strict=True))
        )
        assert sum(a != b for a, b in zip(closest, datagram, strict=True)) == 1


def test_reordering(echo: UdpEchoServer) -> None:
    with FaultRelay(
        echo.address, seed=4, client_to_server=FaultSpec(reorder=0.3), server_to_client=FaultSpec()
    ) as relay:
        got = exchange(relay, 100, interval=0.0002)
        c2s, _ = settled(relay)
    order = [number(d) for d in got]
    assert sorted(order) == list(range(100))
    assert order != list(range(100))
    assert c2s.reordered > 0 and c2s.forwarded == 100


def test_delay(echo: UdpEchoServer) -> None:
    delay = 0.1
    with FaultRelay(
        echo.address, seed=5, client_to_server=FaultSpec(delay=delay), server_to_client=FaultSpec()
    ) as relay:
        start = time.monotonic()
        got = exchange(relay, 5)
        elapsed = time.monotonic() - start
        c2s, _ = settled(relay)
    assert sorted(number(d) for d in got) == list(range(5))
    assert elapsed >= delay
    assert c2s.delayed == 5


def test_delay_with_jitter_on_both_directions(echo: UdpEchoServer) -> None:
    with FaultRelay(echo.address, seed=6, delay=0.02, jitter=0.03) as relay:
        start = time.monotonic()
        got = exchange(relay, 20)
        elapsed = time.monotonic() - start
        c2s, s2c = settled(relay)
    assert sorted(number(d) for d in got) == list(range(20))
    assert elapsed >= 0.04
    assert c2s.delayed == s2c.delayed == 20


def test_blackhole_toggled_at_runtime(echo: UdpEchoServer) -> None:
    with FaultRelay(echo.address, seed=7) as relay:
        assert len(exchange(relay, 10)) == 10
        relay.set_blackhole(True)
        assert exchange(relay, 10) == []
        c2s, s2c = settled(relay)
        assert c2s.dropped == 10 and s2c.forwarded == 10
        relay.set_blackhole(False)
        assert len(exchange(relay, 10)) == 10


def test_blackhole_one_direction_and_delayed_datagrams(echo: UdpEchoServer) -> None:
    with FaultRelay(
        echo.address, seed=8, client_to_server=FaultSpec(delay=0.2), server_to_client=FaultSpec()
    ) as relay:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
            client.bind(("127.0.0.1", 0))
            client.sendto(message(0), relay.address)
            time.sleep(0.05)  # the datagram now waits in the relay
            relay.set_blackhole(True, C2S)
            client.settimeout(0.4)
            with pytest.raises(TimeoutError):
                client.recv(100)
        c2s, _ = settled(relay)
    assert c2s.delayed == 1 and c2s.dropped == 1 and c2s.forwarded == 0


def test_loss_in_one_direction_only(echo: UdpEchoServer) -> None:
    with FaultRelay(echo.address, seed=9, server_to_client=FaultSpec(loss=1.0)) as relay:
        assert exchange(relay, 10) == []
        c2s, s2c = settled(relay)
    assert c2s.forwarded == 10 and echo.echoed >= 10 and s2c.dropped == 10


@pytest.mark.skipif(not _has_ipv6_loopback(), reason="no ::1")
def test_ipv6_loopback() -> None:
    with UdpEchoServer("::1") as server, FaultRelay(server.address, seed=10) as relay:
        assert relay.address[0] == "::1"
        assert exchange(relay, 10) == [message(i) for i in range(10)]


@pytest.mark.parametrize("host", ["192.0.2.1", "10.0.0.1", "::ffff:192.0.2.1", "2001:db8::1"])
def test_only_loopback_targets(host: str) -> None:
    with pytest.raises(ValueError, match="loopback"):
        FaultRelay((host, 9), seed=0)
    with pytest.raises(ValueError, match="loopback"):
        UdpEchoServer(host)


@pytest.mark.parametrize(
    "kwargs", [{"loss": 1.5}, {"reorder": -0.1}, {"delay": -1.0}, {"delay": 4.0, "jitter": 2.0}]
)
def test_bad_specs_rejected(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="FaultSpec"):
        FaultSpec(**kwargs)


def test_stop_is_bounded_and_idempotent(echo: UdpEchoServer) -> None:
    relay = FaultRelay(echo.address, seed=11, delay=1.0).start()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
        client.sendto(message(0), relay.address)
        start = time.monotonic()
        relay.stop()
        relay.stop()
        assert time.monotonic() - start < 1.0
    assert not relay.running and relay.error is None
