"""Development certificates: a private CA, server and client certificates.

Used by the tests, by ``mstls certs`` and by the daemon's first start.  Every
certificate made here is accepted by ``cryptography.x509.verification`` (the verifier
our TLS engine uses, which applies the CA/Browser Forum profile of RFC 5280):

* the CA has BasicConstraints ``ca=True`` (critical), KeyUsage ``keyCertSign`` and
  ``cRLSign`` (critical) and a SubjectKeyIdentifier;
* leaves have BasicConstraints ``ca=False``, KeyUsage ``digitalSignature`` (critical),
  an ExtendedKeyUsage (``serverAuth`` or ``clientAuth``), a non-critical
  SubjectAlternativeName (the subject name is not empty) and an
  AuthorityKeyIdentifier.

Keys are ECDSA P-256 by default; Ed25519 and RSA-2048 are available.  Private keys are
written unencrypted (PKCS #8) with mode 0600: these are development credentials.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Literal

import attrs
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from .exceptions import ConfigurationError
from .tls.certificates import is_valid_dns_name

__all__ = [
    "CA_VALIDITY",
    "CLOCK_SKEW_ALLOWANCE",
    "DEFAULT_SERVER_DNS_NAMES",
    "DEFAULT_SERVER_IP_ADDRESSES",
    "LEAF_VALIDITY",
    "RSA_KEY_SIZE",
    "CertKey",
    "DevPKIPaths",
    "KeyType",
    "generate_private_key",
    "issue_certificate",
    "make_ca",
    "make_client_cert",
    "make_server_cert",
    "write_dev_pki",
]

#: Which key algorithm to generate.
KeyType = Literal["ecdsa", "ed25519", "rsa"]
RSA_KEY_SIZE = 2048
RSA_PUBLIC_EXPONENT = 65537
#: Default lifetimes.
CA_VALIDITY = datetime.timedelta(days=3650)
LEAF_VALIDITY = datetime.timedelta(days=825)
#: ``not_before`` is set this far in the past so a slightly slow peer clock still accepts.
CLOCK_SKEW_ALLOWANCE = datetime.timedelta(hours=1)
DEFAULT_SERVER_DNS_NAMES: tuple[str, ...] = ("localhost",)
DEFAULT_SERVER_IP_ADDRESSES: tuple[str, ...] = ("127.0.0.1", "::1")
DEFAULT_CA_NAME = "mstls development CA"
DEFAULT_CLIENT_NAME = "mstls development client"
_KEY_FILE_MODE = 0o600


def generate_private_key(key_type: KeyType = "ecdsa") -> CertificateIssuerPrivateKeyTypes:
    """A fresh private key: ECDSA P-256, Ed25519 or RSA-2048."""
    if key_type == "ecdsa":
        return ec.generate_private_key(ec.SECP256R1())
    if key_type == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    if key_type == "rsa":
        return rsa.generate_private_key(RSA_PUBLIC_EXPONENT, RSA_KEY_SIZE)
    raise ConfigurationError(f"unknown key type {key_type!r}: use 'ecdsa', 'ed25519' or 'rsa'")


def _signature_hash(key: CertificateIssuerPrivateKeyTypes) -> hashes.SHA256 | None:
    """Ed25519 signs the message itself; the others sign a SHA-256 digest."""
    return None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()


@attrs.frozen
class CertKey:
    """A certificate and its private key, with PEM encodings."""

    certificate: x509.Certificate
    private_key: CertificateIssuerPrivateKeyTypes

    def cert_pem(self) -> bytes:
        """The certificate in PEM."""
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    def key_pem(self) -> bytes:
        """The private key as unencrypted PKCS #8 PEM."""
        return self.private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _validity(
    not_before: datetime.datetime | None,
    not_after: datetime.datetime | None,
    lifetime: datetime.timedelta,
) -> tuple[datetime.datetime, datetime.datetime]:
    start = not_before if not_before is not None else _now() - CLOCK_SKEW_ALLOWANCE
    end = not_after if not_after is not None else start + lifetime
    if end <= start:
        raise ConfigurationError(f"certificate validity ends ({end}) before it starts ({start})")
    return start, end


