"""Key exchange groups for the ``key_share`` extension (RFC 8446 §4.2.7, §4.2.8).

Theory of operation
-------------------
The client generates one private key per offered group (:meth:`KeyShareClient.generate`)
and sends :meth:`KeyShareClient.public_bytes` as ``key_exchange``.  The server picks a
group and answers with :func:`server_key_share`, which returns its own ``key_exchange``
and the shared secret at once (for the hybrid group the server *encapsulates*, so it
never has a private key to keep).  The client then calls :meth:`KeyShareClient.finish`
with the server's ``key_exchange``.

Three groups are implemented, each as a small class in a table keyed by
:class:`NamedGroup`:

* ``x25519`` (RFC 7748): 32-byte public keys; an all-zero shared secret means the peer
  sent a small-order point and is rejected (RFC 8446 §7.4.2, RFC 7748 §6.1).
* ``secp256r1``: the uncompressed point ``0x04 || X || Y`` only (RFC 8446 §4.2.8.2);
  the shared secret is the x-coordinate (§7.4.2).  ``cryptography`` checks that the
  point is on the curve.
* ``X25519MLKEM768`` (draft-ietf-tls-ecdhe-mlkem §3, draft-ietf-tls-hybrid-design):
  the ML-KEM-768 part comes *first* in every field — client share is the encapsulation
  key (1184 bytes) then the X25519 public key, server share is the ML-KEM ciphertext
  (1088 bytes) then the X25519 public key, shared secret is the ML-KEM secret then the
  X25519 secret.

The peer's ``key_exchange`` is untrusted input: every malformed value (wrong length,
point not on the curve, compressed point, encapsulation key failing the FIPS 203
modulus check, small-order X25519 point) raises
``TLSError(AlertDescription.illegal_parameter, ...)`` and nothing else.
"""

from __future__ import annotations

import abc
from enum import IntEnum
from typing import ClassVar

from cryptography.hazmat.primitives.asymmetric import ec, mlkem, x25519
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from ..codes import AlertDescription
from ..exceptions import TLSError

__all__ = [
    "MLKEM768_CIPHERTEXT_LENGTH",
    "MLKEM768_ENCAPSULATION_KEY_LENGTH",
    "MLKEM768_SHARED_SECRET_LENGTH",
    "SECP256R1_SHARE_LENGTH",
    "SUPPORTED_GROUPS",
    "X25519MLKEM768_CLIENT_SHARE_LENGTH",
    "X25519MLKEM768_SERVER_SHARE_LENGTH",
    "X25519MLKEM768_SHARED_SECRET_LENGTH",
    "X25519_SHARE_LENGTH",
    "BytesLike",
    "KeyShareClient",
    "NamedGroup",
    "server_key_share",
]


class NamedGroup(IntEnum):
    """Supported groups registry (RFC 8446 §4.2.7; draft-ietf-tls-ecdhe-mlkem §5).

    ``secp384r1`` and ``x448`` are listed so that peers' lists parse into names; we do
    not implement them.
    """

    secp256r1 = 0x0017
    secp384r1 = 0x0018
    x25519 = 0x001D
    x448 = 0x001E
    X25519MLKEM768 = 0x11EC


#: Our default preference: hybrid post-quantum first (draft-ietf-tls-ecdhe-mlkem §4).
SUPPORTED_GROUPS: tuple[NamedGroup, ...] = (
    NamedGroup.X25519MLKEM768,
    NamedGroup.x25519,
    NamedGroup.secp256r1,
)

#: X25519 public keys and shared secrets (RFC 7748 §5).
X25519_SHARE_LENGTH = 32
#: Uncompressed P-256 point: 0x04 || X (32) || Y (32) (RFC 8446 §4.2.8.2).
SECP256R1_SHARE_LENGTH = 65
_UNCOMPRESSED_POINT_PREFIX = 0x04
#: ML-KEM-768 sizes (FIPS 203 §8, table 3).
MLKEM768_ENCAPSULATION_KEY_LENGTH = 1184
MLKEM768_CIPHERTEXT_LENGTH = 1088
MLKEM768_SHARED_SECRET_LENGTH = 32
#: X25519MLKEM768 sizes (draft-ietf-tls-ecdhe-mlkem §3).
X25519MLKEM768_CLIENT_SHARE_LENGTH = MLKEM768_ENCAPSULATION_KEY_LENGTH + X25519_SHARE_LENGTH
X25519MLKEM768_SERVER_SHARE_LENGTH = MLKEM768_CIPHERTEXT_LENGTH + X25519_SHARE_LENGTH
X25519MLKEM768_SHARED_SECRET_LENGTH = MLKEM768_SHARED_SECRET_LENGTH + X25519_SHARE_LENGTH

