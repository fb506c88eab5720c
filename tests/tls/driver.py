"""Test drivers: :class:`mstls.tls.tcp.TLSConnection` in memory and over a real
socket, and :class:`EnginePair`, two handshake engines wired message by message
(no record layer), for tests that craft or rewrite one peer's flight."""

from __future__ import annotations

import socket
from collections import deque
from collections.abc import Callable
from typing import Any

import attrs

from mstls.tls.client import ClientHandshake
from mstls.tls.config import TLSConfig
from mstls.tls.engine import Epoch, SendHandshake, TLSHandshake
from mstls.tls.messages import frame_message
from mstls.tls.server import ServerHandshake
from mstls.tls.states import HandshakeState, Role
from mstls.tls.tcp import ApplicationData, CloseNotifyReceived, Event, TLSConnection
from tests.certs import SERVER_NAME, TestPKI

#: Bound on pump rounds so a bug can never hang a test.
MAX_ROUNDS = 100
#: ALPN protocol both test peers use.
ALPN = ["mstls-test"]


def client_config(pki: TestPKI, **kw: Any) -> TLSConfig:
    """A client that verifies the test PKI's server as :data:`SERVER_NAME`."""
    options: dict[str, Any] = dict(
        alpn_protocols=ALPN, server_name=SERVER_NAME, trusted_roots=pki.roots
    )
    options.update(kw)
    return TLSConfig(**options)


def server_config(pki: TestPKI, cert: str = "server", **kw: Any) -> TLSConfig:
    """A server with the test PKI's ``cert`` pair."""
    pair = getattr(pki, cert)
    options: dict[str, Any] = dict(
        alpn_protocols=ALPN,
        certificate_chain=[pair.certificate],
        private_key=pair.private_key,
        trusted_roots=pki.roots,
    )
    options.update(kw)
    return TLSConfig(**options)


def pump(
    client: TLSConnection,
    server: TLSConnection,
    *,
    to_server: Callable[[bytes], bytes] = lambda b: b,
    to_client: Callable[[bytes], bytes] = lambda b: b,
) -> None:
    """Move bytes between two in-memory connections until neither has anything to send.

    ``to_server``/``to_client`` may rewrite the bytes in flight (tampering tests).
    """
    for _ in range(MAX_ROUNDS):
        a = client.data_to_send()
        b = server.data_to_send()
        if not a and not b:
            return
        if a:
            server.receive_data(to_server(a))
        if b:
            client.receive_data(to_client(b))
    raise AssertionError("in-memory pump did not settle")


def memory_pair(
    client_config: TLSConfig, server_config: TLSConfig
) -> tuple[TLSConnection, TLSConnection]:
    client = TLSConnection(client_config, is_client=True)
    server = TLSConnection(server_config, is_client=False)
    client.start()
    server.start()
    return client, server


def drain(conn: TLSConnection) -> list[Event]:
    events = []
    while (event := conn.next_event()) is not None:
        events.append(event)
    return events


