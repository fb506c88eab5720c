"""DPLPMTUD black holes and EMSGSIZE on an in-memory path that shrinks (RFC 8899 §4.3, §5.2).

The path first carries 1500-byte datagrams, so probing raises the PMTU above the
base; then it shrinks to 1280 bytes mid-transfer and silently drops anything
larger (both directions).  The transfer must complete within bounded virtual
time, with the PMTU at or below the new size.
"""

from __future__ import annotations

from dataclasses import dataclass

from mstls.quic.mtu import BLACK_HOLE_LOSSES, PathMtu

from .pair import Pair, client_config, server_config
from .test_connection_memory import transfer

ONE_WAY = 0.010
WIDE = 1500
NARROW = 1280
#: Virtual seconds the shrunk path may take to finish the transfer: far below the
#: 30 s idle timeout a connection without black-hole detection dies of.
BOUND = 8.0


class ShrinkingPath:
    """Drops datagrams above ``limit`` once ``shrunk``; may report them as EMSGSIZE."""

    def __init__(self, *, emsgsize: bool = False) -> None:
        self.limit = WIDE
        self.shrunk_at: float | None = None
        self.pair: Pair | None = None
        self.emsgsize = emsgsize
        self.dropped = 0

    def shrink(self, now: float) -> None:
        self.limit = NARROW
        self.shrunk_at = now

    def __call__(self, data: bytes, to_server: bool) -> bytes | None:
        if len(data) <= self.limit:
            return data
        self.dropped += 1
        if self.emsgsize and to_server:
            # The client's own interface shrank: its socket refuses the datagram.
            assert self.pair is not None
            self.pair.client.on_datagram_too_big(len(data), self.pair.now)
        return None


def _pair(path: ShrinkingPath, **client_kw: object) -> Pair:
    pair = Pair(
        latency=ONE_WAY,
        client=client_config(pmtu_max=WIDE, **client_kw),
        server=server_config(pmtu_max=WIDE, **client_kw),
        tamper=path,
    )
    path.pair = pair
    pair.handshake()
    pair.run_until(lambda: pair.client.mtu.current > NARROW and pair.server.mtu.current > NARROW)
    return pair


def _shrink_during_transfer(pair: Pair, path: ShrinkingPath, size: int) -> None:
    """Transfer ``size`` bytes; the path shrinks once the server received a quarter."""
    original = pair.step

    def step() -> bool:
        if path.shrunk_at is None and pair.server.bytes_received > size // 4:
            path.shrink(pair.now)
        return original()

    pair.step = step  # type: ignore[method-assign]
    transfer(pair, size)


def test_the_path_mtu_shrinks_mid_transfer() -> None:
    path = ShrinkingPath()
    pair = _pair(path)
    assert pair.client.mtu.current == WIDE
    _shrink_during_transfer(pair, path, 2 << 20)
    assert path.shrunk_at is not None and path.dropped > 0
    assert pair.now - path.shrunk_at < BOUND
    client = pair.client
    assert client.mtu.current <= NARROW
    assert client.mtu.black_holes >= 1
    assert client.recovery.congestion.max_datagram_size == client.mtu.current
    assert client.is_established


def test_after_a_black_hole_the_search_restarts_at_the_raise_interval() -> None:
    path = ShrinkingPath()
    pair = _pair(path, pmtu_raise_interval=5.0)
    _shrink_during_transfer(pair, path, 1 << 20)
    client = pair.client
    assert client.mtu.current == client.mtu.base
    # Before the raise interval, sending does not probe.
    transfer(pair, 128 << 10)
    assert client.mtu.current == client.mtu.base
    pair.run_until(lambda: not pair.in_flight and not client.recovery.bytes_in_flight)
    pair.now += 5.0  # idle past the raise interval (the idle timeout is 30 s)
    # The path carries 1280 now: the restarted search finds a size between the two.
    transfer(pair, 1 << 20)
    assert client.mtu.base < client.mtu.current <= NARROW
    assert client.mtu.black_holes == 1
    assert client.is_established


def test_emsgsize_falls_back_and_resends_smaller() -> None:
    path = ShrinkingPath(emsgsize=True)
    pair = _pair(path)
    _shrink_during_transfer(pair, path, 1 << 20)
    assert path.shrunk_at is not None
    assert pair.now - path.shrunk_at < BOUND
    assert pair.client.mtu.current == pair.client.mtu.base
    assert pair.client.mtu.black_holes == 1


def test_a_refused_probe_lowers_the_bound_at_once() -> None:
    mtu = PathMtu(1200, 9000)
    size = mtu.probe_size(0.0)
    assert size == 9000
    mtu.on_probe_sent(size)
    assert mtu.on_too_big(size, 0.0) is False  # a probe: no black hole
    mtu.on_probe_lost(size, 0.0)
    assert mtu.current == 1200
    following = mtu.probe_size(0.0)
    assert following is not None and following < 9000


