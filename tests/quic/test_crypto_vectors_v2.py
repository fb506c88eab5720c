"""RFC 9369 Appendix A: QUIC version 2 packet protection vectors, byte for byte."""

from __future__ import annotations

import pytest

from mstls.exceptions import DecryptionFailed
from mstls.quic.crypto import (
    INITIAL_SUITE,
    HeaderProtection,
    PacketProtection,
    initial_protection,
    initial_secrets,
    next_generation_secret,
    packet_protection_keys,
)
from mstls.quic.retry import retry_integrity_tag, verify_retry
from mstls.quic.versions import VERSION_2
from mstls.tls.cipher_suites import CipherSuite
from mstls.wire.packet import (
    QUIC_VERSION_1,
    QUIC_VERSION_2,
    PacketType,
    encode_long_header,
    encode_retry,
    encode_short_header,
    parse_header,
)
from tests.quic.test_crypto_vectors import CLIENT_PAYLOAD, DCID, SERVER_SCID, unhex

V2 = QUIC_VERSION_2

# -- A.1 Keys ------------------------------------------------------------------------
CLIENT_INITIAL_SECRET = unhex("14ec9d6eb9fd7af83bf5a668bc17a7e283766aade7ecd0891f70f9ff7f4bf47b")
SERVER_INITIAL_SECRET = unhex("0263db1782731bf4588e7e4d93b7463907cb8cd8200b5da55a8bd488eafc37c1")
CLIENT_KEYS = (
    unhex("8b1a0bc121284290a29e0971b5cd045d"),
    unhex("91f73e2351d8fa91660e909f"),
    unhex("45b95e15235d6f45a6b19cbcb0294ba9"),
)
SERVER_KEYS = (
    unhex("82db637861d55e1d011f19ea71d5d2a7"),
    unhex("dd13c276499c0249d3310652"),
    unhex("edf6d05c83121201b436e16877593c3a"),
)

# -- A.2 Client Initial (the same CRYPTO frame and padding as RFC 9001 A.2) ----------
CLIENT_HEADER = unhex("d36b3343cf088394c8f03e5157080000449e00000002")
CLIENT_PN = 2
CLIENT_SAMPLE = unhex("ffe67b6abcdb4298b485dd04de806071")
CLIENT_MASK = unhex("94a0c95e80")
CLIENT_PACKET = unhex("""
d76b3343cf088394c8f03e5157080000 449ea0c95e82ffe67b6abcdb4298b485
dd04de806071bf03dceebfa162e75d6c 96058bdbfb127cdfcbf903388e99ad04
9f9a3dd4425ae4d0992cfff18ecf0fdb 5a842d09747052f17ac2053d21f57c5d
250f2c4f0e0202b70785b7946e992e58 a59ac52dea6774d4f03b55545243cf1a
12834e3f249a78d395e0d18f4d766004 f1a2674802a747eaa901c3f10cda5500
cb9122faa9f1df66c392079a1b40f0de 1c6054196a11cbea40afb6ef5253cd68
18f6625efce3b6def6ba7e4b37a40f77 32e093daa7d52190935b8da58976ff33
12ae50b187c1433c0f028edcc4c2838b 6a9bfc226ca4b4530e7a4ccee1bfa2a3
d396ae5a3fb512384b2fdd851f784a65 e03f2c4fbe11a53c7777c023462239dd
6f7521a3f6c7d5dd3ec9b3f233773d4b 46d23cc375eb198c63301c21801f6520
bcfb7966fc49b393f0061d974a2706df 8c4a9449f11d7f3d2dcbb90c6b877045
636e7c0c0fe4eb0f697545460c806910 d2c355f1d253bc9d2452aaa549e27a1f
ac7cf4ed77f322e8fa894b6a83810a34 b361901751a6f5eb65a0326e07de7c12
16ccce2d0193f958bb3850a833f7ae43 2b65bc5a53975c155aa4bcb4f7b2c4e5
4df16efaf6ddea94e2c50b4cd1dfe060 17e0e9d02900cffe1935e0491d77ffb4
fdf85290fdd893d577b1131a610ef6a5 c32b2ee0293617a37cbb08b847741c3b
8017c25ca9052ca1079d8b78aebd4787 6d330a30f6a8c6d61dd1ab5589329de7
14d19d61370f8149748c72f132f0fc99 f34d766c6938597040d8f9e2bb522ff9
9c63a344d6a2ae8aa8e51b7b90a4a806 105fcbca31506c446151adfeceb51b91
abfe43960977c87471cf9ad4074d30e1 0d6a7f03c63bd5d4317f68ff325ba3bd
80bf4dc8b52a0ba031758022eb025cdd 770b44d6d6cf0670f4e990b22347a7db
848265e3e5eb72dfe8299ad7481a4083 22cac55786e52f633b2fb6b614eaed18
d703dd84045a274ae8bfa73379661388 d6991fe39b0d93debb41700b41f90a15
c4d526250235ddcd6776fc77bc97e7a4 17ebcb31600d01e57f32162a8560cacc
7e27a096d37a1a86952ec71bd89a3e9a 30a2a26162984d7740f81193e8238e61
f6b5b984d4d3dfa033c1bb7e4f0037fe bf406d91c0dccf32acf423cfa1e70710
10d3f270121b493ce85054ef58bada42 310138fe081adb04e2bd901f2f13458b
3d6758158197107c14ebb193230cd115 7380aa79cae1374a7c1e5bbcb80ee23e
06ebfde206bfb0fcbc0edc4ebec30966 1bdd908d532eb0c6adc38b7ca7331dce
8dfce39ab71e7c32d318d136b6100671 a1ae6a6600e3899f31f0eed19e3417d1
34b90c9058f8632c798d4490da498730 7cba922d61c39805d072b589bd52fdf1
e86215c2d54e6670e07383a27bbffb5a ddf47d66aa85a0c6f9f32e59d85a44dd
5d3b22dc2be80919b490437ae4f36a0a e55edf1d0b5cb4e9a3ecabee93dfc6e3
8d209d0fa6536d27a5d6fbb17641cde2 7525d61093f1b28072d111b2b4ae5f89
d5974ee12e5cf7d5da4d6a31123041f3 3e61407e76cffcdcfd7e19ba58cf4b53
6f4c4938ae79324dc402894b44faf8af bab35282ab659d13c93f70412e85cb19
9a37ddec600545473cfb5a05e08d0b20 9973b2172b4d21fb69745a262ccde96b
a18b2faa745b6fe189cf772a9f84cbfc
""")

