"""Many in-memory QUIC clients against one server endpoint, on a virtual clock.

The simulation itself is O(log N) per event (client deadlines in a
:class:`~mstls.core.deadlines.DeadlineHeap`, datagrams in flight in a heap), so
thousands of idle connections can be held over minutes of virtual time.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable
from typing import Any

from mstls.core.deadlines import DeadlineHeap
from mstls.quic.connection import QuicConnection
from mstls.quic.endpoint import ServerEndpoint
from mstls.quic.state import Address
from tests.quic.pair import SERVER_ADDR, client_config, server_config

#: Bound on simulation steps so a bug never hangs a test.
MAX_STEPS = 2_000_000
#: One-way delay of every datagram.
LATENCY = 0.002


class Many:
    """N clients, one :class:`ServerEndpoint`, a lossless wire with fixed latency."""

    def __init__(
        self,
        *,
        client: dict[str, Any] | None = None,
        server: dict[str, Any] | None = None,
        latency: float = LATENCY,
    ) -> None:
        self.now = 1000.0
        self.latency = latency
        self.client_kw = client or {}
        self.endpoint = ServerEndpoint(server_config(**(server or {})))
        self.clients: list[QuicConnection] = []
        self._by_addr: dict[Address, QuicConnection] = {}
        self._addr_of: dict[int, Address] = {}
        self._client_timers: DeadlineHeap[QuicConnection] = DeadlineHeap()
        self._dirty: dict[int, QuicConnection] = {}
        # (arrival, seq, to_server, data, addr)
        self._wire: list[tuple[float, int, bool, bytes, Address]] = []
        self._seq = itertools.count()
        #: Set to drop everything on the wire (a silent network).
        self.blackhole = False

    # -- clients ------------------------------------------------------------------------
    def add_client(self) -> QuicConnection:
        index = len(self.clients)
        addr = ("127.0.0.2", 10000 + index)
        conn = QuicConnection(
            client_config(**self.client_kw), is_client=True, now=self.now, peer_address=SERVER_ADDR
        )
        self._addr_of[id(conn)] = addr
        self.clients.append(conn)
        self._by_addr[addr] = conn
        conn.connect(self.now)
        self.touch_client(conn)
        return conn

    def touch_client(self, conn: QuicConnection) -> None:
        self._dirty[id(conn)] = conn

    def _client_addr(self, conn: QuicConnection) -> Address:
        return self._addr_of[id(conn)]

    # -- the loop -----------------------------------------------------------------------
    def _put(self, to_server: bool, data: bytes, addr: Address) -> None:
        if not self.blackhole:
            item = (self.now + self.latency, next(self._seq), to_server, data, addr)
            heapq.heappush(self._wire, item)

    def flush(self) -> None:
        for conn in list(self._dirty.values()):
            for data in conn.datagrams_to_send(self.now):
                self._put(True, data, self._client_addr(conn))
            self._client_timers.set(conn, conn.get_timer())
        self._dirty.clear()
        for data, addr in self.endpoint.datagrams_to_send(self.now):
            self._put(False, data, addr)

    def next_time(self) -> float | None:
        candidates = [
            t for t in (self._client_timers.peek(), self.endpoint.get_timer()) if t is not None
        ]
        if self._wire:
            candidates.append(self._wire[0][0])
        return min(candidates, default=None)

    def step(self) -> bool:
        """Advance to the next event (arrival or timer); False when nothing is left."""
        self.flush()
        when = self.next_time()
        if when is None:
            return False
        self.now = max(self.now, when)
        while self._wire and self._wire[0][0] <= self.now:
            _, _, to_server, data, addr = heapq.heappop(self._wire)
            if to_server:
                self.endpoint.receive_datagram(data, addr, self.now)
            else:
                conn = self._by_addr.get(addr)
                if conn is not None:
                    conn.receive_datagram(data, SERVER_ADDR, self.now)
                    self.touch_client(conn)
        # Output before timers, as the drivers do (an ACK due at once is sent, not
        # woken for: mstls.quic.endpoint).
        self.flush()
        for conn in self._client_timers.pop_due(self.now):
            conn.handle_timer(self.now)
            self.touch_client(conn)
        timer = self.endpoint.get_timer()
        if timer is not None and timer <= self.now:
            self.endpoint.handle_timer(self.now)
        self.flush()
        return True

    def run_until(self, predicate: Callable[[], bool], max_time: float = 60.0) -> None:
        deadline = self.now + max_time
        for _ in range(MAX_STEPS):
            if predicate():
                return
            if self.now > deadline or not self.step():
                break
        if not predicate():
            raise AssertionError(f"condition not reached by t={self.now - 1000.0:.3f}s")

    def run_for(self, seconds: float) -> None:
        """Run every event up to ``now + seconds``."""
        end = self.now + seconds
        self.flush()
        for _ in range(MAX_STEPS):
            when = self.next_time()
            if when is None or when > end:
                break
            self.step()
        self.now = max(self.now, end)

    def connect(self, count: int, spacing: float = 0.001) -> None:
        """Open ``count`` connections, one every ``spacing`` seconds, all established."""
        for _ in range(count):
            self.add_client()
            self.run_for(spacing)
        for _ in range(100):  # the check is O(N): made every half second only
            if self.all_established():
                break
            self.run_for(0.5)
        assert self.all_established()
        self.drain_server_events()

    def all_established(self) -> bool:
        servers = self.endpoint.connections
        return (
            len(servers) == len(self.clients)
            and all(c.is_established and c.handshake_confirmed for c in self.clients)
            and all(s.is_established for s in servers)
        )

    def drain_server_events(self) -> None:
        """Read and drop every server connection's events (O(N): setup only)."""
        for conn in [*self.endpoint.connections, *self.endpoint.terminated]:
            while conn.next_event() is not None:
                pass
        self.endpoint.accepted.clear()
