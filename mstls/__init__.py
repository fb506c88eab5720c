"""mstls: secure, multiplexed connections over QUIC v1 (UDP) and QMux over TLS 1.3 (TCP).

The blocking, thread-safe API lives here (:func:`connect`, :func:`listen`,
:class:`Connection`, :class:`Stream`, :class:`Listener`); the trio API in
:mod:`mstls.trio`; the per-thread error queues in :mod:`mstls.errors`.
"""

from . import errors
from ._blocking.api import Connection, Listener, Stream
from ._blocking.entry import connect, listen
from .config import ClientConfig, ServerConfig
from .exceptions import (
    CertificateError,
    ConfigurationError,
    ConnectionIOError,
    ConnectionTerminated,
    DatagramError,
    DatagramQueueFull,
    DatagramsUnsupported,
    DatagramTooLarge,
    Error,
    ErrorKind,
    HandshakeAlert,
    HandshakeError,
    HandshakeRefused,
    IncompleteRead,
    ListenerClosed,
    MigrationRefused,
    PrematureClose,
    ProtocolError,
    StreamReset,
    StreamStopped,
    Timeout,
    WantRead,
    WantWrite,
)
from .stats import ConnectionStats
from .tls.ticket_store import FileTicketStore, MemoryTicketStore, StoredTicket, TicketStore

__all__ = [
    "CertificateError",
    "ClientConfig",
    "ConfigurationError",
    "Connection",
    "ConnectionIOError",
    "ConnectionStats",
    "ConnectionTerminated",
    "DatagramError",
    "DatagramQueueFull",
    "DatagramTooLarge",
    "DatagramsUnsupported",
    "Error",
    "ErrorKind",
    "FileTicketStore",
    "HandshakeAlert",
    "HandshakeError",
    "HandshakeRefused",
    "IncompleteRead",
    "Listener",
    "ListenerClosed",
    "MemoryTicketStore",
    "MigrationRefused",
    "PrematureClose",
    "ProtocolError",
    "ServerConfig",
    "StoredTicket",
    "Stream",
    "StreamReset",
    "StreamStopped",
    "TicketStore",
    "Timeout",
    "WantRead",
    "WantWrite",
    "connect",
    "errors",
    "listen",
]

__version__ = "0.1.0.dev0"
