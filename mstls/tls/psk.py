"""Pre-shared key extensions and binders (RFC 8446 §4.2.9, §4.2.11, §4.6.1, §7.1).

The ClientHello's ``pre_shared_key`` extension is always the last one, and its
binders the last field of the message, so the "truncated ClientHello" over
which each binder is computed (§4.2.11.2) is the framed message without the
binders vector.  Parsers handle untrusted input and raise only
:class:`~mstls.exceptions.TLSError`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import attrs
from cryptography.hazmat.primitives import hashes

from ..exceptions import DecodeError
from ..wire.buffer import Reader, Writer
from .extensions import decode
from .key_schedule import derive_secret, finished_verify_data, hkdf_expand_label, hkdf_extract

__all__ = [
    "PSK_DHE_KE",
    "OfferedPsks",
    "binder_key",
    "binders_length",
    "compute_binder",
    "encode_offered_psks",
    "encode_psk_modes",
    "obfuscated_age",
    "parse_offered_psks",
    "parse_psk_modes",
    "psk_from_ticket",
]

#: psk_key_exchange_modes (RFC 8446 §4.2.9): only PSK with (EC)DHE is used.
PSK_DHE_KE = 1
#: Most PSK identities we look at in one ClientHello.
MAX_OFFERED_PSKS = 8


@attrs.frozen
class OfferedPsks:
    """The ClientHello form of pre_shared_key: ``(identity, obfuscated age)`` pairs
    and one binder each."""

    identities: tuple[tuple[bytes, int], ...]
    binders: tuple[bytes, ...]


def encode_offered_psks(identities: Sequence[tuple[bytes, int]], binders: Sequence[bytes]) -> bytes:
    w = Writer()
    with w.block(2):
        for identity, age in identities:
            w.push_block(2, identity)
            w.push_uint32(age)
    with w.block(2):
        for binder in binders:
            w.push_block(1, binder)
    return w.data


def binders_length(binders: Sequence[bytes]) -> int:
    """Bytes of the encoded binders vector, length field included."""
    return 2 + sum(1 + len(b) for b in binders)


def parse_offered_psks(data: bytes) -> OfferedPsks:
    """The ClientHello pre_shared_key (untrusted input)."""

    def parse(r: Reader) -> OfferedPsks:
        inner = r.sub_reader(2)
        identities: list[tuple[bytes, int]] = []
        while not inner.eof():
            identity = inner.pull_block(2)
            if not identity:
                raise DecodeError("empty PSK identity")
            identities.append((identity, inner.pull_uint32()))
        binders_reader = r.sub_reader(2)
        binders: list[bytes] = []
        while not binders_reader.eof():
            binder = binders_reader.pull_block(1)
            if len(binder) < 32:
                raise DecodeError("PSK binder shorter than 32 bytes")
            binders.append(binder)
        if not identities or len(identities) != len(binders):
            raise DecodeError("PSK identities and binders do not match")
        return OfferedPsks(tuple(identities[:MAX_OFFERED_PSKS]), tuple(binders[:MAX_OFFERED_PSKS]))

    return decode("pre_shared_key extension", data, parse)


def encode_psk_modes(modes: Sequence[int]) -> bytes:
    return bytes((len(modes), *modes))


def parse_psk_modes(data: bytes) -> list[int]:
    """psk_key_exchange_modes (untrusted input)."""

    def parse(r: Reader) -> list[int]:
        modes = r.pull_block(1)
        if not modes:
            raise DecodeError("empty psk_key_exchange_modes")
        return list(modes)

    return decode("psk_key_exchange_modes extension", data, parse)


def psk_from_ticket(
    algorithm: hashes.HashAlgorithm, resumption_secret: bytes, nonce: bytes
) -> bytes:
    """The PSK of a ticket (RFC 8446 §4.6.1)."""
    return hkdf_expand_label(
        algorithm, resumption_secret, b"resumption", nonce, algorithm.digest_size
    )


def binder_key(algorithm: hashes.HashAlgorithm, psk: bytes) -> bytes:
    """``res binder`` key of a resumption PSK (RFC 8446 §7.1)."""
    early = hkdf_extract(algorithm, b"", psk)
    empty = hashlib.new(algorithm.name).digest()
    return derive_secret(algorithm, early, b"res binder", empty)


def compute_binder(algorithm: hashes.HashAlgorithm, psk: bytes, transcript_hash: bytes) -> bytes:
    """The binder over ``transcript_hash`` (of the messages before this ClientHello and
    the truncated ClientHello, RFC 8446 §4.2.11.2)."""
    return finished_verify_data(algorithm, binder_key(algorithm, psk), transcript_hash)


def obfuscated_age(age_ms: int, age_add: int) -> int:
    """RFC 8446 §4.2.11.1: the ticket age plus ``ticket_age_add`` modulo 2^32."""
    return (age_ms + age_add) % (1 << 32)
