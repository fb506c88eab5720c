"""The blocking, thread-safe API: :func:`connect`, :func:`listen`, Connection, Stream, Listener.

Theory of operation
-------------------
Every object here is a thin view on a handler (which owns the socket, the lock and
the sans-I/O connection) and a :class:`~mstls.session.Session`.  A call takes the
handler's lock, tries the operation on the session, and if it would block waits on
the condition variable of exactly what it needs (its stream, the accept queue, the
handshake), with the caller's timeout.  Whoever changes the state — the assist
thread receiving a datagram, another application thread writing — notifies under
the same lock, so wake-ups are never lost (brief C1, C2).

Application threads send directly: after a write they flush the connection's
output themselves instead of waiting for the assist thread.

Lazy handshake (the seeds' handshakeCond): ``connect(..., lazy=True)`` returns at
once; the first read or write starts the handshake and every concurrent caller
waits on the same condition until it completes or fails.  Exactly one caller
starts it, because starting happens under the lock and is recorded.

Non-blocking mode (``connection.blocking = False``): a call that would wait
raises :class:`~mstls.exceptions.WantRead` or :class:`~mstls.exceptions.WantWrite`.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from .. import _errors as errors
from ..config import ClientConfig, ServerConfig
from ..exceptions import Error, StreamStateError
from ..io.udp import open_udp_socket
from ..quic.connection import QuicConnection
from ..session import Session
from ..stats import ConnectionStats
from .handlers import HandshakeFailures, UdpClientHandler, UdpListenerHandler, Waiters
from .paths import migrate as migrate_client

__all__ = ["Connection", "Listener", "Stream", "connect_udp", "listen_udp"]

T = TypeVar("T")
#: Default read size.
DEFAULT_READ = 65536
#: The application code of the STOP_SENDING sent by :meth:`Stream.close`.
CLOSE_CODE = 0


def _deadline(timeout: float | None) -> float | None:
    return None if timeout is None else time.monotonic() + timeout


def _remaining(deadline: float | None) -> float | None:
    return None if deadline is None else deadline - time.monotonic()


class _Core:
    """What a Connection and its Streams share: handler, session, waiters."""

    def __init__(self, handler: Any, conn: Any, session: Session, waiters: Waiters) -> None:
        self.handler = handler
        self.conn = conn
        self.session = session
        self.waiters = waiters
        self.lock: threading.RLock = handler.lock
        self.blocking = True
        self.handshake_started = not conn.is_client if hasattr(conn, "is_client") else True
        #: The ClientHello was made but not yet given to the handler to send.
        self.hello_held = False

    def wait_until(
        self,
        cond: threading.Condition,
        attempt: Callable[[], T | None],
        timeout: float | None,
        want: type[Error],
        op: str,
    ) -> T:
        """Retry ``attempt`` (lock held) until it returns non-None; wait on ``cond``."""
        deadline = _deadline(timeout)
        with self.lock:
            while True:
                result = attempt()
                if result is not None:
                    self.after_change()
                    return result
                self.session.check(op)
                if not self.blocking:
                    raise want(f"{op} would block")  # no queue entry (E4)
                left = _remaining(deadline)
                if left is not None and left <= 0:
                    raise errors.timeout_error(op, timeout, writing=want is errors.WantWrite)
                cond.wait(left)

    def after_change(self) -> None:
        """This connection changed: its handler sends and wakes for it alone (O(log N)
        on a listener holding many connections, not a pass over all of them)."""
        self.handler.after_change(time.monotonic(), self.conn)

    def ensure_handshake_started(self, send: bool = True) -> None:
        """Start a lazy client handshake exactly once (under the lock); ``send=False``
        holds the ClientHello back until the next change (0-RTT: it goes out with the
        first early data, :meth:`Connection.open_stream`)."""
        with self.lock:
            if not self.handshake_started:
                self.handshake_started = True
                self.conn.connect(time.monotonic())
                self.hello_held = True
            if send and self.hello_held:
                self.hello_held = False
                self.after_change()

    def ensure_handshake(self, timeout: float | None, *, complete: bool = False) -> None:
        """Start a lazy client handshake once; wait (with every other caller) for it
        (or, unless ``complete``, for a server's acceptance of 0-RTT data)."""
        session = self.session
        if session.handshake_done or (session.ready and not complete):
            return
        self.ensure_handshake_started()

        def done() -> bool | None:
            finished = session.handshake_done or (session.ready and not complete)
            return True if finished else None

        self.wait_until(self.waiters.connection, done, timeout, errors.WantRead, "handshake")


class Stream:
    """One bidirectional or unidirectional stream; all methods are thread-safe.

    Instances come from :meth:`Connection.open_stream` and
    :meth:`Connection.accept_stream`; ``with`` closes the stream on exit
    (:meth:`close`).
    """

    def __init__(self, core: _Core, stream_id: int, *, early: bool = False) -> None:
        self._core = core
        self.stream_id = stream_id
        self._cond = core.waiters.stream(stream_id)
        #: Opened with ``early=True`` during 0-RTT: writes do not wait for the handshake.
        self._early = early
        self._closed = False
        self._eof = False  # a read returned the peer's FIN
        self._at_end = False  # the data returned so far ends at the peer's FIN

    def __repr__(self) -> str:
        return f"<mstls.Stream {self.stream_id}>"

    def __enter__(self) -> Stream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _check_open(self, op: str) -> None:
        if self._closed:
            raise errors.recorded(
                StreamStateError(
                    f"{op}: stream {self.stream_id} is closed", stream_id=self.stream_id
                )
            )

    def close(self) -> None:
        """Close both sides at once, never waiting, as trio's ``aclose`` does.

        The send side ends with FIN after what was written (unless it already
        ended or was reset); if the peer's data was not read to its end,
        STOP_SENDING with code 0 says we read no more (RFC 9000 §3.5).  What the
        connection kept for the stream is then forgotten, so a stream done on
        both sides leaves no state and the peer's stream credit comes back
        (RFC 9000 §4.6).  Later calls on this stream raise
        :class:`~mstls.exceptions.StreamStateError`; a second close does nothing.
        """
        core, stream_id = self._core, self.stream_id
        with core.lock:
            if self._closed:
                return
            self._closed = True
            session = core.session
            if not session.failed and not core.conn.is_terminated:
                if not self._eof:
                    with contextlib.suppress(Error):
                        session.stop_sending(stream_id, CLOSE_CODE)
                # The stream layer directly: an ended, reset or stopped send side is
                # no error here, and nothing may land in the caller's error queue.
                with contextlib.suppress(Error):
                    core.conn.streams.write(stream_id, b"", fin=True)
                core.after_change()
            session.forget(stream_id)
            core.waiters.forget(stream_id)
            self._cond.notify_all()  # a thread still waiting on it re-checks and raises

    def read(self, max_bytes: int = DEFAULT_READ, timeout: float | None = None) -> bytes:
        """Up to ``max_bytes``; ``b""`` only at a clean end of stream (FIN).

        After the peer's RESET_STREAM, every byte that arrived in order before it
        is returned first (E6); then :class:`~mstls.exceptions.StreamReset` is
        raised with the peer's code, on this and every later read.
        """
        core = self._core
        self._check_open("read")
        core.ensure_handshake(timeout)

        def attempt() -> bytes | None:
            self._check_open("read")
            session = core.session
            data = session.read(self.stream_id, max_bytes)
            if data is not None:  # under the lock: the flag is this read's
                self._at_end = session.read_reached_end
            return data

        data = core.wait_until(self._cond, attempt, timeout, errors.WantRead, "read")
        if not data:
            self._eof = True
        return data

    @property
    def at_end(self) -> bool:
        """Whether the data returned so far ends at the peer's FIN: the next
        :meth:`read` returns ``b""`` at once.  A handler that sees it can answer with
        ``write(answer, end=True)``: answer and FIN in one packet (RFC 9000 §19.8)."""
        return self._eof or self._at_end

    def read_exactly(self, n: int, timeout: float | None = None) -> bytes:
        """Exactly ``n`` bytes; an early end raises :class:`~mstls.exceptions.Error`."""
        deadline = _deadline(timeout)
        out = bytearray()
        while len(out) < n:
            chunk = self.read(n - len(out), _remaining(deadline))
            if not chunk:
                raise errors.recorded(
                    errors.IncompleteRead(f"stream ended after {len(out)} of {n} bytes")
                )
            out += chunk
        return bytes(out)

    def write(
        self,
        data: bytes | bytearray | memoryview,
        timeout: float | None = None,
        *,
        end: bool = False,
    ) -> int:
        """Write all of ``data`` (blocking while flow control or buffers are full).

        ``end=True`` sends FIN after it, as :meth:`conclude` would, but with the
        last of the data: a small message and its end leave in one packet
        (RFC 9000 §19.8) instead of one flush each.
        """
        core = self._core
        self._check_open("write")
        if not self._early:
            core.ensure_handshake(timeout)
        view = memoryview(data).cast("B")
        if end and not len(view):
            self.conclude()
            return 0
        deadline = _deadline(timeout)
        total = 0
        while total < len(view):

            def attempt(offset: int = total) -> int | None:
                self._check_open("write")
                taken = core.session.write(self.stream_id, view[offset:], end)
                return taken or None

            total += core.wait_until(
                self._cond, attempt, _remaining(deadline), errors.WantWrite, "write"
            )
        return total

    def conclude(self) -> None:
        """Send FIN: the end of our data (RFC 9000 §3.1)."""
        core = self._core
        self._check_open("conclude")
        with core.lock:
            core.session.conclude(self.stream_id)
            core.after_change()

    def reset(self, code: int) -> None:
        """Abandon sending with RESET_STREAM ``code`` (RFC 9000 §19.4)."""
        self._check_open("reset")
        with self._core.lock:
            self._core.session.reset(self.stream_id, code)
            self._core.after_change()

    def stop_sending(self, code: int) -> None:
        """Ask the peer to stop sending with STOP_SENDING ``code`` (RFC 9000 §19.5)."""
        self._check_open("stop_sending")
        with self._core.lock:
            self._core.session.stop_sending(self.stream_id, code)
            self._core.after_change()

    def wait_acknowledged(self, timeout: float | None = None) -> None:
        """Return once every byte written so far, and the FIN if sent, is acknowledged.

        UDP: the peer ACKed all of it (RFC 9000 §3.1 "Data Recvd").  TCP (QMux has
        no ACKs): all of it went into TLS records and the peer answered a QX_PING
        sent after them, so its stream layer holds every byte (see
        :mod:`mstls.session`).  Checked anew on every call.  Raises
        :class:`~mstls.exceptions.StreamStopped` after the peer's STOP_SENDING,
        :class:`~mstls.exceptions.StreamStateError` after our own reset, and
        :class:`~mstls.exceptions.Timeout` when ``timeout`` passes.
        """
        core = self._core

        def acked() -> bool | None:
            if core.session.all_acknowledged(self.stream_id):
                return True
            core.after_change()  # sends the QX_PING the check may have queued
            return None

        core.wait_until(self._cond, acked, timeout, errors.WantWrite, "wait_acknowledged")


class Connection:
    """One secure multiplexed connection (QUIC over UDP, or QMux over TLS/TCP).

    Instances come from :func:`connect` and :meth:`Listener.accept`; ``with``
    closes the connection with code 0.  Every method is thread-safe.
    """

    def __init__(self, core: _Core, transport: str) -> None:
        self._core = core
        self.transport = transport

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def blocking(self) -> bool:
        """Whether calls wait (``True``, the default) or raise
        :class:`~mstls.exceptions.WantRead` / :class:`~mstls.exceptions.WantWrite`."""
        return self._core.blocking

    @blocking.setter
    def blocking(self, value: bool) -> None:
        self._core.blocking = value

    @property
    def alpn(self) -> str | None:
        """The negotiated application protocol (ALPN, RFC 7301), or ``None``."""
        info = self._core.session.handshake_info
        return info.alpn_protocol if info else None

    @property
    def resumed(self) -> bool:
        """Whether the handshake resumed a session from a ticket (RFC 8446 §2.2):
        no certificates were exchanged; :attr:`peer_certificate` is the identity
        verified when the ticket was issued.  ``False`` before the handshake."""
        info = self._core.session.handshake_info
        return info.resumed if info else False

    @property
    def early_data_accepted(self) -> bool | None:
        """Whether the server accepted our 0-RTT data (server: whether we accepted the
        client's): ``None`` until known, ``False`` after a handshake without it.
        Rejected early data is sent again after the handshake, automatically, so the
        peer's application receives every byte once either way (RFC 8446 §4.2.10)."""
        return self._core.session.early_data_accepted

    @property
    def peer_certificate(self) -> Any:
        """The verified peer identity (chain, subject, names), or ``None``."""
        info = self._core.session.handshake_info
        return info.peer if info else None

    @property
    def peer_address(self) -> Any:
        """The peer's ``(host, port)``: UDP, the path in use; TCP, the socket's peer."""
        handler = self._core.handler
        address = getattr(self._core.conn, "peer_address", None)
        return address if address is not None else getattr(handler, "peer_address", None)

    @property
    def sans_io(self) -> Any:
        """The underlying sans-I/O connection (for inspection; hold no reference to mutate)."""
        return self._core.conn

    def stats(self) -> ConnectionStats:
        """A snapshot of RTT, loss, traffic and congestion counters (RFC 9002 §5-§7;
        see :mod:`mstls.stats`).  Thread-safe; also works after the connection ended."""
        core = self._core
        with core.lock:
            return core.session.stats(time.monotonic())

    def ping(self) -> None:
        """Ask for a fresh RTT sample (see :meth:`mstls.session.Session.ping`); the
        answer shows in :meth:`stats`.  Thread-safe; never blocks."""
        core = self._core
        with core.lock:
            core.session.ping()
            core.after_change()

    def wait_handshake(self, timeout: float | None = None) -> None:
        """Return once the handshake completed; raise its failure (brief C1).

        After ``connect(..., lazy=True)`` this starts the handshake, exactly as the
        first stream operation would; concurrent callers wait on the same condition.
        A server connection handed out with accepted 0-RTT data waits here for the
        client's Finished.
        """
        self._core.ensure_handshake(timeout, complete=True)

    def open_stream(
        self, bidirectional: bool = True, timeout: float | None = None, *, early: bool = False
    ) -> Stream:
        """Open a stream; waits while the peer's stream limit is reached (RFC 9000 §4.6).

        ``early=True`` marks the stream replay-safe: after ``connect(..., lazy=True)``
        with :attr:`ClientConfig.early_data <mstls.ClientConfig>` and a ticket that
        allows it, this starts the handshake and returns at once, and the stream's
        first data goes as 0-RTT data (RFC 8446 §2.3; TCP/QMux).  Without 0-RTT it
        is an ordinary stream (the call waits for the handshake).
        """
        core = self._core
        if early:
            with core.lock:
                core.ensure_handshake_started(send=False)
                if core.session.early_data_possible:
                    sid = core.session.open_stream(bidirectional, early=True)
                    if sid is not None:  # the ClientHello goes with its first data
                        return Stream(core, sid, early=True)
                core.ensure_handshake_started()
        core.ensure_handshake(timeout)
        sid = core.wait_until(
            core.waiters.open,
            lambda: core.session.open_stream(bidirectional),
            timeout,
            errors.WantWrite,
            "open_stream",
        )
        return Stream(core, sid)

    def accept_stream(self, timeout: float | None = None) -> Stream:
        """The next stream the peer opened (bidirectional or unidirectional)."""
        core = self._core
        core.ensure_handshake(timeout)
        sid = core.wait_until(
            core.waiters.accept, core.session.accept, timeout, errors.WantRead, "accept_stream"
        )
        return Stream(core, sid)

    # -- datagrams (RFC 9221; reliable over TCP, draft-ietf-quic-qmux §8.1) --------
    @property
    def max_datagram_size(self) -> int:
        """The largest payload :meth:`send_datagram` accepts now, from the peer's
        limit, the path MTU (UDP) or record size (TCP) and the framing; 0 before the
        handshake, when either side did not enable ``datagrams``, or once failed."""
        with self._core.lock:
            return self._core.session.max_datagram_size

    def send_datagram(
        self, data: bytes | bytearray | memoryview, timeout: float | None = None
    ) -> None:
        """Send one datagram: unreliable over UDP, delivered in order over TCP.

        Waits only for the handshake (``timeout``), never for room: a full send
        queue raises :class:`~mstls.exceptions.DatagramQueueFull` (a ``WantWrite``),
        a payload above :attr:`max_datagram_size`
        :class:`~mstls.exceptions.DatagramTooLarge` (a ``ValueError`` naming the
        maximum), a peer without datagram support
        :class:`~mstls.exceptions.DatagramsUnsupported`.
        """
        core = self._core
        core.ensure_handshake(timeout)
        with core.lock:
            core.session.send_datagram(data)
            core.after_change()

    def receive_datagram(self, timeout: float | None = None) -> bytes:
        """The next datagram received, waiting up to ``timeout``; raises the
        connection's failure once it ended and every earlier datagram was read."""
        core = self._core
        core.ensure_handshake(timeout)
        return core.wait_until(
            core.waiters.datagram,
            core.session.receive_datagram,
            timeout,
            errors.WantRead,
            "receive_datagram",
        )

    def migrate(self, local_address: str | None = None, timeout: float | None = None) -> None:
        """Move this QUIC client connection to a new UDP socket (a new port, on
        ``local_address`` if given, e.g. ``"127.0.0.2"``) with a new connection ID,
        once PATH_CHALLENGE/PATH_RESPONSE validated the path (RFC 9000 §9.2).

        Raises :class:`~mstls.exceptions.MigrationRefused` on TCP, on a server
        connection, when the peer sent disable_active_migration or has no spare
        connection ID, and when validation fails."""
        self._core.ensure_handshake(timeout)
        migrate_client(self._core, local_address, timeout)

    def close(self, code: int = 0, reason: str = "") -> None:
        """Close with an application ``code`` and ``reason`` (RFC 9000 §10.2)."""
        core = self._core
        with core.lock:
            if not core.conn.is_terminated:
                core.conn.close(code, reason, now=time.monotonic())
            core.after_change()


class Listener:
    """Accepts connections on one socket: QUIC on UDP, or QMux on TCP (a subclass).

    Instances come from :func:`listen`; ``with`` closes the listener.  The
    handshake counters (:attr:`failed_handshakes`, :attr:`refused_handshakes`,
    :attr:`dropped_initials`, :meth:`pop_handshake_failures`) mean the same on
    both transports and in :class:`mstls.trio.Listener`.
    """

    def __init__(self, handler: UdpListenerHandler) -> None:
        self._handler = handler
        self.address = handler.sock.getsockname()

    def __enter__(self) -> Listener:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def accept(self, timeout: float | None = None) -> Connection:
        """The next connection whose handshake completed; raises
        :class:`~mstls.exceptions.ListenerClosed` once the listener is closed."""
        handler = self._handler
        deadline = _deadline(timeout)
        with handler.lock:
            while not handler.accepted:
                if handler.closed:
                    raise errors.recorded(errors.ListenerClosed("listener closed"))
                left = _remaining(deadline)
                if left is not None and left <= 0:
                    raise errors.timeout_error("accept", timeout)
                handler.accept_cond.wait(left)
            conn, session, waiters = handler.accepted.popleft()
        return Connection(_Core(handler, conn, session, waiters), "udp")

    def update_config(self, config: ServerConfig) -> None:
        """Use ``config`` (certificate, ALPN, limits) for handshakes that start from now on;
        established connections, the stateless reset key and CID generator are kept."""
        endpoint = self._handler.endpoint
        with self._handler.lock:
            new = config.quic_config()
            old = endpoint.config
            if new.stateless_reset_key is None:
                new.stateless_reset_key = old.stateless_reset_key
            if new.cid_generator is None:
                new.cid_generator, new.cid_length = old.cid_generator, old.cid_length
            config.configure_endpoint(endpoint)
            endpoint.config = new

    def _counters(self) -> tuple[threading.RLock, HandshakeFailures, int, int]:
        """(lock, failures, refused, dropped): what the counter members read."""
        handler = self._handler
        endpoint = handler.endpoint
        return handler.lock, handler.failures, endpoint.refused_initials, endpoint.dropped_initials

    @property
    def failed_handshakes(self) -> int:
        """Every handshake that failed on this listener, refusals included (for metrics)."""
        return self._counters()[1].count

    @property
    def refused_handshakes(self) -> int:
        """Handshakes refused by admission control (over the per-source rate, or QUIC
        handshakes shed beyond ``max_pending_handshakes``); each is also one of
        :attr:`failed_handshakes`.  UDP counts every refused Initial, a
        client's retransmissions included; TCP, every connection reset before TLS."""
        return int(self._counters()[2])

    @property
    def dropped_initials(self) -> int:
        """QUIC Initial datagrams that authenticated nothing and were dropped before any
        state or Retry (RFC 9000 §14.1, §17.2.2); always 0 on TCP."""
        return int(self._counters()[3])

    def pop_handshake_failures(self) -> list[tuple[Any, Error | None]]:
        """The failed handshakes recorded since the last call: (peer address, exception),
        oldest first; at most the latest :data:`~mstls.core.admission.MAX_RECORDED_FAILURES`."""
        lock, failures, _, _ = self._counters()
        with lock:
            return failures.pop()

    def close(self) -> None:
        """Close every connection (code 0) and the socket; waiting ``accept`` calls raise
        :class:`~mstls.exceptions.ListenerClosed`."""
        handler = self._handler
        with handler.lock:
            for session, _ in handler.sessions.values():
                if not session.conn.is_terminated:
                    session.conn.close(0, "listener closed", now=time.monotonic())
            handler.after_change(time.monotonic())
        handler.close_socket()


def _resolve(host: str, port: int) -> tuple[str, int]:
    info = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
    address = info[0][4]
    return str(address[0]), int(address[1])


def connect_udp(
    host: str, port: int, config: ClientConfig, *, timeout: float | None, lazy: bool
) -> Connection:
    """:func:`mstls.connect` over UDP (QUIC); the entry point is :mod:`.entry`."""
    address = _resolve(host, port)
    quic_config = config.quic_config(host)
    family_host = "::" if ":" in address[0] else "0.0.0.0"
    sock = open_udp_socket(family_host, 0)
    conn = QuicConnection(quic_config, is_client=True, now=time.monotonic(), peer_address=address)
    handler = UdpClientHandler(sock, conn)
    core = _Core(handler, conn, handler.session, handler.waiters)
    core.handshake_started = False
    handler.assist.add(handler)
    connection = Connection(core, "udp")
    if not lazy:
        core.ensure_handshake(timeout)
    return connection


#: ``socket_hook(sock)`` of :func:`listen`: called with the bound socket before use.
SocketHook = Callable[[socket.socket], object]


def listen_udp(
    host: str,
    port: int,
    config: ServerConfig,
    *,
    reuse_port: bool,
    socket_hook: SocketHook | None,
) -> Listener:
    """:func:`mstls.listen` over UDP (QUIC); the entry point is :mod:`.entry`."""
    endpoint = config.server_endpoint()
    sock = open_udp_socket(host, port, reuse_port=reuse_port)
    if socket_hook is not None:
        try:
            socket_hook(sock)
        except BaseException:
            sock.close()
            raise
    handler = UdpListenerHandler(sock, endpoint)
    handler.assist.add(handler)
    return Listener(handler)
