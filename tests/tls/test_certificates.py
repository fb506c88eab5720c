"""Certificate loading, verification messages and alerts, pinning, dev PKI."""

from __future__ import annotations

import base64
import contextlib
import datetime
import hashlib
import os
import re
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID
from hypothesis import given, settings
from hypothesis import strategies as st

from mstls.codes import AlertDescription
from mstls.devcerts import (
    CertKey,
    KeyType,
    issue_certificate,
    make_ca,
    make_client_cert,
    make_server_cert,
    write_dev_pki,
)
from mstls.exceptions import CertificateError, ConfigurationError
from mstls.tls.certificates import (
    CLIENT_CERTIFICATE_REQUIRED_MESSAGE,
    EMPTY_SERVER_CERTIFICATE_MESSAGE,
    MAX_CERTIFICATE_CHAIN_LENGTH,
    MAX_CERTIFICATE_SIZE,
    load_cert_chain,
    load_certificate_chain,
    load_private_key,
    load_roots,
    load_system_roots,
    normalize_pin,
    parse_certificate_chain,
    parse_certificate_der,
    server_name_subject,
    spki_sha256,
    unverified_peer,
    verify_client_chain,
    verify_pinned,
    verify_server_chain,
)
from tests.certs import CLIENT_NAME, get_pki

NOW = datetime.datetime.now(datetime.UTC)
PAST = datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC)
PAST_END = datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC)
FUTURE = datetime.datetime(2099, 1, 1, tzinfo=datetime.UTC)


def der(cert_key: CertKey) -> bytes:
    return cert_key.certificate.public_bytes(serialization.Encoding.DER)


def rejects_server(
    chain: list[x509.Certificate],
    name: str = "localhost",
    roots: list[x509.Certificate] | None = None,
) -> CertificateError:
    with pytest.raises(CertificateError) as excinfo:
        verify_server_chain(chain, name, get_pki().roots if roots is None else roots, NOW)
    return excinfo.value


def rejects_client(
    chain: list[x509.Certificate], roots: list[x509.Certificate] | None = None
) -> CertificateError:
    with pytest.raises(CertificateError) as excinfo:
        verify_client_chain(chain, get_pki().roots if roots is None else roots, NOW)
    return excinfo.value


# --- accepted chains ---------------------------------------------------------------------


@pytest.mark.parametrize("which", ["server", "server_ed25519", "server_rsa"])
@pytest.mark.parametrize("name", ["localhost", "LOCALHOST", "127.0.0.1", "::1"])
def test_server_chain_verifies(which: str, name: str) -> None:
    pki = get_pki()
    leaf: CertKey = getattr(pki, which)
    peer = verify_server_chain([leaf.certificate], name, pki.roots, NOW)
    assert peer.chain == (leaf.certificate, pki.ca.certificate)
    assert peer.leaf == leaf.certificate
    assert peer.subject == "CN=localhost"
    assert peer.common_name == "localhost"
    assert peer.dns_names == ("localhost",)
    assert peer.ip_addresses == ("127.0.0.1", "::1")
    spki = leaf.private_key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert peer.spki_sha256 == hashlib.sha256(spki).hexdigest()
    assert peer.public_key == leaf.certificate.public_key()


def test_client_chain_verifies() -> None:
    pki = get_pki()
    peer = verify_client_chain([pki.client.certificate], pki.roots, NOW)
    assert peer.subject == f"CN={CLIENT_NAME}"
    assert peer.dns_names == (CLIENT_NAME,)
    assert peer.chain[-1] == pki.ca.certificate


def test_chain_through_an_intermediate() -> None:
    pki = get_pki()
    inter = make_ca("test intermediate", issuer=pki.ca)
    leaf = make_server_cert(inter)
    peer = verify_server_chain([leaf.certificate, inter.certificate], "localhost", pki.roots, NOW)
    assert peer.chain == (leaf.certificate, inter.certificate, pki.ca.certificate)


def test_wildcard_names() -> None:
    pki = get_pki()
    leaf = make_server_cert(pki.ca, ["*.wild.example"], [])
    verify_server_chain([leaf.certificate], "a.wild.example", pki.roots, NOW)
    error = rejects_server([leaf.certificate], "a.b.wild.example")
    assert error.reason == "certificate for '*.wild.example' does not match 'a.b.wild.example'"