# -- A.3 Server Initial --------------------------------------------------------------
SERVER_PAYLOAD = unhex("""
02000000000600405a020000560303ee fce7f7b37ba1d1632e96677825ddf739
88cfc79825df566dc5430b9a045a1200 130100002e00330024001d00209d3c94
0d89690b84d08a60993c144eca684d10 81287c834d5311bcf32bb9da1a002b00
020304
""")
SERVER_HEADER = unhex("d16b3343cf0008f067a5502a4262b50040750001")
SERVER_PN = 1
SERVER_SAMPLE = unhex("6f05d8a4398c47089698baeea26b91eb")
SERVER_MASK = unhex("4dd92e91ea")
SERVER_PACKET = unhex("""
dc6b3343cf0008f067a5502a4262b500 4075d92faaf16f05d8a4398c47089698
baeea26b91eb761d9b89237bbf872630 17915358230035f7fd3945d88965cf17
f9af6e16886c61bfc703106fbaf3cb4c fa52382dd16a393e42757507698075b2
c984c707f0a0812d8cd5a6881eaf21ce da98f4bd23f6fe1a3e2c43edd9ce7ca8
4bed8521e2e140
""")

# -- A.4 Retry -----------------------------------------------------------------------
RETRY_PACKET = unhex("""
cf6b3343cf0008f067a5502a4262b574 6f6b656ec8646ce8bfe33952d9555436
65dcc7b6
""")

# -- A.5 ChaCha20-Poly1305 short header ----------------------------------------------
CHACHA = CipherSuite.CHACHA20_POLY1305_SHA256
CHACHA_SECRET = unhex("9ac312a7f877468ebe69422748ad00a15443f18203a07d6060f688f30f21632b")
CHACHA_KEY = unhex("3bfcddd72bcf02541d7fa0dd1f5f9eeea817e09a6963a0e6c7df0f9a1bab90f2")
CHACHA_IV = unhex("a6b5bc6ab7dafce30ffff5dd")
CHACHA_HP = unhex("d659760d2ba434a226fd37b35c69e2da8211d10c4f12538787d65645d5d1b8e2")
CHACHA_KU = unhex("c69374c49e3d2a9466fa689e49d476db5d0dfbc87d32ceeaa6343fd0ae4c7d88")
CHACHA_PN = 654360564
CHACHA_HEADER = unhex("4200bff4")
CHACHA_PAYLOAD = unhex("01")
CHACHA_SAMPLE = unhex("e7b6b932bc27d786f4bc2bb20f2162ba")
CHACHA_MASK = unhex("97580e32bf")
CHACHA_PACKET = unhex("5558b1c60ae7b6b932bc27d786f4bc2bb20f2162ba")


def test_a1_initial_secrets_and_keys() -> None:
    assert initial_secrets(DCID, V2) == (CLIENT_INITIAL_SECRET, SERVER_INITIAL_SECRET)
    assert packet_protection_keys(INITIAL_SUITE, CLIENT_INITIAL_SECRET, VERSION_2) == CLIENT_KEYS
    assert packet_protection_keys(INITIAL_SUITE, SERVER_INITIAL_SECRET, VERSION_2) == SERVER_KEYS