def _subject_alt_names(
    dns_names: Iterable[str], ip_addresses: Iterable[str]
) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = [x509.DNSName(name) for name in dns_names]
    for address in ip_addresses:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(address)))
        except ValueError:
            raise ConfigurationError(f"not an IP address: {address!r}") from None
    return names


def _leaf_key_usage() -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )


def _ca_key_usage() -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=True,
        crl_sign=True,
        encipher_only=False,
        decipher_only=False,
    )


def issue_certificate(
    issuer: CertKey | None,
    *,
    common_name: str,
    key_type: KeyType = "ecdsa",
    is_ca: bool = False,
    dns_names: Sequence[str] = (),
    ip_addresses: Sequence[str] = (),
    extended_key_usage: Sequence[x509.ObjectIdentifier] | None = None,
    not_before: datetime.datetime | None = None,
    not_after: datetime.datetime | None = None,
    private_key: CertificateIssuerPrivateKeyTypes | None = None,
) -> CertKey:
    """Issue one certificate; ``issuer=None`` makes it self-signed (a root CA).

    The general building block behind :func:`make_ca`, :func:`make_server_cert` and
    :func:`make_client_cert`; tests use it directly for unusual certificates
    (intermediates, a wrong ``extended_key_usage``, a window in the past).
    """
    key = private_key if private_key is not None else generate_private_key(key_type)
    start, end = _validity(not_before, not_after, CA_VALIDITY if is_ca else LEAF_VALIDITY)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    signer = issuer.private_key if issuer is not None else key
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.certificate.subject if issuer is not None else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=is_ca, path_length=None), critical=True)
        .add_extension(_ca_key_usage() if is_ca else _leaf_key_usage(), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
    )
    if issuer is not None:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.private_key.public_key()),
            critical=False,
        )
    alt_names = _subject_alt_names(dns_names, ip_addresses)
    if alt_names:
        builder = builder.add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
    if extended_key_usage:
        builder = builder.add_extension(
            x509.ExtendedKeyUsage(list(extended_key_usage)), critical=False
        )
    certificate = builder.sign(signer, _signature_hash(signer))
    return CertKey(certificate, key)


def make_ca(
    common_name: str = DEFAULT_CA_NAME,
    *,
    key_type: KeyType = "ecdsa",
    issuer: CertKey | None = None,
    not_before: datetime.datetime | None = None,
    not_after: datetime.datetime | None = None,
) -> CertKey:
    """A root CA (self-signed), or an intermediate CA when ``issuer`` is given.

    Note: ``cryptography``'s verifier refuses certificates *signed* with Ed25519, so an
    Ed25519 CA is only useful with pinned keys; Ed25519 leaves under an ECDSA or RSA CA
    verify fine.
    """
    return issue_certificate(
        issuer,
        common_name=common_name,
        key_type=key_type,
        is_ca=True,
        not_before=not_before,
        not_after=not_after,
    )


def make_server_cert(
    issuer: CertKey,
    dns_names: Sequence[str] = DEFAULT_SERVER_DNS_NAMES,
    ip_addresses: Sequence[str] = DEFAULT_SERVER_IP_ADDRESSES,
    *,
    key_type: KeyType = "ecdsa",
    common_name: str | None = None,
    not_before: datetime.datetime | None = None,
    not_after: datetime.datetime | None = None,
) -> CertKey:
    """A TLS server certificate (EKU serverAuth) for ``dns_names`` and ``ip_addresses``."""
    if not dns_names and not ip_addresses:
        raise ConfigurationError("a server certificate needs at least one DNS name or IP")
    name = common_name or (dns_names[0] if dns_names else ip_addresses[0])
    return issue_certificate(
        issuer,
        common_name=name,
        key_type=key_type,
        dns_names=dns_names,
        ip_addresses=ip_addresses,
        extended_key_usage=[ExtendedKeyUsageOID.SERVER_AUTH],
        not_before=not_before,
        not_after=not_after,
    )


