"""QMux over TLS/TCP for the trio driver: one connection per socket, and a listener.

Theory of operation
-------------------
:class:`TcpDriver` runs one :class:`~mstls.qmux.connection.QMuxConnection` on a
non-blocking TCP socket with the same two small loops as UDP:

* the receive loop waits until the socket is readable or the connection's
  deadline, reads once (at most :data:`RECEIVE_SIZE` bytes, brief T5), feeds
  :meth:`~QMuxConnection.receive_data` (or :meth:`~QMuxConnection.receive_eof`
  on a TCP FIN, :meth:`~QMuxConnection.on_transport_error` on a reset or fatal
  socket error), runs due timers and calls the shared change step;
* :meth:`TcpDriver.flush`, from whichever task made the change, writes
  :meth:`~QMuxConnection.data_to_send` with a non-blocking ``send``; what the
  kernel does not take waits for the send loop, which waits until the socket is
  writable.  Once the connection says so (``should_shutdown_write``, after
  close_notify) and everything is written, the write side is shut down.

The loops end when the connection is terminated; the socket is closed then
(the connection has already decided whether the end was clean or premature,
brief E8).

:class:`TcpListenerDriver` accepts TCP connections, gives each its own
:class:`TcpDriver` (started with the listener's spawner, so closing the
listening socket does not cut live connections short) and offers it to
:meth:`~mstls.trio.Listener.accept` once its handshake completed.  With a
per-source handshake rate (:mod:`mstls.core.admission`) a connection from a
source over its rate is refused before any TLS work: the socket is reset at
once (:func:`mstls.io.tcp.refuse_socket`) and the refusal recorded as a failed handshake
(:class:`~mstls.exceptions.HandshakeRefused`).
"""

from __future__ import annotations

import contextlib
import errno
import socket
from collections import deque
from typing import Any

import trio

from ..config import DEFAULT_MAX_TCP_HANDSHAKES, ClientConfig, ServerConfig
from ..core.admission import RATE_LIMITED, SourceRateLimiter, reconfigured, refusal
from ..io.tcp import accept_queue_length, prepare_socket, refuse_socket, send_failed
from ..qmux.config import QMuxConfig
from ..qmux.connection import QMuxConnection
from ._driver import Core, Driver, ListenerDriver, Spawner

__all__ = ["TcpDriver", "TcpListenerDriver", "open_tcp_socket", "qmux_config"]

#: Bytes read per wake-up of the receive loop (brief T5: bounded work).
RECEIVE_SIZE = 256 * 1024
#: Connections accepted per wake-up of the accept loop.
MAX_ACCEPTS_PER_WAKE = 64
#: Connections still sending their ClientHello a listener holds per handshake slot
#: (``max_tcp_handshakes``): they cost no TLS work yet, and holding them keeps the
#: kernel's accept queue short, so a newcomer is accepted at once (TLS slowloris).
AWAITING_HELLO_PER_SLOT = 4
#: Slow ClientHello senders evicted at once when the listener holds as many as it
#: may (as many as connections wait in the accept queue, up to this).
MAX_EVICTIONS_PER_WAKE = MAX_ACCEPTS_PER_WAKE
#: Pause after an accept failure such as EMFILE, so the loop does not spin.
ACCEPT_ERROR_PAUSE = 0.1
#: Listen backlog.
LISTEN_BACKLOG = 128
#: errno values that mean the peer reset the TCP connection.
_RESET_ERRNOS = frozenset(
    getattr(errno, name) for name in ("ECONNRESET", "EPIPE", "ECONNABORTED") if hasattr(errno, name)
)


def qmux_config(config: ClientConfig | ServerConfig, host: str | None = None) -> QMuxConfig:
    """The QMux settings for a public configuration (its own builder if it has one)."""
    builder = getattr(config, "qmux_config", None)
    if builder is not None:
        result = builder(host) if isinstance(config, ClientConfig) else builder()
        assert isinstance(result, QMuxConfig)
        return result
    tls = config.tls_config(host or "") if isinstance(config, ClientConfig) else config.tls_config()
    return QMuxConfig(
        tls=tls,
        idle_timeout=config.idle_timeout,
        handshake_timeout=config.handshake_timeout,
        keepalive_interval=config.keepalive,
    )


