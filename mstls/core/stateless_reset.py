"""Stateless reset: tokens, building a reset, detecting one, and limiting how many we send.

Theory of operation (RFC 9000 §10.3)
------------------------------------
An endpoint that loses a connection's state can still end it for the peer: it
answers a packet it cannot process with a *Stateless Reset*, a datagram that
looks like a short-header packet and ends in the 16-byte stateless reset token
tied to the connection ID the peer sent to.

* Tokens come from one static key (§10.3.2): ``token = HMAC-SHA256(key, cid)``
  truncated to 16 bytes, so the endpoint can recompute the token of any of its
  connection IDs without remembering the connection.  The key is 32 random
  bytes, persisted by the daemon so that a restart can still reset the
  connections of the previous run.  Every connection ID the endpoint issues
  must have one length (§10.3.2); :mod:`mstls.core.connection_ids` checks it.
* A reset is always shorter than the packet that triggered it (§10.3.3), so
  two endpoints that both lost state cannot ping-pong resets forever; a packet
  of fewer than :data:`MIN_TRIGGER_LENGTH` bytes gets no answer.  It is at most
  :data:`MAX_STATELESS_RESET_LENGTH` bytes: §10.3 asks for one byte shorter
  than triggers of up to 43 bytes, and this keeps resets far below 3x the
  trigger (the anti-amplification rule).
* A reset is recognised by its last 16 bytes alone (§10.3.1), compared in
  constant time with the tokens of the connection IDs in use.
* :class:`StatelessResetLimiter` bounds the resets an endpoint sends per second
  (§10.3.3 suggests a limit), so an attacker spraying packets at unknown
  connection IDs cannot turn the endpoint into a traffic source.
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Callable, Iterable

from ..exceptions import ConfigurationError
from ..wire.control_frames import STATELESS_RESET_TOKEN_LENGTH

__all__ = [
    "DEFAULT_RESET_BURST",
    "DEFAULT_RESET_RATE",
    "MAX_STATELESS_RESET_LENGTH",
    "MIN_STATELESS_RESET_LENGTH",
    "MIN_TRIGGER_LENGTH",
    "STATELESS_RESET_KEY_LENGTH",
    "STATELESS_RESET_TOKEN_LENGTH",
    "StatelessResetKey",
    "StatelessResetLimiter",
    "build_stateless_reset",
    "is_stateless_reset",
    "trailing_token",
]

#: Bytes of the static key the tokens are derived from (the HMAC-SHA256 block
#: of security; RFC 9000 §10.3.2).
STATELESS_RESET_KEY_LENGTH = 32
#: The smallest Stateless Reset: 5 bytes (2 fixed bits + 38 unpredictable bits)
#: then the 16-byte token (RFC 9000 §10.3).
MIN_STATELESS_RESET_LENGTH = 5 + STATELESS_RESET_TOKEN_LENGTH
#: A trigger must be longer than the smallest reset, which must be shorter (§10.3.3).
MIN_TRIGGER_LENGTH = MIN_STATELESS_RESET_LENGTH + 1
#: The largest reset we send: triggers of up to 44 bytes get one byte less
#: (§10.3: "43 bytes or shorter SHOULD send ... one byte shorter"); larger ones get
#: this, which is above the 41 bytes that keep it hard to tell from a packet.
MAX_STATELESS_RESET_LENGTH = 43
#: Resets sent per second by default, and the burst allowed above that rate.
DEFAULT_RESET_RATE = 100.0
DEFAULT_RESET_BURST = 20.0

_FIRST_BYTE_RANDOM_MASK = 0x3F
_FIRST_BYTE_FIXED = 0x40  # header form 0, fixed bit 1: a short header (§17.3.1)


class StatelessResetKey:
    """The static key stateless reset tokens are derived from (RFC 9000 §10.3.2)."""

    __slots__ = ("_key",)

    def __init__(self, key: bytes) -> None:
        if len(key) != STATELESS_RESET_KEY_LENGTH:
            raise ConfigurationError(
                f"stateless reset key must be {STATELESS_RESET_KEY_LENGTH} bytes, got {len(key)}"
            )
        self._key = bytes(key)

    @classmethod
    def generate(cls, rng: Callable[[int], bytes] = os.urandom) -> StatelessResetKey:
        """A fresh random key."""
        return cls(rng(STATELESS_RESET_KEY_LENGTH))

    @classmethod
    def from_bytes(cls, data: bytes) -> StatelessResetKey:
        """A key read back from storage (raises ConfigurationError on a bad length)."""
        return cls(data)

    def __bytes__(self) -> bytes:
        """The secret, for persisting it."""
        return self._key

    def __repr__(self) -> str:
        return "StatelessResetKey(<secret>)"

    def token_for(self, cid: bytes | bytearray | memoryview) -> bytes:
        """The 16-byte stateless reset token of connection ID ``cid`` (§10.3.2)."""
        return hmac.digest(self._key, cid, "sha256")[:STATELESS_RESET_TOKEN_LENGTH]


def build_stateless_reset(
    token: bytes, trigger_length: int, rng: Callable[[int], bytes] = os.urandom
) -> bytes | None:
    """A Stateless Reset answering a ``trigger_length``-byte datagram, or None.

    RFC 9000 §10.3: first byte ``0b01xxxxxx``, unpredictable bytes, then the
    token; one byte shorter than the trigger, at most
    :data:`MAX_STATELESS_RESET_LENGTH`.  None when the trigger is too short to
    answer with a reset that is both shorter and at least 21 bytes (§10.3.3).
    """
    if len(token) != STATELESS_RESET_TOKEN_LENGTH:
        raise ValueError(f"stateless reset token must be {STATELESS_RESET_TOKEN_LENGTH} bytes")
    if trigger_length < MIN_TRIGGER_LENGTH:
        return None
    length = min(trigger_length - 1, MAX_STATELESS_RESET_LENGTH)
    unpredictable = bytearray(rng(length - STATELESS_RESET_TOKEN_LENGTH))
    unpredictable[0] = _FIRST_BYTE_FIXED | (unpredictable[0] & _FIRST_BYTE_RANDOM_MASK)
    return bytes(unpredictable) + token


def trailing_token(datagram: bytes | bytearray | memoryview) -> bytes | None:
    """The last 16 bytes of a datagram long enough to be a Stateless Reset, else None.

    For an endpoint that looks candidates up in a table keyed by token
    (RFC 9000 §10.3.1).  Handles untrusted input; never raises.
    """
    if len(datagram) < MIN_STATELESS_RESET_LENGTH:
        return None
    return bytes(datagram[-STATELESS_RESET_TOKEN_LENGTH:])


def is_stateless_reset(datagram: bytes | bytearray | memoryview, tokens: Iterable[bytes]) -> bool:
    """Whether ``datagram`` ends in one of ``tokens`` (RFC 9000 §10.3.1).

    Call it only for a datagram whose first packet could not be associated with
    a connection or decrypted.  ``tokens`` are those of the peer's connection
    IDs in use; each is compared in constant time, and all of them are always
    compared, so timing reveals neither a token nor which one matched.
    Handles untrusted input; never raises.
    """
    tail = trailing_token(datagram)
    if tail is None:
        return False
    found = False
    for token in tokens:
        found |= hmac.compare_digest(tail, token)
    return found


class StatelessResetLimiter:
    """A token bucket bounding the Stateless Resets an endpoint sends (RFC 9000 §10.3.3).

    ``allow(now)`` spends one credit if there is one; credits refill at
    ``rate_per_second`` up to ``burst``.  ``now`` comes from the caller's
    monotonic clock; a clock that goes backwards refills nothing.
    """

    __slots__ = ("_burst", "_credit", "_last", "_rate")

    def __init__(
        self, rate_per_second: float = DEFAULT_RESET_RATE, burst: float = DEFAULT_RESET_BURST
    ) -> None:
        if rate_per_second < 0 or burst < 1:
            raise ValueError("the reset rate must be >= 0 and the burst >= 1")
        self._rate = float(rate_per_second)
        self._burst = float(burst)
        self._credit = float(burst)
        self._last: float | None = None

    def allow(self, now: float) -> bool:
        """Whether a reset may be sent at ``now``; spends a credit if so."""
        if self._last is not None and now > self._last:
            self._credit = min(self._burst, self._credit + (now - self._last) * self._rate)
        if self._last is None or now > self._last:
            self._last = now
        if self._credit >= 1.0:
            self._credit -= 1.0
            return True
        return False