def test_naive_time_is_utc() -> None:
    pki = get_pki()
    naive = NOW.replace(tzinfo=None)
    verify_server_chain([pki.server.certificate], "localhost", pki.roots, naive)


# --- rejected chains: exact alert and message -------------------------------------------


def test_name_mismatch() -> None:
    pki = get_pki()
    leaf = make_server_cert(pki.ca, ["a.example"], [])
    error = rejects_server([leaf.certificate], "b.example")
    assert error.alert == AlertDescription.bad_certificate
    assert error.reason == "certificate for 'a.example' does not match 'b.example'"


def test_name_mismatch_lists_every_name() -> None:
    error = rejects_server([get_pki().server.certificate], "10.1.2.3")
    assert error.alert == AlertDescription.bad_certificate
    assert error.reason == "certificate for 'localhost, 127.0.0.1, ::1' does not match '10.1.2.3'"


def test_expired_leaf() -> None:
    error = rejects_server([get_pki().server_expired.certificate])
    assert error.alert == AlertDescription.certificate_expired
    assert error.reason == "certificate expired on 2024-01-01 00:00:00 UTC"


def test_leaf_not_yet_valid() -> None:
    leaf = make_server_cert(get_pki().ca, not_before=FUTURE)
    error = rejects_server([leaf.certificate])
    assert error.alert == AlertDescription.bad_certificate
    assert error.reason == "certificate not valid before 2099-01-01 00:00:00 UTC"


def test_expired_intermediate_is_named() -> None:
    pki = get_pki()
    inter = make_ca("old intermediate", issuer=pki.ca, not_before=PAST, not_after=PAST_END)
    leaf = make_server_cert(inter)
    error = rejects_server([leaf.certificate, inter.certificate])
    assert error.alert == AlertDescription.certificate_expired
    assert error.reason == "CA certificate 'old intermediate' expired on 2024-01-01 00:00:00 UTC"


def test_expired_root_is_named() -> None:
    root = make_ca("old root", not_before=PAST, not_after=PAST_END)
    leaf = make_server_cert(root)
    error = rejects_server([leaf.certificate], roots=[root.certificate])
    assert error.alert == AlertDescription.certificate_expired
    assert error.reason == "trusted root 'old root' expired on 2024-01-01 00:00:00 UTC"


def test_unknown_ca() -> None:
    error = rejects_server([get_pki().server_other_ca.certificate])
    assert error.alert == AlertDescription.unknown_ca
    assert error.reason == (
        "unknown CA: certificate for 'localhost' was issued by 'CN=untrusted test CA', "
        "which is not a trusted root"
    )


def test_missing_intermediate_is_unknown_ca() -> None:
    inter = make_ca("missing intermediate", issuer=get_pki().ca)
    error = rejects_server([make_server_cert(inter).certificate])
    assert error.alert == AlertDescription.unknown_ca
    assert "was issued by 'CN=missing intermediate'" in error.reason


def test_chain_ending_at_an_untrusted_ca() -> None:
    pki = get_pki()
    inter = make_ca("foreign intermediate", issuer=pki.other_ca)
    leaf = make_server_cert(inter)
    error = rejects_server([leaf.certificate, inter.certificate])
    assert error.alert == AlertDescription.unknown_ca
    assert error.reason == (
        "unknown CA: the chain for 'localhost' ends at 'CN=foreign intermediate', "
        "issued by 'CN=untrusted test CA', which is not a trusted root"
    )


def test_client_from_untrusted_ca() -> None:
    error = rejects_client([get_pki().client_other_ca.certificate])
    assert error.alert == AlertDescription.unknown_ca
    assert f"certificate for '{CLIENT_NAME}'" in error.reason


def test_client_certificate_used_by_a_server() -> None:
    error = rejects_server([get_pki().client.certificate], CLIENT_NAME)
    assert error.alert == AlertDescription.unsupported_certificate
    assert error.reason == (
        f"certificate for '{CLIENT_NAME}' is not valid for TLS server authentication "
        "(extended key usage: clientAuth)"
    )


