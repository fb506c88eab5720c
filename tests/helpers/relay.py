"""A fault-injecting UDP relay, and a UDP echo server, for tests on loopback only.

Theory of operation
-------------------
:class:`FaultRelay` listens on an ephemeral loopback port (:attr:`FaultRelay.address`).
Each client address that sends to it gets its own upstream socket, connected to
the target; what the target answers on that socket goes back to that client.
Every datagram passes through the faults of its direction (a :class:`FaultSpec`),
in this order: blackhole or loss (dropped), corruption (one byte XORed with a
non-zero value), duplication (a second copy), then per copy a delay (fixed plus
uniform jitter) and reordering (the copy is held back and released right after
the next datagram of that direction, or after :data:`REORDER_MAX_HOLD`).

Reproducibility: each direction draws from its own ``random.Random(seed ^ direction)``
and every random decision for a datagram is drawn when it *arrives*, always the
same number of draws (corruption adds its own two), so the same seed and the
same arrival order give the same faults, whatever the timing of delays.

NAT rebinding: :meth:`FaultRelay.rebind` gives every client a new upstream socket
(a new source port, and optionally a new loopback address such as 127.0.0.2), as a
NAT that lost its mapping does; what the target still sends to an old upstream
socket is dropped (counted in ``stale_dropped``), as the NAT would.

Safety: the relay only ever sends to the loopback target it was given and back
to loopback clients that sent to it; a single daemon thread runs a selector with
a timeout of at most :data:`POLL_INTERVAL`, reads a bounded number of datagrams
per wake-up, and :meth:`FaultRelay.stop` joins it with a timeout.
"""

from __future__ import annotations

import heapq
import ipaddress
import random
import selectors
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from enum import IntEnum
from types import TracebackType
from typing import Any, cast

__all__ = [
    "Direction",
    "DirectionCounters",
    "FaultRelay",
    "FaultSpec",
    "UdpEchoServer",
]

POLL_INTERVAL = 0.05  # seconds: longest selector wait, so stop() is seen promptly
STOP_JOIN_TIMEOUT = 2.0  # seconds
REORDER_MAX_HOLD = 0.1  # seconds a held-back datagram waits for a successor
MAX_DELAY = 5.0  # seconds: largest delay + jitter accepted
MAX_DATAGRAM = 65535
MAX_READS_PER_WAKE = 256  # per socket, so one busy socket cannot starve the timers
MAX_CLIENTS = 64
MAX_PENDING = 10_000  # delayed datagrams in flight; more are dropped
REBIND_TIMEOUT = 2.0  # seconds rebind() waits for the relay thread

Address = tuple[Any, ...]
#: Where a datagram goes: a socket and an address (``None``: the socket is connected).
Destination = tuple[socket.socket, Address | None]


class Direction(IntEnum):
    """The two directions through the relay (the values seed their random streams)."""

    CLIENT_TO_SERVER = 1
    SERVER_TO_CLIENT = 2


@dataclass(frozen=True, slots=True)
class FaultSpec:
    """The faults applied to one direction; probabilities are per datagram."""

    loss: float = 0.0
    reorder: float = 0.0
    duplicate: float = 0.0
    corrupt: float = 0.0
    delay: float = 0.0
    jitter: float = 0.0
    blackhole: bool = False

    def __post_init__(self) -> None:
        for name in ("loss", "reorder", "duplicate", "corrupt"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"FaultSpec.{name} must be a probability in [0, 1]")
        if self.delay < 0 or self.jitter < 0 or self.delay + self.jitter > MAX_DELAY:
            raise ValueError(f"FaultSpec delay and jitter must be >= 0 and sum to <= {MAX_DELAY}")


