"""PSK resumption with stateless tickets between our two engines (RFC 8446 §2.2, §4.2.11, §4.6.1).

Sans-I/O pairs (:class:`tests.tls.driver.EnginePair`): the first handshake
issues tickets that land in the client's store, the second offers one.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import attrs
import pytest
from cryptography.hazmat.primitives import hashes

from mstls.codes import AlertDescription
from mstls.exceptions import CertificateError, HandshakeError
from mstls.tls.cipher_suites import CipherSuite
from mstls.tls.extensions import ExtensionType, HandshakeType
from mstls.tls.groups import NamedGroup
from mstls.tls.key_schedule import KeySchedule
from mstls.tls.messages import ClientHello, NewSessionTicket, frame_message
from mstls.tls.psk import (
    binder_key,
    compute_binder,
    encode_offered_psks,
    parse_offered_psks,
    psk_from_ticket,
)
from mstls.tls.states import Epoch, HandshakeState, Role
from mstls.tls.ticket_store import FileTicketStore, MemoryTicketStore
from mstls.tls.tickets import MAX_TICKET_LIFETIME, TICKET_KEY_LENGTH, TicketKeyRing
from mstls.tls.x509_fields import spki_sha256
from tests.certs import get_pki
from tests.tls.driver import (
    EnginePair,
    Message,
    client_config,
    memory_pair,
    pump,
    server_config,
)

KEY_A = bytes(range(TICKET_KEY_LENGTH))
KEY_B = bytes(range(1, TICKET_KEY_LENGTH + 1))
#: Inside the test PKI's validity; every engine of a test uses the same clock.
T0 = datetime.now(UTC)


def configs(
    store: MemoryTicketStore,
    keys: list[bytes] | None = None,
    *,
    when: datetime = T0,
    client: dict[str, Any] | None = None,
    server: dict[str, Any] | None = None,
) -> tuple[Any, Any]:
    pki = get_pki()
    ring = TicketKeyRing(keys or [KEY_A])
    return (
        client_config(pki, ticket_store=store, verify_time=when, **(client or {})),
        server_config(pki, ticket_keys=ring, verify_time=when, **(server or {})),
    )


def handshake(store: MemoryTicketStore, keys: list[bytes] | None = None, **kw: Any) -> EnginePair:
    pair = EnginePair(*configs(store, keys, **kw))
    pair.run()
    assert pair.client.handshake_complete and pair.server.handshake_complete
    return pair


def sent_types(pair: EnginePair, role: Role) -> list[int]:
    """Message types ``role`` received."""
    return [step.msg_type for step in pair.trace if step.role is role]


def test_first_handshake_stores_the_servers_tickets() -> None:
    store = MemoryTicketStore()
    pair = handshake(store)
    assert not pair.client.resumed and not pair.server.resumed
    assert sent_types(pair, Role.CLIENT).count(HandshakeType.new_session_ticket) == 2
    assert len(store) == 2


def test_resumed_handshake_sends_no_certificate() -> None:
    store = MemoryTicketStore()
    first = handshake(store)
    second = handshake(store)
    assert second.client.resumed and second.server.resumed
    received = sent_types(second, Role.CLIENT)
    assert HandshakeType.certificate not in received
    assert HandshakeType.certificate_verify not in received
    # the server's identity is the one verified when the ticket was issued
    assert second.client.peer is not None and first.client.peer is not None
    assert second.client.peer.spki_sha256 == first.client.peer.spki_sha256
    # single use: one ticket taken, two new ones stored
    assert len(store) == 3


def test_ticket_from_another_server_key_falls_back_to_a_full_handshake() -> None:
    store = MemoryTicketStore()
    handshake(store, [KEY_A])
    second = handshake(store, [KEY_B])
    assert not second.client.resumed and not second.server.resumed
    assert HandshakeType.certificate in sent_types(second, Role.CLIENT)


def test_rotated_key_still_opens_tickets_of_the_previous_key() -> None:
    store = MemoryTicketStore()
    handshake(store, [KEY_A])
    second = handshake(store, [KEY_B, KEY_A])
    assert second.client.resumed and second.server.resumed


def test_expired_ticket_is_not_offered() -> None:
    store = MemoryTicketStore()
    handshake(store, server={"ticket_lifetime": 60})
    later = T0 + timedelta(seconds=61)
    second = handshake(store, when=later)
    assert not second.client.resumed
    assert len(store) == 2  # the expired ones were dropped, the new ones kept


def test_server_refuses_a_ticket_past_its_lifetime() -> None:
    """The client's clock says the ticket is fresh; the server's says it is not."""
    store = MemoryTicketStore()
    handshake(store, server={"ticket_lifetime": 60})
    client, _ = configs(store)
    _, server = configs(store, when=T0 + timedelta(seconds=61))
    pair = EnginePair(client, server)
    pair.run()
    assert pair.client.handshake_complete
    assert not pair.server.resumed and not pair.client.resumed


def test_ticket_age_outside_the_window_is_declined() -> None:
    """An obfuscated age that disagrees with ours by more than the tolerance."""
    store = MemoryTicketStore()
    handshake(store)
    client, _ = configs(store, when=T0 + timedelta(seconds=30))
    _, server = configs(store)
    pair = EnginePair(client, server)
    pair.run()
    assert not pair.server.resumed


def test_tampered_binder_aborts_with_decrypt_error() -> None:
    """RFC 8446 §4.2.11: a PSK the server would accept with a bad binder aborts."""
    store = MemoryTicketStore()
    handshake(store)
    pair = EnginePair(*configs(store))
    message = pair.next_message(Role.SERVER)
    assert message is not None and message.msg_type == HandshakeType.client_hello
    hello = ClientHello.parse(message.body)
    offered = parse_offered_psks(hello.extensions[ExtensionType.pre_shared_key])
    binder = bytes([offered.binders[0][0] ^ 1]) + offered.binders[0][1:]
    hello.extensions[ExtensionType.pre_shared_key] = encode_offered_psks(
        offered.identities, [binder]
    )
    pair.inbox[Role.SERVER].popleft()
    with pytest.raises(HandshakeError) as info:
        pair.feed(Role.SERVER, message.with_body(hello.encode()))
    assert info.value.alert == AlertDescription.decrypt_error


def test_tampered_ticket_falls_back_to_a_full_handshake() -> None:
    """A ticket whose ciphertext was changed does not open: a full handshake."""
    store = MemoryTicketStore()
    handshake(store)
    for tickets in store._tickets.values():
        tickets[:] = [
            attrs.evolve(t, ticket=t.ticket[:-1] + bytes([t.ticket[-1] ^ 1])) for t in tickets
        ]
    pair = EnginePair(*configs(store))
    pair.deliver(Role.SERVER)
    assert pair.server.state is HandshakeState.WAIT_FINISHED
    assert not pair.server.resumed
    # the client learns from the ServerHello that it was declined and verifies the chain
    pair.run()
    assert pair.client.handshake_complete and not pair.client.resumed
    assert HandshakeType.certificate in sent_types(pair, Role.CLIENT)


def test_other_alpn_or_server_name_is_not_resumed() -> None:
    store = MemoryTicketStore()
    handshake(store)
    # the client keys tickets by server name: another name finds none to offer
    other = handshake(store, client={"server_name": "127.0.0.1", "verify_peer": False})
    assert not other.client.resumed
    # a server that would pick another protocol declines the ticket
    second = handshake(
        store,
        client={"alpn_protocols": ["mstls-test", "other"]},
        server={"alpn_protocols": ["other", "mstls-test"]},
    )
    assert not second.server.resumed


def test_client_certificate_identity_survives_resumption() -> None:
    pki = get_pki()
    store = MemoryTicketStore()
    mtls_client = {
        "certificate_chain": [pki.client.certificate],
        "private_key": pki.client.private_key,
    }
    mtls_server = {"require_client_certificate": True}
    first = handshake(store, client=mtls_client, server=mtls_server)
    assert first.server.peer is not None
    second = handshake(store, client=mtls_client, server=mtls_server)
    assert second.server.resumed
    assert second.server.peer is not None
    assert second.server.peer.spki_sha256 == first.server.peer.spki_sha256


def test_resumption_over_the_tls_record_layer() -> None:
    """The same engines through mstls.tls.tcp (QMux's TLS)."""
    store = MemoryTicketStore()
    for expected in (False, True):
        client, server = memory_pair(*configs(store))
        pump(client, server)
        assert client.handshake_complete and server.handshake_complete
        assert client.handshake.resumed is expected and server.handshake.resumed is expected


def test_quic_and_tcp_tickets_are_kept_apart() -> None:
    store = MemoryTicketStore()
    pair = EnginePair(*configs(store), transport_parameters=(b"", b""))
    pair.run()
    assert {key[2] for key in store._tickets} == {"quic"}
    tcp = handshake(store)
    assert not tcp.client.resumed


def test_file_store_keeps_tickets_across_instances(tmp_path: Path) -> None:
    path = tmp_path / "tickets.json"
    handshake(FileTicketStore(path))
    assert path.stat().st_mode & 0o777 == 0o600
    second = handshake(FileTicketStore(path))
    assert second.client.resumed
    assert len(FileTicketStore(path)) == 3


def test_file_store_ignores_a_corrupt_file(tmp_path: Path) -> None:
    path = tmp_path / "tickets.json"
    path.write_text("{not json")
    store = FileTicketStore(path)
    assert len(store) == 0
    handshake(store)
    assert len(FileTicketStore(path)) == 2


def test_memory_store_is_bounded() -> None:
    store = MemoryTicketStore(max_tickets=3)
    for _ in range(3):
        handshake(store)
    assert len(store) == 3


def test_no_tickets_for_a_client_that_cannot_use_them() -> None:
    """Without psk_key_exchange_modes (no ticket store) the server sends none (§4.2.9)."""
    pki = get_pki()
    server = server_config(pki, ticket_keys=TicketKeyRing([KEY_A]))
    pair = EnginePair(client_config(pki), server)
    pair.run()
    assert pair.client.handshake_complete
    assert HandshakeType.new_session_ticket not in sent_types(pair, Role.CLIENT)


# -- RFC 8448 §3-§4: the resumed handshake's PSK and binder -------------------------------
def _h(text: str) -> bytes:
    return bytes.fromhex(text.replace(" ", ""))


RFC8448_RESUMPTION_MASTER = _h(
    "7d f2 35 f2 03 1d 2a 05 12 87 d0 2b 02 41 b0 bf "
    "da f8 6c c8 56 23 1f 2d 5a ba 46 c4 34 ec 19 6c"
)
RFC8448_PSK = _h(
    "4e cd 0e b6 ec 3b 4d 87 f5 d6 02 8f 92 2c a4 c5 "
    "85 1a 27 7f d4 13 11 c9 e6 2d 2c 94 92 e1 c4 f3"
)
RFC8448_EARLY_SECRET = _h(
    "9b 21 88 e9 b2 fc 6d 64 d7 1d c3 29 90 0e 20 bb "
    "41 91 50 00 f6 78 aa 83 9c bb 79 7c b7 d8 33 2c"
)
RFC8448_BINDER_KEY = _h(
    "69 fe 13 1a 3b ba d5 d6 3c 64 ee bc c3 0e 39 5b "
    "9d 81 07 72 6a 13 d0 74 e3 89 db c8 a4 e4 72 56"
)
RFC8448_BINDER_HASH = _h(
    "63 22 4b 2e 45 73 f2 d3 45 4c a8 4b 9d 00 9a 04 "
    "f6 be 9e 05 71 1a 83 96 47 3a ef a0 1e 92 4a 14"
)
RFC8448_BINDER = _h(
    "3a dd 4f b2 d8 fd f8 22 a0 ca 3c f7 67 8e f5 e8 "
    "8d ae 99 01 41 c5 92 4d 57 bb 6f a3 1b 9e 5f 9d"
)


def test_rfc8448_ticket_psk_early_secret_and_binder() -> None:
    algorithm = hashes.SHA256()
    psk = psk_from_ticket(algorithm, RFC8448_RESUMPTION_MASTER, b"\x00\x00")
    assert psk == RFC8448_PSK
    schedule = KeySchedule(CipherSuite.AES_128_GCM_SHA256)
    schedule.use_psk(psk)
    assert schedule.secret == RFC8448_EARLY_SECRET
    assert binder_key(algorithm, psk) == RFC8448_BINDER_KEY
    assert compute_binder(algorithm, psk, RFC8448_BINDER_HASH) == RFC8448_BINDER


def test_a_client_whose_pin_was_removed_is_not_resumed() -> None:
    pki = get_pki()
    store = MemoryTicketStore()
    mtls_client = {
        "certificate_chain": [pki.client.certificate],
        "private_key": pki.client.private_key,
    }
    pin = spki_sha256(pki.client.certificate)
    first = handshake(store, client=mtls_client, server={"pinned_sha256": [pin]})
    assert first.server.peer is not None
    still = handshake(store, client=mtls_client, server={"pinned_sha256": [pin]})
    assert still.server.resumed
    other = spki_sha256(pki.server.certificate)
    with pytest.raises(CertificateError):  # full handshake: the client's key is not pinned
        handshake(store, client=mtls_client, server={"pinned_sha256": [other]})


def test_resumption_after_a_hello_retry_request() -> None:
    """§4.1.4: the second ClientHello carries the PSK with a binder over the new transcript."""
    retry: dict[str, Any] = {
        "client": {"key_share_groups": [NamedGroup.x25519]},
        "server": {"groups": [NamedGroup.secp256r1, NamedGroup.x25519]},
    }
    store = MemoryTicketStore()
    handshake(store, **retry)
    second = handshake(store, **retry)
    assert second.client._hello_retried  # type: ignore[attr-defined]
    assert second.client.resumed and second.server.resumed


def test_quic_handshakes_resume_too() -> None:
    store = MemoryTicketStore()
    for expected in (False, True):
        pair = EnginePair(*configs(store), transport_parameters=(b"\x01", b"\x02"))
        pair.run()
        assert pair.client.resumed is expected and pair.server.resumed is expected
        assert pair.client.peer_transport_parameters == b"\x02"


def test_zero_lifetime_ticket_is_not_kept_and_long_ones_are_capped() -> None:
    store = MemoryTicketStore()
    pair = handshake(store)
    before = len(store)
    for lifetime in (0, 30 * 24 * 3600):
        ticket = NewSessionTicket(lifetime, 1, bytes((lifetime % 7,)), b"opaque", {})
        raw = frame_message(HandshakeType.new_session_ticket, ticket.encode())
        pair.feed(Role.CLIENT, Message(Epoch.ONE_RTT, raw))
    assert len(store) == before + 1
    newest = store.take(("localhost", "mstls-test", "tcp"), pair.client.now_ms())
    assert newest is not None and newest.ticket == b"opaque"
    assert newest.lifetime == MAX_TICKET_LIFETIME
