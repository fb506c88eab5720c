"""The client side of the ``mstls-test`` protocol over our QUIC connection (blocking, for tests).

:class:`MstlsClient` runs one :class:`~mstls.quic.connection.QuicConnection` on a
:class:`~tests.helpers.quic_driver.LoopThread`.  Every operation queues writes and
then waits (bounded) until the reads it needs are complete; a ``pump`` run under the
driver's lock moves pending writes into the stream layer, drains reads and events.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import Any

from mstls.core.events import (
    ConnectionTerminatedEvent,
    Event,
    HandshakeCompletedEvent,
    StopSendingReceived,
    StreamReset,
)
from mstls.exceptions import Error
from mstls.quic.config import QuicConfig
from mstls.quic.connection import QuicConnection
from tests.helpers.quic_driver import LoopThread, client_loop

from .protocol import Command, command_line, parse_digest_line
from .writes import flush_writes

TIMEOUT = 30.0
READ_CHUNK = 1 << 20


class MstlsClient:
    """A connected client; use as a context manager."""

    def __init__(self, config: QuicConfig, address: tuple[str, int]) -> None:
        self.conn = QuicConnection(
            config, is_client=True, now=time.monotonic(), peer_address=address
        )
        self.loop: LoopThread = client_loop(self.conn)
        self.events: list[Event] = []
        self._writes: dict[int, deque[tuple[memoryview, bool]]] = {}
        self._reads: dict[int, bytearray] = {}
        self._finished: set[int] = set()

    def __enter__(self) -> MstlsClient:
        self.loop.start()
        self.loop.call(lambda: self.conn.connect(time.monotonic()))
        self.wait(lambda: self.conn.handshake_confirmed or self.terminated is not None)
        if not self.conn.is_established:
            raise ConnectionError(f"handshake failed: {self.terminated}")
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            if not self.conn.is_terminated and self.terminated is None:
                self.loop.call(lambda: self.conn.close(0, "done", now=time.monotonic()))
                time.sleep(0.05)
        finally:
            self.loop.stop()

    # -- plumbing -----------------------------------------------------------------------
    def _pump(self) -> None:
        conn = self.conn
        while (event := conn.next_event()) is not None:
            self.events.append(event)
        flush_writes(conn.streams, self._writes)
        streams = conn.streams
        for sid in list(self._reads):
            if sid in self._finished:
                continue
            for _ in range(64):
                try:
                    data, fin = streams.read(sid, READ_CHUNK)
                except Error:
                    self._finished.add(sid)
                    break
                self._reads[sid] += data
                if fin:
                    self._finished.add(sid)
                    break
                if not data:
                    break

    def wait(self, predicate: Callable[[], bool], timeout: float = TIMEOUT) -> None:
        def check() -> bool:
            self._pump()
            return predicate()

        self.loop.wait_for(check, timeout)
        self.loop.wake()

    def call(self, fn: Callable[[], Any]) -> Any:
        return self.loop.call(fn)

    @property
    def terminated(self) -> ConnectionTerminatedEvent | None:
        for event in self.events:
            if isinstance(event, ConnectionTerminatedEvent):
                return event
        return None

    @property
    def handshake(self) -> HandshakeCompletedEvent:
        return next(e for e in self.events if isinstance(e, HandshakeCompletedEvent))

    def open(self, data: bytes, *, end: bool = True, bidirectional: bool = True) -> int:
        def start() -> int:
            sid = self.conn.streams.open_stream(bidirectional)
            self._writes[sid] = deque([(memoryview(data), end)])
            if bidirectional:
                self._reads[sid] = bytearray()
            self._pump()
            return sid

        return int(self.call(start))

    def read_to_end(self, sids: list[int], timeout: float = TIMEOUT) -> list[bytes]:
        self.wait(lambda: all(s in self._finished for s in sids), timeout)
        return [bytes(self._reads[s]) for s in sids]

    # -- protocol operations --------------------------------------------------------------
    def echo_many(self, payloads: list[bytes], timeout: float = TIMEOUT) -> list[bytes]:
        line = command_line(Command.ECHO)
        sids = [self.open(line + p) for p in payloads]
        return self.read_to_end(sids, timeout)

    def echo(self, data: bytes, timeout: float = TIMEOUT) -> bytes:
        return self.echo_many([data], timeout)[0]

    def sink(self, data: bytes, timeout: float = TIMEOUT) -> str:
        [reply] = self.read_to_end([self.open(command_line(Command.SINK) + data)], timeout)
        return parse_digest_line(reply)

    def uni(self, data: bytes) -> str:
        """Send on a client unidirectional stream; the server answers on one of its own."""
        self.open(data, bidirectional=False)

        def server_uni() -> bool:
            for sid in self.conn.streams.accept_pending():
                self._reads[sid] = bytearray()
            return any(s & 0x3 == 0x3 and s in self._finished for s in self._reads)

        self.wait(server_uni)
        sid = next(s for s in self._reads if s & 0x3 == 0x3 and s in self._finished)
        return parse_digest_line(self._reads.pop(sid))

    def request_reset(self, code: int) -> int:
        sid = self.open(command_line(Command.RESET, code), end=False)
        self.wait(lambda: self._event(StreamReset, sid) is not None)
        event = self._event(StreamReset, sid)
        assert isinstance(event, StreamReset)
        return event.error_code

    def request_stop(self, code: int) -> int:
        sid = self.open(command_line(Command.STOP, code), end=False)
        self.wait(lambda: self._event(StopSendingReceived, sid) is not None)
        event = self._event(StopSendingReceived, sid)
        assert isinstance(event, StopSendingReceived)
        return event.error_code

    def reset_from_client(self, code: int) -> int:
        sid = self.open(command_line(Command.ECHO), end=False)
        self.call(lambda: self.conn.streams.reset_stream(sid, code))
        return sid

    def key_update(self) -> None:
        self.call(self.conn.request_key_update)

    def request_close(self, code: int, reason: str) -> ConnectionTerminatedEvent:
        self.open(command_line(Command.CLOSE, code, reason), end=False)
        self.wait(lambda: self.terminated is not None)
        event = self.terminated
        assert event is not None
        return event

    def _event(self, kind: type, sid: int) -> Event | None:
        for event in self.events:
            if isinstance(event, kind) and getattr(event, "stream_id", None) == sid:
                return event
        return None
