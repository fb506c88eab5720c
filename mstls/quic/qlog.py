"""qlog output: one JSON-SEQ trace per connection (draft-ietf-quic-qlog-main-schema,
draft-ietf-quic-qlog-quic-events; RFC 7464 JSON text sequences).

Each record is ``RS`` (0x1E) + one JSON object + ``\\n``.  The first record is the
header (qlog_version, qlog_format, the trace's vantage point and common fields:
the original destination connection ID and the reference time); each later record
is an event with a relative ``time`` in milliseconds, a ``name`` of the form
``category:event`` and its ``data``.  Writing is off unless the configuration
names a directory, so the hot path pays one ``is None`` check.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import IO, Any

__all__ = ["QLOG_VERSION", "RECORD_SEPARATOR", "QlogWriter", "open_qlog"]

QLOG_VERSION = "0.3"
#: RFC 7464: each JSON text is preceded by ASCII RS.
RECORD_SEPARATOR = b"\x1e"
#: Events buffered before a write to the file.
FLUSH_EVERY = 64

#: mstls packet type names → qlog packet_type values.
PACKET_TYPES = {
    "INITIAL": "initial",
    "HANDSHAKE": "handshake",
    "ZERO_RTT": "0RTT",
    "ONE_RTT": "1RTT",
    "RETRY": "retry",
    "VERSION_NEGOTIATION": "version_negotiation",
}


class QlogWriter:
    """Writes one connection's qlog trace."""

    def __init__(
        self, stream: IO[bytes], *, vantage: str, odcid: bytes, reference_time: float
    ) -> None:
        self._stream = stream
        self._reference = reference_time
        self._pending: list[bytes] = []
        self._last = 0.0
        self._write(
            {
                "qlog_version": QLOG_VERSION,
                "qlog_format": "JSON-SEQ",
                "title": "mstls",
                "trace": {
                    "vantage_point": {"type": vantage},
                    "common_fields": {
                        "ODCID": odcid.hex(),
                        "time_format": "relative",
                        "reference_time": reference_time * 1000.0,
                    },
                },
            }
        )
        self.flush()

    def _write(self, record: dict[str, Any]) -> None:
        self._pending.append(
            RECORD_SEPARATOR + json.dumps(record, separators=(",", ":")).encode() + b"\n"
        )

    def event(self, now: float, name: str, data: dict[str, Any]) -> None:
        # Events are written in the order they happen; a caller's clock reading
        # taken earlier (e.g. the last send time) never moves the trace backwards.
        elapsed = max(self._last, round((now - self._reference) * 1000.0, 3))
        self._last = elapsed
        self._write({"time": elapsed, "name": name, "data": data})
        if len(self._pending) >= FLUSH_EVERY:
            self.flush()

    def packet(self, now: float, name: str, packet_type: str, number: int, length: int) -> None:
        self.event(
            now,
            name,
            {
                "header": {
                    "packet_type": PACKET_TYPES.get(packet_type, packet_type),
                    "packet_number": number,
                },
                "raw": {"length": length},
            },
        )

    def flush(self) -> None:
        if self._pending:
            self._stream.write(b"".join(self._pending))
            self._pending.clear()
            self._stream.flush()

    def close(self) -> None:
        self.flush()
        self._stream.close()


def open_qlog(
    directory: str | os.PathLike[str], *, vantage: str, odcid: bytes, now: float
) -> QlogWriter:
    """A writer for ``<directory>/<odcid>_<vantage>.sqlog``."""
    path = Path(directory) / f"{odcid.hex()}_{vantage}.sqlog"
    path.parent.mkdir(parents=True, exist_ok=True)
    return QlogWriter(path.open("wb"), vantage=vantage, odcid=odcid, reference_time=now)