async def open_tcp_socket(host: str, port: int) -> socket.socket:
    """A connected non-blocking TCP socket (trio's happy-eyeballs connect)."""
    stream = await trio.open_tcp_stream(host, port)
    return prepare_socket(socket.socket(fileno=stream.socket.detach()))


class TcpDriver(Driver):
    """One QMux connection on its own TCP socket."""

    def __init__(
        self,
        sock: socket.socket,
        conn: QMuxConnection,
        peer_address: Any,
        listener: TcpListenerDriver | None = None,
    ) -> None:
        super().__init__()
        self.sock = sock
        self.conn = conn
        self.listener = listener
        self.core = Core(self, conn, "tcp", peer_address)
        self._cores = [self.core]
        self._pending: deque[memoryview] = deque()
        self._writable_needed = trio.Event()
        self._write_shut = False

    def cores(self) -> list[Core]:
        return self._cores

    def timer(self) -> float | None:
        return self.conn.get_timer()

    def after_change(self, only: Core | None = None) -> None:
        super().after_change(only)
        if self.listener is not None:
            self.listener.core_changed(self.core)

    # -- loops -------------------------------------------------------------------------------
    async def loops(self, nursery: trio.Nursery) -> None:
        nursery.start_soon(self.guarded, self._send_loop)
        await self.guarded(self._receive_loop)

    async def _receive_loop(self) -> None:
        sock, conn = self.sock, self.conn

        async def readable() -> None:
            await trio.lowlevel.wait_readable(sock)

        while not conn.is_terminated:
            got_data = await self.sleep_until_readable(readable)
            if self.closed:
                return
            now = trio.current_time()
            if got_data:
                self._receive(now)
            timer = conn.get_timer()
            if timer is not None and timer <= now:
                conn.handle_timer(now)
            self.after_change()
        self.after_change()  # the last bytes (close_notify), best effort

    def _receive(self, now: float) -> None:
        try:
            data = self.sock.recv(RECEIVE_SIZE)
        except (BlockingIOError, InterruptedError):
            return  # E4: spurious readiness
        except OSError as exc:
            self._transport_error(exc, now)
            return
        if data:
            self.conn.receive_data(data, now)
        else:
            self.conn.receive_eof(now)

    def _transport_error(self, exc: OSError, now: float) -> None:
        kind = "tcp_reset" if exc.errno in _RESET_ERRNOS else "io_error"
        self.conn.on_transport_error(kind, now, f"{type(exc).__name__}: {exc}")

    async def _send_loop(self) -> None:
        while True:
            await self._writable_needed.wait()
            await trio.lowlevel.wait_writable(self.sock)
            if self.closed:
                return
            self._writable_needed = trio.Event()
            if self._write_pending(trio.current_time()):
                self.after_change()

    # -- sending -------------------------------------------------------------------------------
    def flush(self, now: float) -> None:
        if not self._write_pending(now):
            return
        conn = self.conn
        while data := conn.data_to_send(now):
            self._pending.append(memoryview(data))
            if not self._write_pending(now):
                return
        if conn.should_shutdown_write and not self._write_shut:
            self._write_shut = True
            with contextlib.suppress(OSError):
                self.sock.shutdown(socket.SHUT_WR)

    def _write_pending(self, now: float) -> bool:
        """Write what is queued; True once nothing is left."""
        pending = self._pending
        while pending:
            view = pending[0]
            try:
                sent = self.sock.send(view)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError as exc:
                pending.clear()
                send_failed(self.sock, self.conn, exc, now)  # the peer's alert first (Go #7414)
                return False
            if sent < len(view):
                pending[0] = view[sent:]
                self._writable_needed.set()
                return False
            pending.popleft()
        return True

    def close_transport(self) -> None:
        trio.lowlevel.notify_closing(self.sock)
        self.sock.close()

    def stop(self) -> None:
        super().stop()
        if self.listener is not None:
            self.listener.forget(self.core)