def test_server_certificate_used_by_a_client() -> None:
    error = rejects_client([get_pki().server.certificate])
    assert error.alert == AlertDescription.unsupported_certificate
    assert error.reason == (
        "certificate for 'localhost' is not valid for TLS client authentication "
        "(extended key usage: serverAuth)"
    )


def test_leaf_without_eku_is_accepted_for_both_roles() -> None:
    pki = get_pki()
    leaf = issue_certificate(pki.ca, common_name="any", dns_names=["any.example"])
    verify_server_chain([leaf.certificate], "any.example", pki.roots, NOW)
    verify_client_chain([leaf.certificate], pki.roots, NOW)


def test_ed25519_signed_chain_is_unsupported() -> None:
    root = make_ca("ed25519 root", key_type="ed25519")
    leaf = make_server_cert(root)
    error = rejects_server([leaf.certificate], roots=[root.certificate])
    assert error.alert == AlertDescription.unsupported_certificate
    assert "is signed with Ed25519" in error.reason


def test_certificate_issued_by_a_leaf_falls_back_to_the_verifier_text() -> None:
    pki = get_pki()
    child = make_server_cert(pki.server)
    error = rejects_server([child.certificate, pki.server.certificate])
    assert error.alert == AlertDescription.bad_certificate
    assert error.reason.startswith("certificate for 'localhost' rejected: ")
    assert "basicConstraints" in error.reason


def test_empty_chains() -> None:
    error = rejects_server([])
    assert (error.alert, error.reason) == (
        AlertDescription.decode_error,
        EMPTY_SERVER_CERTIFICATE_MESSAGE,
    )
    error = rejects_client([])
    assert (error.alert, error.reason) == (
        AlertDescription.certificate_required,
        CLIENT_CERTIFICATE_REQUIRED_MESSAGE,
    )


def test_chain_length_limit() -> None:
    pki = get_pki()
    # Unused extra certificates are allowed up to the limit...
    padding = [pki.other_ca.certificate] * (MAX_CERTIFICATE_CHAIN_LENGTH - 1)
    verify_server_chain([pki.server.certificate, *padding], "localhost", pki.roots, NOW)
    # ...and one more is refused before any verification.
    error = rejects_server([pki.server.certificate, *padding, pki.other_ca.certificate])
    assert error.alert == AlertDescription.bad_certificate
    assert error.reason == (
        f"certificate chain has {MAX_CERTIFICATE_CHAIN_LENGTH + 1} certificates; "
        f"at most {MAX_CERTIFICATE_CHAIN_LENGTH} are accepted"
    )
    with pytest.raises(CertificateError):
        parse_certificate_chain([der(pki.server)] * (MAX_CERTIFICATE_CHAIN_LENGTH + 1))
    assert len(parse_certificate_chain([der(pki.server)] * MAX_CERTIFICATE_CHAIN_LENGTH)) == 10


def test_roots_list_changes_are_seen() -> None:
    """The prepared Store is cached; a different or mutated roots list must not reuse it."""
    pki = get_pki()
    roots = [pki.ca.certificate]
    verify_server_chain([pki.server.certificate], "localhost", roots, NOW)
    roots[0] = pki.other_ca.certificate
    assert (
        rejects_server([pki.server.certificate], roots=roots).alert == AlertDescription.unknown_ca
    )
    verify_server_chain([pki.server_other_ca.certificate], "localhost", roots, NOW)


# --- server names ------------------------------------------------------------------------


def test_server_name_subject() -> None:
    assert server_name_subject("Example.COM.") == x509.DNSName("example.com")
    assert server_name_subject("bücher.example") == x509.DNSName("xn--bcher-kva.example")
    assert isinstance(server_name_subject("::1"), x509.IPAddress)
    for bad in ["", "foo bar", "a..b", "-a.example", "*.example", "a" * 64 + ".example"]:
        with pytest.raises(ConfigurationError, match="invalid server name"):
            server_name_subject(bad)


def test_invalid_server_name_during_verification_is_internal_error() -> None:
    error = rejects_server([get_pki().server.certificate], "foo bar")
    assert error.alert == AlertDescription.internal_error
    assert error.reason == "invalid server name 'foo bar'"


