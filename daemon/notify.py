"""systemd's readiness protocol (sd_notify), without libsystemd.

When systemd starts the daemon with ``Type=notify`` it sets ``$NOTIFY_SOCKET``
to a Unix datagram socket; the daemon sends ``READY=1`` once it listens,
``RELOADING=1`` / ``READY=1`` around a SIGHUP reload and ``STOPPING=1`` when
it starts draining.  Without ``$NOTIFY_SOCKET`` every call does nothing.
"""

from __future__ import annotations

import contextlib
import os
import socket

__all__ = ["notify"]


def notify(state: str) -> bool:
    """Send ``state`` (e.g. ``"READY=1"``) to systemd; True if it was sent."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address or not hasattr(socket, "AF_UNIX"):
        return False
    if address.startswith("@"):  # the abstract namespace
        address = "\0" + address[1:]
    with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.sendto(state.encode(), address)
        return True
    return False
