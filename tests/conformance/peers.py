"""Peers the conformance suite controls: an mstls server and a relay that can kill it.

Theory of operation
-------------------
The client under test never talks to the server directly.  It connects to a
:class:`Relay` on 127.0.0.1, which forwards every byte (TCP) or datagram (UDP)
to a :class:`PeerServer` (the blocking mstls API, in this process, run by its
own threads) and back.  The relay is the raw peer the tests use to kill the
connection the ways a network does:

=====================  =====================================================
``blackhole()``        stop forwarding both ways: the peer *vanished*
                       (the client's idle timeout must end the connection)
``retarget(port)``     UDP: send the client's datagrams to another server from
                       now on (a restarted server with the same reset key
                       answers them with a stateless reset, RFC 9000 §10.3)
``rst()``              TCP: close the client's socket with SO_LINGER 0 (RST)
``fin()``              TCP: shut down the client's socket for writing (a FIN
                       with no close_notify, no CONNECTION_CLOSE: E8)
``close_port()``       UDP: close the port the client sends to (ICMP port
                       unreachable answers from then on: E4)
=====================  =====================================================

One daemon thread per relay runs a selector with a short poll interval; every
command is handed to that thread and :meth:`Relay.command` waits until it was
carried out, so after ``rst()`` returns the RST has been sent.  Nothing here
sends anywhere but 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import queue
import selectors
import socket
import struct
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import mstls
from tests.api.helpers import ALPN
from tests.certs import get_pki

__all__ = [
    "LOOPBACK",
    "CommandService",
    "PeerServer",
    "Relay",
    "TcpRelay",
    "UdpRelay",
    "client_config",
    "peer",
    "server_config",
]

LOOPBACK = "127.0.0.1"
POLL_INTERVAL = 0.02  # seconds: the longest the relay thread sleeps between commands
COMMAND_TIMEOUT = 5.0  # seconds a command may take before the test fails
JOIN_TIMEOUT = 5.0
RECEIVE_SIZE = 256 * 1024
MAX_DATAGRAM = 65535
#: Datagrams or reads the relay serves per socket and wake-up (bounded work).
MAX_READS_PER_WAKE = 64


def client_config(**kw: Any) -> mstls.ClientConfig:
    """A client trusting the test CA (``tests/certs.py``), for server name localhost."""
    pki = get_pki()
    kw.setdefault("cafile", pki.files("ca").cert)
    return mstls.ClientConfig(alpn=ALPN, server_name="localhost", **kw)


def server_config(cert: str = "server", **kw: Any) -> mstls.ServerConfig:
    """A server with the test PKI's certificate called ``cert``."""
    files = get_pki().files(cert)
    return mstls.ServerConfig(certfile=files.cert, keyfile=files.key, alpn=ALPN, **kw)


# -- the mstls server ------------------------------------------------------------------------
class PeerServer:
    """A blocking-API mstls listener on 127.0.0.1 whose accepted connections are
    kept in :attr:`connections` and handed to ``on_connection`` in a thread of
    their own (by default they are held: no stream is ever accepted)."""

    def __init__(
        self,
        transport: str,
        config: mstls.ServerConfig,
        on_connection: Callable[[mstls.Connection], None] | None = None,
    ) -> None:
        self.transport = transport
        self.listener = mstls.listen(LOOPBACK, 0, config, transport=transport)
        self.port: int = self.listener.address[1]
        self.connections: list[mstls.Connection] = []
        self._arrived = threading.Condition()
        self._on_connection = on_connection
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._accepting = threading.Thread(target=self._accept_loop, daemon=True)
        self._accepting.start()

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                conn = self.listener.accept(timeout=0.2)
            except mstls.Error:
                continue
            with self._arrived:
                self.connections.append(conn)
                self._arrived.notify_all()
            if self._on_connection is not None:
                thread = threading.Thread(target=self._on_connection, args=(conn,), daemon=True)
                thread.start()
                self._threads.append(thread)

    def connection(self, index: int = 0, timeout: float = COMMAND_TIMEOUT) -> mstls.Connection:
        """The ``index``-th accepted connection, waiting for it to arrive."""
        with self._arrived:
            arrived = self._arrived.wait_for(lambda: len(self.connections) > index, timeout)
            assert arrived, f"the server never accepted connection {index}"
            return self.connections[index]

    def close(self) -> None:
        self._stop.set()
        self._accepting.join(JOIN_TIMEOUT)
        for conn in self.connections:
            with contextlib.suppress(mstls.Error):
                conn.close(0, "test over")
        self.listener.close()
        for thread in self._threads:
            thread.join(JOIN_TIMEOUT)