# --- pinned keys and unverified peers ----------------------------------------------------


def pin_forms(digest_hex: str) -> list[str]:
    digest = bytes.fromhex(digest_hex)
    return [
        digest_hex,
        digest_hex.upper(),
        ":".join(digest_hex[i : i + 2] for i in range(0, 64, 2)),
        "sha256:" + digest_hex,
        base64.b64encode(digest).decode(),
        "sha256/" + base64.b64encode(digest).decode(),
        base64.urlsafe_b64encode(digest).decode().rstrip("="),
    ]


def test_pin_forms_all_normalize_to_hex() -> None:
    digest = spki_sha256(get_pki().server.certificate)
    assert {normalize_pin(form) for form in pin_forms(digest)} == {digest}


@pytest.mark.parametrize(
    "bad", ["", "abc", "zz" * 32, "0" * 63, base64.b64encode(b"x" * 31).decode()]
)
def test_invalid_pin(bad: str) -> None:
    with pytest.raises(ConfigurationError, match="invalid public key pin"):
        normalize_pin(bad)


def test_pinned_accepts_without_a_chain_to_a_root() -> None:
    pki = get_pki()
    leaf = pki.server_other_ca.certificate
    for form in pin_forms(spki_sha256(leaf)):
        peer = verify_pinned([leaf], ["0" * 64, form], NOW)
        assert peer.leaf == leaf
        assert peer.spki_sha256 == spki_sha256(leaf)


def test_pinned_rejects_other_keys() -> None:
    pki = get_pki()
    digest = spki_sha256(pki.server.certificate)
    with pytest.raises(CertificateError) as excinfo:
        verify_pinned([pki.server.certificate], [spki_sha256(pki.client.certificate)])
    assert excinfo.value.alert == AlertDescription.bad_certificate
    assert excinfo.value.reason == f"public key sha256 {digest} is not pinned"


def test_invalid_pin_during_verification_is_internal_error() -> None:
    with pytest.raises(CertificateError) as excinfo:
        verify_pinned([get_pki().server.certificate], ["not a pin"])
    assert excinfo.value.alert == AlertDescription.internal_error
    assert "invalid public key pin 'not a pin'" in excinfo.value.reason


def test_pinned_checks_validity_when_given_a_time() -> None:
    expired = get_pki().server_expired.certificate
    verify_pinned([expired], [spki_sha256(expired)])
    with pytest.raises(CertificateError) as excinfo:
        verify_pinned([expired], [spki_sha256(expired)], NOW)
    assert excinfo.value.alert == AlertDescription.certificate_expired


def test_unverified_peer_only_describes() -> None:
    leaf = get_pki().server_other_ca.certificate
    assert unverified_peer([leaf]).subject == "CN=localhost"
    with pytest.raises(CertificateError):
        unverified_peer([])


# --- untrusted DER -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "data", [b"", b"\x30", b"\x30\x03\x02\x01\x01", b"not a certificate", b"\x30\x82\xff\xff"]
)
def test_malformed_der(data: bytes) -> None:
    with pytest.raises(CertificateError) as excinfo:
        parse_certificate_der(data)
    assert excinfo.value.alert == AlertDescription.bad_certificate
    assert excinfo.value.reason.startswith("malformed certificate: ")


def test_truncated_der() -> None:
    data = der(get_pki().server)
    with pytest.raises(CertificateError, match="malformed certificate"):
        parse_certificate_der(data[:-1])
    assert parse_certificate_der(data) == get_pki().server.certificate


def test_oversized_der() -> None:
    with pytest.raises(CertificateError) as excinfo:
        parse_certificate_der(b"\x30" * (MAX_CERTIFICATE_SIZE + 1))
    assert excinfo.value.alert == AlertDescription.bad_certificate
    assert f"at most {MAX_CERTIFICATE_SIZE}" in excinfo.value.reason


