"""QUIC over UDP for the asyncio driver: a client socket, or a listening socket.

Theory of operation
-------------------
The socket is watched with ``loop.add_reader``.  Each readiness callback reads
a bounded batch of datagrams (brief T5) with
:func:`~mstls.io.udp.receive_datagrams` (GRO-batched on Linux), feeds them,
runs due timers and makes the shared change step.  The loop's socket API is
not used: the batched helpers of :mod:`mstls.io.udp` are loop-agnostic and
work on any loop with ``add_reader`` (the default selector loop, uvloop).

A listener's step costs O(log N) plus the connections concerned, as in the
trio driver: only the connections the endpoint called
(:meth:`~mstls.quic.endpoint.ServerEndpoint.pop_changed`) are pumped.

Sending happens in :meth:`_UdpDriver.flush`, from whichever task or callback
made the change, with :func:`~mstls.io.udp.send_datagrams` (GSO-batched).
When the socket refuses datagrams (EAGAIN/ENOBUFS, brief E4) the rest waits
in a backlog, nothing more is pulled from the connection, and a writer
callback (``loop.add_writer``) resumes once the socket is writable.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections import deque
from typing import Any

from ..config import ServerConfig
from ..core.admission import refusal
from ..core.ecn import ECT0
from ..core.ecn_runs import CodepointRuns, runs_from, send_segments
from ..exceptions import MigrationRefused
from ..io.udp import (
    UdpCapabilities,
    detect_capabilities,
    enable_ecn,
    new_receive_buffer,
    receive_datagrams,
    send_datagrams,
    set_ecn_codepoint,
)
from ..quic.connection import QuicConnection
from ..quic.endpoint import ServerEndpoint
from ._driver import Core, Driver, ListenerDriver

__all__ = ["UdpClientDriver", "UdpListenerDriver"]

#: Datagrams read per readiness callback (brief T5: bounded work).
MAX_DATAGRAMS_PER_READ = 256
#: Rounds of ``datagrams_to_send`` per flush.
MAX_FLUSH_ROUNDS = 16


class _UdpDriver(Driver):
    """Receive, feed, send for one UDP socket; see the module documentation."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, sock: socket.socket, *, offload: bool = True
    ) -> None:
        super().__init__(loop)
        self.sock = sock
        self.caps = detect_capabilities(sock, offload=offload)
        #: Received datagrams' ECN codepoints (RFC 9000 §13.4.1), if the socket tells.
        self._ecn: list[int] | None = None
        self._buffer = new_receive_buffer()
        self._backlog: deque[tuple[bytes, Any]] = deque()
        self._backlog_runs: CodepointRuns | None = None  # the backlog's ECN codepoints
        self._writing = False

    # Implemented by the client and listener -------------------------------------------------
    def feed(self, data: bytes, addr: Any, now: float, ecn: int = 0) -> None:
        raise NotImplementedError

    def outgoing(self, now: float) -> list[tuple[bytes, Any]]:
        raise NotImplementedError

    def too_big(self, data: Any, addr: Any, now: float) -> None:
        """The socket refused ``data`` as too big (EMSGSIZE): tell its connection."""
        raise NotImplementedError

    def codepoint_runs(self) -> CodepointRuns | None:
        """The ECN codepoints of what :meth:`outgoing` returned (None: leave the socket's)."""
        return None

    # Callbacks ------------------------------------------------------------------------------
    def start(self) -> None:
        self.loop.add_reader(self.sock.fileno(), self.guarded, self._on_readable)
        self.after_change()

    def _on_readable(self) -> None:
        now = self.loop.time()
        ecn = self._ecn
        batch = receive_datagrams(self.sock, MAX_DATAGRAMS_PER_READ, self.caps, self._buffer, ecn)
        feed = self.feed
        for index, (data, addr) in enumerate(batch):
            # views die at the next read; the core may keep data
            feed(bytes(data), addr, now, ecn[index] if ecn else 0)
        # Output before the timer check, as in mstls.trio._udp: an ACK due at once
        # is sent, not woken for (issue 11).
        self.after_io()
        deadline = self.timer()
        if deadline is not None and deadline <= now:
            self.handle_timer(now)
            self.after_io()

    def _on_writable(self) -> None:
        pending = list(self._backlog)
        self._backlog.clear()
        runs, self._backlog_runs = self._backlog_runs, None
        self._stop_writing()
        if self._send(pending, runs):
            self.after_io()

    def _stop_writing(self) -> None:
        if self._writing:
            self._writing = False
            self.loop.remove_writer(self.sock.fileno())

    # Sending -------------------------------------------------------------------------------
    def flush(self, now: float) -> None:
        if self._backlog:
            return  # the socket is full: the writer callback goes first
        for _ in range(MAX_FLUSH_ROUNDS):
            out = self.outgoing(now)
            if not out or not self._send(out, self.codepoint_runs()):
                return

    def _send(self, out: list[tuple[bytes, Any]], runs: CodepointRuns | None = None) -> bool:
        """Send ``out`` in runs of one address (and one ECN codepoint, given ``runs``:
        :mod:`mstls.core.ecn_runs`); keep what the socket refused. True: all sent."""
        for index, end, addr, codepoint in send_segments(out, runs):
            if codepoint is not None:
                set_ecn_codepoint(self.sock, self.caps, codepoint)
            group = [d for d, _ in out[index:end]]
            too_big: list[Any] = []
            try:
                sent = send_datagrams(self.sock, group, addr, self.caps, too_big)
            except OSError:
                sent = len(group)  # unsendable (bad address): lost like any datagram
            for data in too_big:  # the next flush round resends smaller (RFC 8899 §4.6)
                self.too_big(data, addr, self.loop.time())
            if index + sent < end:
                self._backlog.extend(out[index + sent :])
                self._backlog_runs = None if runs is None else runs_from(runs, index + sent)
                if not self._writing:
                    self._writing = True
                    self.loop.add_writer(self.sock.fileno(), self.guarded, self._on_writable)
                return False
        return True

    def close_transport(self) -> None:
        fd = self.sock.fileno()
        if fd >= 0:
            self.loop.remove_reader(fd)
            self._stop_writing()
        self.sock.close()


class UdpClientDriver(_UdpDriver):
    """One client connection on its own UDP socket."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, sock: socket.socket, conn: QuicConnection
    ) -> None:
        super().__init__(loop, sock, offload=conn.config.udp_offload)
        self.conn = conn
        if conn.config.ecn and enable_ecn(sock, self.caps):
            self._ecn = []
        self._marks = conn.config.ecn and set_ecn_codepoint(sock, self.caps, ECT0)
        if self._marks:
            conn.enable_ecn_marking()
        self.core = Core(self, conn, "udp", conn.peer_address)
        self._cores = [self.core]
        #: Sockets opened by migrate() (the connection's path tags), each with its
        #: capabilities and ECN list; watched with ``loop.add_reader`` (:mod:`._paths`).
        self.path_sockets: dict[socket.socket, tuple[UdpCapabilities, list[int] | None]] = {}
        self._path_buffer = new_receive_buffer()

    def cores(self) -> list[Core]:
        return self._cores

    def feed(self, data: bytes, addr: Any, now: float, ecn: int = 0) -> None:
        self.conn.receive_datagram(data, addr, now, ecn)

    def outgoing(self, now: float) -> list[tuple[bytes, Any]]:
        """The first socket's datagrams; those of a migrate() socket go out at once."""
        out: list[tuple[bytes, Any]] = []
        conn = self.conn
        for data, path in conn.datagrams_with_paths(now):
            if path.local is None:
                out.append((data, path.address))
                continue
            caps = self.path_sockets[path.local][0]
            if self._marks:  # the codepoint the connection chose (ECN validation, §13.4.2)
                set_ecn_codepoint(path.local, caps, conn.send_codepoint)
            with contextlib.suppress(OSError):  # refused: lost like any datagram
                send_datagrams(path.local, [data], path.address, caps)
        if self._marks:
            set_ecn_codepoint(self.sock, self.caps, conn.send_codepoint)
        return out

    def too_big(self, data: Any, addr: Any, now: float) -> None:
        self.conn.on_datagram_too_big(len(data), now)

    # Migration (RFC 9000 §9, :mod:`._paths`) -------------------------------------------
    def add_path_socket(self, sock: socket.socket) -> None:
        """Watch ``sock``, a migrate() socket, for the connection's datagrams."""
        if self.closed:
            sock.close()
            raise MigrationRefused("the connection's I/O has stopped")
        caps = detect_capabilities(sock, offload=False)
        ecn: list[int] | None = [] if self.conn.config.ecn and enable_ecn(sock, caps) else None
        if self._marks:
            set_ecn_codepoint(sock, caps, ECT0)
        self.path_sockets[sock] = (caps, ecn)
        self.loop.add_reader(sock.fileno(), self.guarded, lambda: self._on_path_readable(sock))

    def _on_path_readable(self, sock: socket.socket) -> None:
        now = self.loop.time()
        caps, ecn = self.path_sockets[sock]
        try:
            batch = receive_datagrams(sock, MAX_DATAGRAMS_PER_READ, caps, self._path_buffer, ecn)
        except OSError:
            batch = []  # E4: an ICMP error on this path; the path's validation decides
        receive = self.conn.receive_datagram
        for index, (data, addr) in enumerate(batch):
            receive(bytes(data), addr, now, ecn[index] if ecn else 0, local=sock)
        deadline = self.timer()
        if deadline is not None and deadline <= now:
            self.handle_timer(now)
        self.after_io()

    def close_transport(self) -> None:
        super().close_transport()
        for sock in self.path_sockets:
            fd = sock.fileno()
            if fd >= 0:
                self.loop.remove_reader(fd)
            sock.close()

    def timer(self) -> float | None:
        return self.conn.get_timer()

    def handle_timer(self, now: float) -> None:
        self.conn.handle_timer(now)

    def finished(self) -> bool:
        return bool(self.conn.is_terminated)


