"""TCP socket handling shared by the blocking and trio drivers (QMux over TLS/TCP).

Besides preparing and refusing sockets, this is where a socket error becomes a
QMux transport error, and where a failed send first looks at what the peer had
already sent (:func:`send_failed`): a peer that rejects us sends its TLS alert
or CONNECTION_CLOSE and then closes, so our next write fails with EPIPE or
ECONNRESET while the alert still waits, unread, in our receive queue.  Reporting
the write's error would hide the peer's reason (Go #7414, fixed by splitting the
read and write errors of ``crypto/tls``; brief E6: a local write failure never
discards what was received).
"""

from __future__ import annotations

import contextlib
import errno
import socket
import struct

from ..core.lifecycle import LIVE_STATES
from ..qmux.connection import QMuxConnection

__all__ = [
    "MAX_PENDING_AFTER_SEND_ERROR",
    "PENDING_READ_SIZE",
    "RESET_ERRNOS",
    "accept_queue_length",
    "prepare_socket",
    "refuse_socket",
    "send_failed",
    "transport_error",
]

#: SO_LINGER on, zero seconds: close() resets the connection (no FIN, no TIME_WAIT).
_LINGER_RESET = struct.pack("ii", 1, 0)
#: errno values that mean the peer reset (or already closed) the TCP connection.
RESET_ERRNOS = frozenset(
    getattr(errno, name) for name in ("ECONNRESET", "EPIPE", "ECONNABORTED") if hasattr(errno, name)
)
#: Bytes a failed send reads from what already waits in the socket (brief T5:
#: bounded work; an alert or CONNECTION_CLOSE is a few dozen bytes).
MAX_PENDING_AFTER_SEND_ERROR = 1 << 20
#: Bytes per ``recv`` while reading them.
PENDING_READ_SIZE = 64 << 10


#: Linux ``struct tcp_info``: bytes read, the state byte, and the offset of
#: ``tcpi_unacked``, which for a listening socket is the accept queue's length.
_TCP_INFO_SIZE = 104
_TCP_LISTEN = 10
_TCPI_UNACKED = struct.Struct("=I")
_TCPI_UNACKED_OFFSET = 24


def accept_queue_length(sock: socket.socket) -> int | None:
    """Connections waiting in a listening socket's accept queue, or None where the
    system does not tell (Linux reports it in ``TCP_INFO``, as ``ss`` shows it)."""
    option = getattr(socket, "TCP_INFO", None)
    if option is None:
        return None
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, option, _TCP_INFO_SIZE)
    except OSError:
        return None
    if len(info) < _TCPI_UNACKED_OFFSET + _TCPI_UNACKED.size or info[0] != _TCP_LISTEN:
        return None
    return int(_TCPI_UNACKED.unpack_from(info, _TCPI_UNACKED_OFFSET)[0])


def refuse_socket(sock: socket.socket) -> None:
    """Close an accepted socket at once with a TCP reset: no TLS work, no TIME_WAIT."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
    sock.close()


def prepare_socket(sock: socket.socket) -> socket.socket:
    """Non-blocking, Nagle off (records are already coalesced by the TLS layer)."""
    sock.setblocking(False)
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def transport_error(conn: QMuxConnection, exc: OSError, now: float) -> None:
    """Report a fatal socket error: ``tcp_reset`` for a reset, else ``io_error``."""
    kind = "tcp_reset" if exc.errno in RESET_ERRNOS else "io_error"
    conn.on_transport_error(kind, now, f"{type(exc).__name__}: {exc}")


def send_failed(sock: socket.socket, conn: QMuxConnection, exc: OSError, now: float) -> None:
    """A ``send`` on ``sock`` failed with ``exc``: feed ``conn`` what the peer had
    already sent (at most :data:`MAX_PENDING_AFTER_SEND_ERROR` bytes, without
    blocking), then report ``exc``, which ends the connection as a premature
    close only if what was read did not end it first.

    The peer's TLS alert or CONNECTION_CLOSE, if it is there, is the error every
    caller then sees; the write's EPIPE is only its consequence (Go #7414).
    ``sock`` must be non-blocking (:func:`prepare_socket`).
    """
    budget = MAX_PENDING_AFTER_SEND_ERROR
    while budget > 0 and conn.state in LIVE_STATES:
        try:
            data = sock.recv(min(PENDING_READ_SIZE, budget))
        except OSError:
            break  # nothing waiting (EAGAIN), or the reset itself: the send's error stands
        if not data:
            break  # FIN: the send's error says more than a bare end of stream
        budget -= len(data)
        conn.receive_data(data, now)
    transport_error(conn, exc, now)  # the socket is gone either way
