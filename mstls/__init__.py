"""mstls: secure, multiplexed connections over QUIC v1 (UDP) and QMux over TLS 1.3 (TCP)."""

from .exceptions import (
    CertificateError,
    ConnectionTerminated,
    Error,
    ErrorKind,
    HandshakeError,
    PrematureClose,
    ProtocolError,
)

__all__ = [
    "CertificateError",
    "ConnectionTerminated",
    "Error",
    "ErrorKind",
    "HandshakeError",
    "PrematureClose",
    "ProtocolError",
]

__version__ = "0.1.0.dev0"