_ALL_ZERO_X25519 = bytes(X25519_SHARE_LENGTH)

#: Peer shares may be handed over without a copy.
BytesLike = bytes | bytearray | memoryview


def _illegal(reason: str) -> TLSError:
    return TLSError(AlertDescription.illegal_parameter, reason)


def _group_name(group: int) -> str:
    try:
        return NamedGroup(group).name
    except ValueError:
        return f"{group:#06x}"


def _check_length(group: NamedGroup, share: bytes, expected: int, what: str) -> None:
    if len(share) != expected:
        raise _illegal(
            f"{group.name} {what} key_exchange is {len(share)} bytes, expected {expected}"
        )


# --- the primitives, each validating its untrusted input -------------------------------


def _x25519_public(data: bytes) -> x25519.X25519PublicKey:
    """Parse a peer's X25519 public key (untrusted input; length already checked)."""
    try:
        return x25519.X25519PublicKey.from_public_bytes(data)
    except ValueError as exc:
        raise _illegal(f"invalid X25519 public key: {exc}") from None


def _x25519_exchange(private: x25519.X25519PrivateKey, peer: bytes) -> bytes:
    """X25519 with the all-zero check of RFC 8446 §7.4.2 / RFC 7748 §6.1."""
    try:
        secret = private.exchange(_x25519_public(peer))
    except ValueError:
        # OpenSSL refuses the all-zero output itself; report it the same way.
        secret = _ALL_ZERO_X25519
    if secret == _ALL_ZERO_X25519:
        raise _illegal("X25519 shared secret is all zeros (peer sent a small-order point)")
    return secret


def _x25519_public_bytes(private: x25519.X25519PrivateKey) -> bytes:
    return private.public_key().public_bytes_raw()


def _secp256r1_public(data: bytes) -> ec.EllipticCurvePublicKey:
    """Parse a peer's uncompressed P-256 point (untrusted input; length already checked)."""
    if data[0] != _UNCOMPRESSED_POINT_PREFIX:
        raise _illegal(f"secp256r1 key_exchange must be an uncompressed point, got {data[0]:#04x}")
    try:
        return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), data)
    except ValueError:
        raise _illegal("secp256r1 key_exchange is not a valid point on the curve") from None


def _mlkem768_public(data: bytes) -> mlkem.MLKEM768PublicKey:
    """Parse a client's ML-KEM-768 encapsulation key (untrusted input).

    ``cryptography`` applies the FIPS 203 §7.2 modulus check, which
    draft-ietf-tls-ecdhe-mlkem §3 requires the server to perform.
    """
    try:
        return mlkem.MLKEM768PublicKey.from_public_bytes(data)
    except ValueError:
        raise _illegal("ML-KEM-768 encapsulation key fails the FIPS 203 modulus check") from None


# --- client side -------------------------------------------------------------------------


class KeyShareClient(abc.ABC):
    """A client's private key for one offered group (RFC 8446 §4.2.8).

    Create one with :meth:`generate`; send :meth:`public_bytes`; call :meth:`finish`
    with the server's ``key_exchange`` to obtain the shared secret.
    """

    __slots__ = ()

    group: ClassVar[NamedGroup]

    @staticmethod
    def generate(group: NamedGroup | int) -> KeyShareClient:
        """Generate a fresh key for ``group``.

        Raises ``TLSError(illegal_parameter)`` for a group we do not implement (as when a
        HelloRetryRequest names such a group, RFC 8446 §4.1.4).
        """
        try:
            cls = _CLIENT_CLASSES[NamedGroup(group)]
        except (KeyError, ValueError):
            raise _illegal(f"unsupported key exchange group {_group_name(group)}") from None
        return cls()

    @abc.abstractmethod
    def public_bytes(self) -> bytes:
        """The ``key_exchange`` field of our KeyShareEntry."""

    @abc.abstractmethod
    def finish(self, server_key_exchange: BytesLike) -> bytes:
        """The shared secret, from the server's ``key_exchange`` (untrusted input)."""


class _X25519Client(KeyShareClient):
    __slots__ = ("_private",)
    group = NamedGroup.x25519

    def __init__(self) -> None:
        self._private = x25519.X25519PrivateKey.generate()

    def public_bytes(self) -> bytes:
        return _x25519_public_bytes(self._private)

    def finish(self, server_key_exchange: BytesLike) -> bytes:
        share = bytes(server_key_exchange)
        _check_length(self.group, share, X25519_SHARE_LENGTH, "server")
        return _x25519_exchange(self._private, share)


