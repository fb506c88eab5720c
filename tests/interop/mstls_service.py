"""The ``mstls-test`` service over our QUIC server endpoint (the other peer is aioquic or us).

:class:`ServiceEndpoint` wraps a :class:`~mstls.quic.endpoint.ServerEndpoint` and has
the endpoint interface the test driver expects.  After every input it drains the
connections' events, feeds stream data to one :class:`ServiceSession` per
connection and carries out its actions.  Writes the stream layer cannot take
yet wait in a per-stream queue, retried on every turn.  It keeps the same
event log as the aioquic peer.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Any

from mstls.core.events import (
    ConnectionTerminatedEvent,
    HandshakeCompletedEvent,
    StopSendingReceived,
    StreamDataAvailable,
    StreamOpened,
    StreamReset,
)
from mstls.exceptions import Error
from mstls.quic.connection import QuicConnection
from mstls.quic.endpoint import ServerEndpoint
from mstls.tls.cipher_suites import CipherSuite

from .protocol import Close, KeyUpdate, Reset, Send, SendUni, ServiceSession, Stop
from .writes import flush_writes

READ_CHUNK = 1 << 20


class _ConnectionService:
    def __init__(self, conn: QuicConnection, log: list[tuple[Any, ...]]) -> None:
        self.conn = conn
        self.session = ServiceSession()
        self.log = log
        self.pending: dict[int, deque[tuple[memoryview, bool]]] = {}
        self.finished: set[int] = set()  # FIN already handed to the session

    def service(self, now: float) -> None:
        conn = self.conn
        while (event := conn.next_event()) is not None:
            if isinstance(event, HandshakeCompletedEvent):
                suite = CipherSuite(event.cipher_suite).name
                self.log.append(("handshake", event.alpn_protocol, suite))
            elif isinstance(event, StreamReset):
                self.session.on_stream_reset(event.stream_id)
                self.log.append(("stream_reset", event.stream_id, event.error_code))
            elif isinstance(event, StopSendingReceived):
                self.session.on_stop_sending(event.stream_id)
                self.pending.pop(event.stream_id, None)
                self.log.append(("stop_sending", event.stream_id, event.error_code))
            elif isinstance(event, ConnectionTerminatedEvent):
                self.log.append(
                    ("connection_closed", event.error_code, event.reason, event.by_peer)
                )
            elif isinstance(event, StreamDataAvailable | StreamOpened):
                self._read(event.stream_id, now)
        for stream_id in conn.streams.accept_pending():
            self._read(stream_id, now)
        self._flush()

    def _read(self, stream_id: int, now: float) -> None:
        streams = self.conn.streams
        if stream_id in self.finished:
            return
        for _ in range(64):
            try:
                data, fin = streams.read(stream_id, READ_CHUNK)
            except Error:
                return
            if not data and not fin:
                return
            for action in self.session.on_stream_data(stream_id, data, fin):
                self._apply(action, now)
            if fin:
                self.finished.add(stream_id)
                return

    def _apply(self, action: Any, now: float) -> None:
        conn = self.conn
        if isinstance(action, Send):
            self.pending.setdefault(action.stream_id, deque()).append(
                (memoryview(action.data), action.end)
            )
        elif isinstance(action, SendUni):
            stream_id = conn.streams.open_stream(bidirectional=False)
            self.pending.setdefault(stream_id, deque()).append((memoryview(action.data), True))
        elif isinstance(action, Reset):
            self.pending.pop(action.stream_id, None)
            conn.streams.reset_stream(action.stream_id, action.code)
        elif isinstance(action, Stop):
            conn.streams.stop_sending(action.stream_id, action.code)
        elif isinstance(action, Close):
            conn.close(action.code, action.reason, now=now)
        elif isinstance(action, KeyUpdate):
            conn.request_key_update()

    def _flush(self) -> None:
        flush_writes(self.conn.streams, self.pending)


class ServiceEndpoint:
    """Our ``mstls-test`` server: a ServerEndpoint plus the service on every connection."""

    def __init__(self, endpoint: ServerEndpoint) -> None:
        self.endpoint = endpoint
        self.events: list[tuple[Any, ...]] = []
        self._lock = threading.Lock()
        self._services: dict[int, _ConnectionService] = {}

    def _service(self, now: float) -> None:
        gone = list(self.endpoint.terminated)
        self.endpoint.terminated.clear()
        for conn in [*self.endpoint.connections, *gone]:
            service = self._services.get(id(conn))
            if service is None:
                service = self._services[id(conn)] = _ConnectionService(conn, self.events)
            service.service(now)

    def receive_datagram(self, data: Any, addr: Any, now: float) -> None:
        self.endpoint.receive_datagram(data, addr, now)
        self._service(now)

    def datagrams_to_send(self, now: float) -> list[tuple[bytes, Any]]:
        self._service(now)
        return self.endpoint.datagrams_to_send(now)

    def get_timer(self) -> float | None:
        return self.endpoint.get_timer()

    def handle_timer(self, now: float) -> None:
        self.endpoint.handle_timer(now)
        self._service(now)
