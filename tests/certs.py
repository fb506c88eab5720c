"""A shared test PKI, generated once per test session.

Plain functions (not only fixtures) so any test module can ``from tests.certs import
get_pki``.  Every certificate is available as objects (:class:`CertKey`) and as PEM
files in a temporary directory removed at exit:

====================  ==========================================================
name                  what
====================  ==========================================================
``ca``                the trusted development CA (ECDSA P-256)
``other_ca``          a second CA that nobody trusts
``server``            ECDSA server cert for localhost, 127.0.0.1, ::1 (by ``ca``)
``server_ed25519``    same names, Ed25519 key (signed by ``ca``)
``server_rsa``        same names, RSA-2048 key (signed by ``ca``)
``server_expired``    same names, valid 2020-01-01 .. 2024-01-01 UTC
``server_other_ca``   same names, issued by ``other_ca``
``client``            client cert, CN and DNS SAN ``client.example`` (by ``ca``)
``client_other_ca``   the same client name, issued by ``other_ca``
====================  ==========================================================
"""

from __future__ import annotations

import atexit
import datetime
import functools
import shutil
import tempfile
from pathlib import Path

import attrs
from cryptography import x509

from mstls.devcerts import CertKey, make_ca, make_client_cert, make_server_cert

__all__ = [
    "CLIENT_NAME",
    "EXPIRED_NOT_AFTER",
    "EXPIRED_NOT_BEFORE",
    "SERVER_NAME",
    "PemFiles",
    "TestPKI",
    "get_pki",
]

SERVER_NAME = "localhost"
CLIENT_NAME = "client.example"
EXPIRED_NOT_BEFORE = datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC)
EXPIRED_NOT_AFTER = datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC)


@attrs.frozen
class PemFiles:
    """The PEM files of one certificate: ``cert`` (certificate only) and ``key``."""

    cert: Path
    key: Path


@attrs.frozen
class TestPKI:
    """The session's certificates; see the module table."""

    __test__ = False  # not a test class, despite the name

    directory: Path
    ca: CertKey
    other_ca: CertKey
    server: CertKey
    server_ed25519: CertKey
    server_rsa: CertKey
    server_expired: CertKey
    server_other_ca: CertKey
    client: CertKey
    client_other_ca: CertKey

    def files(self, name: str) -> PemFiles:
        """The PEM files of the certificate called ``name`` (an attribute name)."""
        getattr(self, name)  # an unknown name fails here, clearly
        return PemFiles(self.directory / f"{name}.pem", self.directory / f"{name}.key")

    @property
    def roots(self) -> list[x509.Certificate]:
        """The trusted roots: just ``ca``."""
        return [self.ca.certificate]


_NAMES = (
    "ca",
    "other_ca",
    "server",
    "server_ed25519",
    "server_rsa",
    "server_expired",
    "server_other_ca",
    "client",
    "client_other_ca",
)


@functools.cache
def get_pki() -> TestPKI:
    """Generate the PKI (about 0.1 s) the first time; the same object afterwards."""
    ca = make_ca("mstls test CA")
    other_ca = make_ca("untrusted test CA")
    directory = Path(tempfile.mkdtemp(prefix="mstls-test-pki-"))
    atexit.register(shutil.rmtree, directory, ignore_errors=True)
    pki = TestPKI(
        directory=directory,
        ca=ca,
        other_ca=other_ca,
        server=make_server_cert(ca),
        server_ed25519=make_server_cert(ca, key_type="ed25519"),
        server_rsa=make_server_cert(ca, key_type="rsa"),
        server_expired=make_server_cert(
            ca, not_before=EXPIRED_NOT_BEFORE, not_after=EXPIRED_NOT_AFTER
        ),
        server_other_ca=make_server_cert(other_ca),
        client=make_client_cert(ca, CLIENT_NAME),
        client_other_ca=make_client_cert(other_ca, CLIENT_NAME),
    )
    for name in _NAMES:
        cert_key: CertKey = getattr(pki, name)
        files = pki.files(name)
        files.cert.write_bytes(cert_key.cert_pem())
        files.key.write_bytes(cert_key.key_pem())
    return pki