# -- what the server does with each stream ---------------------------------------------------
class CommandService:
    """A connection handler: every stream the client opens starts with a command line.

    ==================  ===========================================================
    ``echo``            echo until FIN, then FIN
    ``send N``          send N bytes, then FIN
    ``stop CODE``       send ``data before stop`` and FIN, then STOP_SENDING CODE
    ``reset CODE``      send ``partial``, RESET_STREAM CODE, then read the rest
    ``close CODE``      send ``last words``, then close the connection with CODE
    ``hold``            nothing (the stream is kept in :attr:`held`)
    ==================  ===========================================================

    What ``reset`` reads after its reset is kept in :attr:`received`, by command
    line.  With ``greet``, each connection also opens a stream to the client and
    sends ``hello`` and FIN.
    """

    GREETING = b"hello"
    BEFORE_STOP = b"data before stop"
    BEFORE_RESET = b"partial"
    LAST_WORDS = b"last words"

    def __init__(self, *, greet: bool = False) -> None:
        self.greet = greet
        self.received: dict[str, bytes] = {}
        self.held: list[mstls.Stream] = []
        self._held_changed = threading.Condition()

    def __call__(self, conn: mstls.Connection) -> None:
        try:
            if self.greet:
                with conn.open_stream(timeout=COMMAND_TIMEOUT) as stream:
                    stream.write(self.GREETING)
            while True:
                stream = conn.accept_stream(timeout=None)
                threading.Thread(target=self._serve, args=(conn, stream), daemon=True).start()
        except mstls.Error:
            pass  # the connection ended

    def wait_held(self, count: int) -> list[mstls.Stream]:
        """The first ``count`` held streams, once they arrived."""
        with self._held_changed:
            arrived = self._held_changed.wait_for(lambda: len(self.held) >= count, COMMAND_TIMEOUT)
            assert arrived, f"only {len(self.held)} of {count} held streams arrived"
            return self.held[:count]

    def _serve(self, conn: mstls.Connection, stream: mstls.Stream) -> None:
        try:
            line = bytearray()
            while not line.endswith(b"\n"):
                line += stream.read_exactly(1, timeout=COMMAND_TIMEOUT)
            command, _, value = line.decode().strip().partition(" ")
            self._run(conn, stream, command, value, line.decode().strip())
        except mstls.Error:
            pass  # the stream or the connection ended: the test will say why

    def _run(
        self, conn: mstls.Connection, stream: mstls.Stream, command: str, value: str, line: str
    ) -> None:
        if command == "echo":
            while data := stream.read(RECEIVE_SIZE, timeout=None):
                stream.write(data)
            stream.conclude()
        elif command == "send":
            stream.write(bytes(int(value)))
            stream.conclude()
        elif command == "stop":
            stream.write(self.BEFORE_STOP)
            stream.conclude()
            stream.stop_sending(int(value))
        elif command == "reset":
            stream.write(self.BEFORE_RESET)
            stream.reset(int(value))
            rest = bytearray()
            while chunk := stream.read(RECEIVE_SIZE, timeout=COMMAND_TIMEOUT):
                rest += chunk
            self.received[line] = bytes(rest)
        elif command == "close":
            stream.write(self.LAST_WORDS)
            conn.close(int(value), "after last words")
        elif command == "hold":
            with self._held_changed:
                self.held.append(stream)
                self._held_changed.notify_all()


