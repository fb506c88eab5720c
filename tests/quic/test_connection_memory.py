"""Our QUIC client against our QUIC server in memory, with a virtual clock."""

from __future__ import annotations

import hashlib
import itertools
import json
from typing import Any

import pytest

from mstls.core.events import ConnectionTerminatedEvent, HandshakeCompletedEvent
from mstls.exceptions import ConfigurationError
from mstls.quic.crypto import OneRttKeys
from mstls.quic.endpoint import ServerEndpoint
from mstls.quic.quic_lb import QuicLbConfig, decode_server_id
from mstls.wire.packet import (
    QUIC_VERSION_1,
    QUIC_VERSION_2,
    PacketType,
    encode_version_negotiation,
    parse_header,
)

from .pair import CLIENT_ADDR, SERVER_ADDR, Pair, client_config, server_config


def test_handshake() -> None:
    pair = Pair()
    pair.handshake()
    done = [e for e in pair.client_events if isinstance(e, HandshakeCompletedEvent)]
    assert done and done[0].alpn_protocol == "mstls-test"


def transfer(pair: Pair, size: int) -> None:
    client = pair.client
    sid = client.streams.open_stream()
    payload = bytes(i % 251 for i in range(size))
    offset = 0
    received = bytearray()
    server_sid = None

    def progress() -> bool:
        nonlocal offset, server_sid
        if offset < len(payload):
            offset += client.streams.write(sid, payload[offset : offset + 65536], fin=False)
            if offset == len(payload):
                client.streams.write(sid, b"", fin=True)
        server = pair.server
        if server_sid is None:
            pending = server.streams.accept_pending()
            if pending:
                server_sid = pending[0]
        if server_sid is not None:
            data, fin = server.streams.read(server_sid, 1 << 20)
            received.extend(data)
            return fin
        return False

    pair.run_until(progress, max_time=120)
    assert hashlib.sha256(received).digest() == hashlib.sha256(payload).digest()


def test_transfer() -> None:
    pair = Pair()
    pair.handshake()
    transfer(pair, 1 << 20)


def test_transfer_with_loss() -> None:
    pair = Pair(loss=0.1, seed=7)
    pair.handshake()
    transfer(pair, 1 << 20)


def test_close_seen_by_peer() -> None:
    pair = Pair()
    pair.handshake()
    pair.client.close(7, "bye", now=pair.now)
    pair.run_until(
        lambda: any(isinstance(e, ConnectionTerminatedEvent) for e in pair.server_events)
    )
    event = next(e for e in pair.server_events if isinstance(e, ConnectionTerminatedEvent))
    assert (event.error_code, event.reason, event.by_peer, event.is_application) == (
        7,
        "bye",
        True,
        True,
    )


# -- lifecycle with a virtual clock -------------------------------------------------------
def terminated(events: list[Any]) -> ConnectionTerminatedEvent | None:
    return next((e for e in events if isinstance(e, ConnectionTerminatedEvent)), None)


def test_blackhole_ends_by_idle_timeout_at_the_configured_time() -> None:
    pair = Pair(client=client_config(idle_timeout=2.0), server=server_config(idle_timeout=5.0))
    pair.handshake()
    pair.blackhole = True
    start = pair.now
    pair.run_until(lambda: terminated(pair.client_events) is not None, max_time=30)
    event = terminated(pair.client_events)
    assert event is not None and event.kind == "idle_timeout" and not event.by_peer
    # RFC 9000 §10.1: the negotiated minimum (2 s), or three PTOs if longer.
    elapsed = pair.now - start
    assert 2.0 - 0.01 <= elapsed <= 2.0 + 3 * pair.client.pto_interval() + 0.01
    pair.run_until(lambda: terminated(pair.server_events) is not None, max_time=30)
    assert terminated(pair.server_events).kind == "idle_timeout"  # type: ignore[union-attr]


def test_handshake_timeout_when_nothing_answers() -> None:
    pair = Pair(client=client_config(handshake_timeout=3.0))
    pair.blackhole = True
    pair.start()
    start = pair.now
    pair.run_until(lambda: terminated(pair.client_events) is not None, max_time=30)
    event = terminated(pair.client_events)
    assert event is not None and event.kind == "handshake_timeout"
    assert abs(pair.now - start - 3.0) < 0.01


