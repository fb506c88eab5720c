"""aioquic as the other end of interop tests: a threaded server and a client runner.

aioquic is a TEST PEER ONLY: nothing under ``mstls/`` may import it.  Both sides speak
the ``mstls-test`` protocol of :mod:`tests.interop.protocol`.

Theory of operation
-------------------
* :class:`AioquicServer` runs its own asyncio event loop in a daemon thread, with
  ``aioquic.asyncio.serve`` on a UDP socket.  Each connection gets a
  :class:`_ServerProtocol` that feeds aioquic's events into a
  :class:`~tests.interop.protocol.ServiceSession` and carries its actions out with
  aioquic's connection-level calls (``send_stream_data``, ``reset_stream``,
  ``stop_stream``, ``close``, ``request_key_update``).  What the server observes goes
  into a thread-safe :class:`EventLog` that tests read from their own thread.
* :func:`~tests.interop.aioquic_client.run_aioquic_client` runs one aioquic client
  connection in a fresh thread with its own ``asyncio.run``, so it can be called from
  plain tests, from a trio test (it blocks that thread only) or next to a blocking
  mstls server.  The caller's
  ``scenario`` coroutine receives a ``ClientHandle`` whose methods mirror the
  protocol's commands; every wait is bounded by a timeout.
* Who closed a connection is not in aioquic's ``ConnectionTerminated`` event, so both
  sides remember whether the connection went through CLOSING (we closed) or DRAINING
  (the peer closed) before it ended; an idle timeout goes through neither.
* Errors raised inside the server's event handling are kept in
  :attr:`AioquicServer.errors` and make :meth:`AioquicServer.stop` fail, so a broken
  test peer cannot pass silently.
"""

from __future__ import annotations

import asyncio
import functools
import os
import threading
import time
import traceback
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import Any, NamedTuple, Self, TextIO, cast

from aioquic import tls
from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.asyncio.server import QuicServer, serve
from aioquic.quic import events
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection, QuicConnectionState
from aioquic.quic.packet import QuicProtocolVersion

from tests.interop.protocol import (
    ALPN,
    CIPHER_SUITE_NAMES,
    EVENT_CONNECTION_CLOSED,
    EVENT_HANDSHAKE,
    EVENT_KEY_PHASE_CHANGE,
    EVENT_STOP_SENDING,
    EVENT_STREAM_RESET,
    Action,
    Close,
    KeyUpdate,
    Reset,
    Send,
    SendUni,
    ServiceSession,
    Stop,
)

__all__ = [
    "DEFAULT_IDLE_TIMEOUT",
    "DEFAULT_OPERATION_TIMEOUT",
    "AioquicServer",
    "ConnectionEnded",
    "EventLog",
    "HandshakeInfo",
    "InteropError",
    "LogEvent",
    "StreamResetByPeer",
    "Termination",
]

#: One entry of a server's event log; see :mod:`tests.interop.protocol`.
LogEvent = tuple[Any, ...]
SecretsLog = str | os.PathLike[str] | TextIO | None

DEFAULT_IDLE_TIMEOUT = 30.0
#: Bound of each :class:`ClientHandle` operation and of :meth:`EventLog.wait_for`.
DEFAULT_OPERATION_TIMEOUT = 30.0
#: Bound of starting and of stopping the server's loop thread.
LOOP_START_TIMEOUT = 10.0
LOOP_STOP_TIMEOUT = 5.0
_END_STATES = (QuicConnectionState.CLOSING, QuicConnectionState.DRAINING)


class InteropError(Exception):
    """The peer did not behave as the ``mstls-test`` protocol says."""


class StreamResetByPeer(InteropError):
    """The peer reset a stream we were reading."""

    def __init__(self, stream_id: int, code: int) -> None:
        super().__init__(f"stream {stream_id} reset by peer with code {code:#x}")
        self.stream_id = stream_id
        self.code = code


class Termination(NamedTuple):
    """How a connection ended; ``frame_type`` is None for an application close."""

    code: int
    frame_type: int | None
    reason: str
    by_peer: bool


