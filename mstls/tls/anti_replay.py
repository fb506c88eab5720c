"""0-RTT anti-replay: a bounded strike register of ticket identities (RFC 8446 §8, §8.2).

A server accepts early data only with a ticket whose age is inside the window
(:data:`~mstls.tls.resumption.TICKET_AGE_TOLERANCE_MS` of the ticket's expected
age, checked by :func:`~mstls.tls.resumption.choose_psk`), and only once: the
register remembers every ticket identity it admitted until its window has
passed, so a replayed ClientHello, inside the window, finds its identity
there and its early data is refused (the handshake itself goes on, as 1-RTT).
A full register refuses all early data until entries expire (fail safe).

The register is per process: the workers of one service do not share it, so a
flight replayed to another worker is refused there only by the ticket-age
window, not by the register.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict

__all__ = ["DEFAULT_STRIKE_REGISTER_SIZE", "StrikeRegister"]

#: Ticket identities remembered at most (about 40 bytes each).
DEFAULT_STRIKE_REGISTER_SIZE = 100_000


class StrikeRegister:
    """Admits each ticket identity once within ``window_ms`` (thread-safe)."""

    def __init__(self, window_ms: int, max_entries: int = DEFAULT_STRIKE_REGISTER_SIZE) -> None:
        self.window_ms = window_ms
        self.max_entries = max_entries
        self._lock = threading.Lock()
        #: digest -> expiry (ms), in admission order.
        self._seen: OrderedDict[bytes, int] = OrderedDict()

    def __len__(self) -> int:
        return len(self._seen)

    def admit(self, identity: bytes, now_ms: int) -> bool:
        """True the first time ``identity`` is seen in its window, False afterwards."""
        digest = hashlib.sha256(identity).digest()[:16]
        with self._lock:
            self._expire(now_ms)
            if digest in self._seen or len(self._seen) >= self.max_entries:
                return False
            self._seen[digest] = now_ms + self.window_ms
            return True

    def _expire(self, now_ms: int) -> None:
        seen = self._seen
        while seen:
            digest, expiry = next(iter(seen.items()))
            if expiry > now_ms:
                break
            del seen[digest]