def test_handshake_retransmits_with_exponential_backoff() -> None:
    """Initial retransmissions (PTO probes) into silence are spaced ever wider."""
    sent: list[float] = []
    pair = Pair(client=client_config(handshake_timeout=20.0))

    def drop_and_record(data: bytes, to_server: bool) -> bytes | None:
        if to_server:
            sent.append(pair.now)
        return None

    pair.tamper = drop_and_record
    pair.start()
    pair.run_until(lambda: len(sent) >= 5, max_time=25)
    gaps = [b - a for a, b in itertools.pairwise(sent) if b - a > 0.001]
    assert all(later >= 1.9 * earlier for earlier, later in itertools.pairwise(gaps))


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_handshake_completes_at_30_percent_loss(seed: int) -> None:
    pair = Pair(loss=0.3, seed=seed)
    pair.start()
    pair.run_until(lambda: pair.client.is_established, max_time=60)


def test_retry_then_transfer() -> None:
    pair = Pair(retry=True)
    pair.handshake()
    assert pair.client.retry_source_cid is not None
    assert pair.server.retry_source_cid == pair.client.retry_source_cid
    transfer(pair, 100_000)


def test_key_update_keeps_data_flowing() -> None:
    pair = Pair()
    pair.handshake()
    pair.client.request_key_update()
    transfer(pair, 300_000)
    client_keys = pair.client.spaces[2].send_keys
    server_keys = pair.server.spaces[2].recv_keys
    assert isinstance(client_keys, OneRttKeys) and isinstance(server_keys, OneRttKeys)
    assert client_keys.send_generation == 1 and server_keys.receive_generation == 1


def test_server_respects_anti_amplification_limit() -> None:
    """Until the client's address is validated the server sends at most 3x what it got."""
    received = {"server": 0, "client": 0}

    def account(data: bytes, to_server: bool) -> bytes | None:
        if to_server:
            received["server"] += len(data)
            # Only the first Initial gets through: the server cannot validate.
            return data if received["server"] <= 1500 else None
        received["client"] += len(data)
        return data

    pair = Pair(tamper=account)
    pair.start()
    pair.run_until(lambda: pair.now > 1003.0, max_time=5)
    server = pair.server
    assert not server.address_validated
    assert server.bytes_sent <= 3 * server.bytes_received


def test_stateless_reset_after_server_restart() -> None:
    pair = Pair()
    pair.handshake()
    key = pair.endpoint.config.stateless_reset_key
    pair.endpoint = ServerEndpoint(server_config(stateless_reset_key=key))  # state lost
    pair.client.streams.write(pair.client.streams.open_stream(), b"anyone there?", fin=True)
    pair.run_until(lambda: terminated(pair.client_events) is not None, max_time=10)
    assert terminated(pair.client_events).kind == "stateless_reset"  # type: ignore[union-attr]


def test_version_negotiation_for_an_unknown_version() -> None:
    endpoint = ServerEndpoint(server_config())
    datagram = bytearray(1200)
    datagram[0] = 0xC0
    datagram[1:5] = (0x1A2A3A4A).to_bytes(4, "big")
    datagram[5] = 8
    datagram[6:14] = b"D" * 8
    datagram[14] = 8
    datagram[15:23] = b"S" * 8
    endpoint.receive_datagram(bytes(datagram), CLIENT_ADDR, 0.0)
    [(reply, addr)] = endpoint.datagrams_to_send(0.0)
    header = parse_header(reply, 0, 8)
    assert addr == CLIENT_ADDR and header.packet_type is PacketType.VERSION_NEGOTIATION
    assert list(header.supported_versions or ()) == [QUIC_VERSION_1, QUIC_VERSION_2]
    assert bytes(header.dcid) == b"S" * 8 and bytes(header.scid) == b"D" * 8
    endpoint.receive_datagram(bytes(datagram[:1000]), CLIENT_ADDR, 0.0)
    assert endpoint.datagrams_to_send(0.0) == []  # too small to deserve an answer (§6.1)


def test_path_mtu_discovery_raises_the_datagram_size() -> None:
    pair = Pair()
    pair.handshake()
    transfer(pair, 200_000)
    assert pair.client.mtu.current > 1200


def test_path_mtu_discovery_stops_at_the_path_limit() -> None:
    limit = 1500

    def mtu(data: bytes, to_server: bool) -> bytes | None:
        return data if len(data) <= limit else None

    pair = Pair(tamper=mtu)
    pair.handshake()
    transfer(pair, 400_000)
    pair.run_until(lambda: not pair.client.mtu.searching, max_time=60)
    assert limit - 64 <= pair.client.mtu.current <= limit


def test_connection_ids_are_issued_and_a_new_one_can_be_used() -> None:
    pair = Pair()
    pair.handshake()
    transfer(pair, 10_000)
    assert len(pair.client.peer_cids.active_cids()) > 1
    old = pair.client.peer_cids.current
    assert pair.client.peer_cids.switch_to_next() not in (None, old)
    transfer(pair, 50_000)  # the server still routes the new ID to the connection


