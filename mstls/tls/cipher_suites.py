"""The three TLS 1.3 cipher suites we speak (RFC 8446 §B.4) and their primitives.

An AEAD object from ``cryptography`` is built once per key and reused for every
record or packet: rebuilding it costs several microseconds (see the brief).
"""

from __future__ import annotations

from enum import IntEnum
from typing import Protocol

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305

__all__ = ["AEAD", "SUPPORTED_CIPHER_SUITES", "CipherSuite", "make_aead", "suite_hash"]


class CipherSuite(IntEnum):
    """TLS 1.3 cipher suites (RFC 8446 §B.4)."""

    AES_128_GCM_SHA256 = 0x1301
    AES_256_GCM_SHA384 = 0x1302
    CHACHA20_POLY1305_SHA256 = 0x1303


#: Our default preference order.
SUPPORTED_CIPHER_SUITES: tuple[CipherSuite, ...] = (
    CipherSuite.AES_128_GCM_SHA256,
    CipherSuite.AES_256_GCM_SHA384,
    CipherSuite.CHACHA20_POLY1305_SHA256,
)

#: AEAD key length in bytes per suite; every suite uses a 12-byte IV (RFC 8446 §5.3).
KEY_LENGTH = {
    CipherSuite.AES_128_GCM_SHA256: 16,
    CipherSuite.AES_256_GCM_SHA384: 32,
    CipherSuite.CHACHA20_POLY1305_SHA256: 32,
}
IV_LENGTH = 12
TAG_LENGTH = 16


#: What ``cryptography``'s AEADs accept as data (any bytes-like object).
Buffer = bytes | bytearray | memoryview


class AEAD(Protocol):
    """What we use of ``cryptography``'s AEAD classes."""

    def encrypt(self, nonce: bytes, data: Buffer, associated_data: Buffer | None) -> bytes: ...

    def decrypt(self, nonce: bytes, data: Buffer, associated_data: Buffer | None) -> bytes: ...


#: Hash algorithm objects carry no state: one of each serves every call.
_SHA256 = hashes.SHA256()
_SHA384 = hashes.SHA384()


def suite_hash(suite: CipherSuite) -> hashes.HashAlgorithm:
    """The suite's transcript and HKDF hash (a shared, immutable object)."""
    if suite == CipherSuite.AES_256_GCM_SHA384:
        return _SHA384
    return _SHA256


def make_aead(suite: CipherSuite, key: bytes) -> AEAD:
    """A reusable AEAD context for ``key``."""
    if suite == CipherSuite.CHACHA20_POLY1305_SHA256:
        return ChaCha20Poly1305(key)
    return AESGCM(key)
