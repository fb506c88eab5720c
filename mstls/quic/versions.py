"""What differs between QUIC versions 1 and 2: one frozen record per version.

RFC 9369 §3 lists every difference of version 2 from version 1: the version
number, the long-header type bits (in :data:`mstls.wire.packet.LONG_PACKET_TYPES`),
the Initial salt, the HKDF labels of packet protection, header protection and
key update, and the Retry integrity key and nonce.  Everything else — frames,
transport parameters, recovery — is shared.  Code that derives keys takes a
:class:`QuicVersion` instead of a bare number, so no version-specific constant
is looked up twice.
"""

from __future__ import annotations

import attrs

from ..wire.packet import QUIC_VERSION_1, QUIC_VERSION_2

__all__ = ["VERSIONS", "VERSION_1", "VERSION_2", "QuicVersion", "quic_version"]


@attrs.frozen
class QuicVersion:
    """The version-specific constants of one QUIC version."""

    number: int
    #: RFC 9001 §5.2 / RFC 9369 §3.3.1.
    initial_salt: bytes
    #: RFC 9001 §5.1, §5.4, §6.1 / RFC 9369 §3.3.2 (without the "tls13 " prefix).
    label_key: bytes
    label_iv: bytes
    label_hp: bytes
    label_ku: bytes
    #: RFC 9001 §5.8 / RFC 9369 §3.3.3.
    retry_key: bytes
    retry_nonce: bytes

    @property
    def name(self) -> str:
        return "v1" if self.number == QUIC_VERSION_1 else "v2"


VERSION_1 = QuicVersion(
    number=QUIC_VERSION_1,
    initial_salt=bytes.fromhex("38762cf7f55934b34d179ae6a4c80cadccbb7f0a"),
    label_key=b"quic key",
    label_iv=b"quic iv",
    label_hp=b"quic hp",
    label_ku=b"quic ku",
    retry_key=bytes.fromhex("be0c690b9f66575a1d766b54e368c84e"),
    retry_nonce=bytes.fromhex("461599d35d632bf2239825bb"),
)
VERSION_2 = QuicVersion(
    number=QUIC_VERSION_2,
    initial_salt=bytes.fromhex("0dede3def700a6db819381be6e269dcbf9bd2ed9"),
    label_key=b"quicv2 key",
    label_iv=b"quicv2 iv",
    label_hp=b"quicv2 hp",
    label_ku=b"quicv2 ku",
    retry_key=bytes.fromhex("8fb4b01b56ac48e260fbcbcead7ccc92"),
    retry_nonce=bytes.fromhex("d86969bc2d7c6d9990efb04a"),
)
#: Every version we speak, by number.
VERSIONS: dict[int, QuicVersion] = {v.number: v for v in (VERSION_1, VERSION_2)}


def quic_version(number: int) -> QuicVersion:
    """The constants of version ``number``; ``ValueError`` for one we do not speak."""
    try:
        return VERSIONS[number]
    except KeyError:
        raise ValueError(f"QUIC version {number:#010x} is not supported") from None
