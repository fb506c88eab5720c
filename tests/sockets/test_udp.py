"""Tests of the batched UDP layer (mstls.io.udp) over 127.0.0.1 and ::1 only.

Run as a script (``python -m tests.sockets.test_udp``) to print datagram rates of
the plain path against GSO/GRO; the tests themselves assert no timings.
"""

from __future__ import annotations

import errno
import random
import select
import socket
import struct
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, cast

import pytest

from mstls.io.udp import (
    IP_MTU_DISCOVER,
    IP_PMTUDISC_PROBE,
    READ_ROOM,
    SOL_UDP,
    UDP_SEGMENT,
    Address,
    UdpCapabilities,
    detect_capabilities,
    new_receive_buffer,
    open_udp_socket,
    receive_datagrams,
    send_datagrams,
    set_gro,
)

pytestmark = pytest.mark.network

LINUX = sys.platform.startswith("linux")
linux_only = pytest.mark.skipif(not LINUX, reason="GSO/GRO and socket options are Linux-only")
WAIT = 2.0  # seconds: upper bound for loopback delivery in any test
POLL = 0.01


def _has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


Pair = tuple[socket.socket, UdpCapabilities, socket.socket, UdpCapabilities]


@pytest.fixture
def make_pair() -> Iterator[Callable[..., Pair]]:
    """A factory of (sender, caps, receiver, caps) on one loopback address; closes them."""
    opened: list[socket.socket] = []

    def make(*, gso: bool = True, gro: bool = True, host: str = "127.0.0.1") -> Pair:
        rx = open_udp_socket(host, 0, gro=gro)
        tx = open_udp_socket(host, 0, gro=False)
        opened.extend((rx, tx))
        tx_caps = detect_capabilities(tx)
        tx_caps.gso = tx_caps.gso and gso
        return tx, tx_caps, rx, detect_capabilities(rx)

    yield make
    for sock in opened:
        sock.close()


def receive_all(
    sock: socket.socket, caps: UdpCapabilities, expected: int, *, wait: float = WAIT
) -> list[tuple[bytes, Address]]:
    """Receive until ``expected`` datagrams arrived or ``wait`` ran out (copies each one)."""
    buffer = new_receive_buffer()
    got: list[tuple[bytes, Address]] = []
    deadline = time.monotonic() + wait
    while len(got) < expected:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        select.select([sock], [], [], min(remaining, 0.05))
        got += [(bytes(d), a) for d, a in receive_datagrams(sock, 4096, caps, buffer)]
    return got


#: Bytes sent before the receiver drains: well under a default 208 KiB receive buffer.
CHUNK_BYTES = 64 * 1024


def transfer(
    tx: socket.socket,
    tx_caps: UdpCapabilities,
    rx: socket.socket,
    rx_caps: UdpCapabilities,
    data: Sequence[bytes],
) -> list[tuple[bytes, Address]]:
    """Send ``data`` in chunks, draining the receiver after each, so no buffer overflows."""
    got: list[tuple[bytes, Address]] = []
    index = 0
    while index < len(data):
        end, total = index, 0
        while end < len(data) and (end == index or total + len(data[end]) <= CHUNK_BYTES):
            total += len(data[end])
            end += 1
        assert send_datagrams(tx, data[index:end], rx.getsockname(), tx_caps) == end - index
        got += receive_all(rx, rx_caps, end - index)
        index = end
    return got


def payloads(sizes: Sequence[int], seed: int = 1) -> list[bytes]:
    """Distinct contents: a per-datagram index prefix, then seeded random bytes."""
    rng = random.Random(seed)
    out = []
    for index, size in enumerate(sizes):
        body = struct.pack("!I", index) + rng.randbytes(max(size - 4, 0))
        out.append(body[:size])
    return out


COMBINATIONS = [(True, True), (True, False), (False, True), (False, False)]


# --- capabilities and socket options -----------------------------------------------


