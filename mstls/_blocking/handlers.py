"""Socket handlers for the assist thread: UDP (QUIC) client and listener sockets.

Each handler owns one socket and a lock.  The lock protects the sans-I/O objects
(connection or endpoint, and their :class:`~mstls.session.Session`) and is the
lock of every condition variable that application threads wait on, so a waiter
can never miss a wake-up: state changes and notifications happen under the same
lock as the waiter's check (the lost wake-up of OpenSSL #24166 cannot happen).

A listener's step after input or a timer costs O(log N) plus the connections
concerned (issue 11): the endpoint keeps the deadlines and the dirty set
(:mod:`mstls.quic.endpoint`), and only the connections it called
(:meth:`~mstls.quic.endpoint.ServerEndpoint.pop_changed`) have their events
pumped and their handshake checked.  An application thread's change is
``after_change(now, conn)``: ``conn`` is touched; without ``conn`` every
connection is (O(N), correct for any caller).
"""

from __future__ import annotations

import contextlib
import threading
import time
import weakref
from collections import deque
from typing import Any

from .. import _errors as errors
from ..codes import TransportErrorCode
from ..core.admission import MAX_RECORDED_FAILURES, refusal
from ..core.ecn import ECT0
from ..core.ecn_runs import CodepointRuns, send_segments
from ..exceptions import ConnectionTerminated, Error
from ..io.udp import (
    detect_capabilities,
    enable_ecn,
    new_receive_buffer,
    receive_datagrams,
    send_datagrams,
    set_ecn_codepoint,
)
from ..quic.connection import QuicConnection
from ..quic.endpoint import ServerEndpoint
from ..session import Session, Wakeups
from .assist import EXIT_REASON, AssistThread

__all__ = [
    "HandshakeFailures",
    "UdpClientHandler",
    "UdpListenerHandler",
    "Waiters",
    "fail_connection",
]

#: Datagrams read per readiness event (brief T5: bounded work per wake-up).
MAX_DATAGRAMS_PER_READ = 256
#: Rounds of datagrams_to_send per flush.
MAX_FLUSH_ROUNDS = 16
#: Attempts to push a batch that the socket would not take right away.
SEND_RETRIES = 50


class Waiters:
    """Condition variables of one connection, all on its handler's lock."""

    def __init__(self, lock: threading.RLock) -> None:
        self.lock = lock
        self.connection = threading.Condition(lock)
        self.accept = threading.Condition(lock)
        self.open = threading.Condition(lock)
        self.datagram = threading.Condition(lock)
        # Weak: a condition lives as long as a Stream object holds it (issue 11).
        self._streams: weakref.WeakValueDictionary[int, threading.Condition] = (
            weakref.WeakValueDictionary()
        )

    def stream(self, stream_id: int) -> threading.Condition:
        found = self._streams.get(stream_id)
        if found is None:
            found = self._streams[stream_id] = threading.Condition(self.lock)
        return found

    def forget(self, stream_id: int) -> None:
        self._streams.pop(stream_id, None)

    def notify(self, wake: Wakeups) -> None:
        if wake.connection:
            self.connection.notify_all()
            self.accept.notify_all()
            self.open.notify_all()
            self.datagram.notify_all()
            for cond in self._streams.values():
                cond.notify_all()
            return
        for stream_id in wake.streams:
            waiting = self._streams.get(stream_id)
            if waiting is not None:
                waiting.notify_all()
        if wake.accept:
            self.accept.notify_all()
        if wake.open:
            self.open.notify_all()
        if wake.datagram:
            self.datagram.notify_all()


