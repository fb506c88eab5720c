"""Compatible version negotiation between QUIC v1 and v2 (RFC 9368, RFC 9369 §4)."""

from __future__ import annotations

import pytest

from mstls.codes import TransportErrorCode
from mstls.exceptions import ConfigurationError, ProtocolError, TransportParameterError
from mstls.quic.config import QuicConfig
from mstls.quic.negotiation import (
    check_client_information,
    check_server_information,
    choose_version,
)
from mstls.quic.version_retry import check_reacted_server_information as check
from mstls.wire.packet import (
    QUIC_VERSION_1,
    QUIC_VERSION_2,
    PacketType,
    encode_version_negotiation,
    parse_header,
)
from mstls.wire.transport_params import (
    TransportParameters,
    VersionInformation,
    decode_transport_parameters,
    encode_transport_parameters,
)
from tests.quic.fuzz_checks import check_still_works
from tests.quic.pair import Pair, client_config, server_config

V1, V2 = QUIC_VERSION_1, QUIC_VERSION_2


class Recorder(Pair):
    """A pair that remembers the version of every long header on the wire."""

    def __init__(self, **kw: object) -> None:
        self.seen: list[tuple[bool, PacketType, int]] = []
        super().__init__(**kw)  # type: ignore[arg-type]

    def _send(self, data: bytes, to_server: bool, address: object = None) -> None:
        pos = 0
        while pos < len(data) and data[pos] & 0x80:
            header = parse_header(data, pos, 8)
            if header.version:
                self.seen.append((to_server, header.packet_type, header.version))
            pos = header.packet_end
        super()._send(data, to_server, address)


def versions_seen(pair: Recorder, to_server: bool, packet_type: PacketType) -> list[int]:
    return [v for s, t, v in pair.seen if s is to_server and t is packet_type]


def test_server_moves_a_v1_client_that_offers_v2() -> None:
    pair = Recorder(
        client=client_config(versions=(V1, V2)), server=server_config(versions=(V2, V1))
    )
    pair.handshake()
    assert pair.client.version == pair.server.version == V2
    assert pair.client.original_version == V1
    client_initials = versions_seen(pair, True, PacketType.INITIAL)
    assert client_initials[0] == V1  # the first flight, before the server answered
    assert set(versions_seen(pair, False, PacketType.INITIAL)) == {V2}
    assert set(versions_seen(pair, False, PacketType.HANDSHAKE)) == {V2}
    assert set(versions_seen(pair, True, PacketType.HANDSHAKE)) == {V2}
    check_still_works(pair)


def test_a_v1_only_client_stays_in_v1() -> None:
    pair = Recorder(client=client_config(versions=(V1,)), server=server_config(versions=(V2, V1)))
    pair.handshake()
    assert pair.client.version == pair.server.version == V1
    assert {v for _, _, v in pair.seen} == {V1}
    check_still_works(pair)


def test_a_server_that_prefers_v1_keeps_v1() -> None:
    pair = Recorder(client=client_config(versions=(V1, V2)), server=server_config())
    pair.handshake()
    assert pair.client.version == pair.server.version == V1
    check_still_works(pair)


def test_a_client_can_start_in_v2() -> None:
    pair = Recorder(client=client_config(versions=(V2,)), server=server_config())
    pair.handshake()
    assert pair.client.version == pair.server.version == V2
    assert {v for _, _, v in pair.seen} == {V2}
    check_still_works(pair)


def test_server_moves_a_v2_client_to_v1_when_it_prefers_v1() -> None:
    """Compatible negotiation works in both directions (RFC 9369 §4)."""
    pair = Recorder(client=client_config(versions=(V2, V1)), server=server_config())
    pair.handshake()
    assert pair.client.version == pair.server.version == V1
    assert versions_seen(pair, True, PacketType.INITIAL)[0] == V2
    assert set(versions_seen(pair, False, PacketType.HANDSHAKE)) == {V1}
    check_still_works(pair)