@dataclass(slots=True)
class DirectionCounters:
    """What happened to the datagrams of one direction."""

    received: int = 0
    forwarded: int = 0
    dropped: int = 0
    duplicated: int = 0
    corrupted: int = 0
    reordered: int = 0
    delayed: int = 0

    def as_dict(self) -> dict[str, int]:
        """The counters by name."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


def _is_loopback(host: str) -> bool:
    """Whether ``host`` (an address literal, maybe with an IPv6 zone) is a loopback address."""
    return ipaddress.ip_address(host.split("%", maxsplit=1)[0]).is_loopback


def _require_loopback(host: str) -> None:
    if not _is_loopback(host):
        raise ValueError(f"the relay only talks to loopback addresses, not {host!r}")


def _loopback_for(host: str) -> tuple[socket.AddressFamily, str]:
    """The family and loopback address matching ``host``."""
    if ipaddress.ip_address(host.split("%", maxsplit=1)[0]).version == 6:
        return socket.AF_INET6, "::1"
    return socket.AF_INET, "127.0.0.1"


def _open(family: socket.AddressFamily, host: str) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_DGRAM)
    sock.bind((host, 0))
    sock.setblocking(False)
    return sock


class _Held:
    """A datagram held back for reordering."""

    __slots__ = ("data", "deadline", "destination")

    def __init__(self, data: bytes, destination: Destination, deadline: float) -> None:
        self.data = data
        self.destination = destination
        self.deadline = deadline


class FaultRelay:
    """A UDP relay between clients and ``target`` that loses, reorders, duplicates,
    corrupts, delays or blackholes datagrams, reproducibly from ``seed``.

    The keyword faults apply to both directions unless ``client_to_server`` or
    ``server_to_client`` gives that direction its own :class:`FaultSpec`.
    """

    def __init__(
        self,
        target: tuple[str, int],
        *,
        seed: int,
        loss: float = 0.0,
        reorder: float = 0.0,
        duplicate: float = 0.0,
        corrupt: float = 0.0,
        delay: float = 0.0,
        jitter: float = 0.0,
        blackhole: bool = False,
        client_to_server: FaultSpec | None = None,
        server_to_client: FaultSpec | None = None,
        tap: Callable[[Direction, bytes, Address], None] | None = None,
    ) -> None:
        _require_loopback(target[0])
        self.target = (target[0], target[1])
        base = FaultSpec(loss, reorder, duplicate, corrupt, delay, jitter, blackhole)
        self._specs = {
            Direction.CLIENT_TO_SERVER: client_to_server or base,
            Direction.SERVER_TO_CLIENT: server_to_client or base,
        }
        self._blackhole = {d: spec.blackhole for d, spec in self._specs.items()}
        self._rngs = {d: random.Random(seed ^ d) for d in Direction}
        self._counters = {d: DirectionCounters() for d in Direction}
        self._held: dict[Direction, list[_Held]] = {d: [] for d in Direction}
        # (due, sequence, direction, datagram or None for "release held ones", destination, hold)
        self._timers: list[tuple[float, int, Direction, bytes | None, Destination, bool]] = []
        self._sequence = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.error: BaseException | None = None
        #: ``tap(direction, datagram, client address)`` sees every datagram as it arrives.
        self.tap = tap
        self._family, self._loopback = _loopback_for(target[0])
        self._listener = _open(self._family, self._loopback)
        self.address: tuple[str, int] = self._listener.getsockname()[:2]
        self._upstream: dict[Address, socket.socket] = {}
        self._clients: dict[socket.socket, Address] = {}
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._listener, selectors.EVENT_READ)
        #: Upstream sockets replaced by a rebinding: what arrives there is dropped.
        self._stale: set[socket.socket] = set()
        self._rebind_to: str | None = None
        self._rebound = threading.Event()
        self.stale_dropped = 0
        self.rebinds = 0

    # --- control (any thread) -----------------------------------------------------

    def start(self) -> FaultRelay:
        """Start the relay thread."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="FaultRelay", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop the thread (bounded join) and close every socket; pending datagrams are lost."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(STOP_JOIN_TIMEOUT)
        self._selector.close()
        for sock in [self._listener, *self._clients]:
            sock.close()

    def __enter__(self) -> FaultRelay:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        """Whether the relay thread is alive."""
        return self._thread is not None and self._thread.is_alive()

    def set_blackhole(self, enabled: bool, direction: Direction | None = None) -> None:
        """Drop everything (of one direction, or both) from now on, delayed datagrams included."""
        for d in [direction] if direction is not None else list(Direction):
            self._blackhole[d] = enabled

    def set_spec(self, direction: Direction, spec: FaultSpec) -> None:
        """Change a direction's faults from now on."""
        self._specs[direction] = spec
        self._blackhole[direction] = spec.blackhole

    def rebind(self, host: str | None = None) -> None:
        """Move every client to a new upstream socket (new port; on ``host``, a loopback
        address, if given) from the next datagram on; datagrams to the old one are dropped."""
        host = host or self._loopback
        _require_loopback(host)
        self._rebound.clear()
        self._rebind_to = host
        if not self._rebound.wait(REBIND_TIMEOUT):
            raise TimeoutError("the relay thread did not rebind")

    def upstream_addresses(self) -> list[Address]:
        """The current upstream socket addresses (what the target sees as clients)."""
        with self._lock:
            return [s.getsockname()[:2] for s in self._upstream.values()]

    def counters(self, direction: Direction) -> DirectionCounters:
        """A snapshot of one direction's counters."""
        with self._lock:
            return replace(self._counters[direction])

    # --- the relay thread -------------------------------------------------------------

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                timeout = POLL_INTERVAL
                if self._timers:
                    timeout = min(timeout, max(0.0, self._timers[0][0] - time.monotonic()))
                if self._rebind_to is not None:
                    self._do_rebind(self._rebind_to)
                for key, _ in self._selector.select(timeout):
                    self._read(cast(socket.socket, key.fileobj))
                self._fire_timers(time.monotonic())
        except Exception as exc:  # kept for the test to inspect
            if not self._stop.is_set():
                self.error = exc

    def _read(self, sock: socket.socket) -> None:
        for _ in range(MAX_READS_PER_WAKE):
            try:
                data, addr = sock.recvfrom(MAX_DATAGRAM)
            except BlockingIOError:
                return
            except OSError:  # an ICMP error latched on an upstream socket
                continue
            if sock in self._stale:
                self.stale_dropped += 1  # the NAT forgot this mapping
            elif sock is self._listener:
                if self.tap is not None:
                    self.tap(Direction.CLIENT_TO_SERVER, data, addr)
                upstream = self._upstream_for(addr)
                if upstream is not None:
                    self._ingress(Direction.CLIENT_TO_SERVER, data, (upstream, None))
            else:
                client = self._clients[sock]
                self._ingress(Direction.SERVER_TO_CLIENT, data, (self._listener, client))

    def _do_rebind(self, host: str) -> None:
        with self._lock:
            for client, old in list(self._upstream.items()):
                upstream = _open(self._family, host)
                upstream.connect(self.target)
                self._upstream[client] = upstream
                self._clients[upstream] = client
                self._stale.add(old)
                self._selector.register(upstream, selectors.EVENT_READ)
            self.rebinds += 1
        self._rebind_to = None
        self._rebound.set()

    def _upstream_for(self, client: Address) -> socket.socket | None:
        upstream = self._upstream.get(client)
        if upstream is not None:
            return upstream
        if len(self._upstream) >= MAX_CLIENTS or not _is_loopback(str(client[0])):
            return None
        upstream = _open(self._family, self._loopback)
        upstream.connect(self.target)
        self._upstream[client] = upstream
        self._clients[upstream] = client
        self._selector.register(upstream, selectors.EVENT_READ)
        return upstream

    def _ingress(self, direction: Direction, data: bytes, destination: Destination) -> None:
        """Apply one direction's faults to an arriving datagram (all draws happen here)."""
        spec, rng = self._specs[direction], self._rngs[direction]
        counters = self._counters[direction]
        lost, corrupt, duplicate = rng.random(), rng.random(), rng.random()
        copies = [(rng.random(), rng.random()), (rng.random(), rng.random())]  # (reorder, jitter)
        with self._lock:
            counters.received += 1
            if self._blackhole[direction] or lost < spec.loss:
                counters.dropped += 1
                return
            if corrupt < spec.corrupt and data:
                position, flip = rng.randrange(len(data)), rng.randrange(1, 256)
                data = data[:position] + bytes([data[position] ^ flip]) + data[position + 1 :]
                counters.corrupted += 1
            if duplicate < spec.duplicate:
                counters.duplicated += 1
            else:
                copies = copies[:1]
        now = time.monotonic()
        for reorder, jitter in copies:
            hold = reorder < spec.reorder
            wait = spec.delay + jitter * spec.jitter
            if wait > 0 and len(self._timers) < MAX_PENDING:
                with self._lock:
                    counters.delayed += 1
                self._sequence += 1
                entry = (now + wait, self._sequence, direction, data, destination, hold)
                heapq.heappush(self._timers, entry)
            else:
                self._emit(direction, data, destination, hold, now)

    def _emit(
        self, direction: Direction, data: bytes, destination: Destination, hold: bool, now: float
    ) -> None:
        """Send, or hold back for reordering; a datagram sent releases those held before it."""
        if self._blackhole[direction]:
            self._count(direction, "dropped")
            return
        held = self._held[direction]
        if hold and not held:
            held.append(_Held(data, destination, now + REORDER_MAX_HOLD))
            self._count(direction, "reordered")
            self._sequence += 1
            entry = (now + REORDER_MAX_HOLD, self._sequence, direction, None, destination, False)
            heapq.heappush(self._timers, entry)
            return
        self._send(direction, data, destination)
        self._release(direction, None)

    def _release(self, direction: Direction, now: float | None) -> None:
        """Send the held datagrams (only those past their deadline when ``now`` is given)."""
        held = self._held[direction]
        due = [h for h in held if now is None or h.deadline <= now]
        held[:] = [h for h in held if h not in due]
        for item in due:
            if self._blackhole[direction]:
                self._count(direction, "dropped")
            else:
                self._send(direction, item.data, item.destination)

    def _fire_timers(self, now: float) -> None:
        timers = self._timers
        while timers and timers[0][0] <= now:
            _, _, direction, data, destination, hold = heapq.heappop(timers)
            if data is None:  # a reorder hold ran out
                self._release(direction, now)
            else:
                self._emit(direction, data, destination, hold, now)

    def _send(self, direction: Direction, data: bytes, destination: Destination) -> None:
        sock, addr = destination
        try:
            if addr is None:
                sock.send(data)
            else:
                sock.sendto(data, addr)
        except OSError:  # would block, or ICMP-latched: the datagram is lost
            self._count(direction, "dropped")
        else:
            self._count(direction, "forwarded")

    def _count(self, direction: Direction, name: str) -> None:
        with self._lock:
            counters = self._counters[direction]
            setattr(counters, name, getattr(counters, name) + 1)


class UdpEchoServer:
    """Echoes every datagram back to its sender, from a daemon thread, on loopback."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        _require_loopback(host)
        family, _ = _loopback_for(host)
        self._sock = _open(family, host)
        self.address: tuple[str, int] = self._sock.getsockname()[:2]
        self.echoed = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="UdpEchoServer", daemon=True)

    def start(self) -> UdpEchoServer:
        """Start echoing."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop (bounded join) and close the socket."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(STOP_JOIN_TIMEOUT)
        self._sock.close()

    def __enter__(self) -> UdpEchoServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _run(self) -> None:
        with selectors.DefaultSelector() as selector:
            selector.register(self._sock, selectors.EVENT_READ)
            while not self._stop.is_set():
                if not selector.select(POLL_INTERVAL):
                    continue
                for _ in range(MAX_READS_PER_WAKE):
                    try:
                        data, addr = self._sock.recvfrom(MAX_DATAGRAM)
                        self._sock.sendto(data, addr)
                    except BlockingIOError:
                        break
                    except OSError:
                        if self._stop.is_set():
                            return
                        continue
                    self.echoed += 1
