"""Routable connection IDs in the QUIC-LB format (draft-ietf-quic-load-balancers, plaintext mode).

A load balancer in front of several servers (or a steering step in front of
several worker processes) must send every datagram of a connection to the same
server, whatever connection ID the client uses.  QUIC-LB makes the ID carry the
server's identity:

    First Octet (8) | Server ID (server_id_length bytes) | Nonce (nonce_length bytes)

The first octet holds the 3-bit *config rotation* codepoint (which configuration
encoded the ID; ``0b111`` marks unroutable IDs) and, in its low 5 bits, the ID
length minus one ("length self-description", so a balancer can parse short
headers).  In plaintext mode the server ID is readable by anyone who sees the
packet; the nonce makes IDs unlinkable to each other only when it is random,
which it is here.  Server IDs must be unique within one configuration.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import attrs

from ..exceptions import ConfigurationError

__all__ = [
    "MAX_CID_LENGTH",
    "MAX_CONFIG_ID",
    "MAX_SERVER_ID_LENGTH",
    "MIN_NONCE_LENGTH",
    "UNROUTABLE_CONFIG_ID",
    "QuicLbConfig",
    "decode_server_id",
]

#: Config rotation codepoints 0-6 are usable; 7 (0b111) marks an unroutable ID.
MAX_CONFIG_ID = 6
UNROUTABLE_CONFIG_ID = 7
#: The draft's bounds on the parts of a routable ID.
MAX_SERVER_ID_LENGTH = 15
MIN_NONCE_LENGTH = 4
MAX_CID_LENGTH = 20


@attrs.frozen
class QuicLbConfig:
    """One QUIC-LB plaintext configuration shared by a balancer and its servers."""

    config_id: int
    server_id: bytes
    nonce_length: int = 6
    rng: Callable[[int], bytes] = os.urandom

    def __attrs_post_init__(self) -> None:
        if not 0 <= self.config_id <= MAX_CONFIG_ID:
            raise ConfigurationError(f"quic-lb config_id: 0..{MAX_CONFIG_ID}, got {self.config_id}")
        if not 1 <= len(self.server_id) <= MAX_SERVER_ID_LENGTH:
            raise ConfigurationError(
                f"quic-lb server_id: 1..{MAX_SERVER_ID_LENGTH} bytes, got {len(self.server_id)}"
            )
        if self.nonce_length < MIN_NONCE_LENGTH or self.cid_length > MAX_CID_LENGTH:
            raise ConfigurationError(
                f"quic-lb nonce_length: at least {MIN_NONCE_LENGTH} and a connection ID of "
                f"at most {MAX_CID_LENGTH} bytes (got {self.cid_length})"
            )

    @property
    def cid_length(self) -> int:
        return 1 + len(self.server_id) + self.nonce_length

    def generate(self, length: int | None = None) -> bytes:
        """A new routable connection ID (the ``length`` argument must match, if given)."""
        if length is not None and length != self.cid_length:
            raise ValueError(f"QUIC-LB IDs here are {self.cid_length} bytes, not {length}")
        first = (self.config_id << 5) | (self.cid_length - 1)
        return bytes((first,)) + self.server_id + self.rng(self.nonce_length)


def decode_server_id(cid: bytes | bytearray | memoryview, server_id_length: int) -> bytes | None:
    """The server ID in a plaintext QUIC-LB connection ID, or ``None`` if unroutable.

    Handles untrusted input: a short or unroutable ID gives ``None``.
    """
    if len(cid) < 1 + server_id_length:
        return None
    if cid[0] >> 5 == UNROUTABLE_CONFIG_ID:
        return None
    return bytes(cid[1 : 1 + server_id_length])