@linux_only
def test_capabilities_detected_and_options_set() -> None:
    with open_udp_socket("127.0.0.1", 0) as sock:
        caps = detect_capabilities(sock)
        assert caps.gso and caps.gro
        assert caps.recv_buffer > 0 and caps.send_buffer > 0
        assert sock.getsockopt(socket.IPPROTO_IP, IP_MTU_DISCOVER) == IP_PMTUDISC_PROBE
        assert not sock.getblocking()
        assert set_gro(sock, caps, False) is False and caps.gro is False
        assert set_gro(sock, caps, True) is True


def test_plain_capabilities_and_non_udp_socket() -> None:
    assert UdpCapabilities.plain().gso is False and UdpCapabilities.plain().gro is False
    left, right = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    with left, right:
        caps = detect_capabilities(left)
        assert not caps.gso and not caps.gro


def test_open_without_gro() -> None:
    with open_udp_socket("127.0.0.1", 0, gro=False) as sock:
        assert detect_capabilities(sock).gro is False


# --- round trips ----------------------------------------------------------------------


@pytest.mark.parametrize(("gso", "gro"), COMBINATIONS)
def test_batch_roundtrip(make_pair: Callable[..., Pair], gso: bool, gro: bool) -> None:
    tx, tx_caps, rx, rx_caps = make_pair(gso=gso, gro=gro)
    data = payloads([1200] * 200)
    got = transfer(tx, tx_caps, rx, rx_caps, data)
    assert [d for d, _ in got] == data
    assert {a for _, a in got} == {tx.getsockname()}
    assert tx_caps.counters.sent == rx_caps.counters.received == len(data)
    batched = LINUX and gso
    assert (tx_caps.counters.gso_batches > 0) is batched
    assert (rx_caps.counters.gro_batches > 0) is (batched and gro)


@pytest.mark.parametrize(("gso", "gro"), COMBINATIONS)
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_mixed_sizes_preserved(
    make_pair: Callable[..., Pair], gso: bool, gro: bool, seed: int
) -> None:
    tx, tx_caps, rx, rx_caps = make_pair(gso=gso, gro=gro)
    rng = random.Random(seed)
    sizes: list[int] = []
    while len(sizes) < 300:  # runs of equal sizes, some shorter tails, odd sizes
        size = rng.choice([1, 20, 1200, 1200, 1350, 1472, 9000, 30000])
        sizes += [size] * rng.randint(1, 70)
        if rng.random() < 0.5:
            sizes.append(rng.randint(0, size))
    data = payloads(sizes, seed)
    got = transfer(tx, tx_caps, rx, rx_caps, data)
    assert [len(d) for d, _ in got] == sizes
    assert [d for d, _ in got] == data


@linux_only
def test_gso_grouping_rules(make_pair: Callable[..., Pair]) -> None:
    tx, tx_caps, rx, rx_caps = make_pair()
    # 60 x 1200 bytes: 54 fit in 65507 bytes, then 6.
    assert send_datagrams(tx, payloads([1200] * 60), rx.getsockname(), tx_caps) == 60
    assert tx_caps.counters.gso_batches == 2
    # A shorter datagram ends a group; a longer one starts a new one.
    sizes = [1000, 1000, 1000, 500, 1000, 1000, 1200, 7]
    assert send_datagrams(tx, payloads(sizes), rx.getsockname(), tx_caps) == len(sizes)
    assert tx_caps.counters.gso_batches == 2 + 3
    longer = payloads([100, 100, 101, 101])  # one byte longer: a new group
    assert send_datagrams(tx, longer, rx.getsockname(), tx_caps) == 4
    assert tx_caps.counters.gso_batches == 5 + 2
    tx_caps.max_segments = 4
    assert send_datagrams(tx, payloads([100] * 10), rx.getsockname(), tx_caps) == 10
    assert tx_caps.counters.gso_batches == 7 + 3
    got = [d for d, _ in receive_all(rx, rx_caps, 60 + len(sizes) + 4 + 10)]
    assert [len(d) for d in got] == [1200] * 60 + sizes + [100, 100, 101, 101] + [100] * 10
    assert got[60 + len(sizes) : 60 + len(sizes) + 4] == longer


