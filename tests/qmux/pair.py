"""In-memory QMux pairs with a virtual clock: two endpoints joined by a simulated TCP.

The "TCP" is two ordered byte pipes with a fixed latency.  After every step
each side's :meth:`data_to_send` goes into its pipe; a side whose
``should_shutdown_write`` turns true gets a FIN queued behind its bytes (what
a driver's ``shutdown(SHUT_WR)`` does).  Either side can be a
:class:`~mstls.qmux.connection.QMuxConnection` or a :class:`RawTLSPeer`, a bare
TLS endpoint the test uses to send hand-made QMux records.
"""

from __future__ import annotations

import hashlib
import random
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

from mstls.core.events import ConnectionTerminatedEvent, Event
from mstls.qmux.config import QMuxConfig
from mstls.qmux.connection import QMuxConnection
from mstls.tls.config import TLSConfig
from mstls.tls.engine import HandshakeCompleted
from mstls.tls.tcp import ApplicationData, CloseNotifyReceived, TLSConnection
from mstls.wire.frames import encode_frame
from mstls.wire.qmux import QxTransportParametersFrame, encode_record
from mstls.wire.transport_params import TransportParameters
from tests.certs import SERVER_NAME, get_pki

ALPN = "mstls-test"
#: Bound on simulation steps so a bug never hangs a test.
MAX_STEPS = 200_000
EOF = None


def client_tls(**kw: Any) -> TLSConfig:
    settings: dict[str, Any] = {
        "alpn_protocols": [ALPN],
        "server_name": SERVER_NAME,
        "trusted_roots": get_pki().roots,
    }
    return TLSConfig(**(settings | kw))


def server_tls(**kw: Any) -> TLSConfig:
    pki = get_pki()
    settings: dict[str, Any] = {
        "alpn_protocols": [ALPN],
        "certificate_chain": [pki.server.certificate],
        "private_key": pki.server.private_key,
    }
    return TLSConfig(**(settings | kw))


def client_config(**kw: Any) -> QMuxConfig:
    return QMuxConfig(tls=client_tls(**kw.pop("tls", {})), **kw)


def server_config(**kw: Any) -> QMuxConfig:
    return QMuxConfig(tls=server_tls(**kw.pop("tls", {})), **kw)


class Side(Protocol):
    """What the pair drives: a QMux connection or a raw TLS peer."""

    @property
    def should_shutdown_write(self) -> bool: ...

    def receive_data(self, data: bytes, now: float) -> None: ...

    def receive_eof(self, now: float) -> None: ...

    def data_to_send(self, now: float) -> bytes: ...

    def get_timer(self) -> float | None: ...

    def handle_timer(self, now: float) -> None: ...

    def next_event(self) -> Any: ...


class RawTLSPeer:
    """A TLS endpoint without QMux logic: the test writes QMux bytes itself.

    ``received`` collects the peer's decrypted application bytes; ``error``
    the TLS exception that ended it, if any.
    """

    def __init__(self, config: TLSConfig, *, is_client: bool) -> None:
        self.tls = TLSConnection(config, is_client=is_client)
        self.tls.start()
        self.received = bytearray()
        self.handshake_complete = False
        self.close_notify_received = False
        self.eof_received = False
        self.error: Exception | None = None
        self.shutdown = False

    @property
    def should_shutdown_write(self) -> bool:
        return self.shutdown

    def send(self, data: bytes) -> None:
        """Queue raw application bytes (QMux records or anything else)."""
        self.tls.send(data)

    def send_record(self, frames: bytes) -> None:
        self.tls.send(encode_record(frames))

    def send_transport_parameters(self, params: TransportParameters | None = None) -> None:
        params = params or server_config().transport_parameters()
        self.send_record(encode_frame(QxTransportParametersFrame(params)))

    def close(self) -> None:
        self.tls.close()
        self.shutdown = True

    def receive_data(self, data: bytes, now: float) -> None:
        try:
            self.tls.receive_data(data)
        except Exception as exc:  # recorded for the test to inspect
            self.error = exc
        while (event := self.tls.next_event()) is not None:
            if isinstance(event, ApplicationData):
                self.received += event.data
            elif isinstance(event, HandshakeCompleted):
                self.handshake_complete = True
            elif isinstance(event, CloseNotifyReceived):
                self.close_notify_received = True

    def receive_eof(self, now: float) -> None:
        self.eof_received = True
        try:
            self.tls.receive_eof()
        except Exception as exc:
            self.error = exc

    def data_to_send(self, now: float) -> bytes:
        return self.tls.data_to_send()

    def get_timer(self) -> float | None:
        return None

    def handle_timer(self, now: float) -> None:
        pass

    def next_event(self) -> Any:
        return None


