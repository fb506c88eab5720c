"""Test drivers for :class:`mstls.tls.tcp.TLSConnection`: in memory and over a real socket."""

from __future__ import annotations

import socket
from collections.abc import Callable

from mstls.tls.config import TLSConfig
from mstls.tls.tcp import ApplicationData, CloseNotifyReceived, Event, TLSConnection

#: Bound on pump rounds so a bug can never hang a test.
MAX_ROUNDS = 100


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
