"""Loading certificates, private keys and trusted roots from files (configuration time).

Every problem is a :class:`~mstls.exceptions.ConfigurationError` naming the file and
what is wrong with it.  Certificates are read from PEM (or concatenated DER), keys from
PEM or DER, optionally encrypted.  The system trust store is read once per process
from ``ssl.get_default_verify_paths()`` (its CA file and CA directory), skipping
entries that do not parse.
"""

from __future__ import annotations

import functools
import os
import re
import ssl
import warnings
from collections.abc import Callable
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

from ..exceptions import ConfigurationError
from .signatures import schemes_for_key

__all__ = [
    "Password",
    "load_cert_chain",
    "load_certificate_chain",
    "load_private_key",
    "load_roots",
    "load_system_roots",
]

_PEM_CERTIFICATE = re.compile(
    rb"-----BEGIN CERTIFICATE-----\r?\n.+?\r?\n-----END CERTIFICATE-----", re.DOTALL
)

Password = str | bytes | Callable[[], str | bytes] | None


def _read(path: str | os.PathLike[str], what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ConfigurationError(f"{path}: cannot read {what}: {exc.strerror or exc}") from None


def _split_der(data: bytes) -> list[bytes]:
    """Split concatenated DER certificates (SEQUENCEs with definite lengths)."""
    items: list[bytes] = []
    pos = 0
    while pos < len(data):
        if data[pos] != 0x30 or pos + 2 > len(data):
            raise ValueError("neither PEM nor DER (expected a SEQUENCE)")
        first = data[pos + 1]
        header = 2
        length = first
        if first & 0x80:
            count = first & 0x7F
            if not 1 <= count <= 4:
                raise ValueError("not DER: bad length")
            length = int.from_bytes(data[pos + 2 : pos + 2 + count], "big")
            header += count
        end = pos + header + length
        if end > len(data):
            raise ValueError("not DER: truncated")
        items.append(data[pos:end])
        pos = end
    return items


def _certificates_from(data: bytes, source: str) -> list[x509.Certificate]:
    """Every certificate in PEM (or concatenated DER) ``data``; strict."""
    blocks = _PEM_CERTIFICATE.findall(data)
    try:
        if blocks:
            return [x509.load_pem_x509_certificate(block) for block in blocks]
        if b"-----BEGIN" in data:
            raise ConfigurationError(f"{source}: no PEM CERTIFICATE block found")
        return [x509.load_der_x509_certificate(der) for der in _split_der(data)]
    except ValueError as exc:
        raise ConfigurationError(f"{source}: malformed certificate: {exc}") from None


def load_certificate_chain(certfile: str | os.PathLike[str]) -> list[x509.Certificate]:
    """Certificates from a PEM file, leaf first (DER is accepted too)."""
    chain = _certificates_from(_read(certfile, "certificate file"), str(certfile))
    if not chain:
        raise ConfigurationError(f"{certfile}: no certificate found")
    return chain


def _password_bytes(password: Password) -> bytes | None:
    if callable(password):
        password = password()
    return password.encode() if isinstance(password, str) else password


def load_private_key(keyfile: str | os.PathLike[str], password: Password = None) -> PrivateKeyTypes:
    """A private key from a PEM (or DER) file, decrypted with ``password`` if given."""
    data = _read(keyfile, "private key file")
    secret = _password_bytes(password)
    if b"-----BEGIN" in data and b"PRIVATE KEY-----" not in data:
        raise ConfigurationError(f"{keyfile}: no PEM PRIVATE KEY block found")
    try:
        if b"-----BEGIN" in data:
            return serialization.load_pem_private_key(data, secret)
        return serialization.load_der_private_key(data, secret)
    except TypeError:
        if secret is None:
            problem = "the private key is encrypted and no password was given"
        else:
            problem = "a password was given but the private key is not encrypted"
    except ValueError as exc:
        problem = f"cannot load the private key (wrong password or malformed key): {exc}"
    except UnsupportedAlgorithm as exc:
        problem = f"unsupported private key type: {exc}"
    raise ConfigurationError(f"{keyfile}: {problem}")


def load_cert_chain(
    certfile: str | os.PathLike[str],
    keyfile: str | os.PathLike[str] | None = None,
    password: Password = None,
) -> tuple[list[x509.Certificate], PrivateKeyTypes]:
    """Our certificate chain and its key, checked to match and to fit a TLS 1.3 scheme.

    As ``ssl.SSLContext.load_cert_chain``: without ``keyfile`` the key is read from
    ``certfile``.
    """
    chain = load_certificate_chain(certfile)
    key_path = certfile if keyfile is None else keyfile
    key = load_private_key(key_path, password)
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    key_spki = key.public_key().public_bytes(serialization.Encoding.DER, spki)
    try:
        cert_spki = chain[0].public_key().public_bytes(serialization.Encoding.DER, spki)
    except (UnsupportedAlgorithm, ValueError) as exc:
        raise ConfigurationError(f"{certfile}: unsupported public key: {exc}") from None
    if key_spki != cert_spki:
        raise ConfigurationError(
            f"{key_path}: the private key does not match the certificate in {certfile}"
        )
    if not schemes_for_key(key):
        raise ConfigurationError(
            f"{key_path}: this key type cannot sign TLS 1.3 handshakes here; "
            "use an Ed25519, ECDSA P-256 or RSA key"
        )
    return chain, key


def _tolerant_certificates(data: bytes) -> list[x509.Certificate]:
    """Every parsable PEM certificate in ``data``; bad entries are skipped."""
    certs = []
    with warnings.catch_warnings():
        # Some system roots have negative serial numbers: cryptography warns, we keep them.
        warnings.simplefilter("ignore")
        for block in _PEM_CERTIFICATE.findall(data):
            try:
                certs.append(x509.load_pem_x509_certificate(block))
            except ValueError:
                continue
    return certs


def _read_quietly(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError:
        return b""


@functools.cache
def load_system_roots() -> tuple[x509.Certificate, ...]:
    """The operating system's trusted roots (read once per process).

    From ``ssl.get_default_verify_paths()``: its CA file and every file in its CA
    directory (this honours ``SSL_CERT_FILE`` and ``SSL_CERT_DIR``).  Unreadable or
    unparsable entries are skipped; duplicates are removed.
    """
    paths = ssl.get_default_verify_paths()
    data: list[bytes] = []
    if paths.cafile:
        data.append(_read_quietly(Path(paths.cafile)))
    if paths.capath and os.path.isdir(paths.capath):
        data.extend(_read_quietly(entry) for entry in sorted(Path(paths.capath).iterdir()))
    unique: dict[bytes, x509.Certificate] = {}
    for chunk in data:
        for cert in _tolerant_certificates(chunk):
            unique.setdefault(cert.fingerprint(hashes.SHA256()), cert)
    return tuple(unique.values())


def load_roots(
    cafile: str | os.PathLike[str] | None = None,
    cadata: str | bytes | None = None,
    use_system: bool = True,
) -> list[x509.Certificate]:
    """Trusted roots: ``cafile`` (PEM), ``cadata`` (PEM text, or PEM/DER bytes as in
    ``ssl.SSLContext.load_verify_locations``) and, if ``use_system``, the system store.
    """
    roots: list[x509.Certificate] = []
    if cafile is not None:
        roots += load_certificate_chain(cafile)
    if cadata is not None:
        raw = cadata.encode("ascii", "replace") if isinstance(cadata, str) else bytes(cadata)
        loaded = _certificates_from(raw, "cadata")
        if not loaded:
            raise ConfigurationError("cadata: no certificate found")
        roots += loaded
    if use_system:
        roots += load_system_roots()
    return roots