@pytest.mark.parametrize("versions", [(V2, V1), (V1, V2)])
def test_retry_stays_in_the_original_version(versions: tuple[int, int]) -> None:
    pair = Recorder(
        client=client_config(versions=versions), server=server_config(versions=(V2, V1)), retry=True
    )
    pair.handshake()
    assert pair.client.retry_source_cid is not None
    assert set(versions_seen(pair, False, PacketType.RETRY)) == {versions[0]}
    assert pair.client.version == V2
    check_still_works(pair)


def test_version_information_round_trip_and_malformed() -> None:
    params = TransportParameters(
        initial_source_connection_id=b"x",
        version_information=VersionInformation(V1, (V1, V2)),
    )
    assert decode_transport_parameters(encode_transport_parameters(params)) == params
    for bad in (b"", b"\x00\x00\x00\x01\x00", b"\x00\x00\x00\x00", b"\x00\x00\x00\x01" + bytes(4)):
        raw = bytes((0x11, len(bad))) + bad
        with pytest.raises(TransportParameterError):
            decode_transport_parameters(raw)


def test_choice_and_checks() -> None:
    assert choose_version((V2, V1), V1, VersionInformation(V1, (V1, V2))) == V2
    assert choose_version((V2, V1), V1, VersionInformation(V1, (V1,))) == V1
    assert choose_version((V2, V1), V1, None) == V1
    assert choose_version((V1,), V2, VersionInformation(V2, (V2, V1))) == V1
    check_client_information(VersionInformation(V1, (V1, V2)), V1)
    check_server_information(VersionInformation(V2, (V2, V1)), V2, V1)
    check_server_information(None, V1, V1)
    failures = [
        lambda: check_client_information(VersionInformation(V2, (V2,)), V1),  # downgrade
        lambda: check_server_information(VersionInformation(V1, (V1,)), V2, V1),
        lambda: check_server_information(None, V2, V1),  # switched without saying so
    ]
    for failure in failures:
        with pytest.raises(ProtocolError) as info:
            failure()
        assert info.value.error_code == TransportErrorCode.VERSION_NEGOTIATION_ERROR


def test_versions_are_checked_when_configured() -> None:
    with pytest.raises(ConfigurationError, match="versions"):
        QuicConfig(tls=server_config().tls, versions=(0x0A0A0A0A,))
    with pytest.raises(ConfigurationError, match="versions"):
        QuicConfig(tls=server_config().tls, versions=())


def test_a_client_can_start_in_v1_and_prefer_v2() -> None:
    config = client_config(versions=(V2, V1), initial_version=V1)
    assert config.start_version == V1
    params = config.transport_parameters(b"x")
    assert params.version_information == VersionInformation(V1, (V2, V1))
    pair = Recorder(client=config, server=server_config(versions=(V2, V1)))
    pair.handshake()
    assert versions_seen(pair, True, PacketType.INITIAL)[0] == V1
    assert pair.client.version == pair.server.version == V2
    with pytest.raises(ConfigurationError, match="initial_version"):
        client_config(versions=(V2,), initial_version=V1)


# -- incompatible version negotiation (RFC 9000 §6.2, RFC 9368 §2.2, §4) -------------------
def test_client_retries_in_a_version_the_server_lists() -> None:
    """A v2-first client meets a v1-only server: VN, then a new attempt in v1."""
    pair = Recorder(client=client_config(versions=(V2, V1)), server=server_config(versions=(V1,)))
    first_dcid = pair.client.original_dcid
    pair.handshake()
    assert pair.client.reacted_to_version_negotiation == V2
    assert pair.client.version == pair.server.version == V1
    assert pair.client.original_dcid != first_dcid  # a new attempt: a new DCID
    initials = versions_seen(pair, True, PacketType.INITIAL)
    switch = initials.index(V1)  # the first flight (maybe two Initials) in v2, then v1 only
    assert switch > 0 and set(initials[:switch]) == {V2} and set(initials[switch:]) == {V1}
    check_still_works(pair)


