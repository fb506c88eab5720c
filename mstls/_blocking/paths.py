"""Client connection migration for the blocking API (RFC 9000 §9.1, §9.2).

Theory of operation
-------------------
:func:`migrate` opens a new UDP socket (a new port, on ``local_address`` if
given), registers it with the assist thread as a :class:`PathSocket` and asks
the sans-I/O connection to probe the path (:meth:`~mstls.quic.paths.PathsMixin.probe_path`)
with the socket itself as the path's ``local`` tag.  The connection moves to the
path when the PATH_RESPONSE arrives; :func:`migrate` waits for that, or for the
validation to fail.  The old socket keeps receiving: packets already on their
way to it are not lost.  The client handler sends each datagram on the socket
its path names (:meth:`~mstls._blocking.handlers.UdpClientHandler.flush`).
"""

from __future__ import annotations

import time
from typing import Any

from ..exceptions import MigrationRefused
from ..io.udp import detect_capabilities, new_receive_buffer, open_udp_socket

__all__ = ["MIGRATION_POLL", "PathSocket", "migrate"]

#: How often :func:`migrate` looks at the path while it waits (seconds).
MIGRATION_POLL = 0.01


class PathSocket:
    """An extra client socket driven by the assist thread for its owner handler."""

    def __init__(self, owner: Any, sock: Any) -> None:
        self.owner = owner
        self.sock = sock
        self.caps = detect_capabilities(sock, offload=owner.conn.config.udp_offload)
        self.buffer = new_receive_buffer()

    def on_readable(self) -> None:
        self.owner.on_readable_path(self)

    def on_timer(self) -> None:
        """The owner keeps the connection's timers."""

    def deadline(self) -> float | None:
        return None

    def wants_write(self) -> bool:
        return False

    def on_writable(self) -> None:
        """UDP output the kernel refused is dropped (recovery resends it)."""

    def on_error(self, exc: Exception) -> None:
        self.owner.on_error(exc)

    def close_at_exit(self, timeout: float) -> None:
        """The owner closes the connection."""

    def exit_pending(self) -> bool:
        return False


def migrate(core: Any, local_address: str | None, timeout: float | None) -> None:
    """Move ``core``'s client QUIC connection to a new local socket (RFC 9000 §9.2)."""
    handler = core.handler
    if not hasattr(handler, "add_path_socket"):
        raise MigrationRefused("only a QUIC client connection can migrate (TCP has no paths)")
    conn = core.conn
    host = local_address or ("::" if ":" in str(conn.peer_address[0]) else "0.0.0.0")
    deadline = None if timeout is None else time.monotonic() + timeout
    cond = core.waiters.connection
    with core.lock:
        while not conn.handshake_confirmed:  # RFC 9000 §9: not before confirmation
            core.session.check("migrate")
            if deadline is not None and time.monotonic() >= deadline:
                raise MigrationRefused("the handshake was not confirmed within the timeout")
            cond.wait(MIGRATION_POLL)
    sock = open_udp_socket(host, 0)
    with core.lock:
        core.session.check("migrate")
        try:
            path = conn.probe_path(sock, time.monotonic())
        except BaseException:
            sock.close()
            raise
        handler.add_path_socket(PathSocket(handler, sock))
        core.after_change()
    with core.lock:
        while conn.path is not path:
            core.session.check("migrate")
            if not path.validating and not path.validated:
                raise MigrationRefused("path validation failed: no PATH_RESPONSE (RFC 9000 §8.2.4)")
            if deadline is not None and time.monotonic() >= deadline:
                raise MigrationRefused("path validation did not finish within the timeout")
            cond.wait(MIGRATION_POLL)
