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

Server, across configurations: every ticket seals the :class:`EarlyDataContext`
of the connection that issued it -- the limits the client will remember and
rely on in its 0-RTT data (the transport's, RFC 9000 §7.4.1) and a digest of
the opaque :attr:`TLSConfig.early_data_context <mstls.tls.config.TLSConfig>`
(anything else the early data depends on, RFC 9001 §4.6.2).  Early data is
accepted only if every remembered limit is still at most the current one and
the digest is unchanged (:meth:`EarlyDataContext.admits`); otherwise 0-RTT is
rejected while the PSK is still resumed (RFC 8446 §4.2.10).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping

import attrs

from ..codes import AlertDescription
from ..exceptions import ConfigurationError, DecodeError, TLSError
from ..wire.buffer import Reader, Writer

__all__ = ["MAX_EARLY_LIMITS", "MAX_SKIPPED_EARLY_DATA", "EarlyData", "EarlyDataContext"]

#: Bytes of rejected early data a server skips at least (RFC 8446 §4.2.10).
MAX_SKIPPED_EARLY_DATA = 1 << 16
#: Most limits one :class:`EarlyDataContext` carries (keeps tickets small).
MAX_EARLY_LIMITS = 32
#: Length of the digest of the opaque settings a ticket carries (SHA-256).
SETTINGS_DIGEST_LENGTH = 32
_SETTINGS_LABEL = b"mstls early data settings\x00"


def _settings_digest(settings: bytes) -> bytes:
    return hashlib.sha256(_SETTINGS_LABEL + settings).digest()


@attrs.frozen
class EarlyDataContext:
    """What 0-RTT data under a ticket relies on (RFC 9000 §7.4.1, RFC 8446 §4.2.10).

    ``limits`` maps a limit's number (the transport's: a transport parameter id)
    to its value; a server may raise a limit and still accept 0-RTT, never lower
    it.  ``settings`` is opaque: any change rejects 0-RTT.  A ticket carries
    :meth:`seal`, which keeps a digest of ``settings`` only.
    """

    limits: Mapping[int, int] = attrs.field(factory=dict)
    settings: bytes = b""

    def __attrs_post_init__(self) -> None:
        if len(self.limits) > MAX_EARLY_LIMITS:
            raise ConfigurationError(
                f"at most {MAX_EARLY_LIMITS} early-data limits, got {len(self.limits)}"
            )

    def seal(self) -> bytes:
        """The form a ticket keeps: settings digest, then (number, value) varint pairs."""
        w = Writer(_settings_digest(self.settings))
        for number, value in sorted(self.limits.items()):
            w.push_varint(number)
            w.push_varint(value)
        return w.data

    def admits(self, sealed: bytes) -> bool:
        """Whether 0-RTT under a ticket that sealed ``sealed`` (untrusted bytes, though
        authenticated) may be accepted now: same settings, no remembered limit above
        its current value (a limit we no longer have counts as 0)."""
        try:
            remembered = _open(sealed)
        except DecodeError:
            return False
        if remembered is None:
            return False
        digest, limits = remembered
        if not hmac.compare_digest(digest, _settings_digest(self.settings)):
            return False
        return all(self.limits.get(number, 0) >= value for number, value in limits.items())


def _open(sealed: bytes) -> tuple[bytes, dict[int, int]] | None:
    """The digest and limits of a sealed context; None if malformed."""
    if len(sealed) < SETTINGS_DIGEST_LENGTH:
        return None
    r = Reader(sealed)
    digest = r.pull_bytes(SETTINGS_DIGEST_LENGTH)
    limits: dict[int, int] = {}
    while not r.eof():
        number = r.pull_varint()
        if number in limits or len(limits) >= MAX_EARLY_LIMITS:
            return None
        limits[number] = r.pull_varint()
    return digest, limits


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