@dataclass
class _Sent:
    size: int
    sent_time: float
    ack_eliciting: bool = True
    is_mtu_probe: bool = False


def _raised(size: int = 1500) -> PathMtu:
    mtu = PathMtu(1200, size)
    mtu.on_probe_sent(size)
    assert mtu.on_probe_acked(size)
    return mtu


def test_congestion_losses_between_acked_large_packets_are_no_black_hole() -> None:
    mtu = _raised()
    for i in range(10 * BLACK_HOLE_LOSSES):
        t = float(i)
        lost = [_Sent(1500, t)]
        acked = [_Sent(1500, t + 0.5), _Sent(300, t + 0.6)]
        assert not mtu.on_ack(acked, lost, t + 1)
    assert mtu.current == 1500


def test_large_losses_without_a_small_packet_through_are_no_black_hole() -> None:
    mtu = _raised()
    lost = [_Sent(1500, float(i)) for i in range(3 * BLACK_HOLE_LOSSES)]
    assert not mtu.on_ack([], lost, 10.0)
    assert mtu.current == 1500
    # ... until a base-size packet sent after them is acknowledged.
    assert mtu.on_ack([_Sent(1200, 11.0)], [], 12.0)
    assert mtu.current == 1200


def test_lost_probes_and_small_packets_are_not_suspicious() -> None:
    mtu = _raised()
    lost = [_Sent(1500, float(i), is_mtu_probe=True) for i in range(10)]
    lost += [_Sent(1000, float(i)) for i in range(10)]
    assert not mtu.on_ack([_Sent(900, 20.0)], lost, 21.0)
    assert mtu.current == 1500


def test_after_a_pto_datagrams_are_base_sized() -> None:
    mtu = _raised()
    assert mtu.datagram_size(0) == 1500
    assert mtu.datagram_size(1) == 1200


def test_the_endpoint_hands_emsgsize_to_the_connection_that_sent_it() -> None:
    path = ShrinkingPath()
    pair = _pair(path)
    server = pair.server
    assert server.mtu.current == WIDE
    sid = server.streams.open_stream()
    server.streams.write(sid, b"x" * 100_000, fin=True)
    pair.endpoint.touch(server)
    out = pair.endpoint.datagrams_to_send(pair.now)
    big = [(d, a) for d, a in out if len(d) > NARROW]
    assert big
    data, addr = big[0]
    pair.endpoint.datagram_too_big(b"\x40" + b"\x00" * 40, addr, pair.now)  # no such CID
    assert server.mtu.current == WIDE
    pair.endpoint.datagram_too_big(data, addr, pair.now)
    assert server.mtu.current == server.mtu.base
    # What no longer fits is sent again in base-size datagrams, at once.
    again = pair.endpoint.datagrams_to_send(pair.now)
    assert again and all(len(d) <= server.mtu.base for d, _ in again)


def test_random_loss_is_no_black_hole() -> None:
    """5 % random loss of every size: losses interleave with acknowledged large
    packets, so the PMTU stays (no false black hole)."""
    pair = Pair(
        loss=0.05,
        seed=2,
        client=client_config(pmtu_max=WIDE),
        server=server_config(pmtu_max=WIDE),
    )
    pair.handshake()
    transfer(pair, 2 << 20)
    assert pair.client.stats(pair.now).packets_lost > 20
    assert pair.client.mtu.black_holes == 0


def test_burst_losses_are_no_black_hole() -> None:
    """A queue overflowing now and then: 12 datagrams in a row dropped every 300."""
    seen = {"n": 0}

    def bursts(data: bytes, to_server: bool) -> bytes | None:
        if not to_server:
            return data
        seen["n"] += 1
        return None if seen["n"] % 300 < 12 and seen["n"] > 300 else data

    pair = Pair(
        latency=ONE_WAY,
        client=client_config(pmtu_max=WIDE),
        server=server_config(pmtu_max=WIDE),
        tamper=bursts,
    )
    pair.handshake()
    transfer(pair, 4 << 20)
    assert pair.client.stats(pair.now).packets_lost > 50
    assert pair.client.mtu.black_holes == 0
    assert pair.client.mtu.current == WIDE


def test_probes_sent_before_a_black_hole_are_ignored() -> None:
    mtu = PathMtu(1200, 1500, raise_interval=5.0)
    mtu.on_probe_sent(1500)
    assert mtu.on_probe_acked(1500, 0.0)
    mtu.on_probe_sent(1500)  # e.g. a re-probe still in flight at the fallback
    assert mtu.on_too_big(1500, 1.0)  # an ordinary packet refused: black hole at t=1
    assert not mtu.on_probe_acked(1500, 0.5)  # sent before the fallback: ignored
    mtu.on_probe_lost(1500, 0.5)
    assert mtu.current == 1200
    assert mtu.probe_size(2.0) is None  # the raise interval first
    assert mtu.probe_size(6.0) == 1500  # then the search restarts at the maximum