class Pair:
    """A client and a server joined by a simulated TCP connection with ``latency``."""

    def __init__(
        self,
        *,
        client: QMuxConfig | None = None,
        server: QMuxConfig | None = None,
        client_side: Side | None = None,
        server_side: Side | None = None,
        latency: float = 0.001,
    ) -> None:
        self.now = 1000.0
        self.client: Any = client_side or QMuxConnection(
            client or client_config(), is_client=True, now=self.now
        )
        self.server: Any = server_side or QMuxConnection(
            server or server_config(), is_client=False, now=self.now
        )
        self.latency = latency
        # Pipes: (arrival time, bytes or EOF), in order.
        self.to_server: deque[tuple[float, bytes | None]] = deque()
        self.to_client: deque[tuple[float, bytes | None]] = deque()
        self.shut = {"client": False, "server": False}
        self.client_events: list[Event] = []
        self.server_events: list[Event] = []
        #: Optional hook run after every step (application logic).
        self.on_step: Callable[[], None] | None = None

    def start(self) -> None:
        if isinstance(self.client, QMuxConnection):
            self.client.connect(self.now)

    def _flush_side(self, name: str, side: Side, pipe: deque[tuple[float, bytes | None]]) -> None:
        data = side.data_to_send(self.now)
        if self.shut[name]:
            assert not data, f"{name} sent {len(data)} bytes after shutting down its write side"
            return
        if data:
            pipe.append((self.now + self.latency, data))
        if side.should_shutdown_write:
            self.shut[name] = True
            pipe.append((self.now + self.latency, EOF))

    def cut(self, name: str) -> None:
        """``name``'s TCP write side ends now without any TLS or QMux close (a FIN)."""
        pipe = self.to_server if name == "client" else self.to_client
        self.shut[name] = True
        pipe.append((self.now + self.latency, EOF))

    def flush(self) -> None:
        self._flush_side("client", self.client, self.to_server)
        self._flush_side("server", self.server, self.to_client)
        self._collect()

    def _collect(self) -> None:
        while (e := self.client.next_event()) is not None:
            self.client_events.append(e)
        while (e := self.server.next_event()) is not None:
            self.server_events.append(e)

    def _deliver(self, pipe: deque[tuple[float, bytes | None]], side: Side) -> None:
        while pipe and pipe[0][0] <= self.now:
            _, data = pipe.popleft()
            if data is EOF:
                side.receive_eof(self.now)
            else:
                side.receive_data(data, self.now)

    def step(self) -> bool:
        """Advance to the next arrival or timer; False when nothing is left to happen."""
        self._settle()
        candidates = [t for t in (self.client.get_timer(), self.server.get_timer()) if t]
        for pipe in (self.to_server, self.to_client):
            if pipe:
                candidates.append(pipe[0][0])
        if not candidates:
            return False
        self.now = max(self.now, min(candidates))
        self._deliver(self.to_server, self.server)
        self._deliver(self.to_client, self.client)
        for side in (self.client, self.server):
            timer = side.get_timer()
            if timer is not None and timer <= self.now:
                side.handle_timer(self.now)
        self._settle()
        return True

    def _settle(self) -> None:
        """Send what is pending, let the application act, send what that produced."""
        self.flush()
        if self.on_step is not None:
            self.on_step()
            self.flush()

    def run_until(self, predicate: Callable[[], bool], max_time: float = 60.0) -> None:
        deadline = self.now + max_time
        for _ in range(MAX_STEPS):
            if predicate():
                return
            if self.now > deadline or not self.step():
                break
        if not predicate():
            raise AssertionError(f"condition not reached by t={self.now - 1000.0:.3f}s")

    def run(self, max_time: float = 60.0) -> None:
        """Step until nothing is left to happen (or ``max_time`` passes)."""
        deadline = self.now + max_time
        for _ in range(MAX_STEPS):
            if self.now > deadline or not self.step():
                return

    def drain(self) -> None:
        """Deliver everything in flight (and what it provokes); timers are not run."""
        for _ in range(MAX_STEPS):
            self._settle()
            arrivals = [pipe[0][0] for pipe in (self.to_server, self.to_client) if pipe]
            if not arrivals:
                return
            self.now = max(self.now, min(arrivals))
            self._deliver(self.to_server, self.server)
            self._deliver(self.to_client, self.client)

    def handshake(self) -> None:
        self.start()
        self.run_until(
            lambda: (
                self.client.is_established
                and self.server.is_established
                and self.client.peer_params is not None
                and self.server.peer_params is not None
            )
        )

    def terminated(self, name: str) -> ConnectionTerminatedEvent:
        """The one termination event of ``name``."""
        self._collect()
        events = self.client_events if name == "client" else self.server_events
        found = [e for e in events if isinstance(e, ConnectionTerminatedEvent)]
        assert len(found) == 1, f"{name}: {len(found)} termination events: {found}"
        return found[0]