def fail_connection(conn: Any, session: Session, waiters: Waiters, exc: Exception) -> None:
    """A driver call for this connection raised ``exc`` (a bug, or a setting the
    connection refused) inside the assist thread: the connection fails with it in
    its channel (E2) and every waiter wakes and raises it (E3).  An exception that
    is not an mstls error becomes :class:`~mstls.exceptions.ConnectionTerminated`
    (INTERNAL_ERROR) caused by it.  The peer is told with CONNECTION_CLOSE
    INTERNAL_ERROR where the connection can still say so; the caller flushes it.
    Lock held."""
    if isinstance(exc, Error):
        error: Error = exc
    else:
        error = ConnectionTerminated(
            TransportErrorCode.INTERNAL_ERROR, f"internal error: {type(exc).__name__}: {exc}"
        )
        error.__cause__ = exc
    session.channel.fail([errors.entry_for(error, lib=session.channel.lib)], error)
    with contextlib.suppress(Exception):  # its state may be what raised
        if not conn.is_terminated:
            conn.close(
                TransportErrorCode.INTERNAL_ERROR,
                "internal error",
                is_application=False,
                now=time.monotonic(),
            )
    with contextlib.suppress(Exception):
        session.pump_events()  # the termination event: the channel keeps ``error``
    waiters.notify(Wakeups(connection=True))


class HandshakeFailures:
    """A listener's failed handshakes: the count, and the latest (peer address, exception).

    Admission-control refusals count as failures too (their exception is
    :class:`~mstls.exceptions.HandshakeRefused`), as in :mod:`mstls.trio`.  Callers
    hold the listener's lock.
    """

    def __init__(self) -> None:
        #: Every failed handshake since the listener started.
        self.count = 0
        self.latest: deque[tuple[Any, Error | None]] = deque(maxlen=MAX_RECORDED_FAILURES)

    def add(self, address: Any, error: Error | None) -> None:
        self.count += 1
        self.latest.append((address, error))

    def pop(self) -> list[tuple[Any, Error | None]]:
        """The failures recorded since the last call, oldest first."""
        out = list(self.latest)
        self.latest.clear()
        return out