@linux_only
def test_gro_split_sizes_contents_and_views(make_pair: Callable[..., Pair]) -> None:
    tx, _, rx, rx_caps = make_pair()
    data = payloads([1200] * 10 + [333])
    tx.sendmsg(data, [(SOL_UDP, UDP_SEGMENT, struct.pack("=H", 1200))], 0, rx.getsockname())
    buffer = new_receive_buffer()
    got: list[tuple[memoryview, Address]] = []
    for _ in range(int(WAIT / POLL)):
        got = receive_datagrams(rx, 100, rx_caps, buffer)
        if got:
            break
        time.sleep(POLL)
    assert [bytes(d) for d, _ in got] == data
    assert rx_caps.counters.gro_batches == 1
    assert all(d.obj is buffer for d, _ in got)  # views of the caller's buffer, no copies


def test_max_datagrams_and_small_buffer(make_pair: Callable[..., Pair]) -> None:
    tx, tx_caps, rx, rx_caps = make_pair(gso=False, gro=False)
    data = payloads([1200] * 20)
    assert send_datagrams(tx, data, rx.getsockname(), tx_caps) == 20
    select.select([rx], [], [], WAIT)
    first = receive_datagrams(rx, 5, rx_caps, new_receive_buffer())
    assert len(first) == 5
    # Room for reads at offsets 0, 1200 and 2400 only: the call stops, nothing is lost.
    small = bytearray(READ_ROOM + 3000)
    second = [bytes(d) for d, _ in receive_datagrams(rx, 100, rx_caps, small)]
    assert len(second) == 3
    rest = receive_all(rx, rx_caps, 12)
    assert [bytes(d) for d, _ in first] + second + [d for d, _ in rest] == data


@pytest.mark.skipif(not _has_ipv6_loopback(), reason="no ::1")
@pytest.mark.parametrize(("gso", "gro"), [(True, True), (False, False)])
def test_ipv6_loopback(make_pair: Callable[..., Pair], gso: bool, gro: bool) -> None:
    tx, tx_caps, rx, rx_caps = make_pair(gso=gso, gro=gro, host="::1")
    data = payloads([1200] * 70 + [40000, 12])
    assert [d for d, _ in transfer(tx, tx_caps, rx, rx_caps, data)] == data


def test_nothing_to_receive(make_pair: Callable[..., Pair]) -> None:
    _, _, rx, rx_caps = make_pair()
    assert receive_datagrams(rx, 10, rx_caps, new_receive_buffer()) == []


# --- would block ----------------------------------------------------------------------


class FakeSocket:
    """Stands in for a socket: fails chosen calls with chosen errors, records the rest."""

    def __init__(self, failures: dict[int, int], *, sendmsg_error: int | None = None) -> None:
        self.failures = failures  # call number -> errno, for send/sendto
        self.sendmsg_error = sendmsg_error
        self.calls = 0
        self.sendmsg_calls = 0
        self.sent: list[bytes] = []
        self.batches: list[list[bytes]] = []

    def _send(self, data: Any) -> int:
        self.calls += 1
        code = self.failures.get(self.calls)
        if code is not None:
            raise OSError(code, errno.errorcode.get(code, "error"))
        self.sent.append(bytes(data))
        return len(data)

    def sendto(self, data: Any, addr: Any) -> int:
        return self._send(data)

    def send(self, data: Any) -> int:
        return self._send(data)

    def sendmsg(self, buffers: Any, ancillary: Any = (), flags: int = 0, addr: Any = None) -> int:
        self.sendmsg_calls += 1
        if self.sendmsg_error is not None:
            raise OSError(self.sendmsg_error, "sendmsg")
        self.batches.append([bytes(b) for b in buffers])
        return sum(len(b) for b in buffers)