def _vn_for(pair: Pair, versions: tuple[int, ...], *, dcid: bytes | None = None) -> bytes:
    client = pair.client
    return encode_version_negotiation(
        client.host_cid if dcid is None else dcid, client.peer_cids.current, versions
    )


def _client_alone(**kw: object) -> Pair:
    pair = Pair(client=client_config(**kw))  # type: ignore[arg-type]
    pair.start()
    pair.client.datagrams_to_send(pair.now)  # the first flight, never delivered
    return pair


def test_no_common_version_fails_with_a_clear_error() -> None:
    pair = _client_alone(versions=(V2,))
    pair.client.receive_datagram(_vn_for(pair, (0x0A0A0A0A, 0xFF00001D)), None, pair.now)
    assert pair.client.is_terminated
    events = [pair.client.next_event() for _ in range(3)]
    closed = [e for e in events if e is not None and hasattr(e, "error_code")]
    assert closed[0].error_code == TransportErrorCode.VERSION_NEGOTIATION_ERROR
    assert "no QUIC version in common" in closed[0].reason
    assert "0x0a0a0a0a" in closed[0].reason and "0x6b3343cf" in closed[0].reason


def test_vn_listing_the_attempted_version_or_wrong_ids_is_ignored() -> None:
    pair = _client_alone(versions=(V2, V1))
    pair.client.receive_datagram(_vn_for(pair, (V2, V1)), None, pair.now)  # downgrade bait
    pair.client.receive_datagram(_vn_for(pair, (V1,), dcid=b"12345678"), None, pair.now)
    assert pair.client.reacted_to_version_negotiation is None
    assert pair.client.version == V2 and not pair.client.is_terminated


def test_only_one_vn_is_acted_on() -> None:
    pair = _client_alone(versions=(V2, V1))
    pair.client.receive_datagram(_vn_for(pair, (V1,)), None, pair.now)
    assert pair.client.version == V1
    pair.client.receive_datagram(_vn_for(pair, (0x0A0A0A0A,)), None, pair.now)
    assert not pair.client.is_terminated and pair.client.version == V1


def test_reacted_client_validates_the_servers_available_versions() -> None:
    """RFC 9368 §4 downgrade prevention after a VN."""
    check(VersionInformation(V1, (V1,)), (V2, V1), V1, V1)  # the server really has only v1
    failures = [
        lambda: check(None, (V2, V1), V1, V1),  # missing
        lambda: check(VersionInformation(V1, (V2, V1)), (V2, V1), V1, V1),  # forged VN
        lambda: check(VersionInformation(V1, ()), (V2, V1), V1, V1),  # empty
    ]
    for failure in failures:
        with pytest.raises(ProtocolError) as info:
            failure()
        assert info.value.error_code == TransportErrorCode.VERSION_NEGOTIATION_ERROR


def test_forged_vn_against_a_server_with_both_versions_is_caught() -> None:
    """An attacker's VN moves a v2-first client to v1; the real server lists v2 in
    its version_information, so the client closes with VERSION_NEGOTIATION_ERROR."""
    forged: list[bool] = []

    def tamper(data: bytes, to_server: bool) -> bytes | None:
        if to_server and not forged:
            forged.append(True)
            pair.client.receive_datagram(_vn_for(pair, (V1,)), None, pair.now)
            return None  # the real first flight never arrives
        return data

    pair = Pair(
        client=client_config(versions=(V2, V1)),
        server=server_config(versions=(V2, V1)),
        tamper=tamper,
    )
    pair.start()
    pair.run_until(lambda: pair.client.is_terminated, max_time=20)
    assert pair.client.reacted_to_version_negotiation == V2
    closes = [e for e in pair.client_events if hasattr(e, "error_code")]
    assert closes[0].error_code == TransportErrorCode.VERSION_NEGOTIATION_ERROR
    assert "downgrade" in closes[0].reason