class _UdpBase:
    """Receive, feed, send and notify for one UDP socket."""

    def __init__(self, sock: Any, *, offload: bool = True) -> None:
        self.sock = sock
        self.caps = detect_capabilities(sock, offload=offload)
        #: Received datagrams' ECN codepoints (RFC 9000 §13.4.1), if the socket tells.
        self._ecn: list[int] | None = [] if enable_ecn(sock, self.caps) else None
        self.lock = threading.RLock()
        self._buffer = new_receive_buffer()
        self._deadline: float | None = None
        self.assist = AssistThread.get()
        self.closed = False

    def deadline(self) -> float | None:
        return self._deadline

    def wants_write(self) -> bool:
        return False

    def on_writable(self) -> None:
        """UDP output that the kernel refused is dropped (recovery resends it)."""

    # Implemented by subclasses --------------------------------------------------------
    def _feed(self, data: bytes, addr: Any, now: float, ecn: int = 0) -> None:
        raise NotImplementedError

    def _outgoing(self, now: float) -> list[tuple[bytes, Any]]:
        raise NotImplementedError

    def _timer(self) -> float | None:
        raise NotImplementedError

    def _handle_timer(self, now: float) -> None:
        raise NotImplementedError

    def _sessions(self) -> list[tuple[Session, Waiters]]:
        raise NotImplementedError

    def on_error(self, exc: Exception) -> None:
        raise NotImplementedError

    def _open_connections(self) -> list[QuicConnection]:
        raise NotImplementedError

    def _too_big(self, data: Any, addr: Any, now: float) -> None:
        """The socket refused ``data`` as too big (EMSGSIZE): tell its connection."""
        raise NotImplementedError

    # Interpreter exit (see :mod:`.assist`) -------------------------------------------------
    def close_at_exit(self, timeout: float) -> None:
        """CONNECTION_CLOSE (application code 0) on every open connection, sent now."""
        if not self.lock.acquire(timeout=timeout):
            return  # a thread holds it through the exit: leave that connection be
        try:
            if self.closed:
                return
            now = time.monotonic()
            for conn in self._open_connections():
                if not conn.is_terminated:
                    conn.close(0, EXIT_REASON, now=now)
            self.after_change(now)
        finally:
            self.lock.release()

    def exit_pending(self) -> bool:
        """UDP sends at once (what the kernel refuses is lost like any datagram)."""
        return False

    # Assist thread entry points ---------------------------------------------------------
    def on_readable(self) -> None:
        with self.lock:
            if self.closed:
                return
            now = time.monotonic()
            try:
                batch = receive_datagrams(
                    self.sock, MAX_DATAGRAMS_PER_READ, self.caps, self._buffer, self._ecn
                )
            except OSError:
                batch = []  # E4: intermittent socket errors are handled inside
            ecn = self._ecn
            for index, (data, addr) in enumerate(batch):
                self._feed(bytes(data), addr, now, ecn[index] if ecn else 0)
            self._step(now)

    def on_timer(self) -> None:
        with self.lock:
            if self.closed:
                return
            now = time.monotonic()
            timer = self._timer()
            if timer is not None and timer <= now:
                self._handle_timer(now)
            self._step(now)

    # Shared by the assist thread and application threads (lock held) ------------------------
    def after_change(self, now: float, conn: QuicConnection | None = None) -> None:
        """An application change (to ``conn``, if named): send what is due, wake exactly
        the waiters concerned, re-arm the timer."""
        self._step(now)

    def _step(self, now: float) -> None:
        """Send what is due, wake exactly the waiters concerned, re-arm the timer."""
        self.flush(now)
        for session, waiters in self._sessions():
            wake = session.pump_events()
            if wake:
                waiters.notify(wake)
        old = self._deadline
        self._deadline = self._timer()
        if self._deadline is not None and (old is None or self._deadline < old):
            self.assist.reschedule(self)

    def flush(self, now: float) -> None:
        for _ in range(MAX_FLUSH_ROUNDS):
            out = self._outgoing(now)
            if not out:
                return
            runs = self._codepoint_runs()
            if runs is not None:
                self._send_marked(out, runs)
                continue
            by_addr: dict[Any, list[bytes]] = {}
            for data, addr in out:
                by_addr.setdefault(addr, []).append(data)
            for addr, datagrams in by_addr.items():
                self._send(datagrams, addr)

    def _codepoint_runs(self) -> CodepointRuns | None:
        """The ECN codepoints of what :meth:`_outgoing` returned (None: leave the socket's)."""
        return None

    def _send_marked(self, out: list[tuple[bytes, Any]], runs: CodepointRuns) -> None:
        """``out`` by address and ECN codepoint (:mod:`mstls.core.ecn_runs`), the
        socket's codepoint set before each group."""
        groups: dict[tuple[Any, int], list[bytes]] = {}
        for start, end, addr, codepoint in send_segments(out, runs):
            groups.setdefault((addr, codepoint or 0), []).extend(d for d, _ in out[start:end])
        for (addr, codepoint), datagrams in groups.items():
            set_ecn_codepoint(self.sock, self.caps, codepoint)
            self._send(datagrams, addr)

    def _send(self, datagrams: list[bytes], addr: Any, sock: Any = None, caps: Any = None) -> None:
        sock = sock or self.sock
        caps = caps or self.caps
        sent = 0
        too_big: list[Any] = []
        for _ in range(SEND_RETRIES):
            with contextlib.suppress(OSError):
                sent += send_datagrams(sock, datagrams[sent:], addr, caps, too_big)
            for data in too_big:  # the next flush round resends smaller (RFC 8899 §4.6)
                self._too_big(data, addr, time.monotonic())
            too_big.clear()
            if sent >= len(datagrams):
                return
            time.sleep(0.0002)  # the socket buffer is full: let the kernel drain it
        # What could not be sent is lost like any datagram; recovery resends it.

    def close_socket(self) -> None:
        with self.lock:
            if self.closed:
                return
            self.closed = True
        self.assist.remove(self)
        with contextlib.suppress(OSError):
            self.sock.close()


