"""0-RTT bookkeeping of a TLS-over-TCP connection (RFC 8446 §2.3, §4.2.10, §4.5).

Client: :meth:`~mstls.tls.tcp.TLSConnection.send_early` writes application data
under client_early_traffic_secret while that key is the write key (between the
ClientHello and EndOfEarlyData), at most the ticket's max_early_data_size; a
copy is kept so that, if the server rejects the early data, the same bytes are
sent again under the application keys (the application learns it from
``early_data_accepted``; the peer's application sees every byte once either
way).  Only data the application knows to be replay-safe may be sent early
(RFC 8446 §8): an attacker can replay the first flight.

Server: early records are decrypted under the early key and reported as
``ApplicationData(early=True)``, before the handshake completes; more than
max_early_data_size bytes is ``unexpected_message`` (§4.2.10).  When early data
is offered but rejected, records that fail to authenticate under the
handshake key are skipped, up to :data:`MAX_SKIPPED_EARLY_DATA` bytes (or the
configured maximum if larger), as §4.2.10 asks.
"""

from __future__ import annotations

from ..codes import AlertDescription
from ..exceptions import TLSError

__all__ = ["MAX_SKIPPED_EARLY_DATA", "EarlyData"]

#: Bytes of rejected early data a server skips at least (RFC 8446 §4.2.10).
MAX_SKIPPED_EARLY_DATA = 1 << 16


class EarlyData:
    """What one connection sent or received as 0-RTT data."""

    __slots__ = ("decided", "received", "sent", "writable")

    def __init__(self) -> None:
        #: Client: the early key is the write key.
        self.writable = False
        #: Client: the bytes sent early (kept until the server's answer).
        self.sent = bytearray()
        #: Server: early bytes received so far.
        self.received = 0
        #: Server: the ClientHello was answered (skipping, if any, was set up).
        self.decided = False

    def room(self, limit: int) -> int:
        """Client: bytes that may still be sent early under ``limit``."""
        return max(0, limit - len(self.sent)) if self.writable else 0

    def count_received(self, length: int, limit: int) -> None:
        """Server: account for ``length`` early bytes; too many is a protocol error."""
        self.received += length
        if self.received > limit:
            raise TLSError(
                AlertDescription.unexpected_message,
                f"more than {limit} bytes of early data (max_early_data_size)",
            )