class ConnectionEnded(InteropError):
    """The connection ended while an operation waited."""

    def __init__(self, termination: Termination) -> None:
        super().__init__(f"connection ended: {termination}")
        self.termination = termination


class HandshakeInfo(NamedTuple):
    """What the handshake agreed on: ALPN and cipher suite name (``CIPHER_SUITE_NAMES``)."""

    alpn: str | None
    cipher_suite: str


class EventLog:
    """A thread-safe list of :data:`LogEvent` tuples with a blocking wait."""

    def __init__(self) -> None:
        self._events: list[LogEvent] = []
        self._changed = threading.Condition()

    def append(self, event: LogEvent) -> None:
        with self._changed:
            self._events.append(event)
            self._changed.notify_all()

    def snapshot(self) -> list[LogEvent]:
        with self._changed:
            return list(self._events)

    def wait_for(
        self, predicate: Callable[[LogEvent], bool], timeout: float = DEFAULT_OPERATION_TIMEOUT
    ) -> LogEvent:
        """The first logged event (past or future) matching ``predicate``; TimeoutError."""
        deadline = time.monotonic() + timeout
        seen = 0
        with self._changed:
            while True:
                for event in self._events[seen:]:
                    if predicate(event):
                        return event
                seen = len(self._events)
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"no matching event in {timeout} s: {self._events}")
                self._changed.wait(remaining)


# --- shared by both roles -----------------------------------------------------------


def peer_configuration(
    *,
    is_client: bool,
    alpn: Iterable[str],
    cipher_suites: Iterable[int] | None,
    idle_timeout: float,
    secrets_log: TextIO | None,
    max_data: int | None,
    max_stream_data: int | None,
    versions: Iterable[int] | None = None,
) -> QuicConfiguration:
    """An aioquic configuration: QUIC v1 only unless ``versions`` (in aioquic's order
    of preference) asks for compatible version negotiation with v2."""
    config = QuicConfiguration(
        is_client=is_client,
        alpn_protocols=list(alpn),
        idle_timeout=idle_timeout,
        secrets_log_file=secrets_log,
        supported_versions=list(versions or [QuicProtocolVersion.VERSION_1]),
    )
    if cipher_suites is not None:
        config.cipher_suites = [tls.CipherSuite(int(suite)) for suite in cipher_suites]
    if max_data is not None:
        config.max_data = max_data
    if max_stream_data is not None:
        config.max_stream_data = max_stream_data
    return config


def open_secrets_log(secrets_log: SecretsLog) -> tuple[TextIO | None, bool]:
    """The SSLKEYLOGFILE-style stream and whether we opened it (and must close it)."""
    if secrets_log is None or hasattr(secrets_log, "write"):
        return cast(TextIO | None, secrets_log), False
    return open(cast(str, secrets_log), "a", encoding="ascii"), True


class ObservingProtocol(QuicConnectionProtocol):
    """Remembers what aioquic's events leave out: who closed, and the 1-RTT key phase."""

    def __init__(self, quic: QuicConnection, stream_handler: Any = None) -> None:
        super().__init__(quic, stream_handler)
        self.end_state: QuicConnectionState | None = None
        self.key_phase: int | None = None

    def transmit(self) -> None:
        super().transmit()
        state = self._quic._state
        if state in _END_STATES and self.end_state is None:
            self.end_state = state
        crypto = self._quic._cryptos.get(tls.Epoch.ONE_RTT)
        if crypto is not None and crypto.recv.is_valid():
            phase = crypto.recv.key_phase
            if self.key_phase is not None and phase != self.key_phase:
                self.key_phase_changed(phase)
            self.key_phase = phase

    def key_phase_changed(self, phase: int) -> None:
        """Called when the 1-RTT receive key phase flips (RFC 9001 §6)."""

    def termination(self, event: events.ConnectionTerminated) -> Termination:
        return Termination(
            event.error_code,
            event.frame_type,
            event.reason_phrase,
            self.end_state is QuicConnectionState.DRAINING,
        )

    def handshake_info(self, event: events.HandshakeCompleted) -> HandshakeInfo:
        schedule = self._quic.tls.key_schedule
        suite = -1 if schedule is None else int(schedule.cipher_suite)
        return HandshakeInfo(event.alpn_protocol, CIPHER_SUITE_NAMES.get(suite, hex(suite)))