class BlockingTLS:
    """A minimal blocking socket driver for one TLSConnection (tests only)."""

    def __init__(self, sock: socket.socket, conn: TLSConnection) -> None:
        self.sock = sock
        self.conn = conn
        self.received = bytearray()
        self.closed_by_peer = False

    def flush(self) -> None:
        data = self.conn.data_to_send()
        if data:
            self.sock.sendall(data)

    def _read_once(self) -> None:
        data = self.sock.recv(65536)
        try:
            if data:
                self.conn.receive_data(data)
            else:
                self.conn.receive_eof()
                self.closed_by_peer = True
        finally:
            self.flush()
        for event in drain(self.conn):
            if isinstance(event, ApplicationData):
                self.received += event.data
            elif isinstance(event, CloseNotifyReceived):
                self.closed_by_peer = True

    def handshake(self) -> None:
        self.conn.start()
        self.flush()
        for _ in range(MAX_ROUNDS):
            if self.conn.handshake_complete:
                return
            self._read_once()
            if self.closed_by_peer:
                raise AssertionError("peer closed during the handshake")
        raise AssertionError("handshake did not complete")

    def send(self, data: bytes) -> None:
        self.conn.send(data)
        self.flush()

    def recv_exactly(self, n: int) -> bytes:
        for _ in range(10 * MAX_ROUNDS + n // 1000):
            if len(self.received) >= n or self.closed_by_peer:
                break
            self._read_once()
        out = bytes(self.received[:n])
        del self.received[:n]
        return out

    def recv_until_close(self) -> bytes:
        for _ in range(100 * MAX_ROUNDS):
            if self.closed_by_peer:
                break
            self._read_once()
        out = bytes(self.received)
        self.received.clear()
        return out

    def abort(self) -> None:
        """After a failure: send what is queued (the alert), FIN, and read until the
        peer's FIN so that closing never resets the connection under the alert."""
        try:
            self.flush()
            self.sock.shutdown(socket.SHUT_WR)
            for _ in range(10 * MAX_ROUNDS):
                if not self.sock.recv(65536):
                    break
        except OSError:
            pass

    def close(self) -> None:
        self.conn.close()
        self.flush()
        self.sock.shutdown(socket.SHUT_WR)


# -- engines, message by message ---------------------------------------------------------
def split_messages(data: bytes) -> list[bytes]:
    """The framed handshake messages (header included) in ``data``."""
    out = []
    pos = 0
    while pos < len(data):
        end = pos + 4 + int.from_bytes(data[pos + 1 : pos + 4], "big")
        out.append(data[pos:end])
        pos = end
    assert pos == len(data)
    return out


@attrs.frozen
class Message:
    """One framed handshake message on its way, with the epoch it was sent at."""

    epoch: Epoch
    raw: bytes

    @property
    def msg_type(self) -> int:
        return self.raw[0]

    @property
    def body(self) -> bytes:
        return self.raw[4:]

    def with_body(self, body: bytes) -> Message:
        return Message(self.epoch, frame_message(self.msg_type, body))


@attrs.frozen
class Step:
    """What one delivered message did to its receiver."""

    role: Role
    before: HandshakeState
    msg_type: int
    after: HandshakeState


class EnginePair:
    """A client and a server engine exchanging handshake messages in memory.

    Each peer's output is split into messages and queued in the other's
    :attr:`inbox`; :meth:`deliver` hands over one message at a time, so a test
    can stop before any message, rewrite it, or feed the engine its own.  Every
    delivery is recorded in :attr:`trace`.
    """

    def __init__(
        self,
        client_config: TLSConfig,
        server_config: TLSConfig,
        *,
        transport_parameters: tuple[bytes, bytes] | None = None,
    ) -> None:
        """``transport_parameters`` (client's, server's) puts both in QUIC mode."""
        client_tp, server_tp = transport_parameters or (None, None)
        self.client = ClientHandshake(client_config, transport_parameters=client_tp)
        self.server = ServerHandshake(server_config, transport_parameters=server_tp)
        self.inbox: dict[Role, deque[Message]] = {Role.CLIENT: deque(), Role.SERVER: deque()}
        self.trace: list[Step] = []
        self.client.start()
        self.server.start()
        self.collect()

    def engine(self, role: Role) -> TLSHandshake:
        return self.client if role is Role.CLIENT else self.server

    def collect(self) -> None:
        """Queue everything both engines have produced for their peers."""
        for sender, receiver in ((self.client, Role.SERVER), (self.server, Role.CLIENT)):
            for item in sender.pull_output():
                if isinstance(item, SendHandshake):
                    self.inbox[receiver].extend(
                        Message(item.epoch, raw) for raw in split_messages(item.data)
                    )

    def next_message(self, role: Role) -> Message | None:
        queue = self.inbox[role]
        return queue[0] if queue else None

    def deliver(self, role: Role, message: Message | None = None) -> Message:
        """Feed ``role`` its next queued message (or ``message`` instead of it)."""
        queued = self.inbox[role].popleft()
        return self.feed(role, queued if message is None else message)

    def feed(self, role: Role, message: Message) -> Message:
        """Feed ``role`` a message of the test's own, leaving its queue alone."""
        engine = self.engine(role)
        before = engine.state
        engine.receive(message.epoch, message.raw)
        self.trace.append(Step(role, before, message.msg_type, engine.state))
        self.collect()
        return message

    def deliver_until(self, role: Role, msg_type: int) -> Message:
        """Deliver ``role``'s messages (and its peer's, as they come) until the
        next one for ``role`` is of ``msg_type``; return that one, still queued."""
        for _ in range(MAX_ROUNDS):
            message = self.next_message(role)
            if message is not None and message.msg_type == msg_type:
                return message
            self.deliver(role if message is not None else _peer(role))
        raise AssertionError(f"no message of type {msg_type} for the {role.value}")

    def run(self) -> None:
        """Deliver until neither side has anything queued."""
        for _ in range(MAX_ROUNDS):
            for role in Role:
                if self.inbox[role]:
                    self.deliver(role)
                    break
            else:
                return
        raise AssertionError("engine pair did not settle")


def _peer(role: Role) -> Role:
    return Role.SERVER if role is Role.CLIENT else Role.CLIENT