class UdpClientHandler(_UdpBase):
    """One client connection on its own UDP socket."""

    def __init__(self, sock: Any, conn: QuicConnection) -> None:
        super().__init__(sock, offload=conn.config.udp_offload)
        self.conn = conn
        self.session = Session(conn, transport="udp")
        self.waiters = Waiters(self.lock)
        self._marks = conn.config.ecn and set_ecn_codepoint(sock, self.caps, ECT0)
        if self._marks:
            conn.enable_ecn_marking()
        #: Sockets opened by migrate(), by socket (the connection's path tags).
        self.path_sockets: dict[Any, Any] = {}

    def _feed(self, data: bytes, addr: Any, now: float, ecn: int = 0) -> None:
        self.conn.receive_datagram(data, addr, now, ecn)

    # Migration (RFC 9000 §9, :mod:`.paths`) -----------------------------------------
    def add_path_socket(self, path_socket: Any) -> None:
        self.path_sockets[path_socket.sock] = path_socket
        self.assist.add(path_socket)

    def on_readable_path(self, path_socket: Any) -> None:
        with self.lock:
            if self.closed:
                return
            now = time.monotonic()
            try:
                batch = receive_datagrams(
                    path_socket.sock, MAX_DATAGRAMS_PER_READ, path_socket.caps, path_socket.buffer
                )
            except OSError:
                batch = []  # E4
            for data, addr in batch:
                self.conn.receive_datagram(bytes(data), addr, now, local=path_socket.sock)
            self._step(now)

    def flush(self, now: float) -> None:
        """Each datagram on the socket its path names (the first one: ``local`` None)."""
        for _ in range(MAX_FLUSH_ROUNDS):
            out = self.conn.datagrams_with_paths(now)
            if not out:
                return
            if self._marks:  # the codepoint the connection chose for these (ECN validation)
                set_ecn_codepoint(self.sock, self.caps, self.conn.send_codepoint)
            groups: dict[tuple[Any, Any], list[bytes]] = {}
            for data, path in out:
                groups.setdefault((path.local, path.address), []).append(data)
            for (local, addr), datagrams in groups.items():
                extra = self.path_sockets.get(local)
                if extra is None:
                    self._send(datagrams, addr)
                else:
                    self._send(datagrams, addr, extra.sock, extra.caps)

    def _outgoing(self, now: float) -> list[tuple[bytes, Any]]:
        out = [(d, self.conn.peer_address) for d in self.conn.datagrams_to_send(now)]
        if self._marks:  # the codepoint the connection chose for these (ECN validation)
            set_ecn_codepoint(self.sock, self.caps, self.conn.send_codepoint)
        return out

    def _too_big(self, data: Any, addr: Any, now: float) -> None:
        self.conn.on_datagram_too_big(len(data), now)

    def _timer(self) -> float | None:
        return self.conn.get_timer()

    def _handle_timer(self, now: float) -> None:
        self.conn.handle_timer(now)

    def _sessions(self) -> list[tuple[Session, Waiters]]:
        return [(self.session, self.waiters)]

    def _open_connections(self) -> list[QuicConnection]:
        return [self.conn]

    def on_timer(self) -> None:
        super().on_timer()
        if self.conn.is_terminated:
            self.close_socket()

    def close_socket(self) -> None:
        super().close_socket()
        for path_socket in list(self.path_sockets.values()):
            self.assist.remove(path_socket)
            with contextlib.suppress(OSError):
                path_socket.sock.close()
        self.path_sockets.clear()

    def on_error(self, exc: Exception) -> None:
        """The assist thread's call raised: this connection fails with ``exc``; its
        socket closes after a best-effort CONNECTION_CLOSE."""
        with self.lock:
            fail_connection(self.conn, self.session, self.waiters, exc)
            with contextlib.suppress(Exception):
                self.flush(time.monotonic())
        self.close_socket()