# --- server -------------------------------------------------------------------------


class _ServerProtocol(ObservingProtocol):
    """One server connection: aioquic events in, :class:`ServiceSession` actions out."""

    def __init__(
        self, quic: QuicConnection, stream_handler: Any = None, *, server: AioquicServer
    ) -> None:
        super().__init__(quic, stream_handler)
        self._server = server
        self._session = ServiceSession()

    def quic_event_received(self, event: events.QuicEvent) -> None:
        handler = _SERVER_HANDLERS.get(type(event))
        if handler is None:
            return
        try:
            handler(self, event)
        except Exception:
            self._server.errors.append(traceback.format_exc())

    def key_phase_changed(self, phase: int) -> None:
        self._server.log.append((EVENT_KEY_PHASE_CHANGE, phase))

    def _on_data(self, event: events.StreamDataReceived) -> None:
        for action in self._session.on_stream_data(event.stream_id, event.data, event.end_stream):
            self._apply(action)

    def _on_reset(self, event: events.StreamReset) -> None:
        self._session.on_stream_reset(event.stream_id)
        self._server.log.append((EVENT_STREAM_RESET, event.stream_id, event.error_code))

    def _on_stop_sending(self, event: events.StopSendingReceived) -> None:
        self._session.on_stop_sending(event.stream_id)
        self._server.log.append((EVENT_STOP_SENDING, event.stream_id, event.error_code))

    def _on_terminated(self, event: events.ConnectionTerminated) -> None:
        end = self.termination(event)
        self._server.log.append((EVENT_CONNECTION_CLOSED, end.code, end.reason, end.by_peer))

    def _on_handshake(self, event: events.HandshakeCompleted) -> None:
        self._server.log.append((EVENT_HANDSHAKE, *self.handshake_info(event)))
        self._server.resumed.append(event.session_resumed)

    def _on_datagram(self, event: events.DatagramFrameReceived) -> None:
        """RFC 9221: echo every datagram (servers started with ``datagrams=True``)."""
        self._quic.send_datagram_frame(event.data)
        self.transmit()

    def _apply(self, action: Action) -> None:
        quic = self._quic
        match action:
            case Send(stream_id, data, end):
                quic.send_stream_data(stream_id, data, end_stream=end)
            case SendUni(data):
                stream_id = quic.get_next_available_stream_id(is_unidirectional=True)
                quic.send_stream_data(stream_id, data, end_stream=True)
            case Reset(stream_id, code):
                quic.reset_stream(stream_id, code)
            case Stop(stream_id, code):
                quic.stop_stream(stream_id, code)
            case Close(code, reason):
                quic.close(error_code=code, reason_phrase=reason)
            case KeyUpdate():
                quic.request_key_update()


_SERVER_HANDLERS: dict[type[events.QuicEvent], Callable[[_ServerProtocol, Any], None]] = {
    events.StreamDataReceived: _ServerProtocol._on_data,
    events.StreamReset: _ServerProtocol._on_reset,
    events.StopSendingReceived: _ServerProtocol._on_stop_sending,
    events.ConnectionTerminated: _ServerProtocol._on_terminated,
    events.HandshakeCompleted: _ServerProtocol._on_handshake,
    events.DatagramFrameReceived: _ServerProtocol._on_datagram,
}


