"""SSLKEYLOGFILE output: the NSS key log format that Wireshark reads.

Each line is ``<label> <client_random hex> <secret hex>`` with the TLS 1.3
labels CLIENT_HANDSHAKE_TRAFFIC_SECRET, SERVER_HANDSHAKE_TRAFFIC_SECRET,
CLIENT_TRAFFIC_SECRET_0, SERVER_TRAFFIC_SECRET_0, EXPORTER_SECRET (and
CLIENT_TRAFFIC_SECRET_N after key updates).  The file is appended to under a
process-wide lock so that lines from concurrent connections never interleave.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable

__all__ = ["KeyLogger", "keylog_from_environment"]

_LOCK = threading.Lock()

#: Environment variable honoured when no key log is configured.
KEYLOG_ENV = "SSLKEYLOGFILE"


class KeyLogger:
    """Appends key log lines to a file, or hands them to a callback."""

    def __init__(self, target: str | os.PathLike[str] | Callable[[str], None]) -> None:
        self._target = target

    def log(self, label: str, client_random: bytes, secret: bytes) -> None:
        line = f"{label} {client_random.hex()} {secret.hex()}"
        if callable(self._target):
            self._target(line)
            return
        with _LOCK:
            fd = os.open(self._target, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, (line + "\n").encode())
            finally:
                os.close(fd)


def keylog_from_environment() -> KeyLogger | None:
    """A logger for ``$SSLKEYLOGFILE`` when it is set and non-empty."""
    path = os.environ.get(KEYLOG_ENV)
    return KeyLogger(path) if path else None