def _fake(sock: FakeSocket) -> socket.socket:
    return cast(socket.socket, sock)


@pytest.mark.parametrize("code", [errno.EAGAIN, errno.ENOBUFS])
def test_would_block_returns_count(code: int) -> None:
    fake = FakeSocket({4: code})
    caps = UdpCapabilities.plain()
    data = payloads([100] * 10)
    assert send_datagrams(_fake(fake), data, ("127.0.0.1", 9), caps) == 3
    assert caps.counters.send_would_block == 1 and caps.counters.sent == 3
    # The caller retries the rest later.
    assert send_datagrams(_fake(fake), data[3:], ("127.0.0.1", 9), caps) == 7
    assert fake.sent == data


def test_would_block_on_gso_batch() -> None:
    fake = FakeSocket({}, sendmsg_error=errno.EAGAIN)
    caps = UdpCapabilities(gso=True)
    assert send_datagrams(_fake(fake), payloads([100] * 10), ("127.0.0.1", 9), caps) == 0
    assert caps.counters.send_would_block == 1 and caps.gso


def test_fatal_error_propagates() -> None:
    fake = FakeSocket({1: errno.EBADF})
    with pytest.raises(OSError):
        send_datagrams(_fake(fake), [b"x"], ("127.0.0.1", 9), UdpCapabilities.plain())


def test_gso_eio_disables_gso_and_resends_plainly() -> None:
    fake = FakeSocket({}, sendmsg_error=errno.EIO)
    caps = UdpCapabilities(gso=True)
    data = payloads([100] * 10 + [200] * 10)
    assert send_datagrams(_fake(fake), data, ("127.0.0.1", 9), caps) == 20
    assert not caps.gso and caps.counters.gso_fallbacks == 1
    assert fake.sent == data and fake.sendmsg_calls == 1


def test_gso_einval_falls_back_for_the_group_only() -> None:
    fake = FakeSocket({}, sendmsg_error=errno.EINVAL)
    caps = UdpCapabilities(gso=True)
    assert send_datagrams(_fake(fake), payloads([100] * 10), ("127.0.0.1", 9), caps) == 10
    assert caps.gso and len(fake.sent) == 10


def test_eagain_with_a_tiny_send_buffer() -> None:
    """A real EAGAIN from the kernel.

    Loopback UDP never blocks the sender (the kernel releases each datagram's
    send-buffer charge as soon as the loopback device takes it), so the kernel's
    EAGAIN is produced by a datagram socket pair whose receiver does not read.
    """
    left, right = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    with left, right:
        left.setblocking(False)
        right.setblocking(False)
        left.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        caps = UdpCapabilities.plain()
        data = payloads([1200] * 500)
        sent = send_datagrams(left, data, None, caps)
        assert 0 < sent < len(data)
        assert caps.counters.send_would_block == 1
        for expected in data[:sent]:
            assert right.recv(2000) == expected
        assert send_datagrams(left, data[sent:], None, caps) > 0


@pytest.mark.parametrize("gso", [True, False])
def test_udp_tiny_send_buffer_loses_nothing(make_pair: Callable[..., Pair], gso: bool) -> None:
    tx, tx_caps, rx, rx_caps = make_pair(gso=gso)
    tx.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1)
    data = payloads([1200] * 50)
    index = 0
    for _ in range(1000):
        if index == len(data):
            break
        index += send_datagrams(tx, data[index:], rx.getsockname(), tx_caps)
    assert index == len(data)
    assert [d for d, _ in receive_all(rx, rx_caps, len(data))] == data


# --- ICMP errors and too-big datagrams --------------------------------------------------


def _closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


