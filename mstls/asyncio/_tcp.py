"""QMux over TLS/TCP for the asyncio driver: one connection per socket, and a listener.

Theory of operation
-------------------
:class:`TcpDriver` runs one :class:`~mstls.qmux.connection.QMuxConnection` on a
non-blocking TCP socket watched with ``loop.add_reader``: each readiness
callback reads once (at most :data:`RECEIVE_SIZE` bytes, brief T5), feeds
:meth:`~QMuxConnection.receive_data` (or :meth:`~QMuxConnection.receive_eof`
on a TCP FIN, :meth:`~QMuxConnection.on_transport_error` on a reset), runs
due timers and makes the shared change step.  :meth:`TcpDriver.flush`, from
whichever task or callback made the change, writes
:meth:`~QMuxConnection.data_to_send` with a non-blocking ``send``; what the
kernel does not take waits for a writer callback (``loop.add_writer``).  Once
the connection says so (``should_shutdown_write``, after close_notify) and
everything is written, the write side is shut down.  The driver stops (the
socket is closed) when the connection is terminated; the connection has
already decided whether the end was clean or premature (brief E8).

:class:`TcpListenerDriver` accepts TCP connections from a reader callback on
the listening socket, gives each its own :class:`TcpDriver` and offers it to
:meth:`~mstls.asyncio.Listener.accept` once its handshake completed.  At most
``max_tcp_handshakes`` run at once: beyond it the listening socket is not
watched (the kernel queues the rest) until one finishes.  A source over its
handshake rate is reset before any TLS work (:func:`mstls.io.tcp.refuse_socket`).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections import deque
from typing import Any

from .. import _errors as errors
from ..config import DEFAULT_MAX_TCP_HANDSHAKES, ClientConfig, ServerConfig
from ..core.admission import RATE_LIMITED, SourceRateLimiter, reconfigured, refusal
from ..exceptions import ConnectionIOError
from ..io.tcp import prepare_socket, refuse_socket, send_failed, transport_error
from ..qmux.config import QMuxConfig
from ..qmux.connection import QMuxConnection
from ._driver import Core, Driver, ListenerDriver

__all__ = ["TcpDriver", "TcpListenerDriver", "open_tcp_listener", "open_tcp_socket", "qmux_config"]

#: Bytes read per readiness callback (brief T5: bounded work).
RECEIVE_SIZE = 256 * 1024
#: Connections accepted per readiness callback of the listening socket.
MAX_ACCEPTS_PER_WAKE = 64
#: Pause after an accept failure such as EMFILE, so the callback does not spin.
ACCEPT_ERROR_PAUSE = 0.1
#: Listen backlog.
LISTEN_BACKLOG = 128


def qmux_config(config: ClientConfig | ServerConfig, host: str | None = None) -> QMuxConfig:
    """The QMux settings for a public configuration."""
    if isinstance(config, ClientConfig):
        return config.qmux_config(host or "")
    return config.qmux_config()


async def open_tcp_socket(host: str, port: int) -> socket.socket:
    """A connected non-blocking TCP socket: each resolved address in turn."""
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    last: OSError = OSError(f"no address for {host}")
    for family, kind, proto, _, address in infos:
        sock = socket.socket(family, kind, proto)
        try:
            prepare_socket(sock)
            await loop.sock_connect(sock, address)
        except OSError as exc:
            sock.close()
            last = exc
            continue
        except BaseException:
            sock.close()
            raise
        return sock
    raise last


async def connected_socket(host: str, port: int) -> tuple[socket.socket, Any]:
    """:func:`open_tcp_socket` and its peer; a failure raises ConnectionIOError (E2)."""
    sock: socket.socket | None = None
    try:
        sock = await open_tcp_socket(host, port)
        peer = sock.getpeername()  # ENOTCONN if the server reset at once (a refusal)
    except OSError as exc:
        if sock is not None:
            sock.close()
        raise errors.recorded(
            ConnectionIOError(
                f"TCP connect to {host}:{port} failed: {exc}", errno=errors.errno_of(exc)
            )
        ) from exc
    return sock, peer


class TcpDriver(Driver):
    """One QMux connection on its own TCP socket."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        sock: socket.socket,
        conn: QMuxConnection,
        peer_address: Any,
        listener: TcpListenerDriver | None = None,
    ) -> None:
        super().__init__(loop)
        self.sock = sock
        self.conn = conn
        self.listener = listener
        self.core = Core(self, conn, "tcp", peer_address)
        self._cores = [self.core]
        self._pending: deque[memoryview] = deque()
        self._writing = False
        self._write_shut = False

    def cores(self) -> list[Core]:
        return self._cores

    def timer(self) -> float | None:
        return self.conn.get_timer()

    def handle_timer(self, now: float) -> None:
        self.conn.handle_timer(now)

    def finished(self) -> bool:
        return bool(self.conn.is_terminated)

    def after_change(self, only: Core | None = None) -> None:
        super().after_change(only)
        if self.listener is not None:
            self.listener.check_handshakes()

    def start(self) -> None:
        self.loop.add_reader(self.sock.fileno(), self.guarded, self._on_readable)
        self.after_change()

    # -- callbacks ---------------------------------------------------------------------------
    def _on_readable(self) -> None:
        now = self.loop.time()
        try:
            data = self.sock.recv(RECEIVE_SIZE)
        except (BlockingIOError, InterruptedError):
            data = None  # E4: spurious readiness
        except OSError as exc:
            data = None
            transport_error(self.conn, exc, now)
        if data:
            self.conn.receive_data(data, now)
        elif data is not None:
            self.conn.receive_eof(now)
        deadline = self.conn.get_timer()
        if deadline is not None and deadline <= now:
            self.conn.handle_timer(now)
        self.after_change()  # stops the driver once the connection is terminated

    def _on_writable(self) -> None:
        if self._write_pending(self.loop.time()):
            self._stop_writing()
            self.after_change()

    def _stop_writing(self) -> None:
        if self._writing:
            self._writing = False
            self.loop.remove_writer(self.sock.fileno())

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
                if not self._writing:
                    self._writing = True
                    self.loop.add_writer(self.sock.fileno(), self.guarded, self._on_writable)
                return False
            pending.popleft()
        return True

    def close_transport(self) -> None:
        fd = self.sock.fileno()
        if fd >= 0:
            self.loop.remove_reader(fd)
            self._stop_writing()
        self.sock.close()

    def stop(self) -> None:
        listener = self.listener
        if listener is not None and not self.closed:
            self.core.session.pump_events()
            listener.check_handshakes_of([self.core])  # a failed handshake is recorded first
        super().stop()
        if listener is not None:
            listener.forget(self.core)