# -- relays ------------------------------------------------------------------------------------
class Relay:
    """The shared machinery of both relays: a selector thread that runs commands."""

    transport = ""

    def __init__(self, target_port: int) -> None:
        self.target = (LOOPBACK, target_port)
        self.forwarding = True
        self._selector = selectors.DefaultSelector()
        self._commands: queue.SimpleQueue[tuple[Callable[[], None], threading.Event]] = (
            queue.SimpleQueue()
        )
        self._stopped = False
        self._thread = threading.Thread(target=self._run, daemon=True, name="conformance relay")
        self.port = 0

    def start(self) -> None:
        self._thread.start()

    def command(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` in the relay thread and wait until it ran."""
        done = threading.Event()
        self._commands.put((fn, done))
        assert done.wait(COMMAND_TIMEOUT), "the relay thread did not run a command"

    def blackhole(self) -> None:
        """Forward nothing more in either direction (the peer vanished)."""

        def stop() -> None:
            self.forwarding = False

        self.command(stop)

    def stop(self) -> None:
        def end() -> None:
            self._stopped = True

        if self._thread.is_alive():
            self.command(end)
            self._thread.join(JOIN_TIMEOUT)
        for key in list(self._selector.get_map().values()):
            with contextlib.suppress(OSError):
                key.fileobj.close()  # type: ignore[union-attr]
        self._selector.close()

    def _run(self) -> None:
        while not self._stopped:
            while not self._commands.empty():
                fn, done = self._commands.get()
                fn()
                done.set()
            for key, _ in self._selector.select(POLL_INTERVAL):
                key.data(key.fileobj)

    # Relays for one transport override these.
    def rst(self) -> None:
        raise NotImplementedError(f"no TCP reset on {self.transport}")

    def fin(self) -> None:
        raise NotImplementedError(f"no TCP FIN on {self.transport}")

    def retarget(self, port: int) -> None:
        raise NotImplementedError(f"no retargeting on {self.transport}")

    def close_port(self) -> None:
        raise NotImplementedError(f"no ICMP port unreachable on {self.transport}")


class UdpRelay(Relay):
    """Forwards the datagrams of one client to the target and the answers back."""

    transport = "udp"

    def __init__(self, target_port: int) -> None:
        super().__init__(target_port)
        self._front = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._front.bind((LOOPBACK, 0))
        self._front.setblocking(False)
        self._back = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._back.bind((LOOPBACK, 0))
        self._back.setblocking(False)
        self._client: tuple[str, int] | None = None
        self.port = self._front.getsockname()[1]
        self._selector.register(self._front, selectors.EVENT_READ, self._from_client)
        self._selector.register(self._back, selectors.EVENT_READ, self._from_server)

    def retarget(self, port: int) -> None:
        """Send the client's datagrams to ``port`` from now on."""

        def move() -> None:
            self.target = (LOOPBACK, port)

        self.command(move)

    def close_port(self) -> None:
        """Close the port the client sends to: the kernel answers each datagram
        with ICMP port unreachable (an intermittent error for QUIC, E4)."""

        def close() -> None:
            self._selector.unregister(self._front)
            self._front.close()

        self.command(close)

    def _from_client(self, sock: socket.socket) -> None:
        for _ in range(MAX_READS_PER_WAKE):
            try:
                data, addr = sock.recvfrom(MAX_DATAGRAM)
            except OSError:  # would block, or an ICMP error latched on the socket
                return
            self._client = addr
            if self.forwarding:
                with contextlib.suppress(OSError):
                    self._back.sendto(data, self.target)

    def _from_server(self, sock: socket.socket) -> None:
        for _ in range(MAX_READS_PER_WAKE):
            try:
                data = sock.recv(MAX_DATAGRAM)
            except OSError:
                return
            if self.forwarding and self._client is not None:
                with contextlib.suppress(OSError):
                    self._front.sendto(data, self._client)


class TcpRelay(Relay):
    """Forwards each accepted client connection to a new connection to the target."""

    transport = "tcp"

    def __init__(self, target_port: int) -> None:
        super().__init__(target_port)
        self._listener = socket.create_server((LOOPBACK, 0))
        self._listener.setblocking(False)
        self.port = self._listener.getsockname()[1]
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
        self._selector.register(self._listener, selectors.EVENT_READ, self._accept)
        #: Bytes the relay passed to the client so far (TLS records included).
        self.to_client = 0

    def _accept(self, listener: socket.socket) -> None:
        try:
            client, _ = listener.accept()
        except OSError:
            return
        upstream = socket.create_connection(self.target, timeout=COMMAND_TIMEOUT)
        for sock in (client, upstream):
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._pairs.append((client, upstream))
        self._selector.register(client, selectors.EVENT_READ, self._pump_to(upstream, False))
        self._selector.register(upstream, selectors.EVENT_READ, self._pump_to(client, True))

    def _pump_to(self, sink: socket.socket, to_client: bool) -> Callable[[socket.socket], None]:
        def pump(source: socket.socket) -> None:
            if not self.forwarding:
                return
            try:
                data = source.recv(RECEIVE_SIZE)
            except OSError:
                data = b""
            if not data:
                self._forget(source)
                with contextlib.suppress(OSError):
                    sink.shutdown(socket.SHUT_WR)
                return
            if to_client:
                self.to_client += len(data)
            sink.setblocking(True)  # loopback: the client reads, so this ends
            try:
                sink.sendall(data)
            except OSError:
                self._forget(source)
            finally:
                sink.setblocking(False)

        return pump

    def _forget(self, sock: socket.socket) -> None:
        with contextlib.suppress(KeyError, ValueError):
            self._selector.unregister(sock)

    def blackhole(self) -> None:
        """Stop reading both ways: bytes pile up in the kernel, nothing arrives."""

        def stop() -> None:
            self.forwarding = False
            for pair in self._pairs:
                for sock in pair:
                    self._forget(sock)

        self.command(stop)

    def rst(self) -> None:
        """Reset every client connection (SO_LINGER 0) and drop the server side."""

        def reset() -> None:
            for client, upstream in self._pairs:
                for sock in (client, upstream):
                    self._forget(sock)
                client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                client.close()
                upstream.close()
            self._pairs.clear()

        self.command(reset)

    def fin(self) -> None:
        """Send every client a FIN (no close_notify, no CONNECTION_CLOSE) and stop
        forwarding; what the client still sends is read and dropped."""

        def shut() -> None:
            for client, upstream in self._pairs:
                for sock in (client, upstream):
                    self._forget(sock)
                with contextlib.suppress(OSError):
                    client.shutdown(socket.SHUT_WR)
                upstream.close()
                self._selector.register(client, selectors.EVENT_READ, _drain)

        self.command(shut)

    def stop(self) -> None:
        super().stop()
        for client, upstream in self._pairs:
            client.close()
            upstream.close()


def _drain(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.recv(RECEIVE_SIZE)


def _make_relay(transport: str, target_port: int) -> Relay:
    relay: Relay = UdpRelay(target_port) if transport == "udp" else TcpRelay(target_port)
    relay.start()
    return relay


@contextmanager
def peer(
    transport: str,
    config: mstls.ServerConfig | None = None,
    on_connection: Callable[[mstls.Connection], None] | None = None,
) -> Iterator[tuple[PeerServer, Relay]]:
    """A :class:`PeerServer` behind a :class:`Relay`; connect to ``relay.port``."""
    server = PeerServer(transport, config or server_config(), on_connection)
    relay = _make_relay(transport, server.port)
    try:
        yield server, relay
    finally:
        relay.stop()
        server.close()