@pytest.mark.parametrize(("gso", "gro"), COMBINATIONS)
def test_connection_refused_ignored_on_connected_socket(gso: bool, gro: bool) -> None:
    with open_udp_socket("127.0.0.1", 0, gro=gro) as sock:
        sock.connect(("127.0.0.1", _closed_port()))
        caps = detect_capabilities(sock)
        caps.gso = caps.gso and gso
        buffer = new_receive_buffer()
        for _ in range(int(WAIT / POLL)):
            # Each send draws an ICMP port unreachable, latched as ECONNREFUSED
            # and reported by whichever call comes next.
            assert send_datagrams(sock, payloads([50] * 3), None, caps) == 3
            time.sleep(POLL)
            assert receive_datagrams(sock, 10, caps, buffer) == []
            if caps.counters.refused_ignored >= 2:
                break
        assert caps.counters.refused_ignored >= 2


@linux_only
def test_icmp_errors_drained_with_recverr() -> None:
    with open_udp_socket("127.0.0.1", 0, recv_errors=True) as sock:
        caps = detect_capabilities(sock)
        assert caps.recv_errors
        buffer = new_receive_buffer()
        target = ("127.0.0.1", _closed_port())
        for _ in range(int(WAIT / POLL)):
            assert send_datagrams(sock, [b"ping"], target, caps) == 1
            time.sleep(POLL)
            assert receive_datagrams(sock, 10, caps, buffer) == []
            if caps.counters.icmp_errors:
                break
        assert caps.counters.icmp_errors >= 1
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0


@pytest.mark.parametrize("gso", [True, False])
def test_too_big_dropped_and_counted(make_pair: Callable[..., Pair], gso: bool) -> None:
    tx, tx_caps, rx, rx_caps = make_pair(gso=gso)
    data = payloads([1200, 1200, 70000, 1200, 1200])
    assert send_datagrams(tx, data, rx.getsockname(), tx_caps) == 5
    assert tx_caps.counters.dropped_too_big == 1
    assert tx_caps.counters.sent == 4
    expected = data[:2] + data[3:]
    assert [d for d, _ in receive_all(rx, rx_caps, 4)] == expected


@pytest.mark.parametrize("gso", [True, False])
def test_too_big_handed_back(make_pair: Callable[..., Pair], gso: bool) -> None:
    """EMSGSIZE datagrams go back to the caller, so its connection can resend smaller."""
    tx, tx_caps, rx, rx_caps = make_pair(gso=gso)
    data = payloads([1200, 70000, 1200, 70001])
    too_big: list[Any] = []
    assert send_datagrams(tx, data, rx.getsockname(), tx_caps, too_big) == 4
    assert [bytes(d) for d in too_big] == [data[1], data[3]]
    assert [d for d, _ in receive_all(rx, rx_caps, 2)] == [data[0], data[2]]


# --- rates (printed, never asserted) ------------------------------------------------------


def measure_rate(gso: bool, gro: bool, seconds: float, *, size: int = 1200) -> tuple[float, int]:
    """Datagrams/s through a sender and a receiver alternating in one thread; and the count."""
    tx = open_udp_socket("127.0.0.1", 0, gro=False)
    rx = open_udp_socket("127.0.0.1", 0, gro=gro)
    with tx, rx:
        tx_caps, rx_caps = detect_capabilities(tx), detect_capabilities(rx)
        tx_caps.gso = tx_caps.gso and gso
        addr, data, buffer = rx.getsockname(), [bytes(size)] * 256, new_receive_buffer()
        received = 0
        start = time.perf_counter()
        while time.perf_counter() - start < seconds:
            send_datagrams(tx, data, addr, tx_caps)
            for _ in range(64):
                got = receive_datagrams(rx, 4096, rx_caps, buffer)
                if not got:
                    break
                received += len(got)
        return received / (time.perf_counter() - start), received


def test_measure_rate_runs() -> None:
    for gso, gro in COMBINATIONS:
        _, received = measure_rate(gso, gro, 0.02)
        assert received > 0


if __name__ == "__main__":
    for gso, gro in COMBINATIONS[::-1]:
        rate, _ = measure_rate(gso, gro, 1.0)
        print(f"gso={gso!s:5} gro={gro!s:5}  {rate / 1e3:8.0f}k datagrams/s (1200 bytes)")
