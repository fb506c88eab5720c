"""aioquic as the client of interop tests: :func:`run_aioquic_client` runs one aioquic
client connection in a fresh thread with its own ``asyncio.run`` and hands the
caller's ``scenario`` coroutine a :class:`ClientHandle` whose methods mirror the
``mstls-test`` protocol's commands, every wait bounded by a timeout.  The server side
and what both share are in :mod:`tests.interop.aioquic_peer`.

aioquic is a TEST PEER ONLY: nothing under ``mstls/`` may import it.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

from aioquic import tls
from aioquic.asyncio.client import connect
from aioquic.quic import events
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection

from tests.interop.aioquic_peer import (
    DEFAULT_IDLE_TIMEOUT,
    DEFAULT_OPERATION_TIMEOUT,
    ConnectionEnded,
    HandshakeInfo,
    InteropError,
    ObservingProtocol,
    SecretsLog,
    StreamResetByPeer,
    Termination,
    open_secrets_log,
    peer_configuration,
)
from tests.interop.protocol import (
    ALPN,
    OK_REPLY,
    Command,
    command_line,
    is_client_initiated,
    is_unidirectional,
    parse_digest_line,
)

__all__ = ["ClientHandle", "run_aioquic_client"]

T = TypeVar("T")
#: Extra time a client thread gets beyond its scenario timeout to unwind.
JOIN_GRACE = 5.0
#: Placeholder stream ID queued when the connection ends, to wake uni-stream waiters.
_NO_STREAM = -1


# --- client -------------------------------------------------------------------------


@dataclass(slots=True)
class _Inbox:
    """What arrived on one stream."""

    data: bytearray = field(default_factory=bytearray)
    fin: bool = False
    reset_code: int | None = None
    stop_code: int | None = None
    changed: asyncio.Event = field(default_factory=asyncio.Event)


class _ClientProtocol(ObservingProtocol):
    """Collects per-stream data and signals in :class:`_Inbox` records."""

    def __init__(self, quic: QuicConnection, stream_handler: Any = None) -> None:
        super().__init__(quic, stream_handler)
        self.inboxes: dict[int, _Inbox] = {}
        self.server_uni: asyncio.Queue[tuple[int, bytes]] = asyncio.Queue()
        self.handshake: HandshakeInfo | None = None
        self.ended: Termination | None = None
        self.key_phase_changes = 0

    def inbox(self, stream_id: int) -> _Inbox:
        box = self.inboxes.get(stream_id)
        if box is None:
            box = self.inboxes[stream_id] = _Inbox()
        return box

    def quic_event_received(self, event: events.QuicEvent) -> None:
        handler = _CLIENT_HANDLERS.get(type(event))
        if handler is not None:
            handler(self, event)

    def key_phase_changed(self, phase: int) -> None:
        self.key_phase_changes += 1

    def _on_data(self, event: events.StreamDataReceived) -> None:
        box = self.inbox(event.stream_id)
        box.data += event.data
        box.fin = box.fin or event.end_stream
        box.changed.set()
        sid = event.stream_id
        if box.fin and is_unidirectional(sid) and not is_client_initiated(sid):
            del self.inboxes[sid]
            self.server_uni.put_nowait((sid, bytes(box.data)))

    def _on_reset(self, event: events.StreamReset) -> None:
        box = self.inbox(event.stream_id)
        box.reset_code = event.error_code
        box.changed.set()

    def _on_stop_sending(self, event: events.StopSendingReceived) -> None:
        box = self.inbox(event.stream_id)
        box.stop_code = event.error_code
        box.changed.set()

    def _on_terminated(self, event: events.ConnectionTerminated) -> None:
        self.ended = self.termination(event)
        for box in self.inboxes.values():
            box.changed.set()
        self.server_uni.put_nowait((_NO_STREAM, b""))

    def _on_handshake(self, event: events.HandshakeCompleted) -> None:
        self.handshake = self.handshake_info(event)


_CLIENT_HANDLERS: dict[type[events.QuicEvent], Callable[[_ClientProtocol, Any], None]] = {
    events.StreamDataReceived: _ClientProtocol._on_data,
    events.StreamReset: _ClientProtocol._on_reset,
    events.StopSendingReceived: _ClientProtocol._on_stop_sending,
    events.ConnectionTerminated: _ClientProtocol._on_terminated,
    events.HandshakeCompleted: _ClientProtocol._on_handshake,
}


class ClientHandle:
    """One aioquic client connection, driven by a scenario coroutine (not thread-safe).

    The protocol methods open a fresh stream each; every one takes ``timeout``.  The
    low-level ones (:meth:`open_stream`, :meth:`send`, :meth:`read_to_end`) let a test
    build its own exchanges.
    """

    def __init__(self, protocol: _ClientProtocol) -> None:
        self.protocol = protocol
        self._uni_lock = asyncio.Lock()

    # -- state

    @property
    def quic(self) -> QuicConnection:
        return self.protocol._quic

    @property
    def handshake_info(self) -> HandshakeInfo:
        info = self.protocol.handshake
        if info is None:
            raise InteropError("handshake not complete")
        return info

    @property
    def version(self) -> int:
        """The QUIC version the connection uses (after any negotiation)."""
        return int(self.protocol._quic._version)

    @property
    def retried(self) -> bool:
        """Whether the server sent a Retry that the client followed (RFC 9000 §8.1.2)."""
        return self.protocol._quic._retry_count > 0

    @property
    def key_phase(self) -> int | None:
        """The current 1-RTT receive key phase bit."""
        return self.protocol.key_phase

    @property
    def key_phase_changes(self) -> int:
        return self.protocol.key_phase_changes

    @property
    def termination(self) -> Termination | None:
        return self.protocol.ended

    # -- low level

    def open_stream(self, unidirectional: bool = False) -> int:
        stream_id = self.quic.get_next_available_stream_id(is_unidirectional=unidirectional)
        self.protocol.inbox(stream_id)
        return stream_id

    def send(self, stream_id: int, data: bytes, end: bool = False) -> None:
        """Queue ``data`` (kept by aioquic, not copied again) and transmit."""
        self.quic.send_stream_data(stream_id, data, end_stream=end)
        self.protocol.transmit()

    async def wait_stream(
        self, stream_id: int, done: Callable[[_Inbox], bool], timeout: float
    ) -> _Inbox:
        """Wait until ``done(inbox)``; ConnectionEnded if the connection ends first."""
        box = self.protocol.inbox(stream_id)
        async with asyncio.timeout(timeout):
            while not done(box):
                if self.protocol.ended is not None:
                    raise ConnectionEnded(self.protocol.ended)
                box.changed.clear()
                await box.changed.wait()
        return box

    async def read_to_end(
        self, stream_id: int, timeout: float = DEFAULT_OPERATION_TIMEOUT
    ) -> bytes:
        """Everything the peer sends on the stream up to FIN; StreamResetByPeer on reset."""
        box = await self.wait_stream(
            stream_id, lambda b: b.fin or b.reset_code is not None, timeout
        )
        del self.protocol.inboxes[stream_id]
        if box.reset_code is not None:
            raise StreamResetByPeer(stream_id, box.reset_code)
        return bytes(box.data)

    async def next_server_uni(self, timeout: float = DEFAULT_OPERATION_TIMEOUT) -> bytes:
        """The content of the next server unidirectional stream to finish."""
        stream_id, data = await asyncio.wait_for(self.protocol.server_uni.get(), timeout)
        if stream_id == _NO_STREAM:
            self.protocol.server_uni.put_nowait((stream_id, data))
            assert self.protocol.ended is not None
            raise ConnectionEnded(self.protocol.ended)
        return data

    async def _command(self, line: bytes, data: bytes, timeout: float) -> bytes:
        stream_id = self.open_stream()
        self.send(stream_id, line)
        self.send(stream_id, data, end=True)
        return await self.read_to_end(stream_id, timeout)

    # -- the protocol's commands

    async def echo(self, data: bytes, timeout: float = DEFAULT_OPERATION_TIMEOUT) -> bytes:
        """``echo``: what came back."""
        return await self._command(command_line(Command.ECHO), data, timeout)

    async def echo_after_key_update(
        self, data: bytes, timeout: float = DEFAULT_OPERATION_TIMEOUT
    ) -> bytes:
        """``keyupdate`` (the server updates its keys), then echo ``data``."""
        return await self._command(command_line(Command.KEYUPDATE), data, timeout)

    async def sink(self, data: bytes, timeout: float = DEFAULT_OPERATION_TIMEOUT) -> str:
        """``sink``: the server's hex SHA-256 of ``data``."""
        reply = await self._command(command_line(Command.SINK), data, timeout)
        return parse_digest_line(reply)

    async def source(self, n: int, timeout: float = DEFAULT_OPERATION_TIMEOUT) -> bytes:
        """``source N``: the bytes the server sent."""
        return await self._command(command_line(Command.SOURCE, n), b"", timeout)

    async def uni(self, data: bytes, timeout: float = DEFAULT_OPERATION_TIMEOUT) -> str:
        """Send ``data`` on a client uni stream; the digest from the server's uni stream."""
        async with self._uni_lock:
            stream_id = self.open_stream(unidirectional=True)
            self.send(stream_id, data, end=True)
            return parse_digest_line(await self.next_server_uni(timeout))

    async def uni_source(self, n: int, timeout: float = DEFAULT_OPERATION_TIMEOUT) -> bytes:
        """``uni N``: checks the ``ok`` reply, returns the server's uni stream content."""
        async with self._uni_lock:
            reply = await self._command(command_line(Command.UNI, n), b"", timeout)
            if reply != OK_REPLY:
                raise InteropError(f"uni: expected {OK_REPLY!r}, got {reply[:80]!r}")
            return await self.next_server_uni(timeout)

    async def request_reset(self, code: int, timeout: float = DEFAULT_OPERATION_TIMEOUT) -> int:
        """``reset CODE``: the code of the server's RESET_STREAM."""
        stream_id = self.open_stream()
        self.send(stream_id, command_line(Command.RESET, code), end=True)
        try:
            data = await self.read_to_end(stream_id, timeout)
        except StreamResetByPeer as reset:
            return reset.code
        raise InteropError(f"expected RESET_STREAM, stream ended with FIN after {data[:80]!r}")

    async def request_stop(self, code: int, timeout: float = DEFAULT_OPERATION_TIMEOUT) -> int:
        """``stop CODE`` (our side stays open): the code of the server's STOP_SENDING."""
        stream_id = self.open_stream()
        self.send(stream_id, command_line(Command.STOP, code))
        box = await self.wait_stream(stream_id, lambda b: b.stop_code is not None or b.fin, timeout)
        if box.stop_code is None:
            raise InteropError("expected STOP_SENDING, the stream ended with FIN")
        return box.stop_code

    def reset_stream_from_client(self, code: int) -> int:
        """Open an ``echo`` stream and reset our sending side; returns the stream ID."""
        stream_id = self.open_stream()
        self.send(stream_id, command_line(Command.ECHO))
        self.quic.reset_stream(stream_id, code)
        self.protocol.transmit()
        return stream_id

    def stop_stream_from_client(self, code: int) -> int:
        """Open an ``echo`` stream and send STOP_SENDING on it; returns the stream ID."""
        stream_id = self.open_stream()
        self.send(stream_id, command_line(Command.ECHO))
        self.quic.stop_stream(stream_id, code)
        self.protocol.transmit()
        return stream_id

    async def key_update(self, timeout: float = DEFAULT_OPERATION_TIMEOUT) -> None:
        """Initiate a 1-RTT key update and wait until a PING in the new keys is ACKed."""
        self.protocol.request_key_update()
        await asyncio.wait_for(self.protocol.ping(), timeout)

    async def close(
        self, code: int = 0, reason: str = "", timeout: float = DEFAULT_OPERATION_TIMEOUT
    ) -> Termination:
        """Close with application error ``code`` and wait for the end of the closing period."""
        self.protocol.close(error_code=code, reason_phrase=reason)
        await asyncio.wait_for(self.protocol.wait_closed(), timeout)
        assert self.protocol.ended is not None
        return self.protocol.ended

    async def closed_by_peer(self, timeout: float = DEFAULT_OPERATION_TIMEOUT) -> tuple[int, str]:
        """Wait for the peer's CONNECTION_CLOSE: its ``(code, reason)``."""
        await asyncio.wait_for(self.protocol.wait_closed(), timeout)
        ended = self.protocol.ended
        if ended is None or not ended.by_peer:
            raise InteropError(f"connection did not end by the peer's close: {ended}")
        return ended.code, ended.reason

    async def request_close(
        self, code: int, reason: str = "", timeout: float = DEFAULT_OPERATION_TIMEOUT
    ) -> tuple[int, str]:
        """``close CODE REASON``: the ``(code, reason)`` of the server's close."""
        stream_id = self.open_stream()
        self.send(stream_id, command_line(Command.CLOSE, code, reason), end=True)
        return await self.closed_by_peer(timeout)