class Transfer:
    """Application logic for a pair: streams opened by one side, echoed or sunk by the other.

    Every payload is checked by SHA-256 at the receiving end.
    """

    def __init__(self, pair: Pair, sizes: list[int], *, echo: bool, seed: int = 7) -> None:
        rng = random.Random(seed)
        self.pair = pair
        self.echo = echo
        self.payloads: dict[int, bytes] = {}
        self.digests: dict[int, str] = {}
        for size in sizes:
            sid = pair.client.streams.open_stream()
            payload = rng.randbytes(size)
            self.payloads[sid] = payload
            self.digests[sid] = hashlib.sha256(payload).hexdigest()
        self.sent = dict.fromkeys(self.payloads, 0)
        self.server_hash = {sid: hashlib.sha256() for sid in self.payloads}
        self.server_done: set[int] = set()
        self.echo_pending: dict[int, bytearray] = {sid: bytearray() for sid in self.payloads}
        self.echo_fin: set[int] = set()
        self.client_hash = {sid: hashlib.sha256() for sid in self.payloads}
        self.client_done: set[int] = set()
        pair.on_step = self.tick

    @property
    def complete(self) -> bool:
        if self.echo:
            return self.client_done == set(self.payloads)
        return self.server_done == set(self.payloads)

    def tick(self) -> None:
        client = self.pair.client.streams
        server = self.pair.server.streams
        for sid, payload in self.payloads.items():
            sent = self.sent[sid]
            if sent < len(payload) or (not payload and sent == 0):
                piece = memoryview(payload)[sent : sent + 256 * 1024]
                taken = client.write(sid, piece, fin=sent + len(piece) == len(payload))
                self.sent[sid] = sent + (taken or (0 if payload else 1))
        server.accept_pending()
        for sid in self.payloads:
            if sid not in self.server_done and server.get_stream(sid) is not None:
                self._server_read(sid)
            if self.echo:
                self._echo(sid)
                if sid not in self.client_done and client.get_stream(sid) is not None:
                    self._client_read(sid)

    def _server_read(self, sid: int) -> None:
        server = self.pair.server.streams
        while True:
            data, fin = server.read(sid, 1 << 20)
            self.server_hash[sid].update(data)
            if self.echo:
                self.echo_pending[sid] += data
            if fin:
                self.server_done.add(sid)
                return
            if not data:
                return

    def _echo(self, sid: int) -> None:
        pending = self.echo_pending[sid]
        fin = sid in self.server_done
        if sid in self.echo_fin or (not pending and not fin):
            return
        taken = self.pair.server.streams.write(sid, bytes(pending), fin=fin)
        del pending[:taken]
        if fin and not pending:
            self.echo_fin.add(sid)

    def _client_read(self, sid: int) -> None:
        client = self.pair.client.streams
        while True:
            data, fin = client.read(sid, 1 << 20)
            self.client_hash[sid].update(data)
            if fin:
                self.client_done.add(sid)
                return
            if not data:
                return

    def check(self) -> None:
        for sid, digest in self.digests.items():
            assert self.server_hash[sid].hexdigest() == digest, f"stream {sid} (server)"
            if self.echo:
                assert self.client_hash[sid].hexdigest() == digest, f"stream {sid} (client)"