def make_client_cert(
    issuer: CertKey,
    common_name: str = DEFAULT_CLIENT_NAME,
    dns_names: Sequence[str] | None = None,
    *,
    key_type: KeyType = "ecdsa",
    not_before: datetime.datetime | None = None,
    not_after: datetime.datetime | None = None,
) -> CertKey:
    """A TLS client certificate (EKU clientAuth).

    ``dns_names`` default to ``[common_name]`` when the common name is a valid DNS
    name, since the verifier requires a subjectAltName; otherwise pass them.
    """
    if dns_names is None:
        dns_names = [common_name] if is_valid_dns_name(common_name) else []
    if not dns_names:
        raise ConfigurationError(
            f"client certificate {common_name!r} needs a DNS name for its subjectAltName"
        )
    return issue_certificate(
        issuer,
        common_name=common_name,
        key_type=key_type,
        dns_names=dns_names,
        extended_key_usage=[ExtendedKeyUsageOID.CLIENT_AUTH],
        not_before=not_before,
        not_after=not_after,
    )


# --- files -------------------------------------------------------------------------------


@attrs.frozen
class DevPKIPaths:
    """Where :func:`write_dev_pki` put each PEM file."""

    directory: Path
    ca_cert: Path
    ca_key: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def _write(path: Path, data: bytes, mode: int | None, overwrite: bool) -> None:
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if overwrite else os.O_EXCL)
    try:
        fd = os.open(path, flags, mode if mode is not None else 0o644)
    except FileExistsError:
        raise ConfigurationError(f"{path}: already exists (refusing to overwrite)") from None
    except OSError as exc:
        raise ConfigurationError(f"{path}: cannot write: {exc.strerror}") from None
    with os.fdopen(fd, "wb") as file:
        file.write(data)
    if mode is not None:
        os.chmod(path, mode)


def write_dev_pki(
    directory: str | os.PathLike[str],
    *,
    server_dns_names: Sequence[str] = DEFAULT_SERVER_DNS_NAMES,
    server_ip_addresses: Sequence[str] = DEFAULT_SERVER_IP_ADDRESSES,
    client_name: str = "client.localhost",
    key_type: KeyType = "ecdsa",
    ca_key_type: KeyType = "ecdsa",
    overwrite: bool = False,
) -> DevPKIPaths:
    """Create a CA, a server and a client certificate as PEM files in ``directory``.

    Files: ``ca.pem``, ``ca.key``, ``server.pem``, ``server.key``, ``client.pem``,
    ``client.key``; keys are written with mode 0600.  Existing files are an error
    unless ``overwrite``.  ``key_type`` is for the server and client keys,
    ``ca_key_type`` for the CA (see :func:`make_ca` about Ed25519).
    """
    root = Path(directory)
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigurationError(f"{root}: cannot create directory: {exc.strerror}") from None
    ca = make_ca(key_type=ca_key_type)
    server = make_server_cert(ca, server_dns_names, server_ip_addresses, key_type=key_type)
    client = make_client_cert(ca, client_name, key_type=key_type)
    paths = DevPKIPaths(
        directory=root,
        ca_cert=root / "ca.pem",
        ca_key=root / "ca.key",
        server_cert=root / "server.pem",
        server_key=root / "server.key",
        client_cert=root / "client.pem",
        client_key=root / "client.key",
    )
    pairs = (
        (ca, paths.ca_cert, paths.ca_key),
        (server, paths.server_cert, paths.server_key),
        (client, paths.client_cert, paths.client_key),
    )
    if not overwrite:
        for _, cert_path, key_path in pairs:
            for path in (cert_path, key_path):
                if path.exists():
                    raise ConfigurationError(f"{path}: already exists (refusing to overwrite)")
    for cert_key, cert_path, key_path in pairs:
        _write(cert_path, cert_key.cert_pem(), None, overwrite)
        _write(key_path, cert_key.key_pem(), _KEY_FILE_MODE, overwrite)
    return paths