@pytest.mark.filterwarnings("ignore:Parsed a serial number")
@settings(max_examples=300, deadline=None)
@given(st.data())
def test_mutated_der_parses_or_is_bad_certificate(data: st.DataObject) -> None:
    original = bytearray(der(get_pki().server))
    for _ in range(data.draw(st.integers(1, 4))):
        original[data.draw(st.integers(0, len(original) - 1))] = data.draw(st.integers(0, 255))
    try:
        cert = parse_certificate_der(bytes(original))
    except CertificateError as exc:
        assert exc.alert == AlertDescription.bad_certificate
        return
    with contextlib.suppress(CertificateError):
        verify_server_chain([cert], "localhost", get_pki().roots, NOW)


# --- loading files -----------------------------------------------------------------------


def test_load_cert_chain_from_test_files() -> None:
    files = get_pki().files("server")
    chain, key = load_cert_chain(files.cert, files.key)
    assert chain == [get_pki().server.certificate]
    assert isinstance(key, ec.EllipticCurvePrivateKey)


def test_load_cert_chain_from_one_combined_file(tmp_path: Path) -> None:
    server = get_pki().server
    combined = tmp_path / "combined.pem"
    combined.write_bytes(server.cert_pem() + get_pki().ca.cert_pem() + server.key_pem())
    chain, _ = load_cert_chain(combined)
    assert chain == [server.certificate, get_pki().ca.certificate]


def test_key_not_matching_certificate() -> None:
    pki = get_pki()
    cert, key = pki.files("server").cert, pki.files("client").key
    with pytest.raises(ConfigurationError) as excinfo:
        load_cert_chain(cert, key)
    assert str(excinfo.value) == f"{key}: the private key does not match the certificate in {cert}"


def test_key_type_we_cannot_sign_with(tmp_path: Path) -> None:
    p384 = ec.generate_private_key(ec.SECP384R1())
    leaf = issue_certificate(get_pki().ca, common_name="p384", private_key=p384)
    (tmp_path / "c.pem").write_bytes(leaf.cert_pem())
    (tmp_path / "k.pem").write_bytes(leaf.key_pem())
    with pytest.raises(ConfigurationError, match=r"cannot sign TLS 1\.3 handshakes"):
        load_cert_chain(tmp_path / "c.pem", tmp_path / "k.pem")


def test_file_errors_name_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "missing.pem"
    with pytest.raises(ConfigurationError) as excinfo:
        load_certificate_chain(missing)
    assert (
        str(excinfo.value) == f"{missing}: cannot read certificate file: No such file or directory"
    )
    empty = tmp_path / "empty.pem"
    empty.write_bytes(b"")
    with pytest.raises(
        ConfigurationError, match=f"^{re.escape(str(empty))}: no certificate found$"
    ):
        load_certificate_chain(empty)
    garbage = tmp_path / "garbage.pem"
    garbage.write_bytes(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
    with pytest.raises(
        ConfigurationError, match=f"^{re.escape(str(garbage))}: malformed certificate: "
    ):
        load_certificate_chain(garbage)
    key_only = get_pki().files("server").key
    with pytest.raises(ConfigurationError, match="no PEM CERTIFICATE block found"):
        load_certificate_chain(key_only)
    with pytest.raises(ConfigurationError, match="no PEM PRIVATE KEY block found"):
        load_private_key(get_pki().files("server").cert)


def test_encrypted_private_key(tmp_path: Path) -> None:
    key = get_pki().server.private_key
    path = tmp_path / "encrypted.key"
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret"),
        )
    )
    assert load_private_key(path, "secret").public_key() == key.public_key()
    assert load_private_key(path, lambda: b"secret").public_key() == key.public_key()
    with pytest.raises(ConfigurationError, match="encrypted and no password was given"):
        load_private_key(path)
    with pytest.raises(ConfigurationError, match="wrong password or malformed key"):
        load_private_key(path, "wrong")
    with pytest.raises(ConfigurationError, match="the private key is not encrypted"):
        load_private_key(get_pki().files("server").key, "secret")


