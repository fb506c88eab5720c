"""Allow-list rules against verified client identities."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import hashes

from mstls.devcerts import make_ca, make_client_cert
from mstlsd.identity import AllowList, Peer, RuleError


class FakeCertificate:
    """What the daemon reads from mstls's VerifiedPeer."""

    def __init__(
        self, cn: str, dns: tuple[str, ...] = (), ips: tuple[str, ...] = (), subject: str = ""
    ) -> None:
        self.subject = subject or f"CN={cn}"
        self.common_name = cn
        self.dns_names = dns
        self.ip_addresses = ips
        ca = make_ca()
        cert = make_client_cert(ca, cn if dns == () else dns[0]).certificate
        self.spki_sha256 = cert.fingerprint(hashes.SHA256()).hex()  # any 64 hex digits


def peer(cert: FakeCertificate | None) -> Peer:
    return Peer(("127.0.0.1", 1), "udp", "c1", cert)


ALICE = FakeCertificate("alice", ("alice.example",), ("10.0.0.7",))


def test_no_allow_list_accepts_everyone() -> None:
    rules = AllowList.from_config(None)
    assert rules.allows(peer(None)) and rules.allows(peer(ALICE))


def test_empty_allow_list_accepts_nobody() -> None:
    rules = AllowList.from_config([])
    assert not rules.allows(peer(None)) and not rules.allows(peer(ALICE))


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        ("*", True),
        ("cn:alice", True),
        ("cn:bob", False),
        ("dns:ALICE.example", True),
        ("dns:bob.example", False),
        ("ip:10.0.0.7", True),
        ("ip:10.0.0.8", False),
        ("subject:CN=alice", True),
        ("subject:CN=bob", False),
        ("alice.example", True),
        ("alice", True),
        ("bob", False),
    ],
)
def test_rules(entry: str, expected: bool) -> None:
    rules = AllowList.from_config([entry])
    assert rules.allows(peer(ALICE)) is expected
    assert not rules.allows(peer(None))  # an anonymous client never matches a rule


def test_spki_rule_with_or_without_colons() -> None:
    digest = ALICE.spki_sha256
    with_colons = ":".join(digest[i : i + 2] for i in range(0, 64, 2)).upper()
    for entry in (f"spki-sha256:{digest}", f"spki-sha256:{with_colons}"):
        assert AllowList.from_config([entry]).allows(peer(ALICE))
    assert not AllowList.from_config(["spki-sha256:" + "0" * 64]).allows(peer(ALICE))


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("", "non-empty"),
        ("cn:", "nothing after"),
        ("uri:x", "unknown prefix"),
        ("ip:not-an-ip", "not an IP"),
        ("spki-sha256:abc", "64 hex"),
    ],
)
def test_bad_rules(entry: str, message: str) -> None:
    with pytest.raises(RuleError, match=message):
        AllowList.from_config([entry])


CORP = FakeCertificate("alice", ("alice.example",), subject="CN=alice,OU=Ops+O=Example  Corp,C=DE")


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        ("cn:ALICE", True),  # names ignore case: cn: as dns: and bare names
        ("cn:Alice", True),
        ("ALICE.EXAMPLE", True),
        ("subject:CN=alice,OU=Ops+O=Example Corp,C=DE", True),
        ("subject:CN=alice, OU=Ops + O=Example Corp, C=DE", True),  # a space after a comma
        ("subject:cn=ALICE,o=example corp+ou=ops,c=de", True),  # case; order inside an RDN
        ("subject:CN=alice,OU=Ops+O=Example Corp", False),  # one RDN short
        ("subject:C=DE,OU=Ops+O=Example Corp,CN=alice", False),  # RDN order counts
        ("subject:CN=bob,OU=Ops+O=Example Corp,C=DE", False),
    ],
)
def test_names_compare_without_case_and_subjects_as_distinguished_names(
    entry: str, expected: bool
) -> None:
    """Issue 13: subject: was an exact string match and cn: case-sensitive."""
    assert AllowList.from_config([entry]).allows(peer(CORP)) is expected


def test_a_subject_rule_that_is_no_distinguished_name_is_refused_at_load() -> None:
    with pytest.raises(RuleError, match="not an RFC 4514 distinguished name"):
        AllowList.from_config(["subject:alice"])


def test_peer_address_follows_the_connection() -> None:
    """A QUIC peer may move (RFC 9000 §9): ``address`` reads the connection's current one."""
    current = [("127.0.0.1", 1)]
    peer = Peer(("127.0.0.1", 1), "udp", "c1", None, current_address=lambda: current[0])
    current[0] = ("127.0.0.2", 2)
    assert peer.address == ("127.0.0.2", 2)
    assert Peer(("127.0.0.1", 1), "udp", "c1").address == ("127.0.0.1", 1)