class UdpListenerHandler(_UdpBase):
    """A listening UDP socket: every server connection behind one ServerEndpoint."""

    def __init__(self, sock: Any, endpoint: ServerEndpoint) -> None:
        super().__init__(sock, offload=endpoint.config.udp_offload)
        self.endpoint = endpoint
        # One socket for every connection: the endpoint names each datagram's
        # codepoint (RFC 9000 §13.4.2.2), set before each group (.core.ecn_runs).
        if endpoint.config.ecn and set_ecn_codepoint(sock, self.caps, ECT0):
            endpoint.ecn_marking = True
        self.sessions: dict[int, tuple[Session, Waiters]] = {}
        self.accepted: deque[tuple[QuicConnection, Session, Waiters]] = deque()
        self.accept_cond = threading.Condition(self.lock)
        #: New connections whose handshake is still running (id(conn) -> entry), oldest first.
        self._handshaking: dict[int, tuple[QuicConnection, Session, Waiters]] = {}
        #: The sessions pumped by the last step (their handshake may have moved).
        self._pumped: list[tuple[Session, Waiters]] = []
        self.failures = HandshakeFailures()

    def _feed(self, data: bytes, addr: Any, now: float, ecn: int = 0) -> None:
        try:
            self.endpoint.receive_datagram(data, addr, now, ecn)
        except Exception as exc:
            # One connection's input failed: that connection fails, the others go on.
            self.endpoint.current = None
            self._fail_connections(exc, self.endpoint.connection_for(data))
        while self.endpoint.accepted:
            conn = self.endpoint.accepted.popleft()
            session = Session(conn, transport="udp")
            waiters = Waiters(self.lock)
            self.sessions[id(conn)] = (session, waiters)
            self._handshaking[id(conn)] = (conn, session, waiters)
        refusals = self.endpoint.refusals
        while refusals:  # admission control refused a handshake: a failure for the metrics
            address, cause = refusals.popleft()
            self.failures.add(address, refusal(cause))

    def _outgoing(self, now: float) -> list[tuple[bytes, Any]]:
        return self.endpoint.datagrams_to_send(now)

    def _codepoint_runs(self) -> CodepointRuns | None:
        endpoint = self.endpoint
        return endpoint.send_codepoints if endpoint.ecn_marking else None

    def _too_big(self, data: Any, addr: Any, now: float) -> None:
        self.endpoint.datagram_too_big(data, addr, now)

    def _timer(self) -> float | None:
        return self.endpoint.get_timer()

    def _handle_timer(self, now: float) -> None:
        self.endpoint.handle_timer(now)

    def on_error(self, exc: Exception) -> None:
        """A call for the whole endpoint raised (a timer or output turn): the
        connection it was calling (``endpoint.current``) fails with ``exc`` or, if
        the endpoint itself raised, those whose timer had passed; every other
        connection goes on."""
        now = time.monotonic()
        with self.lock:
            endpoint = self.endpoint
            current, endpoint.current = endpoint.current, None
            due = [current] if current is not None else endpoint.due_connections(now)
            self._fail_connections(exc, *due)
            for conn in due:
                endpoint.touch(conn)  # its CONNECTION_CLOSE is collected by the next flush

    def _open_connections(self) -> list[QuicConnection]:
        return [session.conn for session, _ in self.sessions.values()]

    def _fail_connections(self, exc: Exception, *conns: QuicConnection | None) -> None:
        """Fail each connection named (lock held); None: a datagram that reached none."""
        for conn in conns:
            entry = None if conn is None else self.sessions.get(id(conn))
            if conn is not None and entry is not None:
                fail_connection(conn, entry[0], entry[1], exc)

    def after_change(self, now: float, conn: QuicConnection | None = None) -> None:
        """An application change: ``conn`` is touched, or every connection without it."""
        if conn is None:
            self.endpoint.touch_all()
        else:
            self.endpoint.touch(conn)
        self._step(now)

    def _sessions(self) -> list[tuple[Session, Waiters]]:
        """The sessions of the connections the endpoint called; forgotten ones are
        pumped once more, then dropped."""
        sessions = self.sessions
        out = []
        for conn in self.endpoint.pop_changed():
            entry = sessions.get(id(conn))
            if entry is not None:
                out.append(entry)
        terminated = self.endpoint.terminated
        while terminated:
            sessions.pop(id(terminated.popleft()), None)
        self._pumped = out
        return out

    def close_socket(self) -> None:
        """Close the socket and wake every :meth:`Listener.accept` waiter, which then
        raises :class:`~mstls.exceptions.ListenerClosed` (brief C2: every wait can be
        woken).  ``closed`` is set and the waiters are notified under the lock they
        wait on, so none can miss it."""
        super().close_socket()
        with self.lock:
            self.accept_cond.notify_all()

    def _step(self, now: float) -> None:
        super()._step(now)
        # A connection is handed to accept() once its handshake completed; only the
        # sessions just pumped can have moved.
        handshaking = self._handshaking
        ready = []
        for session, _ in self._pumped:
            item = handshaking.get(id(session.conn))
            if item is not None and (session.handshake_done or session.failed):
                ready.append(item)
        self._pumped = []
        for item in ready:
            del handshaking[id(item[0])]
            if item[1].handshake_done and not item[1].failed:
                self.accepted.append(item)
            else:
                self.failures.add(item[0].peer_address, item[1].channel.exception())
        if ready:
            self.accept_cond.notify_all()
