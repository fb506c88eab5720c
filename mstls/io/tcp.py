"""TCP socket preparation shared by the blocking and trio drivers (QMux over TLS/TCP)."""

from __future__ import annotations

import contextlib
import socket
import struct

__all__ = ["prepare_socket", "refuse_socket"]

#: SO_LINGER on, zero seconds: close() resets the connection (no FIN, no TIME_WAIT).
_LINGER_RESET = struct.pack("ii", 1, 0)


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