@pytest.mark.parametrize("is_client", [True, False])
def test_a1_initial_protection_directions(is_client: bool) -> None:
    send, receive = initial_protection(DCID, is_client=is_client, version=V2)
    client, server = (send, receive) if is_client else (receive, send)
    assert (client.key, client.iv, client.header_protection.key) == CLIENT_KEYS
    assert (server.key, server.iv, server.header_protection.key) == SERVER_KEYS


def test_a2_client_initial() -> None:
    header = encode_long_header(
        PacketType.INITIAL, DCID, b"", CLIENT_PN, 4, length=4 + len(CLIENT_PAYLOAD) + 16, version=V2
    )
    assert header == CLIENT_HEADER
    assert HeaderProtection(INITIAL_SUITE, CLIENT_KEYS[2]).mask(CLIENT_SAMPLE)[:5] == CLIENT_MASK
    client_send, _ = initial_protection(DCID, is_client=True, version=V2)
    packet = client_send.encrypt_packet(CLIENT_HEADER, CLIENT_PAYLOAD, CLIENT_PN)
    assert packet == CLIENT_PACKET
    parsed = parse_header(CLIENT_PACKET, 0, 0)
    assert parsed.packet_type is PacketType.INITIAL
    assert parsed.version == V2
    _, server_receive = initial_protection(DCID, is_client=False, version=V2)
    plain, payload, pn = server_receive.decrypt_packet(
        memoryview(CLIENT_PACKET), parsed.pn_offset, -1
    )
    assert (bytes(plain), payload, pn) == (CLIENT_HEADER, CLIENT_PAYLOAD, CLIENT_PN)


def test_a2_v1_keys_do_not_open_the_v2_packet() -> None:
    _, v1_receive = initial_protection(DCID, is_client=False, version=QUIC_VERSION_1)
    parsed = parse_header(CLIENT_PACKET, 0, 0)
    with pytest.raises(DecryptionFailed):
        v1_receive.decrypt_packet(memoryview(CLIENT_PACKET), parsed.pn_offset, -1)


def test_a3_server_initial() -> None:
    header = encode_long_header(
        PacketType.INITIAL,
        b"",
        SERVER_SCID,
        SERVER_PN,
        2,
        length=2 + len(SERVER_PAYLOAD) + 16,
        length_size=2,
        version=V2,
    )
    assert header == SERVER_HEADER
    assert HeaderProtection(INITIAL_SUITE, SERVER_KEYS[2]).mask(SERVER_SAMPLE)[:5] == SERVER_MASK
    server_send, _ = initial_protection(DCID, is_client=False, version=V2)
    assert server_send.encrypt_packet(SERVER_HEADER, SERVER_PAYLOAD, SERVER_PN) == SERVER_PACKET
    parsed = parse_header(SERVER_PACKET, 0, 0)
    assert (parsed.packet_type, parsed.scid) == (PacketType.INITIAL, SERVER_SCID)
    _, client_receive = initial_protection(DCID, is_client=True, version=V2)
    plain, payload, pn = client_receive.decrypt_packet(SERVER_PACKET, parsed.pn_offset, 0)
    assert (bytes(plain), payload, pn) == (SERVER_HEADER, SERVER_PAYLOAD, SERVER_PN)


def test_a4_retry() -> None:
    without_tag = encode_retry(b"", SERVER_SCID, b"token", unused_bits=0x0F, version=V2)
    assert without_tag == RETRY_PACKET[:-16]
    assert retry_integrity_tag(DCID, without_tag, V2) == RETRY_PACKET[-16:]
    parsed = parse_header(RETRY_PACKET, 0, 0)
    assert (parsed.packet_type, parsed.version, parsed.token) == (PacketType.RETRY, V2, b"token")
    assert verify_retry(DCID, RETRY_PACKET, V2)
    assert not verify_retry(DCID, RETRY_PACKET, QUIC_VERSION_1)  # the v1 key fails the v2 tag
    assert not verify_retry(DCID, RETRY_PACKET, 0x0A0A0A0A)


def test_a5_chacha20_short_header() -> None:
    assert packet_protection_keys(CHACHA, CHACHA_SECRET, VERSION_2) == (
        CHACHA_KEY,
        CHACHA_IV,
        CHACHA_HP,
    )
    assert next_generation_secret(CHACHA, CHACHA_SECRET, VERSION_2) == CHACHA_KU
    assert HeaderProtection(CHACHA, CHACHA_HP).mask(CHACHA_SAMPLE)[:5] == CHACHA_MASK
    assert encode_short_header(b"", CHACHA_PN, 3) == CHACHA_HEADER
    protection = PacketProtection(CHACHA, CHACHA_SECRET, version=VERSION_2)
    assert protection.encrypt_packet(CHACHA_HEADER, CHACHA_PAYLOAD, CHACHA_PN) == CHACHA_PACKET
    plain, payload, pn = protection.decrypt_packet(CHACHA_PACKET, 1, CHACHA_PN - 1)
    assert (bytes(plain), payload, pn) == (CHACHA_HEADER, CHACHA_PAYLOAD, CHACHA_PN)
    assert protection.next_generation().secret == CHACHA_KU
