"""QMux over TLS/TCP for the blocking API, and ``transport="auto"``.

A :class:`TcpHandler` runs one :class:`~mstls.qmux.connection.QMuxConnection` on a
non-blocking TCP socket under the assist thread: readable → ``receive_data`` (or
``receive_eof`` on FIN, ``on_transport_error`` on a reset), output →
``send`` with what the kernel refuses kept for when the socket is writable, and
the write side shut down once the connection says so (after close_notify).
:class:`TcpListenerHandler` applies the per-source handshake rate
(:mod:`mstls.core.admission`) before any TLS work: a connection from a source
over its rate is reset at once and counted in ``refused_handshakes``.

``auto`` is Happy Eyeballs for transports: QUIC starts first; if no QUIC packet
has come back after ``ClientConfig.fallback_delay``, a QMux/TCP attempt starts
beside it, and the first handshake to complete wins (the other is closed).  The
winner is reported by :attr:`Connection.transport`.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections import deque
from typing import Any

from .. import _errors as errors
from ..config import ClientConfig, ServerConfig
from ..core.admission import RATE_LIMITED, reconfigured, refusal
from ..exceptions import ConfigurationError, ConnectionIOError, Error
from ..io.tcp import prepare_socket, refuse_socket, send_failed, transport_error
from ..qmux.config import QMuxConfig
from ..qmux.connection import QMuxConnection
from ..qmux.early import keep_strike_register
from ..session import Session
from .api import Connection, Listener, SocketHook, _Core, _deadline, _remaining, connect_udp
from .assist import EXIT_REASON, AssistThread
from .handlers import HandshakeFailures, Waiters, fail_connection

__all__ = ["TcpHandler", "TcpListenerHandler", "connect_other", "listen_other"]

#: Bytes read per readiness event (brief T5).
RECEIVE_SIZE = 256 * 1024
LISTEN_BACKLOG = 128
#: ``data_to_send`` calls per flush (brief T5; each returns at most max_send_per_call).
MAX_SENDS_PER_FLUSH = 64
#: Connections a listener accepts per readiness (the rest wait for the next turn).
MAX_ACCEPTS_PER_WAKE = 64
#: ``transport="auto"``: how often the attempts are looked at while no wake-up names them.
AUTO_POLL_INTERVAL = 0.02


class TcpHandler:
    """One QMux connection on one TCP socket."""

    def __init__(
        self, sock: socket.socket, conn: QMuxConnection, lock: Any = None, peer_address: Any = None
    ) -> None:
        if peer_address is None:
            with contextlib.suppress(OSError):  # ENOTCONN: the peer reset at once
                peer_address = sock.getpeername()
        #: The peer's address, kept: the socket forgets it once closed.
        self.peer_address = peer_address
        self.sock = prepare_socket(sock)
        self.conn = conn
        self.lock = lock or threading.RLock()
        self.session = Session(conn, transport="tcp")
        self.waiters = Waiters(self.lock)
        self.assist = AssistThread.get()
        self._out = bytearray()
        self._deadline: float | None = None
        self._write_shut = False
        self.closed = False
        self.on_change: Any = None  # set by a listener to learn of completed handshakes

    # -- assist thread ---------------------------------------------------------------
    def deadline(self) -> float | None:
        return self._deadline

    def wants_write(self) -> bool:
        return bool(self._out) and not self.closed

    def on_readable(self) -> None:
        with self.lock:
            if self.closed:
                return
            now = time.monotonic()
            try:
                data = self.sock.recv(RECEIVE_SIZE)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                transport_error(self.conn, exc, now)
            else:
                if data:
                    self.conn.receive_data(data, now)
                else:
                    self.conn.receive_eof(now)
            self.after_change(now)

    def on_writable(self) -> None:
        with self.lock:
            now = time.monotonic()
            self._write_out(now)
            if not self._out and not self.closed:
                self.after_change(now)  # room again: produce what waits, wake writers

    def on_timer(self) -> None:
        with self.lock:
            now = time.monotonic()
            timer = self.conn.get_timer()
            if timer is not None and timer <= now:
                self.conn.handle_timer(now)
            self.after_change(now)

    # -- shared ----------------------------------------------------------------------
    def after_change(self, now: float, conn: Any = None) -> None:
        """Send what is due and wake the waiters (a TCP handler has one connection:
        ``conn``, as the UDP handlers take it, changes nothing)."""
        self.flush(now)
        wake = self.session.pump_events()
        if wake:
            self.waiters.notify(wake)
        if self.on_change is not None:
            self.on_change(self)
        old = self._deadline
        self._deadline = self.conn.get_timer()
        if self.conn.is_terminated and not self._out:
            self._close_socket()
        elif self._deadline is not None and (old is None or self._deadline < old):
            self.assist.reschedule()

    def flush(self, now: float) -> None:
        """Produce and write while the socket takes it; once it is full the rest
        waits in the connection (not in ``_out``) until :meth:`on_writable`."""
        for _ in range(MAX_SENDS_PER_FLUSH):
            self._write_out(now)
            if self._out or self.closed:
                return
            data = self.conn.data_to_send(now)
            if not data:
                break
            if not self._send_new(data, now):
                return
        self._write_out(now)

    def _send_new(self, data: bytes | bytearray, now: float) -> bool:
        """Send fresh output straight from the connection's buffer; only what the
        kernel refuses is copied into ``_out`` (which is empty here).  False if
        the socket failed (the rest of the output is dropped, as in ``_write_out``)."""
        try:
            sent = self.sock.send(data)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError as exc:
            send_failed(self.sock, self.conn, exc, now)  # the peer's alert first (Go #7414)
            return False
        if sent < len(data):
            self._out += memoryview(data)[sent:]
        return True

    def _write_out(self, now: float) -> None:
        while self._out and not self.closed:
            try:
                sent = self.sock.send(self._out)
            except (BlockingIOError, InterruptedError):
                self.assist.reschedule()  # watch for writability
                return
            except OSError as exc:
                self._out.clear()
                send_failed(self.sock, self.conn, exc, now)  # the peer's alert first (Go #7414)
                return
            del self._out[:sent]
        if not self._out and self.conn.should_shutdown_write and not self._write_shut:
            self._write_shut = True
            with contextlib.suppress(OSError):
                self.sock.shutdown(socket.SHUT_WR)

    def _close_socket(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.assist.remove(self)
        with contextlib.suppress(OSError):
            self.sock.close()

    def close_socket(self) -> None:
        with self.lock:
            self._close_socket()

    def close_at_exit(self, timeout: float) -> None:
        """CONNECTION_CLOSE (application code 0) then close_notify (see :mod:`.assist`)."""
        if not self.lock.acquire(timeout=timeout):
            return  # a thread holds it through the exit: leave that connection be
        try:
            if not self.closed:
                now = time.monotonic()
                if not self.conn.is_terminated:
                    self.conn.close(0, EXIT_REASON, now=now)
                self.after_change(now)
        finally:
            self.lock.release()

    def exit_pending(self) -> bool:
        """Until the close is written and the peer answered (its close_notify or FIN
        ends the closing state, and the socket closes)."""
        return not self.closed

    def on_error(self, exc: Exception) -> None:
        """The assist thread's call raised: this connection fails with ``exc``
        (the others go on); its socket closes after a best-effort CONNECTION_CLOSE."""
        with self.lock:
            fail_connection(self.conn, self.session, self.waiters, exc)
            with contextlib.suppress(Exception):
                self.flush(time.monotonic())
            if self.on_change is not None:
                with contextlib.suppress(Exception):
                    self.on_change(self)  # a listener stops counting its handshake
            self._close_socket()


class TcpListenerHandler:
    """A listening TCP socket; each accepted connection gets its own TcpHandler."""

    def __init__(
        self, sock: socket.socket, config: ServerConfig, qmux_config: QMuxConfig | None = None
    ) -> None:
        self.sock = sock
        sock.setblocking(False)
        self.qmux_config = qmux_config or config.qmux_config()
        self.rate_limiter = config.source_rate_limiter()
        #: Connections reset before their handshake by admission control.
        self.refused_handshakes = 0
        self.failures = HandshakeFailures()
        #: Handshakes run at once; beyond it, connections wait in the accept queue.
        self.max_handshakes = config.max_tcp_handshakes
        self.lock = threading.RLock()
        self.accept_cond = threading.Condition(self.lock)
        self.accepted: deque[TcpHandler] = deque()
        self.handlers: list[TcpHandler] = []
        #: The slow sender evicted for a newcomer, until it is gone (see wants_read).
        self._evicted: TcpHandler | None = None
        self.assist = AssistThread.get()
        self.closed = False

    def deadline(self) -> float | None:
        return None

    def wants_write(self) -> bool:
        return False

    def wants_read(self) -> bool:
        """Accept only while fewer than ``max_handshakes`` handshakes run (a flood
        then waits in the kernel's queue instead of piling up handshake state).
        At the cap, read anyway while a handshake still lacks its ClientHello and
        none is being evicted: a newcomer then evicts it (:meth:`_evict_slowest`)."""
        if len(self.handlers) < self.max_handshakes:
            return True
        return self._evicted not in self.handlers and self._slow_sender() is not None

    def _slow_sender(self) -> TcpHandler | None:
        """The oldest handshake whose ClientHello is not complete yet."""
        return next((h for h in self.handlers if h.conn.awaiting_client_hello), None)

    def _evict_slowest(self, now: float) -> None:
        """All slots taken and a newcomer accepted: the oldest slow sender's ClientHello
        deadline is cut to now, so its slot frees (TLS slowloris, issue 11)."""
        victim = self._slow_sender()
        if victim is not None:
            self._evicted = victim
            with victim.lock:
                victim.conn.expire_client_hello(now)
                victim.after_change(now)

    def on_writable(self) -> None:
        """Listening sockets are never written."""

    def on_timer(self) -> None:
        """Nothing to time: each connection has its own handler."""

    def on_error(self, exc: Exception) -> None:
        """Accepting raised (each connection has its own handler, so no connection
        is concerned): this turn's accepts are lost, the listener goes on."""

    def close_at_exit(self, timeout: float) -> None:
        """Nothing to close: every connection, handshaking or not, has its own handler."""

    def exit_pending(self) -> bool:
        return False

    def on_readable(self) -> None:
        for _ in range(MAX_ACCEPTS_PER_WAKE):
            full = len(self.handlers) >= self.max_handshakes
            if not self.wants_read():
                return
            try:
                client, addr = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return  # EMFILE and friends: try again on the next readiness
            now = time.monotonic()
            if full:  # a newcomer at the cap: a slow sender makes room (one over, briefly)
                self._evict_slowest(now)
            with self.lock:
                limiter = self.rate_limiter
                refused = limiter is not None and not limiter.admit(addr, now)
                if refused:
                    self.refused_handshakes += 1
                    self.failures.add(addr, refusal(RATE_LIMITED))
            if refused:
                refuse_socket(client)
                continue
            conn = QMuxConnection(self.qmux_config, is_client=False, now=now)
            handler = TcpHandler(client, conn, peer_address=addr)
            handler.on_change = self._on_change
            with self.lock:
                self.handlers.append(handler)
            self.assist.add(handler)
            with handler.lock:
                handler.after_change(now)

    def _on_change(self, handler: TcpHandler) -> None:
        session = handler.session
        if (session.ready or session.failed) and handler in self.handlers:
            with self.lock:
                self.handlers.remove(handler)
                if session.ready and not session.failed:  # ready: 0-RTT accepted too
                    self.accepted.append(handler)
                    self.accept_cond.notify_all()
                else:
                    self.failures.add(handler.peer_address, session.channel.exception())

    def close_socket(self) -> None:
        with self.lock:
            if self.closed:
                return
            self.closed = True
            self.accept_cond.notify_all()
        self.assist.remove(self)
        with contextlib.suppress(OSError):
            self.sock.close()


class TcpListener(Listener):
    """Accepts QMux connections on a TCP port."""

    def __init__(self, handler: TcpListenerHandler) -> None:
        self._tcp = handler
        self.address = handler.sock.getsockname()

    def accept(self, timeout: float | None = None) -> Connection:
        handler = self._tcp
        deadline = _deadline(timeout)
        with handler.lock:
            while not handler.accepted:
                if handler.closed:
                    raise errors.recorded(errors.ListenerClosed("listener closed"))
                left = _remaining(deadline)
                if left is not None and left <= 0:
                    raise errors.timeout_error("accept", timeout)
                handler.accept_cond.wait(left)
            tcp = handler.accepted.popleft()
        core = _Core(tcp, tcp.conn, tcp.session, tcp.waiters)
        return Connection(core, "tcp")

    def update_config(self, config: ServerConfig) -> None:
        """Use ``config`` for handshakes that start from now on."""
        config.check_admission()
        with self._tcp.lock:
            self._tcp.qmux_config = keep_strike_register(
                self._tcp.qmux_config, config.qmux_config()
            )
            self._tcp.max_handshakes = config.max_tcp_handshakes
            self._tcp.rate_limiter = reconfigured(
                self._tcp.rate_limiter,
                config.handshake_rate_per_source,
                config.handshake_burst_per_source,
            )

    def _counters(self) -> tuple[threading.RLock, HandshakeFailures, int, int]:
        """TCP: refusals reset the connection before TLS; no Initials to drop."""
        tcp = self._tcp
        return tcp.lock, tcp.failures, tcp.refused_handshakes, 0

    def close(self) -> None:
        """Close the listening socket; waiting ``accept`` calls raise
        :class:`~mstls.exceptions.ListenerClosed`.  Accepted connections stay open."""
        self._tcp.close_socket()


def _tcp_client(host: str, port: int, config: ClientConfig, timeout: float | None) -> _Core:
    settings = config.qmux_config(host)  # checked before any socket exists
    sock = socket.create_connection((host, port), timeout=timeout or config.handshake_timeout)
    now = time.monotonic()
    conn = QMuxConnection(settings, is_client=True, now=now)
    handler = TcpHandler(sock, conn)
    core = _Core(handler, conn, handler.session, handler.waiters)
    core.handshake_started = False
    handler.assist.add(handler)
    return core


def connect_other(
    host: str,
    port: int,
    config: ClientConfig,
    *,
    transport: str,
    timeout: float | None,
    lazy: bool,
) -> Connection:
    """``transport="tcp"`` (QMux over TLS) or ``"auto"`` (QUIC, falling back to TCP)."""
    if transport == "tcp":
        try:
            core = _tcp_client(host, port, config, timeout)
        except OSError as exc:
            raise errors.recorded(
                ConnectionIOError(
                    f"TCP connect to {host}:{port} failed: {exc}", errno=errors.errno_of(exc)
                )
            ) from exc
        connection = Connection(core, "tcp")
        if not lazy:
            core.ensure_handshake(timeout)
        return connection
    return _connect_auto(host, port, config, timeout)


def _connect_auto(host: str, port: int, config: ClientConfig, timeout: float | None) -> Connection:
    """Happy Eyeballs for transports (see the module documentation)."""
    deadline = _deadline(timeout)
    quic = connect_udp(host, port, config, timeout=None, lazy=True)
    core = quic._core
    core.ensure_handshake_started()
    try:
        if _wait_quic_answer(core, config.fallback_delay):
            core.ensure_handshake(_remaining(deadline))
            return quic
        try:
            tcp_core = _tcp_client(host, port, config, _remaining(deadline))
        except OSError as exc:  # TCP impossible: QUIC it is
            tcp_error = errors.recorded(
                ConnectionIOError(f"TCP connect to {host}:{port} failed: {exc}")
            )
            try:
                core.ensure_handshake(_remaining(deadline))
            except Error as quic_error:
                raise quic_error from tcp_error
            return quic
    except BaseException:
        _close_quietly(core, "connect failed")
        raise
    tcp_core.ensure_handshake_started()
    cores = [core, tcp_core]
    try:
        winner = _first_handshake(cores, deadline)
    except BaseException:
        for each in cores:
            _close_quietly(each, "connect failed")
        raise
    _close_quietly(tcp_core if winner is core else core, "other transport won")
    return Connection(winner, "udp" if winner is core else "tcp")


def _close_quietly(core: _Core, reason: str) -> None:
    with contextlib.suppress(Error):
        Connection(core, "").close(0, reason)


def _wait_quic_answer(core: _Core, delay: float) -> bool:
    """Whether any QUIC packet came back within ``delay`` seconds."""
    end = time.monotonic() + delay
    with core.lock:
        while core.conn.bytes_received == 0 and not core.session.handshake_done:
            left = end - time.monotonic()
            if left <= 0:
                return False
            core.waiters.connection.wait(min(left, AUTO_POLL_INTERVAL))
    return True


def _first_handshake(cores: list[_Core], deadline: float | None) -> _Core:
    """The first core whose handshake completed; if every one failed, raise the last
    failure chained from the first (both land in the caller's error queue)."""
    while True:
        for core in cores:
            with core.lock:
                if core.session.handshake_done and not core.session.failed:
                    return core
        if all(core.session.failed for core in cores):
            try:
                cores[0].session.check("connect")
            except Error as first:
                try:
                    cores[-1].session.check("connect")
                except Error as last:
                    raise last from first
                raise
        left = _remaining(deadline)
        if left is not None and left <= 0:
            raise errors.timeout_error("connect", None)
        time.sleep(AUTO_POLL_INTERVAL / 4)


def listen_other(
    host: str,
    port: int,
    config: ServerConfig,
    *,
    transport: str,
    reuse_port: bool = False,
    socket_hook: SocketHook | None = None,
) -> Listener:
    """``transport="tcp"``: a QMux listener (see :func:`mstls.listen`)."""
    if transport != "tcp":
        raise ConfigurationError(f"transport: a listener is 'udp' or 'tcp', got {transport!r}")
    config.check_admission()  # before a socket is bound
    settings = config.qmux_config()  # likewise (issue 17 point 9)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
        sock.listen(LISTEN_BACKLOG)
        if socket_hook is not None:
            socket_hook(sock)
    except BaseException:
        sock.close()
        raise
    handler = TcpListenerHandler(sock, config, settings)
    handler.assist.add(handler)
    return TcpListener(handler)