async def _client_main(
    host: str,
    port: int,
    config: QuicConfiguration,
    scenario: Callable[[ClientHandle], Awaitable[T]],
    session_ticket_handler: Callable[[tls.SessionTicket], None] | None = None,
    wait_connected: bool = True,
) -> T:
    async with connect(
        host, port, configuration=config, create_protocol=_ClientProtocol,
        session_ticket_handler=session_ticket_handler, wait_connected=wait_connected,
    ) as p:  # fmt: skip
        return await scenario(ClientHandle(cast(_ClientProtocol, p)))


def run_aioquic_client(
    host: str,
    port: int,
    cafile: str | os.PathLike[str],
    scenario: Callable[[ClientHandle], Awaitable[T]],
    *,
    server_name: str = "localhost",
    cipher_suites: Iterable[int] | None = None,
    alpn: Iterable[str] = (ALPN,),
    timeout: float = 60.0,
    idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
    secrets_log: SecretsLog = None,
    max_data: int | None = None,
    max_stream_data: int | None = None,
    versions: Iterable[int] | None = None,
    session_ticket: tls.SessionTicket | None = None,
    session_ticket_handler: Callable[[tls.SessionTicket], None] | None = None,
    wait_connected: bool = True,
) -> T:
    """Connect an aioquic client, run ``scenario(handle)``, close; from any thread.

    ``session_ticket`` is offered for resumption; ``session_ticket_handler`` receives
    the tickets the server sends.  ``wait_connected=False`` runs the scenario before
    the handshake completes (with a ticket: its stream data goes as 0-RTT).

    Runs in a fresh thread with its own asyncio loop and returns the scenario's result
    or raises its exception (TimeoutError after ``timeout`` seconds in all).  A failed
    handshake raises ConnectionError.
    """
    secrets, owns_secrets = open_secrets_log(secrets_log)
    config = peer_configuration(
        is_client=True,
        alpn=alpn,
        cipher_suites=cipher_suites,
        idle_timeout=idle_timeout,
        secrets_log=secrets,
        max_data=max_data,
        max_stream_data=max_stream_data,
        versions=versions,
    )
    config.server_name = server_name
    config.session_ticket = session_ticket
    config.load_verify_locations(cafile=os.fspath(cafile))
    outcome: list[T] = []
    failure: list[BaseException] = []

    def worker() -> None:
        try:
            main = _client_main(
                host, port, config, scenario, session_ticket_handler, wait_connected
            )
            outcome.append(asyncio.run(asyncio.wait_for(main, timeout)))
        except BaseException as exc:
            failure.append(exc)

    thread = threading.Thread(target=worker, name="aioquic-client", daemon=True)
    try:
        thread.start()
        thread.join(timeout + JOIN_GRACE)
    finally:
        if owns_secrets and secrets is not None and not thread.is_alive():
            secrets.close()
    if thread.is_alive():
        raise TimeoutError(f"aioquic client thread still running after {timeout} s")
    if failure:
        raise failure[0]
    return outcome[0]