class TcpListenerDriver(ListenerDriver):
    """A listening TCP socket; each accepted connection runs its own :class:`TcpDriver`."""

    def __init__(
        self,
        sock: socket.socket,
        config: QMuxConfig,
        spawn: Spawner,
        *,
        rate_limiter: SourceRateLimiter | None = None,
        max_handshakes: int = DEFAULT_MAX_TCP_HANDSHAKES,
    ) -> None:
        super().__init__()
        self.sock = sock
        #: Handshakes run at once; beyond it, connections wait in the accept queue.
        self.max_handshakes = max_handshakes
        self._room = trio.lowlevel.ParkingLot()
        self._unfinished: set[Core] = set()
        #: Those of :attr:`_unfinished` still sending their ClientHello (O(1) counts).
        self._awaiting: set[Core] = set()
        #: Slowloris eviction (see :meth:`_wait_for_room`): the cores whose ClientHello
        #: deadline was cut short, until their drivers stop; the wait a free slot cancels.
        self._evicted: set[Core] = set()
        self._room_scope: trio.CancelScope | None = None
        self.config = config
        self._spawn = spawn
        #: The per-source handshake rate (None: unlimited).
        self.rate_limiter = rate_limiter
        #: Connections reset before their handshake by admission control.
        self.refused_handshakes = 0

    def update_admission(self, config: ServerConfig) -> None:
        """A new per-source rate (a reload); the buckets are kept."""
        config.check_admission()
        self.rate_limiter = reconfigured(
            self.rate_limiter, config.handshake_rate_per_source, config.handshake_burst_per_source
        )
        self.max_handshakes = config.max_tcp_handshakes
        self._room.unpark_all()

    def timer(self) -> float | None:
        return None

    def flush(self, now: float) -> None:
        pass  # connections flush through their own drivers

    def after_change(self, only: Core | None = None) -> None:
        self.check_handshakes()

    # Handshake cap: a connection counts from its accept() until its handshake
    # succeeded or, if it failed, until its driver stopped (its state is freed): while
    # its ClientHello is incomplete against the ClientHello bound, then against
    # ``max_handshakes`` (see :meth:`_room_left`).
    def adopt(self, core: Core) -> None:
        super().adopt(core)
        self._unfinished.add(core)
        if core.conn.awaiting_client_hello:
            self._awaiting.add(core)

    def check_handshakes(self) -> None:
        super().check_handshakes()
        for core in list(self._unfinished):
            self._update(core)
        self._make_room()

    def core_changed(self, core: Core) -> None:
        """One connection's driver ran: only its handshake can have moved (O(1) per
        event; a scan of every handshake per event cost O(N) with N slow senders)."""
        self.check_handshakes_of([core])
        self._update(core)
        self._make_room()

    def _update(self, core: Core) -> None:
        if core in self._awaiting and not core.conn.awaiting_client_hello:
            self._awaiting.discard(core)
        if core.session.ready and not core.session.failed:
            self._unfinished.discard(core)
            self._awaiting.discard(core)

    def forget(self, core: Core) -> None:
        super().forget(core)
        self._unfinished.discard(core)
        self._awaiting.discard(core)
        self._evicted.discard(core)
        self._make_room()

    @property
    def max_awaiting_hello(self) -> int:
        """Connections still sending their ClientHello held at most."""
        return AWAITING_HELLO_PER_SLOT * self.max_handshakes

    def _counts(self) -> tuple[int, int]:
        """``(awaiting a ClientHello, past it)`` among the unfinished handshakes."""
        awaiting = len(self._awaiting)
        return awaiting, len(self._unfinished) - awaiting

    def _room_left(self) -> int:
        """Connections that may be accepted now: while fewer than ``max_handshakes``
        handshakes are past their ClientHello (doing TLS work) and fewer than
        :attr:`max_awaiting_hello` are still sending it.  A connection whose
        ClientHello completes always goes on, so the first count may briefly exceed
        its bound by the second; accepting stops until it is back under."""
        awaiting, working = self._counts()
        return min(self.max_handshakes - working, self.max_awaiting_hello - awaiting)

    def _make_room(self) -> None:
        if self._room_left() > 0:
            self._room.unpark_all()
            if self._room_scope is not None:
                self._room_scope.cancel()

    async def _wait_for_room(self) -> None:
        """No room (:meth:`_room_left`): wait until there is.  When the connections
        still sending their ClientHello are what fills it and new connections arrive
        meanwhile, the oldest of those have their deadline cut to now, so slow
        senders yield to the newcomers (TLS slowloris, issue 11): as many as wait in
        the accept queue (one where the system does not tell), at most
        :data:`MAX_EVICTIONS_PER_WAKE`, and no more until those have stopped.
        Holding 128 and evicting one at a time made a normal client wait behind
        300 reconnecting slow senders: a full accept queue drops its SYN (1 s)."""
        working = self._counts()[1]
        victims: list[Core] = []
        if not self._evicted and working < self.max_handshakes:
            victims = [c for c in self.handshaking.values() if c in self._awaiting]
        if not victims:
            await self._room.park()
            return
        with trio.CancelScope() as scope:
            self._room_scope = scope
            try:
                await trio.lowlevel.wait_readable(self.sock)
            finally:
                self._room_scope = None
        if scope.cancelled_caught or self._room_left() > 0:
            return
        queued = accept_queue_length(self.sock) or 1
        now = trio.current_time()
        for victim in victims[: min(queued, MAX_EVICTIONS_PER_WAKE)]:
            if victim in self._unfinished and victim.conn.awaiting_client_hello:
                self._evicted.add(victim)
                victim.conn.expire_client_hello(now)
                victim.driver.move_timer()

    def stop(self) -> None:
        super().stop()
        self._room.unpark_all()

    async def loops(self, nursery: trio.Nursery) -> None:
        await self.guarded(self._accept_loop)

    async def _accept_loop(self) -> None:
        sock = self.sock
        while not self.closed:
            room = self._room_left()
            if room <= 0:  # a bounded amount of handshake state: the kernel queues the rest
                await self._wait_for_room()
                continue
            await trio.lowlevel.wait_readable(sock)
            room = self._room_left()  # handshakes may have moved past their ClientHello
            for _ in range(min(MAX_ACCEPTS_PER_WAKE, room)):
                try:
                    conn_sock, addr = sock.accept()
                except (BlockingIOError, InterruptedError):
                    break
                except OSError:  # EMFILE, ENOBUFS, an aborted connection: try again later
                    await trio.sleep(ACCEPT_ERROR_PAUSE)
                    break
                limiter = self.rate_limiter
                if limiter is not None and not limiter.admit(addr, trio.current_time()):
                    self._refuse(conn_sock, addr)
                    continue
                self._start_connection(prepare_socket(conn_sock), addr)

    def _refuse(self, sock: socket.socket, addr: Any) -> None:
        refuse_socket(sock)
        self.refused_handshakes += 1
        self.handshake_failures.append((addr, refusal(RATE_LIMITED)))
        self.failed_handshakes += 1

    def _start_connection(self, sock: socket.socket, addr: Any) -> None:
        conn = QMuxConnection(self.config, is_client=False, now=trio.current_time())
        driver = TcpDriver(sock, conn, addr, listener=self)
        self.adopt(driver.core)
        driver.start(self._spawn)
        driver.after_change()

    def close_transport(self) -> None:
        trio.lowlevel.notify_closing(self.sock)
        self.sock.close()


def open_tcp_listener(host: str, port: int, *, reuse_port: bool = False) -> socket.socket:
    """A bound, listening, non-blocking TCP socket (``"::"``: dual stack)."""
    family, _, _, _, sockaddr = socket.getaddrinfo(
        host or None, port, 0, socket.SOCK_STREAM, 0, socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6 and sockaddr[0] == "::":
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind(sockaddr)
        sock.listen(LISTEN_BACKLOG)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock
