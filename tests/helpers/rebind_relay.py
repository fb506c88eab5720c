"""A UDP relay that behaves like a NAT whose mapping changes: NAT rebinding (RFC 9000 §9.3).

Theory of operation
-------------------
:class:`RebindRelay` serves ONE client on loopback.  The client sends to
:attr:`RebindRelay.address`; the relay forwards each datagram to the target from
its current *upstream* socket, and what the target sends to that socket goes back
to the client.  :meth:`RebindRelay.rebind` (or ``rebind_after`` client datagrams,
counted by the relay thread itself so the moment is exact) opens a new upstream
socket, on a new port and optionally another loopback address (``127.0.0.2``):
from then on the target sees the client's packets come from the new address,
and datagrams it still sends to the old address are read and DROPPED, as a NAT
drops traffic to an expired mapping (counted in :attr:`dropped_to_old`; the old
socket stays open so the kernel sends no ICMP port-unreachable, which a real NAT
would not send either).

The client itself sees no change (its socket and the relay's client-facing
address stay the same): a rebinding is the server's problem, or the problem of a
server that never follows it.

Safety: only loopback addresses; one daemon thread with a selector timeout of at
most :data:`POLL_INTERVAL` and a bounded number of reads per wake-up; a datagram
from a second client address is dropped (counted in :attr:`foreign_dropped`);
:meth:`RebindRelay.stop` joins the thread with a timeout and closes every socket.
"""

from __future__ import annotations

import ipaddress
import selectors
import socket
import threading
from types import TracebackType
from typing import Any

__all__ = ["RebindRelay", "is_retry_v1"]

POLL_INTERVAL = 0.05  # seconds: longest selector wait, so stop() and rebind() are seen promptly
STOP_JOIN_TIMEOUT = 2.0  # seconds
MAX_DATAGRAM = 65535
MAX_READS_PER_WAKE = 256  # per socket, so one busy direction cannot starve the other
MAX_REBINDS = 16  # retired upstream sockets kept open (each one drops what reaches it)
SOCKET_BUFFER = 4 << 20  # bytes asked for SO_RCVBUF/SO_SNDBUF, so bursts are not lost here

RETRY_VERSION = (1).to_bytes(4, "big")  # QUIC v1: its Retry has long-header type 0b11

Address = tuple[Any, ...]


def _require_loopback(host: str) -> None:
    if not ipaddress.ip_address(host).is_loopback:
        raise ValueError(f"RebindRelay is for loopback only, got {host!r}")


def _udp_socket(host: str) -> socket.socket:
    _require_loopback(host)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    for option in (socket.SO_RCVBUF, socket.SO_SNDBUF):
        sock.setsockopt(socket.SOL_SOCKET, option, SOCKET_BUFFER)
    sock.bind((host, 0))
    sock.setblocking(False)
    return sock


def is_retry_v1(data: bytes) -> bool:
    """A QUIC version 1 Retry packet: long header, type 3 (RFC 9000 §17.2.5)."""
    return len(data) >= 5 and data[0] & 0xF0 == 0xF0 and data[1:5] == RETRY_VERSION


class RebindRelay:
    """Forward one client's datagrams to ``target``; change the source address on demand."""

    def __init__(
        self,
        target: Address,
        *,
        host: str = "127.0.0.1",
        rebind_after: int | None = None,
        rebind_host: str | None = None,
    ) -> None:
        _require_loopback(str(target[0]))
        if rebind_after is not None and rebind_after < 0:
            raise ValueError("rebind_after: must be >= 0")
        if rebind_host is not None:
            _require_loopback(rebind_host)
        self.target = (str(target[0]), int(target[1]))
        self._upstream_host = host
        self._rebind_after = rebind_after
        self._rebind_host = rebind_host
        self._lock = threading.Lock()
        self._pending_rebind: list[str | None] = []
        self._stop = threading.Event()
        self._selector = selectors.DefaultSelector()
        self._front = _udp_socket(host)
        self._upstream = _udp_socket(host)
        self._retired: list[socket.socket] = []
        self._client: Address | None = None
        self._thread = threading.Thread(target=self._run, name="rebind-relay", daemon=True)
        #: Where the client sends.
        self.address: Address = self._front.getsockname()
        #: Every upstream (source) address the target has seen, in order.
        self.upstream_addresses: list[Address] = [self._upstream.getsockname()]
        #: Datagrams forwarded client -> target and target -> client.
        self.to_target = 0
        self.to_client = 0
        #: Datagrams the target sent to a retired upstream address (dropped).
        self.dropped_to_old = 0
        #: Datagrams from a second client address (dropped).
        self.foreign_dropped = 0
        #: QUIC v1 Retry packets seen going to the client (a tap for Retry tests).
        self.retries_to_client = 0
        #: Client datagrams forwarded when each rebinding happened.
        self.rebound_at: list[int] = []

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self) -> RebindRelay:
        """Start the relay thread."""
        self._selector.register(self._front, selectors.EVENT_READ)
        self._selector.register(self._upstream, selectors.EVENT_READ)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop the thread (bounded wait) and close every socket."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(STOP_JOIN_TIMEOUT)
        self._selector.close()
        for sock in (self._front, self._upstream, *self._retired):
            sock.close()

    def __enter__(self) -> RebindRelay:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- control -------------------------------------------------------------------------------
    def rebind(self, host: str | None = None) -> None:
        """Move to a new upstream port (on ``host``, default: the current one); the relay
        thread does it before the next datagram it forwards."""
        if host is not None:
            _require_loopback(host)
        with self._lock:
            self._pending_rebind.append(host)

    @property
    def rebinds(self) -> int:
        """How many times the upstream address changed."""
        return len(self.rebound_at)

    # -- the thread ----------------------------------------------------------------------------
    def _run(self) -> None:
        while not self._stop.is_set():
            for key, _ in self._selector.select(POLL_INTERVAL):
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                self._drain(sock)

    def _drain(self, sock: socket.socket) -> None:
        for _ in range(MAX_READS_PER_WAKE):
            try:
                data, source = sock.recvfrom(MAX_DATAGRAM)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # e.g. an ICMP error queued on the socket
                continue
            if sock is self._front:
                self._from_client(data, source)
            elif sock is self._upstream:
                self._from_target(data)
            else:
                self.dropped_to_old += 1

    def _from_client(self, data: bytes, source: Address) -> None:
        if self._client is None:
            self._client = source
        elif source != self._client:
            self.foreign_dropped += 1
            return
        if self._rebind_after is not None and self.to_target == self._rebind_after:
            self.rebind(self._rebind_host)
        self._apply_rebinds()
        self._send(self._upstream, data, self.target)
        self.to_target += 1

    def _from_target(self, data: bytes) -> None:
        if is_retry_v1(data):
            self.retries_to_client += 1
        if self._client is not None:
            self._send(self._front, data, self._client)
            self.to_client += 1

    def _apply_rebinds(self) -> None:
        with self._lock:
            pending, self._pending_rebind = self._pending_rebind, []
        for host in pending:
            if len(self._retired) >= MAX_REBINDS:
                raise RuntimeError(f"RebindRelay: more than {MAX_REBINDS} rebinds")
            new = _udp_socket(host or self._upstream_host)
            self._retired.append(self._upstream)  # stays registered: what reaches it is dropped
            self._upstream = new
            self._selector.register(new, selectors.EVENT_READ)
            self.upstream_addresses.append(new.getsockname())
            self.rebound_at.append(self.to_target)

    @staticmethod
    def _send(sock: socket.socket, data: bytes, destination: Address) -> None:
        try:
            sock.sendto(data, destination)
        except (BlockingIOError, InterruptedError):
            pass  # a full buffer drops the datagram, as a network would
        except OSError:
            pass  # ICMP-caused errors on UDP: the datagram is lost, the relay goes on