class AioquicServer:
    """An aioquic ``mstls-test`` server on its own loop thread; use as a context manager.

    ``cipher_suites`` are TLS code points (aioquic's, mstls's or plain ints);
    ``secrets_log`` is a path or text stream for SSLKEYLOGFILE lines.
    """

    def __init__(
        self,
        certfile: str | os.PathLike[str],
        keyfile: str | os.PathLike[str],
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        retry: bool = False,
        cipher_suites: Iterable[int] | None = None,
        alpn: Iterable[str] = (ALPN,),
        idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
        secrets_log: SecretsLog = None,
        max_data: int | None = None,
        max_stream_data: int | None = None,
        versions: Iterable[int] | None = None,
        datagrams: bool = False,
        session_tickets: bool = False,
    ) -> None:
        self.log = EventLog()
        #: ``session_resumed`` of each handshake, in order.
        self.resumed: list[bool] = []
        #: Tickets issued (``session_tickets=True``), by ticket label; each is single-use.
        self.tickets: dict[bytes, tls.SessionTicket] | None = {} if session_tickets else None
        #: Tracebacks of exceptions raised while handling events (a bug in the peer).
        self.errors: list[str] = []
        self._host, self._port, self._retry = host, port, retry
        self._secrets, self._owns_secrets = open_secrets_log(secrets_log)
        self._config = peer_configuration(
            is_client=False,
            alpn=alpn,
            cipher_suites=cipher_suites,
            idle_timeout=idle_timeout,
            secrets_log=self._secrets,
            max_data=max_data,
            max_stream_data=max_stream_data,
            versions=versions,
        )
        self._config.load_cert_chain(certfile, keyfile)
        if datagrams:  # RFC 9221 §3: any DATAGRAM frame that fits a packet
            self._config.max_datagram_frame_size = 65535
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: QuicServer | None = None
        self.address: tuple[str, int] = (host, port)

    @property
    def port(self) -> int:
        return self.address[1]

    @property
    def events(self) -> list[LogEvent]:
        """A copy of the event log so far."""
        return self.log.snapshot()

    def wait_for_event(
        self, predicate: Callable[[LogEvent], bool], timeout: float = DEFAULT_OPERATION_TIMEOUT
    ) -> LogEvent:
        """The first logged event matching ``predicate``; TimeoutError after ``timeout``."""
        return self.log.wait_for(predicate, timeout)

    def start(self) -> Self:
        loop = asyncio.new_event_loop()
        loop.set_exception_handler(self._loop_error)
        self._loop = loop
        self._thread = threading.Thread(
            target=self._run, args=(loop,), name="aioquic-server", daemon=True
        )
        self._thread.start()
        future = asyncio.run_coroutine_threadsafe(self._serve(), loop)
        self._server = future.result(LOOP_START_TIMEOUT)
        return self

    def stop(self) -> None:
        """Close every connection and the socket, end the thread; raise on peer errors."""
        loop, thread = self._loop, self._thread
        self._loop = self._thread = None
        if loop is not None and thread is not None:
            if loop.is_running():
                future = asyncio.run_coroutine_threadsafe(self._close(), loop)
                future.result(LOOP_STOP_TIMEOUT)
                loop.call_soon_threadsafe(loop.stop)
            thread.join(LOOP_STOP_TIMEOUT)
            if thread.is_alive():
                raise RuntimeError("aioquic server thread did not stop")
        if self._owns_secrets and self._secrets is not None:
            self._secrets.close()
        if self.errors:
            raise InteropError("aioquic server errors:\n" + "\n".join(self.errors))

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            self.stop()
        except InteropError:
            if exc is None:
                raise

    @staticmethod
    def _run(loop: asyncio.AbstractEventLoop) -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_forever()
        finally:
            loop.close()

    async def _serve(self) -> QuicServer:
        create = functools.partial(_ServerProtocol, server=self)
        tickets = self.tickets
        server = await serve(
            self._host, self._port, configuration=self._config, create_protocol=create,
            retry=self._retry,
            session_ticket_fetcher=None if tickets is None else lambda t: tickets.pop(t, None),
            session_ticket_handler=None if tickets is None else (
                lambda ticket: tickets.__setitem__(ticket.ticket, ticket)
            ),
        )  # fmt: skip
        transport = cast(asyncio.DatagramTransport, server._transport)
        self.address = cast(tuple[str, int], transport.get_extra_info("sockname")[:2])
        return server

    async def _close(self) -> None:
        if self._server is not None:
            self._server.close()

    def _loop_error(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        self.errors.append(str(context.get("exception") or context.get("message")))
