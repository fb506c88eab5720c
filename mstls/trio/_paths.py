"""Client connection migration for the trio API (RFC 9000 §9.1, §9.2).

:func:`migrate` opens a new UDP socket, has the client driver read it in a task
of its own (:meth:`~mstls.trio._udp.UdpClientDriver.add_path_socket`), asks the
sans-I/O connection to probe the path with the socket as its ``local`` tag, and
waits until the connection moved there or the validation failed.  The old
socket keeps being read, so packets already on their way are not lost.
"""

from __future__ import annotations

from typing import Any

import trio

from ..exceptions import MigrationRefused
from ..io.udp import open_udp_socket

__all__ = ["MIGRATION_POLL", "migrate"]

#: How often :func:`migrate` looks at the path while it waits (seconds).
MIGRATION_POLL = 0.01


async def migrate(core: Any, local_address: str | None) -> None:
    """Move ``core``'s client QUIC connection to a new local socket (RFC 9000 §9.2)."""
    driver = core.driver
    if not hasattr(driver, "add_path_socket"):
        raise MigrationRefused("only a QUIC client connection can migrate (TCP has no paths)")
    conn = core.conn
    host = local_address or ("::" if ":" in str(conn.peer_address[0]) else "0.0.0.0")
    while not conn.handshake_confirmed:  # RFC 9000 §9: not before confirmation
        core.session.check("migrate")
        await trio.sleep(MIGRATION_POLL)
    sock = open_udp_socket(host, 0)
    core.session.check("migrate")
    try:
        path = conn.probe_path(sock, trio.current_time())
    except BaseException:
        sock.close()
        raise
    driver.add_path_socket(sock)
    core.after_change()
    while conn.path is not path:
        core.session.check("migrate")
        if not path.validating and not path.validated:
            raise MigrationRefused("path validation failed: no PATH_RESPONSE (RFC 9000 §8.2.4)")
        await trio.sleep(MIGRATION_POLL)