class _Secp256r1Client(KeyShareClient):
    __slots__ = ("_private",)
    group = NamedGroup.secp256r1

    def __init__(self) -> None:
        self._private = ec.generate_private_key(ec.SECP256R1())

    def public_bytes(self) -> bytes:
        return self._private.public_key().public_bytes(
            Encoding.X962, PublicFormat.UncompressedPoint
        )

    def finish(self, server_key_exchange: BytesLike) -> bytes:
        share = bytes(server_key_exchange)
        _check_length(self.group, share, SECP256R1_SHARE_LENGTH, "server")
        return self._private.exchange(ec.ECDH(), _secp256r1_public(share))


class _X25519MLKEM768Client(KeyShareClient):
    __slots__ = ("_ecdh", "_kem")
    group = NamedGroup.X25519MLKEM768

    def __init__(self) -> None:
        self._kem = mlkem.MLKEM768PrivateKey.generate()
        self._ecdh = x25519.X25519PrivateKey.generate()

    def public_bytes(self) -> bytes:
        return self._kem.public_key().public_bytes_raw() + _x25519_public_bytes(self._ecdh)

    def finish(self, server_key_exchange: BytesLike) -> bytes:
        share = bytes(server_key_exchange)
        _check_length(self.group, share, X25519MLKEM768_SERVER_SHARE_LENGTH, "server")
        ciphertext = share[:MLKEM768_CIPHERTEXT_LENGTH]
        try:
            # Implicit rejection (FIPS 203 §6.3): a wrong ciphertext of the right length
            # yields an unrelated secret and the handshake fails at Finished.
            kem_secret = self._kem.decapsulate(ciphertext)
        except ValueError:
            raise _illegal("invalid ML-KEM-768 ciphertext") from None
        ecdh_secret = _x25519_exchange(self._ecdh, share[MLKEM768_CIPHERTEXT_LENGTH:])
        return kem_secret + ecdh_secret


_CLIENT_CLASSES: dict[NamedGroup, type[KeyShareClient]] = {
    cls.group: cls for cls in (_X25519MLKEM768Client, _X25519Client, _Secp256r1Client)
}


# --- server side -------------------------------------------------------------------------


def _server_x25519(client_share: bytes) -> tuple[bytes, bytes]:
    _check_length(NamedGroup.x25519, client_share, X25519_SHARE_LENGTH, "client")
    private = x25519.X25519PrivateKey.generate()
    return _x25519_public_bytes(private), _x25519_exchange(private, client_share)


def _server_secp256r1(client_share: bytes) -> tuple[bytes, bytes]:
    _check_length(NamedGroup.secp256r1, client_share, SECP256R1_SHARE_LENGTH, "client")
    peer = _secp256r1_public(client_share)
    private = ec.generate_private_key(ec.SECP256R1())
    public = private.public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
    return public, private.exchange(ec.ECDH(), peer)


def _server_x25519mlkem768(client_share: bytes) -> tuple[bytes, bytes]:
    group = NamedGroup.X25519MLKEM768
    _check_length(group, client_share, X25519MLKEM768_CLIENT_SHARE_LENGTH, "client")
    encapsulation_key = _mlkem768_public(client_share[:MLKEM768_ENCAPSULATION_KEY_LENGTH])
    kem_secret, ciphertext = encapsulation_key.encapsulate()
    private = x25519.X25519PrivateKey.generate()
    ecdh_secret = _x25519_exchange(private, client_share[MLKEM768_ENCAPSULATION_KEY_LENGTH:])
    return ciphertext + _x25519_public_bytes(private), kem_secret + ecdh_secret


_SERVER_FUNCTIONS = {
    NamedGroup.X25519MLKEM768: _server_x25519mlkem768,
    NamedGroup.x25519: _server_x25519,
    NamedGroup.secp256r1: _server_secp256r1,
}


def server_key_share(
    group: NamedGroup | int, client_key_exchange: BytesLike
) -> tuple[bytes, bytes]:
    """Answer a client's key share: ``(server_key_exchange, shared_secret)``.

    RFC 8446 §4.2.8.  ``client_key_exchange`` is untrusted input; anything malformed
    raises ``TLSError(illegal_parameter)``, as does a group we do not implement.
    """
    try:
        respond = _SERVER_FUNCTIONS[NamedGroup(group)]
    except (KeyError, ValueError):
        raise _illegal(f"unsupported key exchange group {_group_name(group)}") from None
    return respond(bytes(client_key_exchange))
