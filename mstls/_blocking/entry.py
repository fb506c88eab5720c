"""The blocking API's entry points, :func:`connect` and :func:`listen`, over either transport.

They pick the module that holds the transport: :mod:`.api` for QUIC over UDP,
:mod:`.transports` for QMux over TLS/TCP and for ``transport="auto"``.  Living
here, above both, they keep :mod:`.api` from importing :mod:`.transports` (which
builds on it): the package's imports form no cycle (issue 16).
"""

from __future__ import annotations

from ..config import ClientConfig, ServerConfig
from ..exceptions import ConfigurationError
from .api import Connection, Listener, SocketHook, connect_udp, listen_udp
from .transports import connect_other, listen_other

__all__ = ["connect", "listen"]

TRANSPORTS = ("udp", "tcp", "auto")


def connect(
    host: str,
    port: int,
    config: ClientConfig,
    *,
    transport: str = "udp",
    timeout: float | None = None,
    lazy: bool = False,
) -> Connection:
    """Connect to ``host:port`` and wait for the handshake (at most ``timeout`` seconds).

    ``transport`` is ``"udp"`` (QUIC), ``"tcp"`` (QMux over TLS/TCP) or ``"auto"``
    (Happy Eyeballs: QUIC first, TCP beside it after ``config.fallback_delay`` if
    no QUIC packet came back; the first handshake to complete wins and the other
    attempt is closed; :attr:`Connection.transport` names the winner).  With
    ``lazy=True`` (``"udp"``/``"tcp"``) it returns before the handshake: the first
    stream operation or :meth:`Connection.wait_handshake` starts it and waits
    (``"auto"`` always waits, since the handshake picks the transport).  A
    handshake failure raises :class:`~mstls.exceptions.HandshakeError` (or the
    connection's failure; ``"auto"``: the TCP attempt's, chained from the QUIC
    attempt's, both in the error queue); running out of time raises
    :class:`~mstls.exceptions.Timeout`.
    """
    if transport not in TRANSPORTS:
        raise ConfigurationError(f"transport: expected 'udp', 'tcp' or 'auto', got {transport!r}")
    if transport == "udp":
        return connect_udp(host, port, config, timeout=timeout, lazy=lazy)
    return connect_other(host, port, config, transport=transport, timeout=timeout, lazy=lazy)


def listen(
    host: str,
    port: int,
    config: ServerConfig,
    *,
    transport: str = "udp",
    reuse_port: bool = False,
    socket_hook: SocketHook | None = None,
) -> Listener:
    """Listen on ``host:port`` (port 0: any; see :attr:`Listener.address`).

    ``transport`` is ``"udp"`` (QUIC) or ``"tcp"`` (QMux over TLS/TCP).
    ``reuse_port`` sets SO_REUSEPORT so several processes share the port;
    ``socket_hook(sock)`` is called with the bound socket before it is used (for
    example to attach a reuseport steering program).  The configuration is
    checked before any socket is bound.
    """
    if transport == "udp":
        return listen_udp(host, port, config, reuse_port=reuse_port, socket_hook=socket_hook)
    return listen_other(
        host, port, config, transport=transport, reuse_port=reuse_port, socket_hook=socket_hook
    )