class TcpListenerDriver(ListenerDriver):
    """A listening TCP socket; each accepted connection runs its own :class:`TcpDriver`."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        sock: socket.socket,
        config: QMuxConfig,
        *,
        rate_limiter: SourceRateLimiter | None = None,
        max_handshakes: int = DEFAULT_MAX_TCP_HANDSHAKES,
    ) -> None:
        super().__init__(loop)
        self.sock = sock
        #: Handshakes run at once; beyond it, connections wait in the kernel's queue.
        self.max_handshakes = max_handshakes
        self._unfinished: set[Core] = set()
        self.config = config
        #: The per-source handshake rate (None: unlimited).
        self.rate_limiter = rate_limiter
        #: Connections reset before their handshake by admission control.
        self.refused_handshakes = 0
        self._watching = False
        self._paused: asyncio.TimerHandle | None = None

    def update_admission(self, config: ServerConfig) -> None:
        """A new per-source rate (a reload); the buckets are kept."""
        config.check_admission()
        self.rate_limiter = reconfigured(
            self.rate_limiter, config.handshake_rate_per_source, config.handshake_burst_per_source
        )
        self.max_handshakes = config.max_tcp_handshakes
        self._make_room()

    def timer(self) -> float | None:
        return None

    def flush(self, now: float) -> None:
        pass  # connections flush through their own drivers

    def after_change(self, only: Core | None = None) -> None:
        self.check_handshakes()

    def start(self) -> None:
        self._make_room()

    # Handshake cap: a connection counts from its accept() until its handshake
    # succeeded or, if it failed, until its driver stopped (its state is freed).
    def adopt(self, core: Core) -> None:
        super().adopt(core)
        self._unfinished.add(core)

    def check_handshakes(self) -> None:
        super().check_handshakes()
        done = [c for c in self._unfinished if c.session.ready and not c.session.failed]
        for core in done:
            self._unfinished.discard(core)
        self._make_room()

    def forget(self, core: Core) -> None:
        super().forget(core)
        self._unfinished.discard(core)
        self._make_room()

    def _make_room(self) -> None:
        """Watch the listening socket while a handshake may start, else not."""
        if self.closed or self._paused is not None:
            return
        room = len(self._unfinished) < self.max_handshakes
        if room and not self._watching:
            self._watching = True
            self.loop.add_reader(self.sock.fileno(), self.guarded, self._on_acceptable)
        elif not room and self._watching:
            self._watching = False
            self.loop.remove_reader(self.sock.fileno())

    def _pause(self) -> None:
        """After an accept failure (EMFILE...): stop watching for a moment."""
        if self._watching:
            self._watching = False
            self.loop.remove_reader(self.sock.fileno())

        def resume() -> None:
            self._paused = None
            self._make_room()

        self._paused = self.loop.call_later(ACCEPT_ERROR_PAUSE, resume)

    def _on_acceptable(self) -> None:
        sock = self.sock
        room = self.max_handshakes - len(self._unfinished)
        for _ in range(min(MAX_ACCEPTS_PER_WAKE, room)):
            try:
                conn_sock, addr = sock.accept()
            except (BlockingIOError, InterruptedError):
                break
            except OSError:  # EMFILE, ENOBUFS, an aborted connection: try again later
                self._pause()
                break
            limiter = self.rate_limiter
            if limiter is not None and not limiter.admit(addr, self.loop.time()):
                self._refuse(conn_sock, addr)
                continue
            self._start_connection(prepare_socket(conn_sock), addr)
        self._make_room()

    def _refuse(self, sock: socket.socket, addr: Any) -> None:
        refuse_socket(sock)
        self.refused_handshakes += 1
        self.handshake_failures.append((addr, refusal(RATE_LIMITED)))
        self.failed_handshakes += 1

    def _start_connection(self, sock: socket.socket, addr: Any) -> None:
        conn = QMuxConnection(self.config, is_client=False, now=self.loop.time())
        driver = TcpDriver(self.loop, sock, conn, addr, listener=self)
        self.adopt(driver.core)
        driver.start()

    def close_transport(self) -> None:
        if self._paused is not None:
            self._paused.cancel()
            self._paused = None
        if self._watching:
            self._watching = False
            self.loop.remove_reader(self.sock.fileno())
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