def test_keepalive_keeps_an_idle_connection_open() -> None:
    pair = Pair(client=client_config(idle_timeout=2.0, keepalive_interval=0.5))
    pair.handshake()
    start = pair.now
    pair.run_until(lambda: pair.now - start > 10.0, max_time=12)
    assert pair.client.is_established and terminated(pair.client_events) is None


def test_client_gives_up_on_a_version_negotiation_without_a_common_version() -> None:
    pair = Pair()
    client = pair.client
    client.connect(pair.now)
    first = client.datagrams_to_send(pair.now)[0]
    header = parse_header(first, 0, 8)
    # (A VN listing only v2 now makes a v1+v2 client retry in v2: test_version_negotiation.)
    reply = encode_version_negotiation(bytes(header.scid), bytes(header.dcid), [0x0A0A0A0A])
    client.receive_datagram(reply, SERVER_ADDR, pair.now)
    event = client.next_event()
    assert isinstance(event, ConnectionTerminatedEvent)
    assert "versions" in event.reason and client.is_terminated


def test_version_negotiation_listing_v1_is_ignored() -> None:
    pair = Pair()
    client = pair.client
    client.connect(pair.now)
    header = parse_header(client.datagrams_to_send(pair.now)[0], 0, 8)
    reply = encode_version_negotiation(bytes(header.scid), bytes(header.dcid), [1, 0x6B3343CF])
    client.receive_datagram(reply, SERVER_ADDR, pair.now)
    assert client.next_event() is None and not client.is_terminated


def test_quic_lb_ids_route_every_connection_id_to_the_server() -> None:
    lb = QuicLbConfig(config_id=1, server_id=b"\x07\x2a", nonce_length=6)
    pair = Pair(
        server=server_config(cid_length=lb.cid_length, cid_generator=lb.generate), retry=True
    )
    pair.handshake()
    transfer(pair, 20_000)
    issued = [pair.client.retry_source_cid, *pair.client.peer_cids.active_cids()]
    assert len(issued) > 2
    for cid in issued:
        assert cid is not None and len(cid) == lb.cid_length
        assert decode_server_id(cid, 2) == b"\x07\x2a"
        assert cid[0] >> 5 == 1 and cid[0] & 0x1F == lb.cid_length - 1


def test_quic_lb_rejects_bad_configurations() -> None:
    with pytest.raises(ConfigurationError):
        QuicLbConfig(config_id=7, server_id=b"\x01")
    with pytest.raises(ConfigurationError):
        QuicLbConfig(config_id=0, server_id=b"\x01" * 16)
    with pytest.raises(ConfigurationError):
        QuicLbConfig(config_id=0, server_id=b"\x01", nonce_length=3)
    assert decode_server_id(b"\xe0\x01\x02", 1) is None  # config 7: unroutable
    assert decode_server_id(b"\x20", 1) is None  # too short


def test_qlog_traces_are_json_seq(tmp_path: Any) -> None:
    directory = str(tmp_path)
    pair = Pair(client=client_config(qlog_dir=directory), server=server_config(qlog_dir=directory))
    pair.handshake()
    transfer(pair, 50_000)
    pair.client.close(3, "bye", now=pair.now)
    pair.run_until(lambda: terminated(pair.server_events) is not None)
    files = sorted(tmp_path.glob("*.sqlog"))
    assert [f.name.split("_")[1] for f in files] == ["client.sqlog", "server.sqlog"]
    for path in files:
        raw = path.read_bytes()
        records = [json.loads(r) for r in raw.split(b"\x1e") if r]  # RFC 7464 records
        header, events = records[0], records[1:]
        assert header["qlog_format"] == "JSON-SEQ" and header["qlog_version"] == "0.3"
        names = {e["name"] for e in events}
        assert {"transport:packet_sent", "transport:packet_received"} <= names
        assert "recovery:metrics_updated" in names
        assert events[-1]["name"] == "connectivity:connection_closed"
        times = [e["time"] for e in events]
        assert times == sorted(times)


def test_forged_initials_create_no_connection_state() -> None:
    """A corrupted Initial authenticates nothing: no connection is kept for it."""
    pair = Pair()
    pair.client.connect(pair.now)
    genuine = pair.client.datagrams_to_send(pair.now)[0]
    endpoint = pair.endpoint
    for i in range(200):
        forged = bytearray(genuine)
        forged[6] ^= 1 + i % 250  # another DCID: other Initial keys, the AEAD fails
        forged[-1] ^= 0xFF
        endpoint.receive_datagram(bytes(forged), CLIENT_ADDR, pair.now)
    assert endpoint.connections == [] and endpoint.dropped_initials == 200
    endpoint.receive_datagram(genuine, CLIENT_ADDR, pair.now)
    assert len(endpoint.connections) == 1
