"""The Retry Integrity Tag (RFC 9001 §5.8).

A Retry packet ends with an AES-128-GCM tag computed over an empty plaintext
with the *Retry pseudo-packet* as associated data: the length and value of the
Original Destination Connection ID (the DCID of the client's first Initial),
followed by the Retry packet without its tag.  Key and nonce are fixed per
QUIC version.  The tag only proves that the Retry was sent by someone who saw
the client's Initial; it is not a security mechanism against on-path attackers.
"""

from __future__ import annotations

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ..wire.packet import MAX_CID_LENGTH, QUIC_VERSION_1, RETRY_INTEGRITY_TAG_LENGTH
from .versions import VERSION_1, VERSIONS, quic_version

__all__ = [
    "RETRY_INTEGRITY_KEY_V1",
    "RETRY_INTEGRITY_NONCE_V1",
    "retry_integrity_tag",
    "verify_retry",
]

#: RFC 9001 §5.8, QUIC version 1.
RETRY_INTEGRITY_KEY_V1 = VERSION_1.retry_key
RETRY_INTEGRITY_NONCE_V1 = VERSION_1.retry_nonce

# Built once per version: the keys never change (RFC 9369 §3.3.3 for v2).
_RETRY_AEADS = {number: AESGCM(v.retry_key) for number, v in VERSIONS.items()}


def _pseudo_packet(odcid: bytes, retry_without_tag: bytes | bytearray | memoryview) -> bytes:
    """ODCID Length, ODCID, then the Retry packet without its tag (RFC 9001 §5.8)."""
    if len(odcid) > MAX_CID_LENGTH:
        raise ValueError(f"original DCID of {len(odcid)} bytes exceeds {MAX_CID_LENGTH}")
    return bytes((len(odcid),)) + odcid + bytes(retry_without_tag)


def retry_integrity_tag(
    odcid: bytes,
    retry_without_tag: bytes | bytearray | memoryview,
    version: int = QUIC_VERSION_1,
) -> bytes:
    """The 16-byte tag to append to ``retry_without_tag`` (RFC 9001 §5.8)."""
    return _RETRY_AEADS[version].encrypt(
        quic_version(version).retry_nonce, b"", _pseudo_packet(odcid, retry_without_tag)
    )


def verify_retry(
    odcid: bytes, packet: bytes | bytearray | memoryview, version: int = QUIC_VERSION_1
) -> bool:
    """True when the whole Retry ``packet`` carries a valid tag for ``odcid``.

    Handles untrusted input: a packet shorter than the tag, a version we do not
    speak, or a tag that does not verify, gives ``False`` (the client discards
    it, RFC 9000 §17.2.5.2).
    """
    aead = _RETRY_AEADS.get(version)
    if aead is None or len(odcid) > MAX_CID_LENGTH or len(packet) < RETRY_INTEGRITY_TAG_LENGTH:
        return False
    split = len(packet) - RETRY_INTEGRITY_TAG_LENGTH
    view = memoryview(packet)
    try:
        aead.decrypt(
            VERSIONS[version].retry_nonce, view[split:], _pseudo_packet(odcid, view[:split])
        )
    except InvalidTag:
        return False
    return True