class UdpListenerDriver(_UdpDriver, ListenerDriver):
    """A listening UDP socket: every server connection behind one ServerEndpoint."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, sock: socket.socket, endpoint: ServerEndpoint
    ) -> None:
        super().__init__(loop, sock, offload=endpoint.config.udp_offload)
        self.endpoint = endpoint
        if endpoint.config.ecn and enable_ecn(sock, self.caps):
            self._ecn = []
        # One socket for every connection: the endpoint names each datagram's
        # codepoint (RFC 9000 §13.4.2.2), set before each run (.core.ecn_runs).
        if endpoint.config.ecn and set_ecn_codepoint(sock, self.caps, ECT0):
            endpoint.ecn_marking = True

    def cores(self) -> list[Core]:
        out = list(self.live.values())  # forgotten ones too: pumped once more, then dropped
        self._drop_terminated()
        return out

    def _drop_terminated(self) -> None:
        """Forget the cores of connections the endpoint forgot (after their last pump)."""
        terminated = self.endpoint.terminated
        while terminated:
            core = self.live.get(id(terminated.popleft()))
            if core is not None:
                self.forget(core)

    def after_change(self, only: Core | None = None) -> None:
        """An application change to ``only`` (touched), or to any connection (all touched)."""
        if self.closed:
            return
        if only is None:
            self.endpoint.touch_all()
            self._step([])
        else:
            self.endpoint.touch(only.conn)
            self._step([only])

    def after_changes(self, cores: list[Core]) -> None:
        """Several application changes: every connection touched, one step for all."""
        if self.closed:
            return
        for core in cores:
            self.endpoint.touch(core.conn)
        self._step(cores)

    def after_io(self) -> None:
        if not self.closed:
            self._step([])

    def _step(self, touched: list[Core]) -> None:
        """Send, pump and wake for the connections the endpoint called only; then the
        handshake check for those, and the timer."""
        self.flush(self.loop.time())
        live = self.live
        pumped: list[Core] = []
        for conn in self.endpoint.pop_changed():
            core = live.get(id(conn))
            if core is not None:
                pumped.append(core)
        for core in touched:
            if core not in pumped:
                pumped.append(core)  # already forgotten: its last events still wake its tasks
        for core in pumped:
            wake = core.session.pump_events()
            if wake:
                core.waiters.notify(wake)
        # Handshakes first, as in trio: a handshake just ended (timed out, shed) is also
        # just forgotten, and dropping it before the check would lose its failure.
        self.check_handshakes_of(pumped)
        self._drop_terminated()
        self.move_timer()

    def feed(self, data: bytes, addr: Any, now: float, ecn: int = 0) -> None:
        endpoint = self.endpoint
        endpoint.receive_datagram(data, addr, now, ecn)
        while endpoint.accepted:
            conn = endpoint.accepted.popleft()
            self.adopt(Core(self, conn, "udp", conn.peer_address))
        refusals = endpoint.refusals
        while refusals:  # admission control: a failed handshake for the metrics
            address, cause = refusals.popleft()
            self.handshake_failures.append((address, refusal(cause)))
            self.failed_handshakes += 1

    def update_admission(self, config: ServerConfig) -> None:
        """New Retry and per-source rate settings (a reload); the buckets are kept."""
        config.configure_endpoint(self.endpoint)

    def outgoing(self, now: float) -> list[tuple[bytes, Any]]:
        return self.endpoint.datagrams_to_send(now)

    def codepoint_runs(self) -> CodepointRuns | None:
        endpoint = self.endpoint
        return endpoint.send_codepoints if endpoint.ecn_marking else None

    def too_big(self, data: Any, addr: Any, now: float) -> None:
        self.endpoint.datagram_too_big(data, addr, now)

    def timer(self) -> float | None:
        return self.endpoint.get_timer()

    def handle_timer(self, now: float) -> None:
        self.endpoint.handle_timer(now)
