"""The TLS 1.3 key schedule (RFC 8446 §7.1) and traffic key derivation (§7.3).

The schedule is a chain of HKDF-Extract steps (early, handshake, master
secret); each secret is derived from the running transcript hash with
``Derive-Secret``.  QUIC (RFC 9001 §5.1) uses the same ``HKDF-Expand-Label``
with its own labels, so these functions are shared by both transports.
"""

from __future__ import annotations

import hashlib
import hmac

from cryptography.hazmat.primitives import hashes

from .cipher_suites import IV_LENGTH, KEY_LENGTH, CipherSuite, suite_hash

__all__ = [
    "KeySchedule",
    "derive_secret",
    "finished_verify_data",
    "hkdf_expand_label",
    "hkdf_extract",
    "next_traffic_secret",
    "traffic_key_iv",
]

_HASHLIB_NAMES = {"sha256": "sha256", "sha384": "sha384"}


def _name(algorithm: hashes.HashAlgorithm) -> str:
    return _HASHLIB_NAMES[algorithm.name]


def hkdf_extract(algorithm: hashes.HashAlgorithm, salt: bytes, ikm: bytes) -> bytes:
    """HKDF-Extract (RFC 5869 §2.2)."""
    if not salt:
        salt = bytes(algorithm.digest_size)
    return hmac.digest(salt, ikm, _name(algorithm))


def hkdf_expand(algorithm: hashes.HashAlgorithm, prk: bytes, info: bytes, length: int) -> bytes:
    """HKDF-Expand (RFC 5869 §2.3)."""
    name = _name(algorithm)
    if length <= algorithm.digest_size:  # one block: T(1) = HMAC(PRK, info | 0x01)
        return hmac.digest(prk, info + b"\x01", name)[:length]
    out = b""
    block = b""
    counter = 1
    while len(out) < length:
        block = hmac.digest(prk, block + info + bytes((counter,)), name)
        out += block
        counter += 1
    return out[:length]


#: ``HkdfLabel`` prefixes (length, label) already encoded, by (length, label): every
#: label we use is a constant, so the table stays as small as the set of labels.
_LABEL_PREFIXES: dict[tuple[int, bytes], bytes] = {}
#: Bound on :data:`_LABEL_PREFIXES`, should a caller pass labels that vary.
_MAX_LABEL_PREFIXES = 256


def _label_prefix(length: int, label: bytes) -> bytes:
    key = (length, label)
    prefix = _LABEL_PREFIXES.get(key)
    if prefix is None:
        full_label = b"tls13 " + label
        prefix = length.to_bytes(2, "big") + bytes((len(full_label),)) + full_label
        if len(_LABEL_PREFIXES) < _MAX_LABEL_PREFIXES:
            _LABEL_PREFIXES[key] = prefix
    return prefix


def hkdf_expand_label(
    algorithm: hashes.HashAlgorithm, secret: bytes, label: bytes, context: bytes, length: int
) -> bytes:
    """HKDF-Expand-Label (RFC 8446 §7.1); ``label`` without the ``tls13 `` prefix.

    ``HkdfLabel`` is ``uint16 length || opaque label<7..255> || opaque context<0..255>``;
    the part before the context is cached per (length, label).
    """
    info = _label_prefix(length, label) + bytes((len(context),)) + context
    return hkdf_expand(algorithm, secret, info, length)


def derive_secret(
    algorithm: hashes.HashAlgorithm, secret: bytes, label: bytes, transcript_hash: bytes
) -> bytes:
    """Derive-Secret (RFC 8446 §7.1) given the transcript hash of the messages."""
    return hkdf_expand_label(algorithm, secret, label, transcript_hash, algorithm.digest_size)


def traffic_key_iv(suite: CipherSuite, secret: bytes) -> tuple[bytes, bytes]:
    """The record protection key and IV for a traffic secret (RFC 8446 §7.3)."""
    algorithm = suite_hash(suite)
    key = hkdf_expand_label(algorithm, secret, b"key", b"", KEY_LENGTH[suite])
    iv = hkdf_expand_label(algorithm, secret, b"iv", b"", IV_LENGTH)
    return key, iv


def next_traffic_secret(suite: CipherSuite, secret: bytes) -> bytes:
    """application_traffic_secret_N+1 (RFC 8446 §7.2, KeyUpdate)."""
    algorithm = suite_hash(suite)
    return hkdf_expand_label(algorithm, secret, b"traffic upd", b"", algorithm.digest_size)


def finished_verify_data(
    algorithm: hashes.HashAlgorithm, base_key: bytes, transcript_hash: bytes
) -> bytes:
    """Finished.verify_data (RFC 8446 §4.4.4)."""
    finished_key = hkdf_expand_label(algorithm, base_key, b"finished", b"", algorithm.digest_size)
    return hmac.digest(finished_key, transcript_hash, _name(algorithm))


class KeySchedule:
    """The running schedule of one handshake: early → handshake → master secret.

    Also keeps the transcript hash (RFC 8446 §4.4.1), including the
    ``message_hash`` substitution after a HelloRetryRequest.
    """

    def __init__(self, suite: CipherSuite) -> None:
        self.suite = suite
        self.algorithm = suite_hash(suite)
        self._transcript = hashlib.new(_name(self.algorithm))
        self.secret = hkdf_extract(self.algorithm, b"", bytes(self.algorithm.digest_size))
        self.stage = "early"

    # -- transcript -------------------------------------------------------------
    def update_transcript(self, message: bytes) -> None:
        """Add one whole handshake message (header included) to the transcript."""
        self._transcript.update(message)

    def transcript_hash(self) -> bytes:
        """Hash of the messages so far."""
        return self._transcript.copy().digest()

    def transcript_hash_with(self, data: bytes) -> bytes:
        """Hash of the messages so far followed by ``data`` (a truncated
        ClientHello, RFC 8446 §4.2.11.2), without adding ``data``."""
        running = self._transcript.copy()
        running.update(data)
        return running.digest()

    def restart_after_hello_retry(self) -> None:
        """Replace ClientHello1 by ``message_hash`` (RFC 8446 §4.4.1)."""
        digest = self._transcript.digest()
        self._transcript = hashlib.new(_name(self.algorithm))
        self._transcript.update(b"\xfe\x00\x00" + bytes((len(digest),)) + digest)

    # -- secrets ------------------------------------------------------------------
    def derive(self, label: bytes) -> bytes:
        """Derive-Secret(current secret, label, transcript so far)."""
        return derive_secret(self.algorithm, self.secret, label, self.transcript_hash())

    def use_psk(self, psk: bytes) -> None:
        """Early Secret = HKDF-Extract(0, PSK) (RFC 8446 §7.1), before the first extract."""
        if self.stage != "early":
            raise ValueError("a PSK can only start the key schedule")
        self.secret = hkdf_extract(self.algorithm, b"", psk)

    def extract(self, ikm: bytes | None) -> None:
        """Advance early → handshake → master (RFC 8446 §7.1)."""
        empty_hash = hashlib.new(_name(self.algorithm)).digest()
        salt = derive_secret(self.algorithm, self.secret, b"derived", empty_hash)
        if ikm is None:
            ikm = bytes(self.algorithm.digest_size)
        self.secret = hkdf_extract(self.algorithm, salt, ikm)
        self.stage = {"early": "handshake", "handshake": "master"}[self.stage]

    def finished(self, base_key: bytes) -> bytes:
        """verify_data for the transcript so far under ``base_key``."""
        return finished_verify_data(self.algorithm, base_key, self.transcript_hash())
