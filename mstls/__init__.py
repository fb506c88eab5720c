"""mstls: secure, multiplexed connections over QUIC v1 (UDP) and QMux over TLS 1.3 (TCP).

The blocking, thread-safe API lives here (:func:`connect`, :func:`listen`,
:class:`Connection`, :class:`Stream`, :class:`Listener`); the trio API in
:mod:`mstls.trio`; the per-thread error queues in :mod:`mstls.errors`.
"""

from importlib.machinery import EXTENSION_SUFFIXES as _EXTENSION_SUFFIXES

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
from .wire import buffer as _buffer

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
    "compiled",
    "connect",
    "errors",
    "listen",
]

__version__ = "0.1.0.dev0"

#: True when this process runs the compiled build (issue 15): the hot modules listed in
#: pyproject.toml ``[tool.mstls.compiled]`` are mypyc extension modules, which the import
#: system prefers to the ``.py`` sources beside them; False for the pure-Python build.
#: (Read off :mod:`mstls.wire.buffer`, the first of them: the build compiles all or none.)
compiled: bool = (_buffer.__file__ or "").endswith(tuple(_EXTENSION_SUFFIXES))