def test_load_roots_from_file_and_cadata() -> None:
    pki = get_pki()
    assert load_roots(pki.files("ca").cert, use_system=False) == [pki.ca.certificate]
    pem = pki.ca.cert_pem()
    assert load_roots(cadata=pem.decode(), use_system=False) == [pki.ca.certificate]
    both = load_roots(cadata=pem + pki.other_ca.cert_pem(), use_system=False)
    assert both == [pki.ca.certificate, pki.other_ca.certificate]
    assert load_roots(cadata=der(pki.ca) + der(pki.other_ca), use_system=False) == both
    with pytest.raises(ConfigurationError, match=r"^cadata: malformed certificate"):
        load_roots(cadata=b"\x30\x05abc", use_system=False)
    with pytest.raises(ConfigurationError, match=r"^cadata: no certificate found"):
        load_roots(cadata="", use_system=False)


def test_system_store_loads() -> None:
    roots = load_system_roots()
    assert all(isinstance(cert, x509.Certificate) for cert in roots)
    assert load_system_roots() is roots  # read once per process
    combined = load_roots()
    assert len(combined) == len(roots)


def test_system_store_skips_bad_entries(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pki = get_pki()
    bundle = tmp_path / "bundle.pem"
    bad = b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
    bundle.write_bytes(bad + pki.ca.cert_pem() + b"junk\n" + pki.other_ca.cert_pem())
    directory = tmp_path / "certs"
    directory.mkdir()
    (directory / "dup.pem").write_bytes(pki.ca.cert_pem())
    (directory / "bad.0").write_bytes(bad)
    (directory / "sub").mkdir()
    monkeypatch.setenv("SSL_CERT_FILE", str(bundle))
    monkeypatch.setenv("SSL_CERT_DIR", str(directory))
    load_system_roots.cache_clear()
    try:
        assert load_system_roots() == (pki.ca.certificate, pki.other_ca.certificate)
    finally:
        load_system_roots.cache_clear()


# --- development PKI ---------------------------------------------------------------------


def test_write_dev_pki(tmp_path: Path) -> None:
    paths = write_dev_pki(tmp_path / "pki")
    roots = load_roots(paths.ca_cert, use_system=False)
    server_chain, _ = load_cert_chain(paths.server_cert, paths.server_key)
    for name in ["localhost", "127.0.0.1", "::1"]:
        verify_server_chain(server_chain, name, roots, NOW)
    client_chain, _ = load_cert_chain(paths.client_cert, paths.client_key)
    verify_client_chain(client_chain, roots, NOW)
    for key in (paths.ca_key, paths.server_key, paths.client_key):
        assert stat.S_IMODE(os.stat(key).st_mode) == 0o600
    with pytest.raises(ConfigurationError, match="already exists"):
        write_dev_pki(tmp_path / "pki")
    write_dev_pki(tmp_path / "pki", overwrite=True)


@pytest.mark.parametrize("key_type", ["ecdsa", "ed25519", "rsa"])
def test_dev_leaves_of_each_key_type_verify(key_type: KeyType) -> None:
    ca = make_ca(key_type="rsa" if key_type == "rsa" else "ecdsa")
    server = make_server_cert(ca, ["svc.example"], ["192.0.2.1"], key_type=key_type)
    client = make_client_cert(ca, "alice.example", key_type=key_type)
    verify_server_chain([server.certificate], "svc.example", [ca.certificate], NOW)
    verify_server_chain([server.certificate], "192.0.2.1", [ca.certificate], NOW)
    verify_client_chain([client.certificate], [ca.certificate], NOW)


def test_dev_ca_extensions() -> None:
    ca = get_pki().ca.certificate
    constraints = ca.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical and constraints.value.ca
    usage = ca.extensions.get_extension_for_class(x509.KeyUsage)
    assert usage.critical and usage.value.key_cert_sign
    leaf = get_pki().server.certificate
    eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]


def test_dev_cert_argument_errors() -> None:
    ca = get_pki().ca
    with pytest.raises(ConfigurationError, match="needs at least one DNS name or IP"):
        make_server_cert(ca, [], [])
    with pytest.raises(ConfigurationError, match="not an IP address"):
        make_server_cert(ca, ["a.example"], ["not-an-ip"])
    with pytest.raises(ConfigurationError, match="needs a DNS name"):
        make_client_cert(ca, "Alice Smith")
    with pytest.raises(ConfigurationError, match="ends"):
        make_server_cert(ca, not_before=PAST_END, not_after=PAST)
