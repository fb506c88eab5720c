"""In-memory QUIC pairs with a virtual clock: our client, our server endpoint, a lossy wire."""

from __future__ import annotations

import heapq
import itertools
import random
from collections.abc import Callable
from typing import Any

from mstls.core.events import Event
from mstls.quic.config import QuicConfig
from mstls.quic.connection import QuicConnection
from mstls.quic.endpoint import ServerEndpoint
from mstls.tls.config import TLSConfig
from tests.certs import SERVER_NAME, get_pki

ALPN = "mstls-test"
CLIENT_ADDR = ("127.0.0.1", 40000)
SERVER_ADDR = ("127.0.0.1", 4433)
#: Bound on simulation steps so a bug never hangs a test.
MAX_STEPS = 200_000


def client_config(**kw: Any) -> QuicConfig:
    pki = get_pki()
    tls_kw = kw.pop("tls", {})
    tls = TLSConfig(
        alpn_protocols=[ALPN], server_name=SERVER_NAME, trusted_roots=pki.roots, **tls_kw
    )
    return QuicConfig(tls=tls, **kw)


def server_config(**kw: Any) -> QuicConfig:
    pki = get_pki()
    tls_kw = kw.pop("tls", {})
    tls = TLSConfig(
        alpn_protocols=[ALPN],
        certificate_chain=[pki.server.certificate],
        private_key=pki.server.private_key,
        **tls_kw,
    )
    return QuicConfig(tls=tls, **kw)


class Pair:
    """A client connection and a server endpoint joined by a simulated path.

    ``loss``/``seed`` drop datagrams at random; ``latency`` delays each one;
    ``tamper`` may rewrite or drop (return None) any datagram in flight.
    """

    def __init__(
        self,
        *,
        client: QuicConfig | None = None,
        server: QuicConfig | None = None,
        retry: bool = False,
        loss: float = 0.0,
        seed: int = 1,
        latency: float = 0.005,
        tamper: Callable[[bytes, bool], bytes | None] | None = None,
    ) -> None:
        self.now = 1000.0
        self.endpoint = ServerEndpoint(server or server_config(), retry=retry)
        self.client = QuicConnection(
            client or client_config(), is_client=True, now=self.now, peer_address=SERVER_ADDR
        )
        self.rng = random.Random(seed)
        self.loss = loss
        self.latency = latency
        self.tamper = tamper
        # A heap of (arrival, sequence, to_server, data, address); the address is the
        # client's source (to the server) or the server's destination (to the client).
        self.in_flight: list[tuple[float, int, bool, bytes, Any]] = []
        #: The client's address as the server sees it (a NAT may change it), and the
        #: addresses of the client's other sockets (``Path.local`` -> address).
        self.client_addr: Any = CLIENT_ADDR
        self.client_locals: dict[Any, Any] = {}
        #: Drop what the server sends to any address but ``client_addr`` (a NAT).
        self.nat = False
        self._sequence = itertools.count()
        self.client_events: list[Event] = []
        self.server_events: list[Event] = []
        self.blackhole = False
        self._server: QuicConnection | None = None

    @property
    def server(self) -> QuicConnection:
        if self._server is None:
            self._server = self.endpoint.connections[0]
        return self._server

    def start(self) -> None:
        self.client.connect(self.now)

    def _send(self, data: bytes, to_server: bool, address: Any = None) -> None:
        if (
            not to_server
            and self.nat
            and address not in (self.client_addr, None, *self.client_locals.values())
        ):
            return
        if self.blackhole or (self.loss and self.rng.random() < self.loss):
            return
        if self.tamper is not None:
            changed = self.tamper(data, to_server)
            if changed is None:
                return
            data = changed
        heapq.heappush(
            self.in_flight,
            (self.now + self.latency, next(self._sequence), to_server, data, address),
        )

    def _flush(self) -> None:
        for data, path in self.client.datagrams_with_paths(self.now):
            self._send(data, True, self.client_locals.get(path.local, self.client_addr))
        # Tests call the server connections directly (a read, a write): the
        # application's part of the endpoint contract is to touch them after.
        self.endpoint.touch_all()
        for data, addr in self.endpoint.datagrams_to_send(self.now):
            self._send(data, False, addr)

    def _collect(self) -> None:
        while (e := self.client.next_event()) is not None:
            self.client_events.append(e)
        gone = list(self.endpoint.terminated)
        self.endpoint.terminated.clear()
        for conn in [*self.endpoint.connections, *gone]:
            while (e := conn.next_event()) is not None:
                self.server_events.append(e)

    def step(self) -> bool:
        """Advance to the next event (arrival or timer); False when nothing is left."""
        self._flush()
        self._collect()
        candidates = [t for t in (self.client.get_timer(), self.endpoint.get_timer()) if t]
        if self.in_flight:
            candidates.append(self.in_flight[0][0])
        if not candidates:
            return False
        self.now = max(self.now, min(candidates))
        due = []
        while self.in_flight and self.in_flight[0][0] <= self.now:
            due.append(heapq.heappop(self.in_flight))
        for _, _, to_server, data, address in due:
            if to_server:
                self.endpoint.receive_datagram(data, address, self.now, _ecn(data))
            else:
                local = next((k for k, v in self.client_locals.items() if v == address), None)
                self.client.receive_datagram(data, SERVER_ADDR, self.now, _ecn(data), local=local)
        if self.client.get_timer() is not None and self.client.get_timer() <= self.now:  # type: ignore[operator]
            self.client.handle_timer(self.now)
        timer = self.endpoint.get_timer()
        if timer is not None and timer <= self.now:
            self.endpoint.handle_timer(self.now)
        self._flush()
        self._collect()
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

    def handshake(self) -> None:
        self.start()
        self.run_until(
            lambda: (
                self.client.is_established
                and bool(self.endpoint.connections)
                and self.server.is_established
                and self.client.handshake_confirmed
            )
        )


def _ecn(data: bytes) -> int:
    """The ECN codepoint a ``tamper`` marked a datagram with (a ``bytes`` subclass with
    an ``ecn`` attribute, tests/quic/test_ecn.py); 0 (Not-ECT) otherwise."""
    return int(getattr(data, "ecn", 0))
